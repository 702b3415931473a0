//! Bookkeeping of multi-output requests (JOB_SUBMIT_MULTI, feature level 1.1): how many
//! variants each names, which have been answered, and which one's result stream is open.
//!
//! Trust boundary: on the client, what the server says about a variant (its index, whether it
//! was answered already, whether another variant's stream is still open) is checked here, and
//! a violation is fatal like any other; on the server the same table keeps the application
//! from sending what a client would have to reject.

use std::collections::HashMap;

use crate::error::Error;

/// One multi-output request's progress.
#[derive(Debug, Clone, Copy)]
struct Request {
    /// Variants the request names (2..=MAX_VARIANTS).
    count: u8,
    /// Bit i: variant i has been answered (its stream complete, or its VARIANT_ERROR sent).
    done: u16,
    /// The variant whose result stream is open (its RESULT_DATA frames still coming).
    open: Option<u8>,
}

/// The multi-output requests of one connection that are not yet fully answered.
#[derive(Debug, Default)]
pub(super) struct Variants {
    requests: HashMap<u64, Request>,
}

/// What a variant's start or end did to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Variants of the request are still to come.
    Pending,
    /// That was the request's last variant: the request is answered.
    Complete,
}

impl Variants {
    /// Starts tracking request `id` with `count` variants.
    pub(super) fn open_request(&mut self, id: u64, count: u8) {
        self.requests.insert(
            id,
            Request {
                count,
                done: 0,
                open: None,
            },
        );
    }

    /// Whether `id` is a multi-output request still being answered.
    pub(super) fn contains(&self, id: u64) -> bool {
        self.requests.contains_key(&id)
    }

    /// Forgets request `id` (a request-level ERROR or BUSY answered it).
    pub(super) fn close_request(&mut self, id: u64) {
        self.requests.remove(&id);
    }

    /// The variant whose result stream is open on request `id`, if any.
    pub(super) fn open_variant(&self, id: u64) -> Option<u8> {
        self.requests.get(&id).and_then(|r| r.open)
    }

    /// Variant `index` of request `id` begins: a VARIANT_RESULT (`ends`: its first frame is
    /// also its last) or a VARIANT_ERROR (`ends` true). Checks the index is in range, not yet
    /// answered, and that no other variant's stream is open.
    pub(super) fn begin(&mut self, id: u64, index: u8, ends: bool) -> Result<Progress, Error> {
        self.check(id, index)?;
        if ends {
            return Ok(self.finish(id, index));
        }
        if let Some(r) = self.requests.get_mut(&id) {
            r.open = Some(index);
        }
        Ok(Progress::Pending)
    }

    /// The checks of [`begin`](Self::begin), changing nothing.
    pub(super) fn check(&self, id: u64, index: u8) -> Result<(), Error> {
        let r = self.requests.get(&id).ok_or(Error::Malformed(
            "variant answer for a request that is not a multi-output job in progress",
        ))?;
        if index >= r.count {
            return Err(Error::Malformed("variant index out of range"));
        }
        if r.done & (1 << index) != 0 {
            return Err(Error::Malformed("variant answered twice"));
        }
        if r.open.is_some() {
            return Err(Error::Malformed(
                "variant answer while another variant's result stream is open",
            ));
        }
        Ok(())
    }

    /// The open variant's stream of request `id` ended with its LAST chunk.
    pub(super) fn end_open(&mut self, id: u64) -> Progress {
        match self.requests.get_mut(&id).and_then(|r| r.open.take()) {
            Some(index) => self.finish(id, index),
            None => Progress::Pending,
        }
    }

    fn finish(&mut self, id: u64, index: u8) -> Progress {
        let Some(r) = self.requests.get_mut(&id) else {
            return Progress::Pending;
        };
        r.done |= 1 << index;
        r.open = None;
        if r.done.count_ones() == u32::from(r.count) {
            self.requests.remove(&id);
            Progress::Complete
        } else {
            Progress::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_completes_when_every_variant_is_answered_in_any_order() {
        let mut v = Variants::default();
        v.open_request(5, 3);
        assert_eq!(v.begin(5, 2, false).unwrap(), Progress::Pending);
        assert_eq!(v.open_variant(5), Some(2));
        // No other variant while 2's stream is open, and not 2 again.
        assert!(v.begin(5, 0, true).is_err());
        assert_eq!(v.end_open(5), Progress::Pending);
        assert!(v.begin(5, 2, true).is_err());
        assert!(v.begin(5, 3, true).is_err());
        assert_eq!(v.begin(5, 0, true).unwrap(), Progress::Pending);
        assert_eq!(v.begin(5, 1, true).unwrap(), Progress::Complete);
        assert!(!v.contains(5));
        assert!(v.begin(5, 1, true).is_err());
    }
}
