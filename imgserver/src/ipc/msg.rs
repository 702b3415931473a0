//! The fixed-size messages exchanged between master and workers, and their byte layout: one
//! type per direction ([`ToWorker`]: `Init`, `Job`; [`ToMaster`]: `Ready`, `Variant`, `Done`).
//!
//! Trust boundary: a worker decodes hostile images and may be compromised or corrupt, so the
//! master parses every message from a worker strictly (known tag, exact size, bounded string
//! lengths, valid UTF-8) and treats a malformed one as a worker crash.

use thiserror::Error;

/// Every message is exactly this long (SOCK_SEQPACKET keeps the boundary; a short or long
/// datagram is a protocol violation). Large enough for a 1 KiB op spec.
pub const MSG_LEN: usize = 1280;
/// Longest error text a worker returns.
pub const MAX_MESSAGE: usize = 512;
/// Longest op spec: the filters' limit, which equals the protocol's (tested in `master::conns`,
/// where both crates meet), so every spec the master admitted fits.
pub const MAX_SPEC: usize = imgfilters::MAX_SPEC_LEN;
/// Slot number meaning "the data is in the attached memfd, not the ring".
pub const NO_SLOT: u32 = u32::MAX;

/// Master → worker, once, with fds [ring, stats]: map these and start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    pub index: u32,
    pub slots: u32,
    pub slot_size: u64,
    pub deadline_ms: u32,
}

/// Worker → master: mapped everything, ready for jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub pid: u32,
    /// What the worker's confinement achieved (`sandbox::Report::to_bits`).
    pub sandbox: u32,
}

/// Master → worker: run `spec` on `input_len` bytes at ring slot `slot` (or in the attached
/// memfd when `slot == NO_SLOT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job: u64,
    pub slot: u32,
    pub generation: u32,
    pub input_len: u64,
    /// 0: `spec` is one op spec. Otherwise `spec` is a variant list (`;`-separated) and this
    /// is the set of its variants to run (bit k: variant k), every one if none has been
    /// answered yet, the rest on a retry after a worker was lost mid-job.
    pub variants: u8,
    pub spec: String,
}

/// What the master sends a worker. A separate type from [`ToMaster`], so a channel typed by
/// direction (`ipc::channel::Channel`) cannot carry a message the wrong way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToWorker {
    Init(Init),
    Job(Job),
}

/// What a worker sends the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToMaster {
    Ready(Ready),
    /// One variant of a multi-output job finished: on success its output is in the attached
    /// memfd (always: the slot holds the input, which a retry needs). Its `Done` follows once
    /// every variant asked for has been answered.
    Variant(VariantDone),
    /// Job finished. On success the output is in the same slot (or in an attached memfd when
    /// it did not fit: `in_memfd`). For a multi-output job it only ends the job: its status is
    /// the input's own failure (then no more variants come), 0 otherwise.
    Done(Done),
}

/// A variant's outcome: `done.status` 0 with the output in the attached memfd, or its error.
/// `done.in_memfd`, `output_offset` are unused (always a memfd).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariantDone {
    pub index: u8,
    pub done: Done,
}

/// A message of one direction with its fixed-size encoding. Decoding checks the length and
/// accepts only this direction's tags: a tag of the other direction is an unknown tag.
pub trait Message: Sized {
    fn encode(&self) -> [u8; MSG_LEN];
    fn decode(buf: &[u8]) -> Result<Self, MsgError>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    pub job: u64,
    pub slot: u32,
    pub generation: u32,
    /// 0 = success, otherwise a protocol error code.
    pub status: u16,
    pub in_memfd: bool,
    pub output_len: u64,
    /// Where the output starts in the job's slot (not in a memfd): behind the input, which
    /// stays intact for the master's retry of a job whose worker is lost.
    pub output_offset: u64,
    pub width: u32,
    pub height: u32,
    pub format: u8,
    pub decode_us: u32,
    pub filter_us: u32,
    pub encode_us: u32,
    pub message: String,
}

