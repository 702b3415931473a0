//! `imgserver user add|del|list`: manages the users file of password verifiers (STATE_DIR/users
//! or the one `--users-file` names).
//!
//! Trust boundary: the password is read from stdin or a no-echo prompt, turned into a salted,
//! iterated verifier by libnetproto, and dropped; only the verifier is stored.

use std::path::Path;

use crate::cli::UserCommand;
use crate::state;

pub fn run(cmd: &UserCommand, path: &Path) -> Result<(), String> {
    let mut users =
        state::read_users(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    match cmd {
        UserCommand::List => {
            for (name, _) in &users {
                println!("{name}");
            }
            Ok(())
        }
        UserCommand::Del { name } => {
            let before = users.len();
            users.retain(|(n, _)| n != name);
            if users.len() == before {
                return Err(format!("no user named {name}"));
            }
            state::write_users(path, &users).map_err(|e| e.to_string())?;
            println!("deleted user {name} (a running server picks it up within a second)");
            Ok(())
        }
        UserCommand::Add { name } => {
            if name.is_empty()
                || name.len() > 64
                || name.contains(|c: char| c.is_whitespace() || c.is_control() || c == ':')
            {
                return Err(
                    "user names are 1-64 bytes without whitespace, ':' or control characters"
                        .into(),
                );
            }
            let password = read_password()?;
            if password.is_empty() {
                return Err("empty password".into());
            }
            let verifier =
                netproto_sys::verifier_create(password.as_bytes(), 0).map_err(|e| e.to_string())?;
            let existed = users.iter().any(|(n, _)| n == name);
            users.retain(|(n, _)| n != name);
            users.push((name.clone(), verifier));
            state::write_users(path, &users).map_err(|e| e.to_string())?;
            println!(
                "{} user {name} in {} (a running server picks it up within a second)",
                if existed { "updated" } else { "added" },
                path.display()
            );
            Ok(())
        }
    }
}

/// A new password: a line from stdin when it is not a terminal (scripts, `echo pw |`), else
/// typed twice without echo.
fn read_password() -> Result<String, String> {
    cliutil::password::read_new("password: ", "again: ").map_err(|e| e.to_string())
}
