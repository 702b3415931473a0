//! Reading a password: hidden input on the controlling terminal, or one line from a pipe.
//!
//! Trust boundary: the terminal and stdin. A typed password must never appear on screen or in
//! scrollback, and the terminal must never be left with echo off.
//!
//! The hidden prompt is `rpassword`'s: it opens `/dev/tty` (never stdin, which may carry an
//! image or a script's input), turns echo off, restores the terminal's settings even when
//! reading fails, and handles Backspace, Ctrl-U and Ctrl-C like a line editor would. It is
//! small (one helper crate and libc) where `dialoguer` would bring a terminal-UI stack for a
//! confirmation prompt we need only once (`read_new` does it in a few lines).
//!
//! Which source a program uses, and in which order, is its own policy: imgclient takes
//! `--password-file`, then `IMGCLIENT_PASSWORD`, then [`prompt_hidden`]; `imgserver user add`
//! takes a line from stdin when stdin is not a terminal, else [`read_new`]'s double prompt.

use std::io::{self, BufRead, IsTerminal};

use rpassword::{Config, ConfigBuilder};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// There is no controlling terminal to prompt on (or it cannot be read).
    #[error("cannot prompt on the terminal: {0}")]
    Terminal(#[source] io::Error),
    /// Reading a piped password failed.
    #[error("reading the password: {0}")]
    Read(#[source] io::Error),
    /// The two typed passwords differ.
    #[error("passwords differ")]
    Mismatch,
}

impl From<PasswordError> for io::Error {
    /// The underlying I/O error, for callers that report an `io::Error`.
    fn from(e: PasswordError) -> io::Error {
        match e {
            PasswordError::Terminal(e) | PasswordError::Read(e) => e,
            PasswordError::Mismatch => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}

/// Writes `prompt` to the controlling terminal and reads one line there with echo off;
/// Enter still moves the cursor to the next line. Fails with [`PasswordError::Terminal`]
/// when the process has no terminal.
pub fn prompt_hidden(prompt: &str) -> Result<String, PasswordError> {
    prompt_with(prompt, ConfigBuilder::new().build())
}

fn prompt_with(prompt: &str, config: Config) -> Result<String, PasswordError> {
    rpassword::prompt_password_with_config(prompt, config).map_err(PasswordError::Terminal)
}

/// The first line of `reader` without its line ending (`\n` or `\r\n`); all of it when it
/// has no newline, and empty at EOF. For a password piped in by a script.
pub fn read_line(reader: &mut impl BufRead) -> Result<String, PasswordError> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(PasswordError::Read)?;
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// A new password for a command that sets one: one line from stdin when stdin is not a
/// terminal (a script pipes it in), else typed twice on the terminal behind `prompt` and
/// `again`, with [`PasswordError::Mismatch`] when the two differ.
pub fn read_new(prompt: &str, again: &str) -> Result<String, PasswordError> {
    let stdin = io::stdin();
    let piped = !stdin.is_terminal();
    new_password(piped.then(|| stdin.lock()), prompt_hidden, prompt, again)
}

/// [`read_new`] with its sources passed in: `piped` is stdin when it is not a terminal.
fn new_password(
    piped: Option<impl BufRead>,
    mut prompt_fn: impl FnMut(&str) -> Result<String, PasswordError>,
    prompt: &str,
    again: &str,
) -> Result<String, PasswordError> {
    if let Some(mut reader) = piped {
        return read_line(&mut reader);
    }
    let first = prompt_fn(prompt)?;
    let second = prompt_fn(again)?;
    if first != second {
        return Err(PasswordError::Mismatch);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn typed(input: &'static str) -> (Result<String, PasswordError>, String) {
        let out = Shared::default();
        let config = ConfigBuilder::new()
            .input_reader(Cursor::new(input))
            .output_writer(out.clone())
            .build();
        let got = prompt_with("password: ", config);
        let shown = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        (got, shown)
    }

    #[test]
    fn the_prompt_is_shown_and_the_password_is_not() {
        let (got, shown) = typed("s3cret\n");
        assert_eq!(got.unwrap(), "s3cret");
        assert!(shown.starts_with("password: "), "{shown:?}");
        assert!(!shown.contains("s3cret"), "{shown:?}");
        // Line editing: Backspace drops a character, Ctrl-U the whole line.
        assert_eq!(typed("ab\x7fc\r\n").0.unwrap(), "ac");
        assert_eq!(typed("wrong\x15right\n").0.unwrap(), "right");
    }

    #[test]
    fn piped_lines_lose_only_their_line_ending() {
        let line = |s: &str| read_line(&mut Cursor::new(s.as_bytes().to_vec())).unwrap();
        assert_eq!(line("pw\n"), "pw");
        assert_eq!(line("pw\r\n"), "pw");
        assert_eq!(line(" p w \nsecond\n"), " p w ");
        assert_eq!(line("no-newline"), "no-newline");
        assert_eq!(line(""), "");
    }

    #[test]
    fn a_new_password_is_piped_or_typed_twice() {
        let never = |_: &str| -> Result<String, PasswordError> { panic!("must not prompt") };
        let piped = Some(Cursor::new(b"from-pipe\n".to_vec()));
        assert_eq!(
            new_password(piped, never, "p: ", "a: ").unwrap(),
            "from-pipe"
        );

        let tty: Option<Cursor<Vec<u8>>> = None;
        let mut asked = Vec::new();
        let got = new_password(
            tty.clone(),
            |p| {
                asked.push(p.to_string());
                Ok("same".into())
            },
            "password: ",
            "again: ",
        );
        assert_eq!(got.unwrap(), "same");
        assert_eq!(asked, ["password: ", "again: "]);

        let mut answers = vec!["two", "one"];
        let got = new_password(tty.clone(), |_| Ok(answers.pop().unwrap().into()), "p", "a");
        assert!(matches!(got, Err(PasswordError::Mismatch)));
        assert_eq!(
            io::Error::from(PasswordError::Mismatch).to_string(),
            "passwords differ"
        );

        let no_tty = |_: &str| Err(PasswordError::Terminal(io::Error::other("no tty")));
        let e = new_password(tty, no_tty, "p", "a").unwrap_err();
        assert_eq!(io::Error::from(e).to_string(), "no tty");
    }
}