impl Done {
    /// The worker's decode, filter and encode times in microseconds, in that order.
    pub fn phases_us(&self) -> [u32; 3] {
        [self.decode_us, self.filter_us, self.encode_us]
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MsgError {
    #[error("message of {0} bytes, expected {MSG_LEN}")]
    Length(usize),
    #[error("unknown message tag {0}")]
    Tag(u32),
    #[error("string field too long or not UTF-8")]
    Text,
}

const TAG_INIT: u32 = 1;
const TAG_READY: u32 = 2;
const TAG_JOB: u32 = 3;
const TAG_DONE: u32 = 4;
const TAG_VARIANT: u32 = 5;

struct W {
    buf: Vec<u8>,
}

impl W {
    fn new(tag: u32) -> W {
        let mut buf = Vec::with_capacity(MSG_LEN);
        buf.extend_from_slice(&tag.to_le_bytes());
        W { buf }
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str, max: usize) -> &mut Self {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.buf.extend_from_slice(&s.as_bytes()[..end]);
        self
    }
    fn finish(&mut self) -> [u8; MSG_LEN] {
        let mut out = [0u8; MSG_LEN];
        out[..self.buf.len()].copy_from_slice(&self.buf);
        out
    }
}

struct R<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        // Fields never run past MSG_LEN by construction of the layouts below.
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn str(&mut self, max: usize) -> Result<String, MsgError> {
        let n = self.u16() as usize;
        if n > max {
            return Err(MsgError::Text);
        }
        std::str::from_utf8(self.take(n))
            .map(str::to_string)
            .map_err(|_| MsgError::Text)
    }
}

/// Checks the length and reads the tag.
fn open(buf: &[u8]) -> Result<(u32, R<'_>), MsgError> {
    if buf.len() != MSG_LEN {
        return Err(MsgError::Length(buf.len()));
    }
    let mut r = R { buf, pos: 0 };
    let tag = r.u32();
    Ok((tag, r))
}

impl Message for ToWorker {
    fn encode(&self) -> [u8; MSG_LEN] {
        match self {
            ToWorker::Init(i) => W::new(TAG_INIT)
                .u32(i.index)
                .u32(i.slots)
                .u64(i.slot_size)
                .u32(i.deadline_ms)
                .finish(),
            ToWorker::Job(j) => W::new(TAG_JOB)
                .u64(j.job)
                .u32(j.slot)
                .u32(j.generation)
                .u64(j.input_len)
                .u8(j.variants)
                .str(&j.spec, MAX_SPEC)
                .finish(),
        }
    }

    fn decode(buf: &[u8]) -> Result<ToWorker, MsgError> {
        let (tag, mut r) = open(buf)?;
        Ok(match tag {
            TAG_INIT => ToWorker::Init(Init {
                index: r.u32(),
                slots: r.u32(),
                slot_size: r.u64(),
                deadline_ms: r.u32(),
            }),
            TAG_JOB => ToWorker::Job(Job {
                job: r.u64(),
                slot: r.u32(),
                generation: r.u32(),
                input_len: r.u64(),
                variants: r.u8(),
                spec: r.str(MAX_SPEC)?,
            }),
            t => return Err(MsgError::Tag(t)),
        })
    }
}

impl Message for ToMaster {
    fn encode(&self) -> [u8; MSG_LEN] {
        match self {
            ToMaster::Ready(r) => W::new(TAG_READY).u32(r.pid).u32(r.sandbox).finish(),
            ToMaster::Done(d) => done_fields(&mut W::new(TAG_DONE), d).finish(),
            ToMaster::Variant(v) => done_fields(W::new(TAG_VARIANT).u8(v.index), &v.done).finish(),
        }
    }

    fn decode(buf: &[u8]) -> Result<ToMaster, MsgError> {
        let (tag, mut r) = open(buf)?;
        Ok(match tag {
            TAG_READY => ToMaster::Ready(Ready {
                pid: r.u32(),
                sandbox: r.u32(),
            }),
            TAG_DONE => ToMaster::Done(read_done(&mut r)?),
            TAG_VARIANT => {
                let index = r.u8();
                ToMaster::Variant(VariantDone {
                    index,
                    done: read_done(&mut r)?,
                })
            }
            t => return Err(MsgError::Tag(t)),
        })
    }
}

/// Done's fields, shared by Done and Variant.
fn done_fields<'w>(w: &'w mut W, d: &Done) -> &'w mut W {
    w.u64(d.job)
        .u32(d.slot)
        .u32(d.generation)
        .u16(d.status)
        .u8(d.in_memfd as u8)
        .u64(d.output_len)
        .u64(d.output_offset)
        .u32(d.width)
        .u32(d.height)
        .u8(d.format)
        .u32(d.decode_us)
        .u32(d.filter_us)
        .u32(d.encode_us)
        .str(&d.message, MAX_MESSAGE)
}

