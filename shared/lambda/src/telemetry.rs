//! What the functions tell CloudWatch and X-Ray:
//! - JSON logs, one object per line, level from `RUST_LOG` (default `info`). Each line
//!   carries the fields of every span it was logged in: lambda_runtime's invocation span
//!   (`requestId`, `xrayTraceId`), and ours (`correlation_id`, `tenant`, `job_id`,
//!   `task_id`, ...), so a line says which request, tenant, task and job it belongs to.
//! - Metrics in CloudWatch Embedded Metric Format: after each invocation, one JSON line
//!   with what the counters of [`nomaly_core::metrics`] gained during it (requests, detect
//!   latency, rows scored, anomalies found, jobs succeeded, failed and retried, cold
//!   starts), under the `nomaly` namespace with the function's name as dimension.
//! - X-Ray: every SDK call becomes a subsegment (`nomaly_aws::xray`).

use nomaly_core::metrics::{self, Counter};
use std::io::Write;

/// Installs the JSON log subscriber and counts the cold start (once per process).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false)
        .with_ansi(false)
        .try_init();
    metrics::global().add(Counter::ColdStarts, 1);
}

/// Writes the invocation's metrics to stdout as one EMF line (nothing if nothing
/// changed). CloudWatch Logs turns the line into metrics.
pub fn flush_metrics() {
    let function =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "nomaly".to_string());
    if let Some(line) =
        metrics::global().take_emf(&function, nomaly_core::time::Timestamp::now().millis())
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
