//! The small types the master's parts talk through: which connection, which worker, what to
//! tell a client, what to hand a worker, and the effects the jobs part asks of the event loop.
//!
//! Trust boundary: none of its own. These types exist so the jobs part (the job life cycle)
//! never holds a socket, a process or the clock: it says what should happen and the event loop,
//! which owns the connections and the worker pool, makes it happen.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

/// The wire's error codes are the vocabulary of replies; the rest of `netproto_sys` stays in
/// the connections part.
pub use netproto_sys::ErrorCode;

/// A worker's index in the pool (stable across respawns of that worker).
pub type WorkerId = usize;

/// How a reaped worker's process ended, as far as the master can tell. Both kinds are one
/// strike of the poison rule for the job it held; a kill the master decided (a deadline) is
/// the jobs part's own knowledge and arrives as `Crash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// It exited, crashed, was killed by the OOM killer, an operator or the master.
    Crash,
    /// Its sandbox refused a system call (SIGSYS): `syscall` is the call's number when the
    /// worker's SIGSYS handler noted it.
    SandboxViolation { syscall: Option<i64> },
}

/// A client connection: its slab index and the generation it was accepted with, so an answer
/// for a connection that left (and whose index was reused) goes to nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub index: usize,
    pub gen: u64,
}

/// A new job as a client submitted it: its first chunk, borrowed from the connection's
/// receive buffer (copied into the job's storage before the connection is touched again).
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub req: u64,
    /// The user the connection logged in as (an index the connections part assigns; the
    /// queue's rounds are per user, then per connection).
    pub user: u32,
    /// Declared upload size.
    pub total: u64,
    /// One op spec, or with `multi` a variant list (JOB_SUBMIT_MULTI: `;`-separated specs).
    pub spec: &'a str,
    pub multi: bool,
    pub data: &'a [u8],
    pub last: bool,
}

/// A further chunk of an upload.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    pub req: u64,
    pub data: &'a [u8],
    pub last: bool,
}

/// A job result's metadata, as the client sees it (JOB_RESULT).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultMeta {
    pub total_len: u64,
    pub width: u32,
    pub height: u32,
    pub format: u8,
    pub queue_us: u32,
    pub decode_us: u32,
    pub filter_us: u32,
    pub encode_us: u32,
}

/// What to tell a client about one of its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// The request was refused before it became a job (the rest of its upload is dropped).
    Rejected { code: ErrorCode, text: String },
    /// No room now; try again after the hint.
    Busy { retry_after_ms: u32 },
    /// The job failed (worker error, deadline, poison input, shutdown).
    Failed { code: ErrorCode, text: String },
    /// The job's output, borrowed from its ring slot until the reply is encrypted (at most a
    /// slot's size).
    Result { meta: ResultMeta, output: &'a [u8] },
    /// A job's output too large for a slot: the worker's sealed output memfd, of at least
    /// `meta.total_len` bytes, which the connection reads a chunk at a time as its socket
    /// drains (never mapped by the master, never queued whole).
    Streamed { meta: ResultMeta, file: OutputFile },
    /// One variant of a multi-output job: its output in the worker's memfd, streamed like
    /// `Streamed` (VARIANT_RESULT, then RESULT_DATA). More replies to the request follow.
    Variant {
        index: u8,
        meta: ResultMeta,
        file: OutputFile,
    },
    /// One variant of a multi-output job failed (VARIANT_ERROR); the others still come.
    VariantFailed {
        index: u8,
        code: ErrorCode,
        text: String,
    },
    /// A STATS answer.
    Stats(Vec<(String, u64)>),
}

/// A worker's output memfd on its way to a client (shared: the reply is `Clone`).
#[derive(Clone)]
pub struct OutputFile(pub Arc<File>);

impl PartialEq for OutputFile {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OutputFile {}

impl std::fmt::Debug for OutputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputFile(fd {})", self.0.as_raw_fd())
    }
}

/// A job handed to a worker: where its input is and what to do with it.
#[derive(Debug, Clone, Copy)]
pub struct JobOrder<'a> {
    pub job: u64,
    /// A ring slot, or `ipc::msg::NO_SLOT` when the input is in `memfd`.
    pub slot: u32,
    pub generation: u32,
    pub input_len: u64,
    pub spec: &'a str,
    /// 0 for a single job; for a multi-output job the variants to run (`ipc::msg::Job`).
    pub variants: u8,
    pub memfd: Option<BorrowedFd<'a>>,
}

/// What the jobs part asks of the world; the event loop implements it over the worker pool and
/// the connections, the unit tests over fakes.
pub trait Effects {
    /// Whether worker `w` is running and ready to be given a job.
    fn worker_ready(&self, w: WorkerId) -> bool;
    /// Sends `order` to worker `w`. On failure the implementation gives the worker up (it is
    /// no longer ready) and returns false; the job stays first in line.
    fn send_job(&mut self, w: WorkerId, order: JobOrder<'_>) -> bool;
    /// Kills worker `w`; it is reported lost once it has been reaped.
    fn kill_worker(&mut self, w: WorkerId);
    /// Delivers `reply` to request `req` of `conn` (if that connection is still there) and
    /// starts writing it.
    fn reply(&mut self, conn: ConnRef, req: u64, reply: Reply<'_>);
}