fn read_done(r: &mut R<'_>) -> Result<Done, MsgError> {
    Ok(Done {
        job: r.u64(),
        slot: r.u32(),
        generation: r.u32(),
        status: r.u16(),
        in_memfd: r.u8() != 0,
        output_len: r.u64(),
        output_offset: r.u64(),
        width: r.u32(),
        height: r.u32(),
        format: r.u8(),
        decode_us: r.u32(),
        filter_us: r.u32(),
        encode_us: r.u32(),
        message: r.str(MAX_MESSAGE)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: &str) -> ToWorker {
        ToWorker::Job(Job {
            job: 1,
            slot: 0,
            generation: 0,
            input_len: 0,
            variants: 0,
            spec: spec.into(),
        })
    }

    #[test]
    fn every_message_round_trips() {
        let to_worker = [
            ToWorker::Init(Init {
                index: 3,
                slots: 32,
                slot_size: 4 << 20,
                deadline_ms: 30_000,
            }),
            ToWorker::Job(Job {
                job: 9,
                slot: 5,
                generation: 77,
                input_len: 123_456,
                variants: 0,
                spec: "blur:2,format:png".into(),
            }),
            ToWorker::Job(Job {
                job: 10,
                slot: NO_SLOT,
                generation: 0,
                input_len: 1 << 30,
                variants: 0b101,
                spec: "x".repeat(MAX_SPEC),
            }),
        ];
        for m in to_worker {
            assert_eq!(ToWorker::decode(&m.encode()).unwrap(), m);
        }
        let to_master = [
            ToMaster::Ready(Ready {
                pid: 4242,
                sandbox: 0x0601,
            }),
            ToMaster::Done(Done {
                job: 9,
                slot: 5,
                generation: 77,
                status: 0,
                output_len: 99,
                output_offset: 4096,
                width: 640,
                height: 480,
                format: 1,
                decode_us: 1,
                filter_us: 2,
                encode_us: 3,
                message: String::new(),
                in_memfd: false,
            }),
            ToMaster::Variant(VariantDone {
                index: 7,
                done: Done {
                    job: 3,
                    status: 0,
                    in_memfd: true,
                    output_len: 1 << 20,
                    width: 320,
                    height: 200,
                    format: 4,
                    message: "warning".into(),
                    ..Default::default()
                },
            }),
        ];
        for m in to_master {
            assert_eq!(ToMaster::decode(&m.encode()).unwrap(), m);
        }
        // Long messages are cut at a char boundary within MAX_MESSAGE bytes.
        let long = ToMaster::Done(Done {
            status: 304,
            message: "é".repeat(300),
            ..Default::default()
        });
        let ToMaster::Done(back) = ToMaster::decode(&long.encode()).unwrap() else {
            panic!("not a Done");
        };
        assert_eq!(back.status, 304);
        assert!(back.message.len() <= MAX_MESSAGE && "é".repeat(300).starts_with(&back.message));
    }

    #[test]
    fn a_message_of_the_other_direction_is_an_unknown_tag() {
        assert_eq!(
            ToMaster::decode(&job("ok").encode()),
            Err(MsgError::Tag(TAG_JOB))
        );
        let init = ToWorker::Init(Init {
            index: 0,
            slots: 1,
            slot_size: 4096,
            deadline_ms: 1,
        });
        assert_eq!(
            ToMaster::decode(&init.encode()),
            Err(MsgError::Tag(TAG_INIT))
        );
        let ready = ToMaster::Ready(Ready { pid: 1, sandbox: 0 });
        assert_eq!(
            ToWorker::decode(&ready.encode()),
            Err(MsgError::Tag(TAG_READY))
        );
        let done = ToMaster::Done(Done::default());
        assert_eq!(
            ToWorker::decode(&done.encode()),
            Err(MsgError::Tag(TAG_DONE))
        );
    }

    #[test]
    fn malformed_messages_are_rejected() {
        assert_eq!(ToMaster::decode(&[0u8; 10]), Err(MsgError::Length(10)));
        assert_eq!(
            ToWorker::decode(&[0u8; MSG_LEN + 1]),
            Err(MsgError::Length(MSG_LEN + 1))
        );
        let mut b = ToMaster::Ready(Ready { pid: 1, sandbox: 0 }).encode();
        b[0] = 99;
        assert_eq!(ToMaster::decode(&b), Err(MsgError::Tag(99)));
        let mut b = job("ok").encode();
        // spec length field at 4+8+4+4+8+1 = 29
        b[29..31].copy_from_slice(&5000u16.to_le_bytes());
        assert_eq!(ToWorker::decode(&b), Err(MsgError::Text));
        let mut b = job("ok").encode();
        b[31] = 0xff;
        assert_eq!(ToWorker::decode(&b), Err(MsgError::Text));
    }
}
