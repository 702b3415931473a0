//! Collapsed duplicate requests: jobs whose result key equals that of a job already queued or
//! running wait for that job (the leader) instead of taking a worker, a queue place or
//! storage; when the leader is answered, each waiter gets the same answer under its own
//! request id.
//!
//! Trust boundary: none of its own; bookkeeping the jobs part consults (no I/O, no clock).
//! The rules (docs/DESIGN.md, "Result cache and collapsed requests"): a leader lost with its
//! worker is retried as usual while its waiters keep waiting; any failure of the leader is
//! every waiter's failure; a leader whose own connection went away keeps running for its
//! waiters (one of them takes its place); a waiter whose connection goes away is dropped.

use std::collections::HashMap;
use std::time::Instant;

use super::super::iface::ConnRef;
use crate::cache::Key;

/// A request waiting for a leader's result.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    /// The job id it was given at submission (still its entry in the per-connection map).
    pub id: u64,
    pub conn: ConnRef,
    pub req: u64,
    pub submitted: Instant,
    /// When its upload completed: its queue time runs from here to the leader's answer.
    pub waiting_since: Instant,
}

/// Leaders by key, and each leader's waiters.
#[derive(Default)]
pub struct Collapse {
    leaders: HashMap<Key, u64>,
    keys: HashMap<u64, Key>,
    waiters: HashMap<u64, Vec<Waiter>>,
    /// Waiter id → its leader.
    leader_of: HashMap<u64, u64>,
}

impl Collapse {
    /// The job already working on `key`, if any.
    pub fn leader(&self, key: &Key) -> Option<u64> {
        self.leaders.get(key).copied()
    }

    /// `job` works on `key` from now on: later duplicates wait for it.
    pub fn lead(&mut self, key: Key, job: u64) {
        self.leaders.insert(key, job);
        self.keys.insert(job, key);
    }

    pub fn wait(&mut self, leader: u64, w: Waiter) {
        self.leader_of.insert(w.id, leader);
        self.waiters.entry(leader).or_default().push(w);
    }

    /// The leader is finished (answered, failed or gone): it leads no more, and its waiters
    /// are handed back to be answered alike.
    pub fn finish(&mut self, leader: u64) -> Vec<Waiter> {
        if let Some(key) = self.keys.remove(&leader) {
            if self.leaders.get(&key) == Some(&leader) {
                self.leaders.remove(&key);
            }
        }
        let ws = self.waiters.remove(&leader).unwrap_or_default();
        for w in &ws {
            self.leader_of.remove(&w.id);
        }
        ws
    }

    /// The leader's own client is gone: the oldest waiter takes its place (the caller makes
    /// the job answer that waiter's request).
    pub fn promote(&mut self, leader: u64) -> Option<Waiter> {
        let ws = self.waiters.get_mut(&leader)?;
        if ws.is_empty() {
            return None;
        }
        let w = ws.remove(0);
        self.leader_of.remove(&w.id);
        Some(w)
    }

    /// A waiter's connection is gone: it is simply dropped.
    pub fn drop_waiter(&mut self, id: u64) {
        let Some(leader) = self.leader_of.remove(&id) else {
            return;
        };
        if let Some(ws) = self.waiters.get_mut(&leader) {
            ws.retain(|w| w.id != id);
        }
    }
}
