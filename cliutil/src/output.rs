//! Writing a command's report to stdout, where a reader may stop early.
//!
//! Trust boundary: the process's stdout. `imgserver stats | head -2` closes the pipe after two
//! lines; that is the reader's choice, not a failure: the rest is dropped and the command
//! succeeds, as C tools do when SIGPIPE ends them. Any other write error is reported.

use std::io::{self, Write};

/// Writes `text` to stdout and flushes it; a closed pipe counts as success.
pub fn print(text: &str) -> io::Result<()> {
    write_to(&mut io::stdout().lock(), text)
}

/// [`print`] to any writer.
pub fn write_to(out: &mut impl Write, text: &str) -> io::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_success_and_other_errors_are_not() {
        assert!(write_to(&mut Closed, "a line\n").is_ok());
        assert!(write_to(&mut Full, "a line\n").is_err());
        let mut v = Vec::new();
        write_to(&mut v, "a line\n").unwrap();
        assert_eq!(v, b"a line\n");
    }
}
