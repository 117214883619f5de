//! The service's counters, shared by every entry point in a process: HTTP requests and
//! their errors, WebSocket messages, inline detection latency, rows scored, anomalies
//! found, jobs succeeded, failed and retried, and cold starts.
//!
//! Two renderings of the same counters: the Prometheus text format (the local server's
//! `/metrics`) and CloudWatch Embedded Metric Format (one JSON line per Lambda
//! invocation, holding what changed since the previous line).

use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

/// Upper bounds (seconds) of the detection latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Latencies an EMF line carries at most (EMF's limit on values per metric is 100).
const EMF_VALUES: usize = 100;
/// The CloudWatch namespace.
pub const NAMESPACE: &str = "nomaly";

/// The plain counters, in the order they are rendered: (EMF name, Prometheus name, help).
const COUNTERS: [(&str, &str, &str); 12] = [
    (
        "Requests",
        "nomaly_http_requests_total",
        "HTTP requests answered.",
    ),
    (
        "ClientErrors",
        "nomaly_http_client_errors_total",
        "HTTP requests answered with a 4xx.",
    ),
    (
        "ServerErrors",
        "nomaly_http_server_errors_total",
        "HTTP requests answered with a 5xx.",
    ),
    (
        "WebSocketMessages",
        "nomaly_websocket_messages_total",
        "WebSocket messages handled.",
    ),
    (
        "RowsScored",
        "nomaly_rows_scored_total",
        "Rows scored by any model (detections, WebSocket scores, reports).",
    ),
    (
        "AnomaliesFound",
        "nomaly_anomalies_found_total",
        "Rows scored above their model's threshold.",
    ),
    (
        "JobsSucceeded",
        "nomaly_jobs_succeeded_total",
        "Background jobs that completed their task.",
    ),
    (
        "JobsFailed",
        "nomaly_jobs_failed_total",
        "Background jobs that failed their task for good.",
    ),
    (
        "JobsRetried",
        "nomaly_jobs_retried_total",
        "Job deliveries left for the queue to deliver again (not counting the last, which fails its task).",
    ),
    (
        "JobsDeferred",
        "nomaly_jobs_deferred_total",
        "Jobs sent again for later because their tenant had as many running as it may.",
    ),
    (
        "JobsOverran",
        "nomaly_jobs_overran_total",
        "Jobs and chunks stopped at the worker function's deadline and handed back to the queue.",
    ),
    (
        "ColdStarts",
        "nomaly_cold_starts_total",
        "Processes started (Lambda cold starts).",
    ),
];

/// One counter of [`COUNTERS`].
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// HTTP requests.
    Requests = 0,
    /// 4xx answers.
    ClientErrors,
    /// 5xx answers.
    ServerErrors,
    /// WebSocket messages.
    WebSocketMessages,
    /// Rows scored.
    RowsScored,
    /// Anomalies found.
    AnomaliesFound,
    /// Jobs succeeded.
    JobsSucceeded,
    /// Jobs failed.
    JobsFailed,
    /// Job deliveries retried.
    JobsRetried,
    /// Jobs deferred by the per-tenant running cap.
    JobsDeferred,
    /// Jobs stopped at the worker's deadline.
    JobsOverran,
    /// Cold starts.
    ColdStarts,
}

