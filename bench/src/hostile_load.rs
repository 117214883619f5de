//! `hostile-load`: tenant B's latency for small detections with and without a hostile
//! tenant A, on a real `nomaly serve` (built beside this binary) capped at 4 GiB of
//! address space. A sends the measured gzip bomb and costly requests, then queues
//! `--flood` heavy trainings; B keeps making small zscore detections of 100 rows, and one
//! small training behind A's flood. Prints the figures side by side; asserts nothing.
//!
//! `cargo build -p nomaly --bin nomaly --features aws -p nomaly-bench --bin hostile-load &&
//!  target/debug/hostile-load [--seconds 10] [--flood 40]` (or `--release` and
//! `target/release/`: it starts the `nomaly` beside itself)

use anyhow::{Context, Result};
use nomaly_tests::hostile::{costly_requests, flood, small_detections, Bystander};
use nomaly_tests::server::{Api, Server};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let mut seconds = 10u64;
    let mut jobs = 40usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => seconds = value.parse().context("--seconds")?,
            "--flood" => jobs = value.parse().context("--flood")?,
            other => anyhow::bail!("unknown flag {other} (--seconds N, --flood N)"),
        }
    }
    let dir = std::env::temp_dir().join(format!("nomaly-hostile-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = Server::start_capped(
        &dir.join("data"),
        &[],
        &[("NOMALY_RATE_LIMIT", "100000")],
        4 << 20,
    );
    let a_key = server.key("tenant-a");
    let b_key = server.key("tenant-b");
    let a = Api::new(&server, &a_key);
    let b = Api::new(&server, &b_key);
    let window = Duration::from_secs(seconds);

    let alone = small_detections(&b, Instant::now() + window, 1).await;
    let watcher = Api::new(&server, &b_key);
    let during =
        tokio::spawn(async move { small_detections(&watcher, Instant::now() + window, 2).await });
    let attacks = costly_requests(&server.url, &a_key).await;
    let flooded = flood(&a, jobs).await;
    let started = Instant::now();
    let rows: Vec<Vec<f64>> = (0..200).map(|i| vec![(i % 13) as f64]).collect();
    let (small, _) = b
        .accepted("/v1/models", json!({"algorithm": "zscore", "rows": rows}))
        .await;
    let trained = b.wait_task(&small, Duration::from_secs(600)).await;
    let training = started.elapsed();
    let during = during.await.context("tenant B's loop")?;

    let line = |name: &str, s: &Bystander| {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:<28} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>6}",
            s.latencies.len(),
            ms(s.quantile(0.5)),
            ms(s.quantile(0.99)),
            ms(s.quantile(1.0)),
            s.wrong.len()
        );
    };
    println!("tenant B: small zscore detections (100 rows), {seconds} s each, nomaly serve capped at 4 GiB");
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>6}",
        "", "n", "p50 ms", "p99 ms", "max ms", "wrong"
    );
    line("B alone", &alone);
    line("B while A attacks", &during);
    for attack in &attacks {
        println!(
            "A: {:<44} {} in {:.0} ms",
            attack.what,
            attack.status,
            attack.elapsed.as_secs_f64() * 1000.0
        );
    }
    println!(
        "B's small training behind {} heavy jobs of A: {} in {:.1} s",
        flooded.len(),
        trained["status"],
        training.as_secs_f64()
    );
    println!(
        "server alive after: {}; peak resident memory {} MiB",
        server.alive(),
        server.memory_kib("VmHWM").unwrap_or(0) / 1024
    );
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
