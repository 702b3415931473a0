//! Bench results: the totals the collector accumulates, the human summary and the
//! server-counter deltas (the JSON file is `json`).
//!
//! Trust boundary: counter names come from the server and are printed as data; nothing else
//! here touches outside input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::plan::Msg;
use crate::exit::ExitKind;

/// Latencies are recorded in µs, from 1 µs to 10 minutes, with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// The percentiles every report shows.
pub const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

pub const PHASES: [&str; 4] = ["queue", "decode", "filter", "encode"];

/// What the collector accumulates from the connection threads.
#[derive(Debug)]
pub struct Totals {
    pub ok: u64,
    pub errors: BTreeMap<String, (u64, ExitKind)>,
    pub up: u64,
    pub down: u64,
    pub latency: Histogram<u64>,
    /// Latency per op of the mix, by its index.
    pub by_op: Vec<Histogram<u64>>,
    /// Requests answered per server, by its index in the --server list.
    pub by_server: Vec<u64>,
    pub phases: [Histogram<u64>; 4],
    pub conns_up: u64,
    pub conns_max: u64,
    pub last_event: Option<Instant>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            ok: 0,
            errors: BTreeMap::new(),
            up: 0,
            down: 0,
            latency: new_histogram(),
            by_op: Vec::new(),
            by_server: Vec::new(),
            phases: std::array::from_fn(|_| new_histogram()),
            conns_up: 0,
            conns_max: 0,
            last_event: None,
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl Totals {
    pub fn add(&mut self, m: Msg) {
        match m {
            Msg::Ok {
                op,
                server,
                latency,
                up,
                down,
                phases,
                at,
            } => {
                self.ok += 1;
                if self.by_server.len() <= server {
                    self.by_server.resize(server + 1, 0);
                }
                self.by_server[server] += 1;
                self.up += up;
                self.down += down;
                let us = micros(latency).max(1);
                self.latency.saturating_record(us);
                if self.by_op.len() <= op {
                    self.by_op.resize_with(op + 1, new_histogram);
                }
                self.by_op[op].saturating_record(us);
                if let Some(ph) = phases {
                    for (h, v) in self.phases.iter_mut().zip(ph) {
                        h.saturating_record((v as u64).max(1));
                    }
                }
                self.last_event = self.last_event.max(Some(at));
            }
            Msg::Err { key, kind, up, at } => {
                self.up += up;
                self.errors.entry(key).or_insert((0, kind)).0 += 1;
                self.last_event = self.last_event.max(Some(at));
            }
            Msg::ConnUp => {
                self.conns_up += 1;
                self.conns_max = self.conns_max.max(self.conns_up);
            }
            Msg::ConnDown => self.conns_up = self.conns_up.saturating_sub(1),
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// The exit kind of the most frequent error (for a run where nothing succeeded).
    pub fn dominant_error(&self) -> Option<ExitKind> {
        self.errors
            .values()
            .max_by_key(|(n, _)| *n)
            .map(|(_, k)| *k)
    }
}

/// Everything a report shows.
#[derive(Debug)]
pub struct Summary {
    pub conns: usize,
    /// The --server list, in order.
    pub servers: Vec<String>,
    /// The server the STATS counters were read from (the control connection's).
    pub stats_server: usize,
    pub ops: Vec<String>,
    /// `None`: closed loop; `Some(rate)`: open loop at `rate` req/s.
    pub rate: Option<f64>,
    pub elapsed: Duration,
    pub totals: Totals,
    pub stats_before: Option<Vec<(String, u64)>>,
    pub stats_after: Option<Vec<(String, u64)>>,
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Summary {
    pub fn op_label(&self) -> String {
        self.ops.join(" + ")
    }

    pub fn mode_label(&self) -> String {
        match self.rate {
            None => "closed loop".to_string(),
            Some(r) => format!("open loop at {r} req/s"),
        }
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn throughput(&self) -> f64 {
        self.totals.ok as f64 / self.secs()
    }

    pub fn mb_up(&self) -> f64 {
        self.totals.up as f64 / 1e6 / self.secs()
    }

    pub fn mb_down(&self) -> f64 {
        self.totals.down as f64 / 1e6 / self.secs()
    }

    /// The human summary printed on stdout.
    pub fn human(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "bench: {} conns, op {}, {:.1} s, {}\n",
            self.conns,
            self.op_label(),
            self.elapsed.as_secs_f64(),
            self.mode_label()
        );
        s += &format!(
            "requests: {} ok, {} errors   throughput: {:.1} req/s, up {:.1} MB/s, down {:.1} MB/s\n",
            t.ok,
            t.error_count(),
            self.throughput(),
            self.mb_up(),
            self.mb_down()
        );
        s += &format!("latency:{}\n", latency_line(&t.latency));
        if self.servers.len() > 1 {
            s += &served_line(&self.servers, &t.by_server);
        }
        if self.ops.len() > 1 {
            let w = self.ops.iter().map(|o| o.len()).max().unwrap_or(0);
            for (i, op) in self.ops.iter().enumerate() {
                let line = t
                    .by_op
                    .get(i)
                    .map_or(" no successful requests".into(), latency_line);
                s += &format!("  {op:<w$}{line}\n");
            }
        }
        if !t.errors.is_empty() {
            s += "errors:\n";
            let w = t.errors.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, (n, _)) in &t.errors {
                s += &format!("  {k:<w$}  {n}\n");
            }
        }
        if !t.phases[0].is_empty() {
            s += &phase_table(&t.phases);
        }
        if let (Some(b), Some(a)) = (&self.stats_before, &self.stats_after) {
            if self.servers.len() > 1 {
                let from = self
                    .servers
                    .get(self.stats_server)
                    .map_or("", String::as_str);
                s += &format!("server counters (STATS) are {from}'s:\n");
            }
            s += &stats_delta_table(&stats_delta(b, a));
        }
        s
    }
}

/// `served: A 120, B 118`: requests answered per server of the list, in its order.
pub fn served_line(servers: &[String], by_server: &[u64]) -> String {
    let parts: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{a} {}", by_server.get(i).copied().unwrap_or(0)))
        .collect();
    format!("served: {}\n", parts.join(", "))
}

/// ` p50 1.0 ms  p90 ...  max 9.0 ms`, or a note when there is no sample.
fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return " no successful requests".into();
    }
    let mut s = String::new();
    for (name, q) in PERCENTILES {
        s += &format!(" {name} {:.1} ms ", ms(h.value_at_quantile(q)));
    }
    s + &format!(" max {:.1} ms", ms(h.max()))
}

/// Server phase times as reported in each result's info, as a table.
pub fn phase_table(phases: &[Histogram<u64>; 4]) -> String {
    let mut s =
        String::from("server phases per job (ms):   mean     p50     p90     p99     max\n");
    for (name, h) in PHASES.iter().zip(phases) {
        s += &format!(
            "  {name:<26} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}\n",
            h.mean() / 1000.0,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    s
}

/// One server counter before and after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatDelta {
    pub name: String,
    pub before: Option<u64>,
    pub after: Option<u64>,
    /// `after - before` when both exist (negative for a gauge that went down).
    pub delta: Option<i128>,
}

/// Pairs counters by name, keeping the server's order (those only in `before` last). Names
/// are not interpreted: whatever the server reports is compared.
pub fn stats_delta(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<StatDelta> {
    let b: BTreeMap<&str, u64> = before.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let a_names: std::collections::HashSet<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
    let mut out: Vec<StatDelta> = after
        .iter()
        .map(|(n, v)| {
            let before = b.get(n.as_str()).copied();
            StatDelta {
                name: n.clone(),
                before,
                after: Some(*v),
                delta: before.map(|bv| *v as i128 - bv as i128),
            }
        })
        .collect();
    out.extend(
        before
            .iter()
            .filter(|(n, _)| !a_names.contains(n.as_str()))
            .map(|(n, v)| StatDelta {
                name: n.clone(),
                before: Some(*v),
                after: None,
                delta: None,
            }),
    );
    out
}

/// The counters that changed (or appeared or vanished) as a table; unchanged ones are only
/// counted, since a server reports many (all are in the JSON).
pub fn stats_delta_table(all: &[StatDelta]) -> String {
    let rows: Vec<&StatDelta> = all.iter().filter(|r| r.delta != Some(0)).collect();
    let unchanged = all.len() - rows.len();
    if rows.is_empty() {
        return if unchanged > 0 {
            format!("server counters (STATS): {unchanged} counters, none changed\n")
        } else {
            String::new()
        };
    }
    let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let dcell = |v: Option<i128>| v.map_or("-".to_string(), |v| format!("{v:+}"));
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let cols: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (cell(r.before), cell(r.after), dcell(r.delta)))
        .collect();
    let wb = cols.iter().map(|c| c.0.len()).max().unwrap_or(0).max(6);
    let wa = cols.iter().map(|c| c.1.len()).max().unwrap_or(0).max(5);
    let wd = cols.iter().map(|c| c.2.len()).max().unwrap_or(0).max(5);
    let mut s = format!(
        "server counters (STATS):\n  {:<w$}  {:>wb$}  {:>wa$}  {:>wd$}\n",
        "name", "before", "after", "delta"
    );
    for (r, (b, a, d)) in rows.iter().zip(&cols) {
        s += &format!("  {:<w$}  {b:>wb$}  {a:>wa$}  {d:>wd$}\n", r.name);
    }
    if unchanged > 0 {
        s += &format!("  ({unchanged} unchanged counters not shown)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals_with(latencies_ms: &[u64]) -> Totals {
        let mut t = Totals::default();
        for &l in latencies_ms {
            t.add(Msg::Ok {
                server: 0,
                op: (l % 2) as usize,
                latency: Duration::from_millis(l),
                up: 1000,
                down: 500,
                phases: Some([100, 2000, 3000, 400]),
                at: Instant::now(),
            });
        }
        t
    }

    #[test]
    fn percentiles_from_the_histogram() {
        let t = totals_with(&(1..=1000).collect::<Vec<_>>());
        let q = |q| ms(t.latency.value_at_quantile(q));
        // Three significant digits: within 0.1%.
        assert!((q(0.5) - 500.0).abs() <= 0.5, "{}", q(0.5));
        assert!((q(0.99) - 990.0).abs() <= 1.0);
        assert!((q(0.999) - 999.0).abs() <= 1.0);
        assert!((ms(t.latency.max()) - 1000.0).abs() <= 1.0);
    }

    #[test]
    fn human_summary_has_the_documented_shape() {
        let mut totals = totals_with(&[10, 20, 30, 40]);
        totals.add(Msg::Err {
            key: "BUSY".into(),
            kind: ExitKind::Busy,
            up: 0,
            at: Instant::now(),
        });
        let s = Summary {
            conns: 150,
            servers: vec!["h:1".into()],
            stats_server: 0,
            ops: vec!["blur:2".into()],
            rate: None,
            elapsed: Duration::from_secs(2),
            totals,
            stats_before: Some(vec![("jobs".into(), 10), ("gone".into(), 1)]),
            stats_after: Some(vec![("jobs".into(), 14), ("new".into(), 3)]),
        };
        let h = s.human();
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines[0], "bench: 150 conns, op blur:2, 2.0 s, closed loop");
        assert_eq!(
            lines[1],
            "requests: 4 ok, 1 errors   throughput: 2.0 req/s, up 0.0 MB/s, down 0.0 MB/s"
        );
        assert!(
            lines[2].starts_with("latency: p50 20.0 ms  p90 40.0 ms"),
            "{}",
            lines[2]
        );
        assert!(lines[2].ends_with("max 40.0 ms"), "{}", lines[2]);
        assert!(h.contains("  BUSY  1\n"));
        assert!(h.contains("server phases per job"));
        assert!(h.contains("  decode                        2.00"), "{h}");
        assert!(h.contains("jobs"), "{h}");
        assert!(h.contains("+4"));
        assert_eq!(s.totals.dominant_error(), Some(ExitKind::Busy));
    }

    #[test]
    fn mixes_get_a_latency_line_per_op() {
        let s = Summary {
            conns: 1,
            servers: vec!["h:1".into()],
            stats_server: 0,
            ops: vec!["blur:2".into(), "ping".into()],
            rate: None,
            elapsed: Duration::from_secs(1),
            totals: totals_with(&[10, 20, 31]),
            stats_before: None,
            stats_after: None,
        };
        let h = s.human();
        assert!(h.contains("\n  blur:2 p50 10.0 ms "), "{h}");
        assert!(h.contains("\n  ping   p50 31.0 ms "), "{h}");
        let s = Summary {
            totals: totals_with(&[10]),
            ..s
        };
        assert!(s.human().contains("\n  ping   no successful requests\n"));
    }

    #[test]
    fn deltas_pair_counters_by_name() {
        let b = vec![("x".to_string(), 5u64), ("gone".to_string(), 2)];
        let a = vec![("new".to_string(), 1u64), ("x".to_string(), 3)];
        let d = stats_delta(&b, &a);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].name, "new");
        assert_eq!((d[0].before, d[0].delta), (None, None));
        assert_eq!(d[1].delta, Some(-2));
        assert_eq!((d[2].name.as_str(), d[2].after), ("gone", None));
        let t = stats_delta_table(&d);
        assert!(t.contains("  x          5      3     -2"), "{t}");
        assert_eq!(stats_delta_table(&[]), "");
        let same = stats_delta(&b, &b);
        assert_eq!(
            stats_delta_table(&same),
            "server counters (STATS): 2 counters, none changed\n"
        );
        let mut b2 = b.clone();
        b2.push(("y".into(), 1));
        let mut a2 = b.clone();
        a2.push(("y".into(), 2));
        let t = stats_delta_table(&stats_delta(&b, &a2));
        assert!(
            t.contains("(2 unchanged counters not shown)") && t.contains("  y "),
            "{t}"
        );
        assert!(!stats_delta_table(&stats_delta(&b2, &a2)).contains("  x "));
    }
}