/// The counters of one process (see [`global`]).
#[derive(Default)]
pub struct Metrics {
    counters: [AtomicU64; COUNTERS.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    emf: Mutex<EmfState>,
}

#[derive(Default)]
struct EmfState {
    /// Counter values at the last EMF line.
    flushed: [u64; COUNTERS.len()],
    /// Latencies (ms) since the last EMF line.
    latencies_ms: Vec<f64>,
}

/// The process's counters.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::default)
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Relaxed);
    }

    /// A counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Relaxed)
    }

    /// Counts an HTTP answer with `status`.
    pub fn request(&self, status: u16) {
        self.add(Counter::Requests, 1);
        match status {
            400..=499 => self.add(Counter::ClientErrors, 1),
            500..=599 => self.add(Counter::ServerErrors, 1),
            _ => {}
        }
    }

    /// Records one inline detection's latency.
    pub fn detect_latency(&self, seconds: f64) {
        let seconds = seconds.max(0.0);
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add((seconds * 1e6).round() as u64, Relaxed);
        let mut emf = self.emf.lock().unwrap_or_else(|p| p.into_inner());
        if emf.latencies_ms.len() < EMF_VALUES {
            emf.latencies_ms.push(seconds * 1e3);
        }
    }

    /// The counters in the Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (i, (_, name, help)) in COUNTERS.iter().enumerate() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                self.counters[i].load(Relaxed)
            );
        }
        let name = "nomaly_detect_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Inline detection latency, request to answer.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.latency_count.load(Relaxed);
        let sum = self.latency_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
        out
    }

    /// One CloudWatch Embedded Metric Format line (without the newline) with what
    /// changed since the previous call, for the function `function`; `None` when nothing
    /// did.
    pub fn take_emf(&self, function: &str, timestamp_ms: i64) -> Option<String> {
        let mut emf = self.emf.lock().unwrap_or_else(|p| p.into_inner());
        let mut body = Map::new();
        let mut definitions = Vec::new();
        for (i, (name, _, _)) in COUNTERS.iter().enumerate() {
            let now = self.counters[i].load(Relaxed);
            let delta = now.saturating_sub(emf.flushed[i]);
            emf.flushed[i] = now;
            if delta > 0 {
                body.insert((*name).into(), json!(delta));
                definitions.push(json!({"Name": name, "Unit": "Count"}));
            }
        }
        let latencies = std::mem::take(&mut emf.latencies_ms);
        if !latencies.is_empty() {
            body.insert("DetectLatency".into(), json!(latencies));
            definitions.push(json!({"Name": "DetectLatency", "Unit": "Milliseconds"}));
        }
        if definitions.is_empty() {
            return None;
        }
        body.insert("Function".into(), json!(function));
        body.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": definitions,
                }],
            }),
        );
        Some(Value::Object(body).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_counter_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request(200);
        m.request(404);
        m.request(503);
        m.add(Counter::RowsScored, 1831);
        for s in [0.0005, 0.003, 0.003, 2.0, 9.0] {
            m.detect_latency(s);
        }
        let text = m.prometheus();
        for line in [
            "nomaly_http_requests_total 3",
            "nomaly_http_client_errors_total 1",
            "nomaly_http_server_errors_total 1",
            "nomaly_rows_scored_total 1831",
            "nomaly_jobs_failed_total 0",
            "nomaly_detect_latency_seconds_bucket{le=\"0.001\"} 1",
            "nomaly_detect_latency_seconds_bucket{le=\"0.005\"} 3",
            "nomaly_detect_latency_seconds_bucket{le=\"5\"} 4",
            "nomaly_detect_latency_seconds_bucket{le=\"+Inf\"} 5",
            "nomaly_detect_latency_seconds_count 5",
            "nomaly_detect_latency_seconds_sum 11.0065",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // Every sample line belongs to a declared metric family.
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            assert!(
                families.iter().any(|f| name.starts_with(f)),
                "{sample} has no family"
            );
        }
    }

    #[test]
    fn emf_lines_carry_only_what_changed_since_the_last_line() {
        let m = Metrics::default();
        assert_eq!(m.take_emf("api", 1), None, "nothing happened");
        m.add(Counter::ColdStarts, 1);
        m.request(200);
        m.request(500);
        m.detect_latency(0.012);
        let line = m.take_emf("api", 1_700_000_000_000).expect("a line");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["Requests"], 2);
        assert_eq!(v["ServerErrors"], 1);
        assert_eq!(v["ColdStarts"], 1);
        assert_eq!(v["DetectLatency"], json!([12.0]));
        assert_eq!(v["Function"], "api");
        assert!(
            v.get("ClientErrors").is_none(),
            "unchanged counters are left out"
        );
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .filter_map(|d| d["Name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["Requests", "ServerErrors", "ColdStarts", "DetectLatency"]
        );
        // Every declared metric is a member of the line, as EMF requires.
        for n in &names {
            assert!(v.get(*n).is_some(), "{n}");
        }
        m.request(200);
        let next: Value = serde_json::from_str(&m.take_emf("api", 2).expect("line")).expect("json");
        assert_eq!(next["Requests"], 1, "a delta, not the total");
        assert!(next.get("DetectLatency").is_none());
        assert_eq!(m.take_emf("api", 3), None);
    }

    #[test]
    fn an_emf_line_holds_at_most_a_hundred_latencies() {
        let m = Metrics::default();
        for _ in 0..250 {
            m.detect_latency(0.001);
        }
        let v: Value = serde_json::from_str(&m.take_emf("api", 1).expect("line")).expect("json");
        assert_eq!(
            v["DetectLatency"].as_array().map(Vec::len),
            Some(EMF_VALUES)
        );
        assert!(m
            .prometheus()
            .contains("nomaly_detect_latency_seconds_count 250"));
    }
}
