//! The job queue: round robin between users, and between each user's connections, so one
//! heavy user (or one greedy connection) cannot starve a light one. Retried jobs go first.
//!
//! Trust boundary: none of its own; it is the jobs part's fairness rule. It holds job ids
//! only, and is bounded by what the jobs part admits (every queued job holds a ring slot or
//! a share of the large-job budget).
//!
//! Each dispatch takes the oldest job of the user at the head of the round, from that user's
//! connection at the head of its own round, then moves both to the back of their rounds. A
//! user with one connection and one job waiting is served after at most one job of every
//! other waiting user, however many the others queued. Jobs are counted, not weighed: one
//! large job costs its user a turn like a small one (the large-job budget bounds the rest).

use std::collections::VecDeque;

use super::super::iface::ConnRef;

/// Who a job belongs to, for the rounds: the user it was submitted as and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub user: u32,
    pub conn: ConnRef,
}

#[derive(Debug)]
struct ConnLane {
    conn: ConnRef,
    jobs: VecDeque<u64>,
}

#[derive(Debug)]
struct UserLane {
    user: u32,
    conns: VecDeque<ConnLane>,
}

#[derive(Debug, Default)]
pub struct FairQueue {
    /// Jobs to run again (a worker was lost on them, or could not take them): first in line.
    first: VecDeque<u64>,
    /// Users with queued jobs, in round order.
    users: VecDeque<UserLane>,
    len: usize,
}

impl FairQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues `job` at the back of `owner`'s connection lane.
    pub fn push(&mut self, owner: Owner, job: u64) {
        self.len += 1;
        let u = match self.users.iter().position(|u| u.user == owner.user) {
            Some(i) => &mut self.users[i],
            None => {
                self.users.push_back(UserLane {
                    user: owner.user,
                    conns: VecDeque::new(),
                });
                self.users.back_mut().expect("just pushed")
            }
        };
        match u.conns.iter_mut().find(|c| c.conn == owner.conn) {
            Some(c) => c.jobs.push_back(job),
            None => u.conns.push_back(ConnLane {
                conn: owner.conn,
                jobs: VecDeque::from([job]),
            }),
        }
    }

    /// Puts `job` first in line, ahead of every round.
    pub fn push_first(&mut self, job: u64) {
        self.len += 1;
        self.first.push_front(job);
    }

    /// The job the next dispatch takes.
    pub fn front(&self) -> Option<u64> {
        self.first.front().copied().or_else(|| {
            let u = self.users.front()?;
            u.conns.front()?.jobs.front().copied()
        })
    }

    /// Takes the job `front` names and advances the rounds.
    pub fn pop(&mut self) -> Option<u64> {
        if let Some(job) = self.first.pop_front() {
            self.len -= 1;
            return Some(job);
        }
        let mut u = self.users.pop_front()?;
        let mut c = u.conns.pop_front().expect("a user lane is never empty");
        let job = c
            .jobs
            .pop_front()
            .expect("a connection lane is never empty");
        self.len -= 1;
        if !c.jobs.is_empty() {
            u.conns.push_back(c);
        }
        if !u.conns.is_empty() {
            self.users.push_back(u);
        }
        Some(job)
    }

    /// Removes `job` wherever it waits; whether it was there.
    pub fn remove(&mut self, job: u64) -> bool {
        if let Some(i) = self.first.iter().position(|&j| j == job) {
            self.first.remove(i);
            self.len -= 1;
            return true;
        }
        for ui in 0..self.users.len() {
            let u = &mut self.users[ui];
            for ci in 0..u.conns.len() {
                let c = &mut u.conns[ci];
                if let Some(i) = c.jobs.iter().position(|&j| j == job) {
                    c.jobs.remove(i);
                    self.len -= 1;
                    if c.jobs.is_empty() {
                        u.conns.remove(ci);
                    }
                    if u.conns.is_empty() {
                        self.users.remove(ui);
                    }
                    return true;
                }
            }
        }
        false
    }

    /// Every queued job, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.first.iter().copied().chain(
            self.users
                .iter()
                .flat_map(|u| u.conns.iter().flat_map(|c| c.jobs.iter().copied())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: u32, conn: usize) -> Owner {
        Owner {
            user,
            conn: ConnRef {
                index: conn,
                gen: conn as u64,
            },
        }
    }

    fn drain(q: &mut FairQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn a_light_user_waits_one_turn_however_much_a_heavy_one_queued() {
        let mut q = FairQueue::default();
        for j in 1..=100 {
            q.push(owner(1, 1), j);
        }
        q.push(owner(2, 2), 1000);
        assert_eq!(q.len(), 101);
        let order = drain(&mut q);
        assert_eq!(&order[..3], &[1, 1000, 2]);
        assert_eq!(order.len(), 101);
        assert_eq!(q.len(), 0);
        assert_eq!(q.front(), None);
    }

    #[test]
    fn users_alternate_first_and_then_their_connections() {
        let mut q = FairQueue::default();
        // User 1 has two connections with two jobs each; user 2 one connection with three.
        q.push(owner(1, 10), 11);
        q.push(owner(1, 10), 12);
        q.push(owner(1, 20), 21);
        q.push(owner(1, 20), 22);
        q.push(owner(2, 30), 31);
        q.push(owner(2, 30), 32);
        q.push(owner(2, 30), 33);
        assert_eq!(drain(&mut q), [11, 31, 21, 32, 12, 33, 22]);
    }

    #[test]
    fn first_in_line_goes_before_every_round_and_front_agrees_with_pop() {
        let mut q = FairQueue::default();
        q.push(owner(1, 1), 1);
        q.push(owner(2, 2), 2);
        q.push_first(9);
        q.push_first(8);
        let mut seen = Vec::new();
        while let Some(f) = q.front() {
            assert_eq!(q.pop(), Some(f));
            seen.push(f);
        }
        assert_eq!(seen, [8, 9, 1, 2]);
    }

    #[test]
    fn removal_leaves_no_empty_lane_behind() {
        let mut q = FairQueue::default();
        q.push(owner(1, 1), 1);
        q.push(owner(2, 2), 2);
        q.push(owner(2, 3), 3);
        q.push_first(4);
        assert!(q.remove(2));
        assert!(q.remove(4));
        assert!(!q.remove(2));
        assert_eq!(q.len(), 2);
        let mut all: Vec<_> = q.iter().collect();
        all.sort();
        assert_eq!(all, [1, 3]);
        assert!(q.remove(1));
        assert_eq!(q.users.len(), 1);
        assert_eq!(drain(&mut q), [3]);
        assert!(q.users.is_empty());
    }
}
