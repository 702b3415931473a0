//! The `bench --json` document: every figure of a run, for scripts and the bench harness
//! (`bench/service.py` and `bench/report.py` read it). Times are in milliseconds and rates
//! per second, rounded to three decimals; a figure that is not a finite number is `null`.
//!
//! Trust boundary: counter names come from the server and op labels from the user; serde_json
//! escapes both, and they are written as data.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::plot::percentile_points;
use super::report::{ms, stats_delta, Summary, PHASES};
use crate::json::Object;

/// The whole document, in the order it is written.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub conns: usize,
    pub ops: &'a [String],
    /// `open` or `closed`.
    pub mode: &'static str,
    /// Requests/s of an open loop; `null` for a closed loop.
    pub rate: Option<f64>,
    pub elapsed_s: Option<f64>,
    pub ok: u64,
    pub errors: u64,
    pub throughput_rps: Option<f64>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub mb_up_per_s: Option<f64>,
    pub mb_down_per_s: Option<f64>,
    pub max_conns_up: u64,
    /// Per server of the --server list, in its order: how many requests it answered.
    pub servers: Vec<Served<'a>>,
    /// The server the STATS counters (`server_stats`) were read from.
    pub stats_server: &'a str,
    pub latency_ms: Hist,
    /// One entry per op of the mix, in the mix's order.
    pub latency_by_op_ms: Object<&'a str, Hist>,
    pub errors_by_type: Object<&'a str, u64>,
    /// The server's own queue/decode/filter/encode times per job.
    pub server_phases_ms: Object<&'static str, Hist>,
    /// `[percentile, latency ms]` points of the latency distribution (what `--plot` draws).
    pub latency_percentile_curve: Vec<[Option<f64>; 2]>,
    /// Every STATS counter before and after the run, in the server's order; only when both
    /// fetches succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_stats: Option<Object<String, Stat>>,
}

/// One server's share of the run.
#[derive(Debug, Serialize)]
pub struct Served<'a> {
    pub addr: &'a str,
    pub ok: u64,
}

/// A latency histogram: `{"count": 0}` when empty, else its spread too.
#[derive(Debug, Serialize)]
pub struct Hist {
    pub count: u64,
    #[serde(flatten)]
    pub spread: Option<Spread>,
}

/// Mean, extremes and percentiles (the report's `PERCENTILES`) in ms.
#[derive(Debug, Serialize)]
pub struct Spread {
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    #[serde(rename = "p99.9")]
    pub p99_9: Option<f64>,
    pub max: Option<f64>,
}

/// One server counter before and after the run.
#[derive(Debug, Serialize)]
pub struct Stat {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub delta: Option<i128>,
}

/// Rounded to three decimals; `None` (JSON `null`) when not finite.
fn num(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1000.0).round() / 1000.0)
}

impl Hist {
    /// A µs histogram in ms.
    pub fn of(h: &Histogram<u64>) -> Hist {
        let q = |q: f64| num(ms(h.value_at_quantile(q)));
        Hist {
            count: h.len(),
            spread: (!h.is_empty()).then(|| Spread {
                mean: num(h.mean() / 1000.0),
                min: num(ms(h.min())),
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                p99_9: q(0.999),
                max: num(ms(h.max())),
            }),
        }
    }
}

