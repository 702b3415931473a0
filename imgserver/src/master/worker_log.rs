//! A worker's stderr, re-logged by the master: each line as `worker 3 (pid N): line`, with the
//! master's timestamp, tag and format (text or JSON), at the level the worker's own logger
//! gave it (cliutil's child style starts with it) or at warn for anything else on its stderr
//! (a panic's or a library's output). Lines are bounded in length (the rest is cut, with a
//! marker saying how much), held to a per-worker budget like connection lines
//! (`log_limit.rs`), and a last partial line is flushed when the worker dies.
//!
//! Trust boundary: a worker is untrusted once it has touched an image, and so is what it
//! writes: its bytes are split and bounded here, decoded lossily, and escaped by the logger
//! like any peer's text, so a worker can neither forge a master line nor flood the log.
//! Each pipe is read by a thread of its own, which blocks only itself: the event loop never
//! waits on a worker's stderr. The thread ends at end of file, when the worker (the pipe's
//! only writer) is gone.

use std::io::{self, Read};
use std::process::ChildStderr;
use std::thread::JoinHandle;
use std::time::Instant;

use log::Level;

use super::log_limit::{LogBudget, LogLimiter};

/// The longest line re-logged, in bytes; the rest of a longer line is cut.
pub const MAX_LINE: usize = 4096;

/// A line as it is cut from the stream: its first bytes, and how many more were dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: Vec<u8>,
    pub cut: usize,
}

impl Line {
    /// The line to log: lossily decoded, with ` [... N more bytes cut]` when it was cut.
    pub fn render(&self) -> String {
        let text = String::from_utf8_lossy(&self.text);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        if self.cut == 0 {
            text.to_string()
        } else {
            format!("{text} [... {} more bytes cut]", self.cut)
        }
    }
}

/// Splits a byte stream into lines of at most `max` bytes. Pure: bytes in, lines out.
#[derive(Debug)]
pub struct Lines {
    max: usize,
    cur: Vec<u8>,
    cut: usize,
}

impl Lines {
    pub fn new(max: usize) -> Lines {
        Lines {
            max: max.max(1),
            cur: Vec::new(),
            cut: 0,
        }
    }

    /// The lines `bytes` completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        for part in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, ended) = match part.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (part, false),
            };
            let room = self.max - self.cur.len();
            let take = body.len().min(room);
            self.cur.extend_from_slice(&body[..take]);
            self.cut += body.len() - take;
            if ended {
                out.push(self.take());
            }
        }
        out
    }

    /// What is left at end of file: a last line without its newline.
    pub fn finish(&mut self) -> Option<Line> {
        (!self.cur.is_empty() || self.cut > 0).then(|| self.take())
    }

    fn take(&mut self) -> Line {
        Line {
            text: std::mem::take(&mut self.cur),
            cut: std::mem::take(&mut self.cut),
        }
    }
}

/// Starts reading worker `index`'s (pid `pid`) stderr on a thread of its own.
pub fn spawn(index: usize, pid: u32, stderr: ChildStderr) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("worker-{index}-stderr"))
        .spawn(move || relog(index, pid, stderr))
}

/// Re-logs what `src` carries until its end.
fn relog(index: usize, pid: u32, mut src: impl Read) {
    let mut lines = Lines::new(MAX_LINE);
    let mut budget = LogLimiter::new(LogBudget::DEFAULT);
    let mut buf = [0u8; 8192];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!(worker = index, pid = pid; "worker {index} (pid {pid}): reading its stderr: {e}");
                break;
            }
        };
        let now = Instant::now();
        for line in lines.feed(&buf[..n]) {
            emit(index, pid, &line, &mut budget, now);
        }
        summarize(index, pid, budget.summaries(now));
    }
    // The worker is gone: its last words, even without a newline, and what was held back.
    let now = Instant::now();
    if let Some(line) = lines.finish() {
        emit(index, pid, &line, &mut budget, now);
    }
    summarize(index, pid, budget.drain(now));
}

/// One line, at its level if the worker's logger wrote it (else warn), within the budget.
fn emit(index: usize, pid: u32, line: &Line, budget: &mut LogLimiter<()>, now: Instant) {
    let text = line.render();
    let (level, msg) = cliutil::logging::parse_child_line(&text).unwrap_or((Level::Warn, &text));
    let level = if budget.allow(&(), now) {
        level
    } else {
        Level::Debug
    };
    log::log!(level, worker = index, pid = pid; "worker {index} (pid {pid}): {msg}");
}

fn summarize(index: usize, pid: u32, due: Vec<super::log_limit::Summary<()>>) {
    for s in due {
        log::warn!(
            worker = index, pid = pid;
            "worker {index} (pid {pid}): suppressed {} similar lines in the last {:.0} s",
            s.suppressed,
            s.over.as_secs_f64().ceil()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: &[Line]) -> Vec<String> {
        v.iter().map(Line::render).collect()
    }

    #[test]
    fn lines_split_across_reads_come_out_whole() {
        let mut l = Lines::new(100);
        assert!(l.feed(b"thread 'main' pan").is_empty());
        assert_eq!(
            texts(&l.feed(b"icked\nnote: x\r\nhalf")),
            ["thread 'main' panicked", "note: x"]
        );
        assert_eq!(texts(&l.feed(b"\n\n")), ["half", ""]);
        assert_eq!(l.finish(), None);
    }

    #[test]
    fn a_long_line_is_cut_with_a_marker_and_the_next_is_whole() {
        let mut l = Lines::new(8);
        let mut got = l.feed(b"0123456789abcdef");
        assert!(got.is_empty());
        got.extend(l.feed(b"ghij\nnext\n"));
        assert_eq!(texts(&got), ["01234567 [... 12 more bytes cut]", "next"]);
    }

    #[test]
    fn a_partial_last_line_is_flushed_at_the_end() {
        let mut l = Lines::new(8);
        assert!(l.feed(b"dying wor").is_empty());
        assert_eq!(
            l.finish().unwrap().render(),
            "dying wo [... 1 more bytes cut]"
        );
        assert_eq!(l.finish(), None);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced() {
        let mut l = Lines::new(100);
        assert_eq!(texts(&l.feed(b"a\xffb\n")), ["a\u{fffd}b"]);
    }
}
