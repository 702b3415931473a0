//! Reading a filter run's inputs and writing its outputs. Outputs are written to a temporary
//! name in the same directory and renamed, so an interrupted run never leaves a truncated
//! image under the final name.
//!
//! Trust boundary: local files and stdin/stdout.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::plan::{Sink, Source};
use crate::exit::Failure;

/// The whole input: a file, or stdin until EOF.
pub fn read_source(s: &Source) -> std::io::Result<Vec<u8>> {
    match s {
        Source::Stdin => {
            let mut v = Vec::new();
            std::io::stdin().lock().read_to_end(&mut v)?;
            Ok(v)
        }
        Source::File(p) => fs::read(p),
    }
}

/// Writes via a temporary file in the same directory and a rename.
pub fn write_sink(s: &Sink, bytes: &[u8]) -> Result<(), Failure> {
    match s {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|_| out.flush())
                .map_err(|e| Failure::io("writing stdout", e))
        }
        Sink::File(p) => {
            let what = || format!("writing {}", p.display());
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            fs::create_dir_all(&dir).map_err(|e| Failure::io(what(), e))?;
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let tmp = dir.join(format!(".{name}.imgclient-{}.tmp", std::process::id()));
            let result = fs::File::create(&tmp)
                .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
                .and_then(|_| fs::rename(&tmp, p));
            if let Err(e) = result {
                let _ = fs::remove_file(&tmp);
                return Err(Failure::io(what(), e));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitKind;
    use crate::filter::test_cli::tmpdir;

    #[test]
    fn writes_are_atomic_and_create_directories() {
        let d = tmpdir("write");
        let p = d.join("new/dir/out.png");
        write_sink(&Sink::File(p.clone()), b"data").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"data");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1);
        // An unwritable target is an I/O failure, and no temporary file is left behind.
        let e = write_sink(&Sink::File(d.join("new")), b"x").unwrap_err();
        assert_eq!(e.kind, ExitKind::Io);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }
}