impl<'a> Report<'a> {
    pub fn new(s: &'a Summary) -> Report<'a> {
        let t = &s.totals;
        let empty = Histogram::new(1).expect("one significant digit is valid");
        Report {
            conns: s.conns,
            ops: &s.ops,
            mode: if s.rate.is_some() { "open" } else { "closed" },
            rate: s.rate.and_then(num),
            elapsed_s: num(s.elapsed.as_secs_f64()),
            ok: t.ok,
            errors: t.error_count(),
            throughput_rps: num(s.throughput()),
            bytes_up: t.up,
            bytes_down: t.down,
            mb_up_per_s: num(s.mb_up()),
            mb_down_per_s: num(s.mb_down()),
            max_conns_up: t.conns_max,
            servers: s
                .servers
                .iter()
                .enumerate()
                .map(|(i, addr)| Served {
                    addr,
                    ok: t.by_server.get(i).copied().unwrap_or(0),
                })
                .collect(),
            stats_server: s.servers.get(s.stats_server).map_or("", String::as_str),
            latency_ms: Hist::of(&t.latency),
            latency_by_op_ms: s
                .ops
                .iter()
                .enumerate()
                .map(|(i, o)| (o.as_str(), Hist::of(t.by_op.get(i).unwrap_or(&empty))))
                .collect(),
            errors_by_type: t
                .errors
                .iter()
                .map(|(k, (n, _))| (k.as_str(), *n))
                .collect(),
            server_phases_ms: PHASES
                .iter()
                .zip(&t.phases)
                .map(|(n, h)| (*n, Hist::of(h)))
                .collect(),
            latency_percentile_curve: percentile_points(&t.latency)
                .into_iter()
                .map(|(p, v)| [num(p), num(v)])
                .collect(),
            server_stats: match (&s.stats_before, &s.stats_after) {
                (Some(b), Some(a)) => Some(
                    stats_delta(b, a)
                        .into_iter()
                        .map(|d| {
                            let stat = Stat {
                                before: d.before,
                                after: d.after,
                                delta: d.delta,
                            };
                            (d.name, stat)
                        })
                        .collect(),
                ),
                _ => None,
            },
        }
    }
}

/// The document as pretty-printed text with a final newline.
pub fn render(s: &Summary) -> String {
    serde_json::to_string_pretty(&Report::new(s)).expect("the report always serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    use super::*;
    use crate::bench::plan::Msg;
    use crate::bench::report::{Totals, PERCENTILES};
    use crate::exit::ExitKind;

    fn summary() -> Summary {
        let mut totals = Totals::default();
        for (op, l) in [(1, 5), (0, 6)] {
            totals.add(Msg::Ok {
                op,
                server: op % 2,
                latency: Duration::from_millis(l),
                up: 1000,
                down: 500,
                phases: Some([100, 2000, 3000, 400]),
                at: Instant::now(),
            });
        }
        totals.add(Msg::Err {
            key: "BUSY".into(),
            kind: ExitKind::Busy,
            up: 0,
            at: Instant::now(),
        });
        Summary {
            conns: 2,
            servers: vec!["a:1".into(), "b:2".into()],
            stats_server: 1,
            ops: vec!["blur:2".into(), "ping".into(), "noop".into()],
            rate: Some(100.0),
            elapsed: Duration::from_millis(1500),
            totals,
            stats_before: Some(vec![("a\"b".into(), 1), ("gone".into(), 4)]),
            stats_after: Some(vec![("z".into(), 7), ("a\"b".into(), 3)]),
        }
    }

    #[test]
    fn the_document_parses_and_holds_the_run() {
        let s = summary();
        let text = render(&s);
        assert!(text.ends_with("}\n"));
        let j: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["conns"], 2);
        assert_eq!(j["ops"], json!(["blur:2", "ping", "noop"]));
        assert_eq!(j["mode"], "open");
        assert_eq!(j["rate"], 100.0);
        assert_eq!(
            j["servers"],
            json!([{"addr": "a:1", "ok": 1}, {"addr": "b:2", "ok": 1}])
        );
        assert_eq!(j["stats_server"], "b:2");
        assert_eq!(j["elapsed_s"], 1.5);
        assert_eq!((j["ok"].as_u64(), j["errors"].as_u64()), (Some(2), Some(1)));
        assert_eq!(j["throughput_rps"], 1.333);
        assert_eq!(
            (j["bytes_up"].as_u64(), j["bytes_down"].as_u64()),
            (Some(2000), Some(1000))
        );
        assert_eq!(j["errors_by_type"], json!({"BUSY": 1}));

        let lat = &j["latency_ms"];
        assert_eq!(lat["count"], 2);
        assert!((lat["p50"].as_f64().unwrap() - 5.0).abs() < 0.01, "{lat}");
        assert!((lat["max"].as_f64().unwrap() - 6.0).abs() < 0.01, "{lat}");
        let keys: Vec<&str> = lat
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for name in PERCENTILES
            .iter()
            .map(|(n, _)| *n)
            .chain(["count", "mean", "min"])
        {
            assert!(keys.contains(&name), "{name} missing from {keys:?}");
        }
        assert_eq!(keys.len(), PERCENTILES.len() + 4);

        let by_op = &j["latency_by_op_ms"];
        assert_eq!(by_op["blur:2"]["count"], 1);
        assert_eq!(by_op["ping"]["count"], 1);
        // An op with no success has only its count.
        assert_eq!(by_op["noop"], json!({"count": 0}));
        assert_eq!(j["server_phases_ms"]["decode"]["count"], 2);
        assert!((j["server_phases_ms"]["decode"]["mean"].as_f64().unwrap() - 2.0).abs() < 0.01);

        assert_eq!(
            j["server_stats"],
            json!({
                "z": {"before": null, "after": 7, "delta": null},
                "a\"b": {"before": 1, "after": 3, "delta": 2},
                "gone": {"before": 4, "after": null, "delta": null},
            })
        );
        let curve = j["latency_percentile_curve"].as_array().unwrap();
        assert!(!curve.is_empty());
        assert!(curve
            .iter()
            .all(|p| p.as_array().is_some_and(|p| p.len() == 2)));
        assert_eq!(s.mode_label(), "open loop at 100 req/s");
    }

    #[test]
    fn order_is_the_mix_and_the_server_order() {
        let text = render(&summary());
        let at = |k: &str| text.find(k).unwrap_or_else(|| panic!("{k} in {text}"));
        assert!(at("\"blur:2\": {") < at("\"ping\": {") && at("\"ping\": {") < at("\"noop\": {"));
        assert!(at("\"z\": {") < at("\"a\\\"b\": {") && at("\"a\\\"b\": {") < at("\"gone\": {"));
        // What the harness and the e2e test look for.
        assert!(text.contains("\"ok\": 2"), "{text}");
    }

    #[test]
    fn a_closed_loop_without_stats_or_samples() {
        let s = Summary {
            rate: None,
            totals: Totals::default(),
            stats_before: None,
            elapsed: Duration::ZERO,
            ..summary()
        };
        let j: Value = serde_json::from_str(&render(&s)).unwrap();
        assert_eq!(j["mode"], "closed");
        assert_eq!(j["rate"], Value::Null);
        assert_eq!(j["latency_ms"], json!({"count": 0}));
        assert_eq!(j["latency_percentile_curve"], json!([]));
        assert!(j.get("server_stats").is_none());
        assert_eq!(num(f64::NAN), None);
        assert_eq!(num(f64::INFINITY), None);
        assert_eq!(num(2.0 / 3.0), Some(0.667));
    }
}
