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
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// Installs the JSON log subscriber and counts the cold start (once per process).
pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing::subscriber::set_global_default(subscriber(filter, std::io::stdout));
    metrics::global().add(Counter::ColdStarts, 1);
}

/// The functions' log subscriber: JSON lines to `writer` at the levels `filter` asks,
/// except that the libraries of [`nomaly_core::log_targets::CAPPED_AT_INFO`] never log
/// below `info` (at `trace`, lambda_runtime would log every raw event, keys and bodies
/// included). The cap is a filter of its own, so no `RUST_LOG` directive lifts it.
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false)
        .with_ansi(false)
        .finish()
        .with(capped_targets())
}

/// Everything at any level, but the libraries that log raw events at `info` at most.
pub fn capped_targets() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(
            nomaly_core::log_targets::CAPPED_AT_INFO
                .iter()
                .map(|target| (*target, LevelFilter::INFO)),
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tracing::instrument::WithSubscriber;

    /// What a test's subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
        }
    }

    /// One HTTP/1.1 request: its request line and body.
    async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + length {
                    let mut more = [0u8; 4096];
                    let n = conn.read(&mut more).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&more[..n]);
                }
                let body = buf[end + 4..end + 4 + length].to_vec();
                buf.drain(..end + 4 + length);
                return Some((head.lines().next()?.to_string(), body));
            }
            let mut more = [0u8; 4096];
            let n = conn.read(&mut more).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&more[..n]);
        }
    }

    /// A Lambda runtime API answering one invocation with `event`; the function's response
    /// goes to `responses`. Later `next` calls wait forever, as Lambda's do.
    async fn runtime_api(
        listener: TcpListener,
        event: String,
        responses: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    ) {
        let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
        while let Ok((mut conn, _)) = listener.accept().await {
            let (event, responses, served) = (event.clone(), responses.clone(), served.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((line, body)) = read_request(&mut conn, &mut buf).await {
                    let answer = if line.contains("/invocation/next") {
                        if served.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        let deadline = nomaly_core::time::Timestamp::now().millis() + 60_000;
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             lambda-runtime-aws-request-id: req-1\r\n\
                             lambda-runtime-deadline-ms: {deadline}\r\n\
                             lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:000000000000:function:f\r\n\
                             content-length: {}\r\n\r\n{event}",
                            event.len()
                        )
                    } else {
                        let _ = responses.send(body);
                        "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}".to_string()
                    };
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_trace_the_runtime_logs_no_raw_event() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("its address");
        for (name, value) in [
            ("AWS_LAMBDA_RUNTIME_API", address.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "telemetry-test".to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".to_string()),
        ] {
            std::env::set_var(name, value);
        }
        let secret = "nmk_the_raw_event_marker";
        let event = serde_json::json!({
            "headers": {"authorization": format!("Bearer {secret}")},
            "body": format!("a,b\n1,{secret}"),
        })
        .to_string();
        let (sender, mut responses) = tokio::sync::mpsc::unbounded_channel();
        let api = tokio::spawn(runtime_api(listener, event, sender));

        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = subscriber(EnvFilter::new("trace"), move || writer.clone());
        let handler = lambda_runtime::service_fn(
            |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
                tracing::trace!("the handler ran");
                let seen = event.payload["body"].as_str().map(str::len).unwrap_or(0);
                Ok::<_, crate::Error>(serde_json::json!({ "seen": seen }))
            },
        );
        let runtime = tokio::spawn(lambda_runtime::run(handler).with_subscriber(subscriber));

        let response = tokio::time::timeout(Duration::from_secs(20), responses.recv())
            .await
            .expect("the function answers within 20 s")
            .expect("a response");
        runtime.abort();
        api.abort();
        let response: serde_json::Value =
            serde_json::from_slice(&response).expect("a JSON response");
        assert!(response["seen"].as_u64().unwrap_or(0) > 0, "{response}");

        let text = logs.text();
        assert!(
            text.contains("the handler ran"),
            "our own trace lines are written at trace:\n{text}"
        );
        assert!(
            text.contains("Lambda runtime invoke"),
            "the runtime's info span still frames each line:\n{text}"
        );
        assert!(
            !text.contains(secret) && !text.contains("raw JSON event"),
            "a raw event reached the log at trace:\n{text}"
        );
    }

    #[test]
    fn the_libraries_that_log_raw_events_stop_at_info() {
        let capped = capped_targets();
        for target in [
            "lambda_runtime::layers::api_response",
            "lambda_http::request",
            "aws_smithy_runtime::client::orchestrator",
            "aws_sigv4::http_request::sign",
            "aws_sdk_dynamodb::operation",
            "hyper_util::client::legacy::pool",
            "h2::codec::framed_read",
        ] {
            assert!(
                !capped.would_enable(target, &tracing::Level::DEBUG),
                "{target}"
            );
            assert!(
                capped.would_enable(target, &tracing::Level::INFO),
                "{target}"
            );
        }
        assert!(capped.would_enable("nomaly_core::http", &tracing::Level::TRACE));
    }
}
