//! Reading a password from the terminal without echo.
//!
//! Trust boundary: the typed password must not appear on screen or in scrollback.

use std::io::{self, BufRead, Write};

use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};

pub fn prompt_hidden(prompt: &str) -> Result<String, String> {
    let stdin = io::stdin();
    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let saved = tcgetattr(&stdin).map_err(|e| e.to_string())?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|e| e.to_string())?;
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    r.map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
