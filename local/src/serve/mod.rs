//! `nomaly serve`: the whole system in one process. The HTTP API (the same router as the
//! `api` Lambda), a WebSocket endpoint (the `ws` Lambda's handlers), signed uploads that
//! trigger ingest as an S3 notification would, a worker pool on the jobs queue, the
//! events stream dispatched in-process after each commit, and the scheduler on a timer.
//!
//! On the embedded adapters by default (a data folder, nothing else); with `--aws` on
//! DynamoDB, S3 and SQS (moto server or a real account).

mod background;
mod dashboard;
mod gateway;
mod recover;
mod stream;
mod token;

use anyhow::{bail, Context, Result};
use nomaly_core::service::{Services, Settings};
use nomaly_core::time::Timestamp;
use nomaly_embedded::{LocalNotifier, LocalUploads, Stack};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Arguments of `nomaly serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the first line printed names it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Data folder: the database, blobs and the upload secret (made if missing).
    #[arg(long, default_value = ".nomaly")]
    data_dir: PathBuf,
    /// Jobs run at once (training, large detections, large profiles).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Batch chunks scored at once (`POST /v1/batch`), beside the jobs above.
    #[arg(long, default_value_t = 2)]
    chunk_workers: usize,
    /// Alerts sent at once (webhooks and their retries).
    #[arg(long, default_value_t = 2)]
    alert_workers: usize,
    /// Let alert webhooks go to loopback addresses, over plain `http` too: for a receiver
    /// on this machine while developing. Private, link-local and metadata addresses stay
    /// refused.
    #[arg(long)]
    allow_loopback_webhooks: bool,
    /// On Ctrl-C, how long running jobs may take to finish before the server exits
    /// anyway (the jobs it leaves are run again on the next start).
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
    /// Seconds between scheduler sweeps (lost workers, expired records).
    #[arg(long, default_value_t = 30)]
    sweep_secs: u64,
    /// Log lines as `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// The URL clients reach this server at, for the upload URLs it hands out
    /// (default `http://<addr>`).
    #[arg(long, env = "NOMALY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Run on the AWS adapters: DynamoDB tables, an S3 bucket and SQS queues, named by
    /// the flags below or their variables (with `AWS_ENDPOINT_URL` for an emulator).
    #[arg(long)]
    aws: bool,
    /// State table (`--aws`).
    #[arg(long, env = "NOMALY_TABLE", requires = "aws")]
    table: Option<String>,
    /// Events table (`--aws`).
    #[arg(long, env = "NOMALY_EVENTS_TABLE", requires = "aws")]
    events_table: Option<String>,
    /// Bucket (`--aws`).
    #[arg(long, env = "NOMALY_BUCKET", requires = "aws")]
    bucket: Option<String>,
    /// Jobs queue URL (`--aws`).
    #[arg(long, env = "NOMALY_JOBS_QUEUE_URL", requires = "aws")]
    queue_url: Option<String>,
    /// Jobs dead-letter queue URL (`--aws`).
    #[arg(long, env = "NOMALY_JOBS_DLQ_URL", requires = "aws")]
    dlq_url: Option<String>,
    /// Batch chunks queue URL (`--aws`).
    #[arg(long, env = "NOMALY_CHUNKS_QUEUE_URL", requires = "aws")]
    chunks_queue_url: Option<String>,
    /// Batch chunks dead-letter queue URL (`--aws`).
    #[arg(long, env = "NOMALY_CHUNKS_DLQ_URL", requires = "aws")]
    chunks_dlq_url: Option<String>,
    /// Alert deliveries queue URL (`--aws`).
    #[arg(long, env = "NOMALY_ALERTS_QUEUE_URL", requires = "aws")]
    alerts_queue_url: Option<String>,
    /// Alert deliveries dead-letter queue URL (`--aws`).
    #[arg(long, env = "NOMALY_ALERTS_DLQ_URL", requires = "aws")]
    alerts_dlq_url: Option<String>,
    /// The EventBridge bus alert rules may send to (`--aws`; optional).
    #[arg(long, env = "NOMALY_ALERT_BUS", requires = "aws")]
    alert_bus: Option<String>,
    /// API Gateway management endpoint to push through (`--aws`; default: this server,
    /// which answers that API for its own connections).
    #[arg(long, env = "NOMALY_WS_ENDPOINT", requires = "aws")]
    ws_endpoint: Option<String>,
}

