//! Cold-start init of the Lambda binaries: the time from starting the process to its
//! first request to the Lambda Runtime API (`GET /2018-06-01/runtime/invocation/next`),
//! which the runtime makes only after `main` has built the SDK clients and the services.
//! A minimal Runtime API on loopback receives that request; nothing else is served.
//!
//! ```text
//! lambda-coldstart [--runs 10] [--env KEY=VALUE]... BINARY...
//! ```
//! Prints, per binary, the median, minimum and maximum over the runs, in milliseconds.
//! The environment given to each process is what the SAM template sets (resource names
//! are placeholders: init reads them but makes no network call).

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENV: &[(&str, &str)] = &[
    ("AWS_REGION", "us-east-1"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    ("AWS_SECRET_ACCESS_KEY", "secret"),
    ("AWS_SESSION_TOKEN", "token"),
    ("AWS_LAMBDA_FUNCTION_NAME", "nomaly-coldstart"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/nomaly-coldstart"),
    ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]0"),
    ("RUST_LOG", "info"),
    ("NOMALY_TABLE", "nomaly-state"),
    ("NOMALY_EVENTS_TABLE", "nomaly-events"),
    ("NOMALY_BUCKET", "nomaly-123456789012-us-east-1"),
    (
        "NOMALY_JOBS_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/nomaly-jobs",
    ),
    (
        "NOMALY_JOBS_DLQ_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/nomaly-dlq",
    ),
    (
        "NOMALY_CHUNKS_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/nomaly-chunks",
    ),
    (
        "NOMALY_CHUNKS_DLQ_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/nomaly-chunks-dlq",
    ),
    (
        "NOMALY_ALERTS_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/nomaly-alerts",
    ),
    (
        "NOMALY_ALERTS_DLQ_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/nomaly-alerts-dlq",
    ),
    (
        "NOMALY_WS_ENDPOINT",
        "https://abc123.execute-api.us-east-1.amazonaws.com/live",
    ),
];

/// One start: milliseconds from spawn to the runtime's first request.
fn once(binary: &PathBuf, extra: &[(String, String)]) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind the Runtime API")?;
    let addr = listener.local_addr()?;
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .envs(ENV.iter().copied())
        .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    listener.set_nonblocking(true)?;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    bail!("{} never called the Runtime API", binary.display());
                }
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{} exited with {status} before calling the Runtime API",
                        binary.display()
                    );
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => return Err(e.into()),
        }
    };
    stream.set_nonblocking(false)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    let _ = child.kill();
    let _ = child.wait();
    if !line.contains("/runtime/invocation/next") {
        bail!("unexpected first request: {line}");
    }
    Ok(elapsed)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut runs = 10;
    let mut binaries = Vec::new();
    let mut extra = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--env" => {
                let kv = args.next().context("--env KEY=VALUE")?;
                let (k, v) = kv.split_once('=').context("--env KEY=VALUE")?;
                extra.push((k.to_string(), v.to_string()));
            }
            _ => binaries.push(PathBuf::from(a)),
        }
    }
    if binaries.is_empty() {
        bail!("usage: lambda-coldstart [--runs 10] [--env KEY=VALUE]... BINARY...");
    }
    println!("{:<12} {:>10} {:>8} {:>8}  (ms from process start to the first Runtime API request, {runs} runs)", "function", "median", "min", "max");
    for binary in &binaries {
        let mut times = Vec::with_capacity(runs);
        once(binary, &extra)?; // warm the page cache: a Lambda's code is local too
        for _ in 0..runs {
            times.push(once(binary, &extra)?);
        }
        times.sort_by(f64::total_cmp);
        let median = if runs % 2 == 1 {
            times[runs / 2]
        } else {
            (times[runs / 2 - 1] + times[runs / 2]) / 2.0
        };
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{:<12} {:>10.2} {:>8.2} {:>8.2}",
            name,
            median,
            times[0],
            times[runs - 1]
        );
    }
    Ok(())
}
