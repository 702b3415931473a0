//! The JSON the binaries print, as typed values: `imgserver stats --json` and
//! `imgclient bench --json`.
//!
//! Trust boundary: none; output of our own binaries. A report that does not parse, or lacks
//! a field a test asks for, fails the test with the text it got.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The counters of `imgserver stats --json`: the server's pid and every counter by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Stats(pub BTreeMap<String, u64>);

impl Stats {
    pub fn parse(json: &str) -> Result<Stats, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// One counter; a missing name is a test failure listing the names there are.
    pub fn get(&self, name: &str) -> u64 {
        *self.0.get(name).unwrap_or_else(|| {
            panic!(
                "no counter {name}; have {:?}",
                self.0.keys().collect::<Vec<_>>()
            )
        })
    }
}

/// Count, mean, percentiles and max of a latency histogram, in ms (an empty one has only
/// `count`; a value the client could not compute is null).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Histogram {
    pub count: u64,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    #[serde(rename = "p99.9")]
    pub p99_9: Option<f64>,
    pub max: Option<f64>,
}

/// The report of `imgclient bench --json` (the fields the suites check; the rest is in
/// `raw`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BenchReport {
    pub conns: u64,
    pub ops: Vec<String>,
    /// "closed" or "open".
    pub mode: String,
    pub ok: u64,
    pub errors: u64,
    pub latency_ms: Histogram,
    pub latency_by_op_ms: BTreeMap<String, Histogram>,
    /// Failed requests by what went wrong (a wire error's name and code, "BUSY", "connection
    /// lost: …", "no answer within … ms", …).
    pub errors_by_type: BTreeMap<String, u64>,
    #[serde(skip)]
    pub raw: serde_json::Value,
}

impl BenchReport {
    pub fn parse(json: &str) -> Result<BenchReport, serde_json::Error> {
        let raw: serde_json::Value = serde_json::from_str(json)?;
        let mut r: BenchReport = serde_json::from_value(raw.clone())?;
        r.raw = raw;
        Ok(r)
    }

    /// The p99 latency in ms (0 when nothing succeeded).
    pub fn p99_ms(&self) -> f64 {
        self.latency_ms.p99.unwrap_or(0.0)
    }

    /// Error kinds not accepted by `allowed` (a predicate on the tally key), with counts.
    pub fn errors_except(&self, allowed: impl Fn(&str) -> bool) -> BTreeMap<String, u64> {
        self.errors_by_type
            .iter()
            .filter(|(k, _)| !allowed(k))
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parse_into_named_counters() {
        let s = Stats::parse(r#"{"pid":42,"jobs_ok":7,"worker0_jobs":3}"#).unwrap();
        assert_eq!(s.get("pid"), 42);
        assert_eq!(s.get("jobs_ok"), 7);
        assert!(
            Stats::parse(r#"{"jobs_ok":-1}"#).is_err(),
            "counters are unsigned"
        );
        assert!(Stats::parse("jobs_ok 7").is_err());
    }

    #[test]
    #[should_panic(expected = "no counter jobs_lost")]
    fn a_missing_counter_fails_loudly() {
        Stats::parse(r#"{"jobs_ok":7}"#).unwrap().get("jobs_lost");
    }

    #[test]
    fn a_bench_report_parses_with_empty_and_null_histograms() {
        let json = r#"{"conns": 4, "ops": ["thumbnail:32", "ping"], "mode": "closed",
            "rate": null, "elapsed_s": 1.5, "ok": 38, "errors": 2, "throughput_rps": 25.3,
            "latency_ms": {"count": 38, "mean": 1.2, "min": 0.4, "p50": 1.1, "p90": 2,
                           "p99": 3.5, "p99.9": 3.9, "max": 4, "extra": 1},
            "latency_by_op_ms": {"thumbnail:32": {"count": 0}, "ping": {"count": 38,
                           "mean": null}},
            "errors_by_type": {"BUSY": 1, "connection lost: EOF": 1},
            "server_phases_ms": {}}"#;
        let r = BenchReport::parse(json).unwrap();
        assert_eq!((r.conns, r.ok, r.errors), (4, 38, 2));
        assert_eq!(r.mode, "closed");
        assert_eq!(r.p99_ms(), 3.5);
        assert_eq!(r.latency_ms.p99_9, Some(3.9));
        assert_eq!(r.latency_by_op_ms["thumbnail:32"].count, 0);
        assert_eq!(r.latency_by_op_ms["ping"].mean, None);
        assert_eq!(r.raw["elapsed_s"], 1.5);
        let bad = r.errors_except(|k| k == "BUSY");
        assert_eq!(
            bad.into_iter().collect::<Vec<_>>(),
            [("connection lost: EOF".to_string(), 1)]
        );
    }

    #[test]
    fn a_bench_report_without_its_counts_is_an_error() {
        assert!(BenchReport::parse(r#"{"conns": 4, "ops": [], "mode": "closed"}"#).is_err());
    }
}
