//! Notices that the users file changed, so that `imgserver user add|del` takes effect on a
//! running server without a signal. The file is polled (one stat(2) a second, from the sweep)
//! rather than watched with inotify: it is replaced by rename, lives in a directory an operator
//! may mount anywhere, and a second of delay costs nothing next to the cost of an inotify fd,
//! its watch bookkeeping and its edge cases (the directory itself replaced, overflow).
//!
//! Trust boundary: none; what the file says is checked by `conns::load_config`, as on SIGHUP.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the file is looked at.
pub const PERIOD: Duration = Duration::from_secs(1);

/// What identifies one version of the file: a rename gives a new inode, an edit in place a new
/// size or modification time. `None`: there is no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Version {
    pub fn of(path: &Path) -> Option<Version> {
        let m = std::fs::metadata(path).ok()?;
        Some(Version {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// The version last loaded and when the file was last looked at.
pub struct UsersWatch {
    loaded: Option<Version>,
    next_check: Instant,
}

impl UsersWatch {
    /// `loaded`: the version read at start.
    pub fn new(loaded: Option<Version>, now: Instant) -> UsersWatch {
        UsersWatch {
            loaded,
            next_check: now + PERIOD,
        }
    }

    /// Whether it is time to look at the file again.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_check
    }

    /// Records a look at `now` that found `current`; true when it differs from what was loaded
    /// (the caller reloads, then calls [`UsersWatch::loaded`]).
    pub fn changed(&mut self, current: Option<Version>, now: Instant) -> bool {
        self.next_check = now + PERIOD;
        current != self.loaded
    }

    /// Records the version now in use (after a reload, successful or not: a file that fails
    /// to parse is reported once, not every second).
    pub fn loaded(&mut self, v: Option<Version>) {
        self.loaded = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ino: u64, len: u64, mtime_ns: i128) -> Option<Version> {
        Some(Version {
            dev: 1,
            ino,
            len,
            mtime_ns,
        })
    }

    #[test]
    fn looks_once_a_period_and_reports_each_change_once() {
        let t0 = Instant::now();
        let mut w = UsersWatch::new(v(10, 100, 5), t0);
        assert!(!w.due(t0));
        assert!(!w.due(t0 + PERIOD / 2));
        assert!(w.due(t0 + PERIOD));
        assert!(!w.changed(v(10, 100, 5), t0 + PERIOD));
        assert!(!w.due(t0 + PERIOD + PERIOD / 2));
        // Replaced by rename: new inode, same size and time.
        assert!(w.changed(v(11, 100, 5), t0 + 2 * PERIOD));
        w.loaded(v(11, 100, 5));
        assert!(!w.changed(v(11, 100, 5), t0 + 3 * PERIOD));
        // Edited in place.
        assert!(w.changed(v(11, 120, 5), t0 + 4 * PERIOD));
        w.loaded(v(11, 120, 5));
        assert!(w.changed(v(11, 120, 6), t0 + 5 * PERIOD));
        w.loaded(v(11, 120, 6));
        // Deleted, then created.
        assert!(w.changed(None, t0 + 6 * PERIOD));
        w.loaded(None);
        assert!(!w.changed(None, t0 + 7 * PERIOD));
        assert!(w.changed(v(12, 50, 9), t0 + 8 * PERIOD));
    }

    #[test]
    fn a_real_file_replaced_by_rename_is_a_new_version() {
        let dir = std::env::temp_dir().join(format!("imgserver-uw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("users");
        assert_eq!(Version::of(&p), None);
        std::fs::write(&p, "a:b\n").unwrap();
        let first = Version::of(&p);
        assert!(first.is_some());
        let tmp = dir.join(".users.tmp");
        std::fs::write(&tmp, "a:b\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_ne!(Version::of(&p), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