/// What the server runs on.
pub(crate) struct System {
    pub services: Services,
    pub sessions: LocalNotifier,
    pub uploads: LocalUploads,
    /// The embedded queues, when there are (in-flight jobs are released on start).
    pub embedded_queues: Vec<nomaly_embedded::SqliteQueue>,
    /// The record store of the embedded stack (not with `--aws`).
    pub embedded_store: Option<Arc<nomaly_embedded::SqliteStore>>,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing::subscriber::set_global_default(log_subscriber(format, filter, std::io::stderr));
}

/// The server's log subscriber: `json` lines or plain text to `writer`, at the levels
/// `filter` asks but never below `info` for the libraries of [`log_cap`].
fn log_subscriber<W>(
    format: &str,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if format == "json" {
        // Every line carries the fields of the spans it was logged in: the request's
        // correlation id and tenant, the job's id, task and tenant.
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish()
                .with(log_cap()),
        )
    } else {
        Box::new(builder.with_ansi(false).finish().with(log_cap()))
    }
}

/// Every level `RUST_LOG` asks for, except that the HTTP, WebSocket and AWS libraries
/// (which log requests, bodies and signed headers below `info`) stop at `info`; a filter
/// of its own, so no `RUST_LOG` directive lifts it.
fn log_cap() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(
            nomaly_core::log_targets::CAPPED_AT_INFO
                .iter()
                .map(|target| (*target, LevelFilter::INFO)),
        )
}

/// Takes the data folder's lock: one server per folder, so at start no worker of an
/// earlier process can be alive.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("making the data folder {}", dir.display()))?;
    let path = dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `nomaly serve` is using {}; stop it or pick another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Where webhooks may go from this server: public HTTPS, and loopback with
/// `--allow-loopback-webhooks`.
fn webhook_policy(args: &Args) -> nomaly_core::webhook::AddressPolicy {
    nomaly_core::webhook::AddressPolicy {
        allow_loopback: args.allow_loopback_webhooks,
    }
}

async fn open_system(
    args: &Args,
    base_url: &str,
    settings: Settings,
    management_token: &str,
) -> Result<System> {
    if !args.aws {
        let mut stack = Stack::open(&args.data_dir, base_url, settings)
            .with_context(|| format!("opening the data folder {}", args.data_dir.display()))?;
        stack.services.sender = Arc::new(nomaly_core::webhook::HttpSender::system(webhook_policy(
            args,
        )));
        return Ok(System {
            services: stack.services,
            sessions: stack.notifier,
            uploads: stack.uploads,
            embedded_queues: vec![stack.queue, stack.chunks, stack.alerts],
            embedded_store: Some(stack.store),
        });
    }
    open_aws(args, base_url, settings, management_token).await
}

