//! Reading a filter run's inputs and writing its outputs. A file output is written to a
//! temporary name in the same directory and renamed, so an interrupted run never leaves a
//! truncated image under the final name; devices, FIFOs and symlinks are written through,
//! never replaced.
//!
//! Trust boundary: local files and stdin/stdout.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

/// Writes an output where the user pointed: stdout; a new or existing regular file through a
/// temporary file in its directory and a rename (an interrupted run never leaves a truncated
/// image, and an existing file keeps its permissions); through a symlink, the file it points
/// to (the link stays); into a device, FIFO or socket directly, as `cat > PATH` would (a
/// rename would replace `/dev/full` with a regular file). The folder must exist: a mistyped
/// path is an error, not a new directory.
pub fn write_sink(s: &Sink, bytes: &[u8]) -> Result<(), Failure> {
    match s {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|_| out.flush())
                .map_err(|e| Failure::io("writing stdout", e))
        }
        Sink::File(p) => {
            write_file(p, bytes).map_err(|e| Failure::io(format!("writing {}", p.display()), e))
        }
    }
}

fn write_file(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let target = match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(p).map_err(|e| {
            Error::new(
                e.kind(),
                format!("{e} (a symlink to nothing: write to its target's path)"),
            )
        })?,
        _ => p.to_path_buf(),
    };
    let existing = match fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(m) = &existing {
        if m.is_dir() {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                "is a directory (use --out-dir)",
            ));
        }
        if !m.is_file() {
            // A device, FIFO or socket: write into it, never replace it.
            let mut f = fs::OpenOptions::new().write(true).open(&target)?;
            return f.write_all(bytes).and_then(|()| f.flush());
        }
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("folder {} does not exist", dir.display()),
        ));
    }
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.imgclient-{}.tmp", std::process::id()));
    let result = fs::File::create(&tmp)
        .and_then(|mut f| {
            if let Some(m) = &existing {
                f.set_permissions(m.permissions())?;
            }
            f.write_all(bytes).and_then(|_| f.sync_all())
        })
        .and_then(|_| fs::rename(&tmp, &target));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitKind;
    use crate::filter::test_cli::tmpdir;

    #[test]
    fn writes_are_atomic_keep_permissions_and_never_create_folders() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("write");
        let p = d.join("out.png");
        write_sink(&Sink::File(p.clone()), b"data").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"data");
        // Replacing an existing file keeps its mode.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_sink(&Sink::File(p.clone()), b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            1,
            "a temporary file was left"
        );
        // A missing folder is an error; nothing is created.
        let e = write_sink(&Sink::File(d.join("new/dir/out.png")), b"x").unwrap_err();
        assert_eq!(e.kind, ExitKind::Io);
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!d.join("new").exists());
        // A directory is not a file to replace.
        fs::create_dir(d.join("sub")).unwrap();
        let e = write_sink(&Sink::File(d.join("sub")), b"x").unwrap_err();
        assert_eq!(e.kind, ExitKind::Io);
        assert!(d.join("sub").is_dir());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_devices_and_fifos_are_written_through_not_replaced() {
        let d = tmpdir("write-through");
        // Through a symlink: the target changes, the link stays a link.
        let real = d.join("real.png");
        fs::write(&real, b"old").unwrap();
        let link = d.join("link.png");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_sink(&Sink::File(link.clone()), b"via link").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"via link");
        // A device stays a device.
        write_sink(&Sink::File("/dev/null".into()), b"gone").unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        // A FIFO gets the bytes, and stays a FIFO.
        let fifo = d.join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write_sink(&Sink::File(fifo.clone()), b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        fs::remove_dir_all(&d).unwrap();
    }
}
