//! Which variants of a multi-output job (JOB_SUBMIT_MULTI) have been answered, so that each
//! is answered exactly once and a retry after a lost worker runs only the others.
//!
//! Trust boundary: the indices come from a worker, which decodes hostile input and may be
//! taken over: an index out of range or answered before is refused here (and the caller
//! drops that message), never passed on to the client, whose library would treat it as a
//! protocol violation and close the connection.

/// The answered set of a job's `count` variants (at most 8: one bit each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variants {
    count: u8,
    answered: u8,
}

impl Variants {
    /// `count` is 2..=8 (the master parsed the list before the job existed).
    pub fn new(count: usize) -> Variants {
        debug_assert!((2..=8).contains(&count));
        Variants {
            count: count.min(8) as u8,
            answered: 0,
        }
    }

    fn all(self) -> u8 {
        ((1u16 << self.count) - 1) as u8
    }

    /// The variants a worker should run now: those not answered (the `ipc::msg::Job` mask).
    pub fn to_run(self) -> u8 {
        self.all() & !self.answered
    }

    /// Records variant `index` as answered; false when it is out of range or was already
    /// answered (the message is then not to be passed on).
    pub fn answer(&mut self, index: u8) -> bool {
        if index >= self.count || self.answered & (1 << index) != 0 {
            return false;
        }
        self.answered |= 1 << index;
        true
    }

    /// The variants not answered yet, in index order.
    pub fn unanswered(&self) -> impl Iterator<Item = u8> + '_ {
        (0..self.count).filter(|i| self.answered & (1 << i) == 0)
    }

    pub fn count(&self) -> u8 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_is_answered_once_and_a_retry_runs_the_rest() {
        let mut v = Variants::new(3);
        assert_eq!(v.to_run(), 0b111);
        assert!(v.answer(1));
        assert!(!v.answer(1), "answered twice");
        assert!(!v.answer(3), "out of range");
        assert!(!v.answer(200));
        assert_eq!(v.to_run(), 0b101);
        assert_eq!(v.unanswered().collect::<Vec<_>>(), [0, 2]);
        assert!(v.answer(0) && v.answer(2));
        assert_eq!(v.to_run(), 0);
        assert_eq!(v.unanswered().count(), 0);
        let mut eight = Variants::new(8);
        assert_eq!(eight.to_run(), 0xff);
        assert!(eight.answer(7));
        assert_eq!(eight.to_run(), 0x7f);
    }
}