/// The AWS adapters: tables, bucket and queues named by the flags.
#[cfg(feature = "aws")]
async fn open_aws(
    args: &Args,
    base_url: &str,
    settings: Settings,
    management_token: &str,
) -> Result<System> {
    fn need(value: &Option<String>, flag: &str, var: &str) -> Result<String> {
        match value {
            Some(v) if !v.trim().is_empty() => Ok(v.clone()),
            _ => bail!("--aws needs {flag} (or {var})"),
        }
    }
    let deployment = nomaly_aws::deployment::Deployment {
        table: need(&args.table, "--table", "NOMALY_TABLE")?,
        events_table: need(&args.events_table, "--events-table", "NOMALY_EVENTS_TABLE")?,
        bucket: need(&args.bucket, "--bucket", "NOMALY_BUCKET")?,
        queue_url: need(&args.queue_url, "--queue-url", "NOMALY_JOBS_QUEUE_URL")?,
        dead_letter_url: need(&args.dlq_url, "--dlq-url", "NOMALY_JOBS_DLQ_URL")?,
        chunks_queue_url: need(
            &args.chunks_queue_url,
            "--chunks-queue-url",
            "NOMALY_CHUNKS_QUEUE_URL",
        )?,
        chunks_dead_letter_url: need(
            &args.chunks_dlq_url,
            "--chunks-dlq-url",
            "NOMALY_CHUNKS_DLQ_URL",
        )?,
        alerts_queue_url: need(
            &args.alerts_queue_url,
            "--alerts-queue-url",
            "NOMALY_ALERTS_QUEUE_URL",
        )?,
        alerts_dead_letter_url: need(
            &args.alerts_dlq_url,
            "--alerts-dlq-url",
            "NOMALY_ALERTS_DLQ_URL",
        )?,
        alert_bus: args.alert_bus.clone().filter(|b| !b.trim().is_empty()),
        ws_endpoint: args
            .ws_endpoint
            .clone()
            .unwrap_or_else(|| base_url.to_string()),
    };
    let path_style = std::env::var("AWS_ENDPOINT_URL").is_ok();
    let clients = nomaly_aws::Clients::from_env(path_style).await;
    let mut services = deployment.services(&clients, settings);
    services.sender = Arc::new(nomaly_aws::AwsAlertSender::with_policy(
        clients.events.clone(),
        deployment.alert_bus.clone(),
        webhook_policy(args),
    ));
    if args.ws_endpoint.is_none() {
        // Pushes go to this server's own management API, which takes the token.
        services.notifier = Arc::new(nomaly_aws::ApiGatewayPush::with_bearer(
            &clients.config,
            base_url,
            management_token,
        ));
    }
    // Uploads come to this server (there is no S3 notification to a local process), are
    // stored in the bucket, and run ingest here.
    let uploads = LocalUploads::open(&args.data_dir, base_url)
        .with_context(|| format!("opening the data folder {}", args.data_dir.display()))?;
    services.uploads = Arc::new(uploads.clone());
    Ok(System {
        services,
        sessions: LocalNotifier::default(),
        uploads,
        embedded_queues: Vec::new(),
        embedded_store: None,
    })
}

