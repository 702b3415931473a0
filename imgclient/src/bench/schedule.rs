//! When each bench request is sent and what it is: pure functions of the request number and
//! time, so the open-loop schedule, the ramp and the op/image rotation are testable without
//! a server.
//!
//! Trust boundary: none; arithmetic on the user's bench parameters.

use std::time::Duration;

/// Open loop: slot `n` of the whole run is due `n / rate` seconds after the start, whatever
/// happened to earlier requests. Latency is measured from this intended time, so a server
/// that stalls is charged for every request that should have been sent meanwhile (no
/// coordinated omission).
pub fn slot_time(n: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(n as f64 / rate)
}

/// When connection `conn` of `conns` starts: the ramp spreads the starts evenly.
pub fn ramp_offset(conn: usize, conns: usize, ramp: Duration) -> Duration {
    if conns == 0 {
        return Duration::ZERO;
    }
    ramp.mul_f64(conn as f64 / conns as f64)
}

/// Which op of the mix request `n` uses: round-robin by the run-wide request number.
pub fn op_index(n: u64, n_ops: usize) -> usize {
    (n % n_ops.max(1) as u64) as usize
}

/// `--zipf S`: request `n` sends image k (0-based, in the directory's order) with
/// probability proportional to 1/(k+1)^S, drawn from a hash of (seed, n), so a run is the same
/// sequence however its requests are spread over connections and threads.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
    seed: u64,
}

impl Zipf {
    pub fn new(s: f64, n_images: usize, seed: u64) -> Zipf {
        let weights: Vec<f64> = (1..=n_images.max(1)).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Zipf { cdf, seed }
    }

    pub fn pick(&self, n: u64) -> usize {
        // splitmix64 of (seed, n): uniform, stateless.
        let mut z = self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// Which input image request `n` sends. Advancing once per full round of the op mix keeps
/// image and op independent (with two ops and two images, each op still sees both images).
pub fn image_index(n: u64, n_ops: usize, n_images: usize) -> usize {
    ((n / n_ops.max(1) as u64) % n_images.max(1) as u64) as usize
}

/// The open-loop slots one connection owns: `conn`, `conn + conns`, `conn + 2 conns`, ...
/// Slots due before the connection's ramp start are skipped (the offered load ramps up with
/// the connections), as are slots at or past the end of the run.
#[derive(Debug, Clone)]
pub struct OpenSchedule {
    conn: u64,
    conns: u64,
    rate: f64,
    k: u64,
    max_requests: Option<u64>,
    duration: Option<Duration>,
}

impl OpenSchedule {
    pub fn new(
        conn: usize,
        conns: usize,
        rate: f64,
        start_at: Duration,
        max_requests: Option<u64>,
        duration: Option<Duration>,
    ) -> OpenSchedule {
        let (conn, conns) = (conn as u64, conns.max(1) as u64);
        // First run-wide slot at or after start_at, then the first of ours from there.
        let first_n = (start_at.as_secs_f64() * rate).ceil() as u64;
        let k = first_n.saturating_sub(conn).div_ceil(conns);
        OpenSchedule {
            conn,
            conns,
            rate,
            k,
            max_requests,
            duration,
        }
    }

    /// The next slot: its run-wide number and when it is due (from the start of the run).
    pub fn peek(&self) -> Option<(u64, Duration)> {
        let n = self.k.checked_mul(self.conns)?.checked_add(self.conn)?;
        if self.max_requests.is_some_and(|m| n >= m) {
            return None;
        }
        let t = slot_time(n, self.rate);
        if self.duration.is_some_and(|d| t >= d) {
            return None;
        }
        Some((n, t))
    }

    pub fn advance(&mut self) {
        self.k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    fn all_slots(s: &mut OpenSchedule) -> Vec<(u64, Duration)> {
        let mut v = Vec::new();
        while let Some(x) = s.peek() {
            v.push(x);
            s.advance();
        }
        v
    }

    #[test]
    fn connections_partition_the_slots_at_the_global_rate() {
        let conns = 3;
        let mut got: Vec<(u64, Duration)> = (0..conns)
            .flat_map(|c| {
                all_slots(&mut OpenSchedule::new(
                    c,
                    conns,
                    100.0,
                    Duration::ZERO,
                    Some(10),
                    None,
                ))
            })
            .collect();
        got.sort();
        let n: Vec<u64> = got.iter().map(|x| x.0).collect();
        assert_eq!(n, (0..10).collect::<Vec<_>>());
        for (n, t) in got {
            assert!(near(t, Duration::from_millis(n * 10)), "{n}: {t:?}");
        }
    }

    #[test]
    fn duration_bounds_the_schedule() {
        let mut s = OpenSchedule::new(
            0,
            1,
            50.0,
            Duration::ZERO,
            None,
            Some(Duration::from_secs(1)),
        );
        let v = all_slots(&mut s);
        assert_eq!(v.len(), 50);
        assert!(near(v.last().unwrap().1, Duration::from_millis(980)));
    }

    #[test]
    fn ramp_skips_slots_before_the_connection_starts() {
        // 4 conns at 40 req/s: conn 2 starts at 0.5 s (ramp 1 s), so its first slot is the
        // first n = 2 mod 4 with n / 40 >= 0.5, i.e. n = 22.
        let start = ramp_offset(2, 4, Duration::from_secs(1));
        assert_eq!(start, Duration::from_millis(500));
        let s = OpenSchedule::new(2, 4, 40.0, start, None, None);
        let (n, t) = s.peek().unwrap();
        assert_eq!(n, 22);
        assert!(near(t, Duration::from_millis(550)));
        let s = OpenSchedule::new(0, 4, 40.0, start, None, None);
        assert_eq!(s.peek().unwrap().0, 20);
        assert_eq!(ramp_offset(0, 4, Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(ramp_offset(3, 0, Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn zipf_draws_are_seeded_skewed_and_in_range() {
        let z = Zipf::new(1.1, 20, 7);
        let mut counts = [0u32; 20];
        for n in 0..20_000 {
            counts[z.pick(n)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[5] && counts[5] > counts[19]);
        // 1/H(20, 1.1) of the draws are image 0: about 29%.
        assert!((5000..7000).contains(&counts[0]), "{counts:?}");
        let again = Zipf::new(1.1, 20, 7);
        assert!((0..100).all(|n| z.pick(n) == again.pick(n)));
        let other = Zipf::new(1.1, 20, 8);
        assert!((0..100).any(|n| z.pick(n) != other.pick(n)));
        assert_eq!(Zipf::new(2.0, 1, 0).pick(5), 0);
    }

    #[test]
    fn op_and_image_rotation() {
        let ops: Vec<usize> = (0..6).map(|n| op_index(n, 2)).collect();
        assert_eq!(ops, [0, 1, 0, 1, 0, 1]);
        let imgs: Vec<usize> = (0..8).map(|n| image_index(n, 2, 2)).collect();
        assert_eq!(imgs, [0, 0, 1, 1, 0, 0, 1, 1]);
        // Each op meets each image.
        let pairs: std::collections::HashSet<_> = (0..8)
            .map(|n| (op_index(n, 2), image_index(n, 2, 2)))
            .collect();
        assert_eq!(pairs.len(), 4);
        assert_eq!(op_index(5, 0), 0);
        assert_eq!(image_index(5, 1, 0), 0);
    }
}