#[cfg(not(feature = "aws"))]
async fn open_aws(
    _args: &Args,
    _base_url: &str,
    _settings: Settings,
    _management_token: &str,
) -> Result<System> {
    bail!(crate::WITHOUT_AWS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.workers == 0 || args.chunk_workers == 0 || args.alert_workers == 0 {
        bail!("--workers, --chunk-workers and --alert-workers must be at least 1");
    }
    init_logs(&args.log_format);
    nomaly_core::memory::limit_malloc_arenas();
    nomaly_core::metrics::global().add(nomaly_core::metrics::Counter::ColdStarts, 1);
    // Held until the process has let go of everything (after the runtime below).
    let _lock = if args.aws {
        None
    } else {
        Some(lock_data_dir(&args.data_dir)?)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(serve(args));
    // Work still on the blocking pool (a job cut short by the grace period) is not
    // waited for: its message stays in the queue and runs again on the next start.
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn serve(args: Args) -> Result<()> {
    let started = Timestamp::now();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let base_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    let mut settings = Settings::from_env().context("reading the NOMALY_* settings")?;
    if !args.aws {
        settings.orphaned_before = Some(started);
    }
    // Batches may read local files from here (on either backend: the files are this
    // machine's).
    settings.imports_dir = Some(args.data_dir.join("imports"));
    let management_token = token::load(&args.data_dir, std::env::var(token::VARIABLE).ok())?;
    let mut system = open_system(&args, &base_url, settings, &management_token).await?;
    let events = stream::InProcess::wrap(&mut system.services);

    for queue in &system.embedded_queues {
        let released = queue
            .release_in_flight()
            .await
            .context("releasing the jobs of the last run")?;
        if released > 0 {
            tracing::info!(
                jobs = released,
                "jobs left running by the last run will run again"
            );
        }
    }
    if let Some(store) = &system.embedded_store {
        let done = recover::recover(&system.services, store)
            .await
            .context("finishing what the last run left half done")?;
        if done != recover::Recovered::default() {
            tracing::info!(
                profiled = done.profiled,
                trainings = done.chained,
                "finished what the last run left half done"
            );
        }
    }

    let (stop_tx, stop) = watch::channel(false);
    let app = gateway::app(gateway::Gateway {
        services: system.services.clone(),
        sessions: system.sessions.clone(),
        uploads: system.uploads.clone(),
        stop: stop.clone(),
        management_token: management_token.as_str().into(),
        incoming: gateway::Incoming::open(&args.data_dir)
            .with_context(|| format!("emptying {}", args.data_dir.join("incoming").display()))?,
    });
    let poll = if args.aws {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(100)
    };
    let work = background::start(
        system.services.clone(),
        events,
        background::Plan {
            workers: args.workers,
            chunk_workers: args.chunk_workers,
            alert_workers: args.alert_workers,
            poll,
            sweep_every: Duration::from_secs(args.sweep_secs.max(1)),
        },
        stop.clone(),
    );

    println!("nomaly listening on {base_url}");
    tracing::info!(
        url = %base_url,
        data_dir = %args.data_dir.display(),
        backend = if args.aws { "aws" } else { "embedded" },
        workers = args.workers,
        management_token = %if std::env::var(token::VARIABLE).is_ok_and(|t| !t.trim().is_empty()) {
            format!("${}", token::VARIABLE)
        } else {
            token::file(&args.data_dir).display().to_string()
        },
        "serving"
    );
    let mut http_stop = stop.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });

    shutdown_signal().await;
    tracing::info!("stopping: no new requests or jobs; waiting for running jobs");
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(args.grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    // Requests in flight finish first (the events they store are still dispatched),
    // while the workers finish their jobs; then the dispatcher drains.
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "the HTTP server failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "the HTTP server panicked"),
        Err(_) => tracing::warn!("requests still open at the end of the grace period"),
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let finished = work.stop(left).await;
    if finished {
        tracing::info!("stopped");
    } else {
        tracing::warn!(
            grace_secs = args.grace_secs,
            "stopped with jobs still running: they run again on the next start"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
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

    #[test]
    fn at_trace_the_http_and_aws_libraries_log_nothing_below_info() {
        for format in ["json", "text"] {
            let logs = Captured::default();
            let writer = logs.clone();
            // A directive naming a library at trace does not lift the cap either.
            let filter = tracing_subscriber::EnvFilter::new("trace,hyper=trace");
            let subscriber = log_subscriber(format, filter, move || writer.clone());
            tracing::subscriber::with_default(subscriber, || {
                tracing::trace!(target: "nomaly::serve", "ours at trace");
                tracing::trace!(target: "hyper::proto::h1::io", "parsed body nmk_secret_1");
                tracing::debug!(target: "tokio_tungstenite::compat", "frame nmk_secret_2");
                tracing::trace!(target: "aws_smithy_runtime::http", "item nmk_secret_3");
                tracing::debug!(target: "aws_sigv4::sign", "canonical nmk_secret_4");
                tracing::info!(target: "hyper::server", "info still shows");
            });
            let text = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
            assert!(text.contains("ours at trace"), "{format}: {text}");
            assert!(text.contains("info still shows"), "{format}: {text}");
            assert!(!text.contains("nmk_secret"), "{format}: {text}");
        }
    }
}
