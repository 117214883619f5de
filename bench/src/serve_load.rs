//! `serve-load`: a closed-loop HTTP load generator for `POST /v1/detect`. Each of
//! `--connections` clients sends requests back to back on its own keep-alive connection
//! for `--seconds` (after `--warmup` seconds not counted). Every request carries
//! `--rows` rows never sent before (rows of `--data` with a per-request perturbation
//! drawn from `--seed` and the connection), so no cache can answer; runs with different
//! seeds never repeat each other. Prints one line: requests/s, latency p50/p90/p99, errors and
//! cache hits.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    key: String,
    model_id: String,
    data: String,
    rows: usize,
    connections: usize,
    seconds: f64,
    warmup: f64,
    label: String,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        url: String::new(),
        key: String::new(),
        model_id: String::new(),
        data: String::new(),
        rows: 100,
        connections: 2,
        seconds: 15.0,
        warmup: 2.0,
        label: "target".into(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--key" => a.key = value()?,
            "--model-id" => a.model_id = value()?,
            "--data" => a.data = value()?,
            "--rows" => a.rows = value()?.parse()?,
            "--connections" => a.connections = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--warmup" => a.warmup = value()?.parse()?,
            "--label" => a.label = value()?,
            "--seed" => a.seed = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.url.is_empty() || a.key.is_empty() || a.data.is_empty() {
        bail!("usage: serve-load --url URL --key KEY --data CSV [--model-id ID] [--rows 100] [--connections 2] [--seconds 15] [--warmup 2] [--label NAME] [--seed N]");
    }
    Ok(a)
}

/// Numeric rows of a CSV with a header, without a `label` column.
fn read_rows(path: &str) -> Result<Vec<Vec<f64>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let table = nomaly_core::table::read_csv(
        file,
        &nomaly_core::table::CsvOptions::dataset(&["label".into()]),
    )
    .with_context(|| format!("reading {path}"))?;
    Ok(table.data.outer_iter().map(|r| r.to_vec()).collect())
}

/// SplitMix64: distinct, reproducible perturbations.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn body(source: &[Vec<f64>], rows: usize, model_id: &str, state: &mut u64) -> Vec<u8> {
    let picked: Vec<Vec<f64>> = (0..rows)
        .map(|_| {
            let row = &source[(next(state) % source.len() as u64) as usize];
            row.iter()
                .map(|v| {
                    // A relative change under 1e-6: the same data, never the same bytes.
                    let jitter = (next(state) >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                    v + (v.abs().max(1.0)) * 1e-6 * jitter
                })
                .collect()
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"model_id": model_id, "rows": picked}))
        .unwrap_or_default()
}

struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    cached: usize,
}

async fn client(
    args: std::sync::Arc<Args>,
    source: std::sync::Arc<Vec<Vec<f64>>>,
    n: usize,
    start: Instant,
) -> Tally {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap_or_default();
    let url = format!("{}/v1/detect", args.url.trim_end_matches('/'));
    // Distinct per connection and per run (`--seed`): no two requests repeat.
    let mut state = 0x5EED ^ ((n as u64) << 32) ^ args.seed.wrapping_mul(0xA076_1D64_78BD_642F);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let mut tally = Tally {
        latencies: Vec::new(),
        errors: 0,
        cached: 0,
    };
    while Instant::now() < end {
        let payload = body(&source, args.rows, &args.model_id, &mut state);
        let sent = Instant::now();
        let outcome = http
            .post(&url)
            .bearer_auth(&args.key)
            .header("content-type", "application/json")
            .body(payload)
            .send()
            .await;
        let ok = match outcome {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(bytes) if status.is_success() => {
                        if sent >= measure_from
                            && bytes.windows(13).any(|w| w == b"\"cached\":true")
                        {
                            tally.cached += 1;
                        }
                        true
                    }
                    _ => false,
                }
            }
            Err(_) => false,
        };
        let took = sent.elapsed();
        if sent >= measure_from && sent + took <= end {
            if ok {
                tally.latencies.push(took);
            } else {
                tally.errors += 1;
            }
        }
    }
    tally
}

fn main() -> Result<()> {
    let args = std::sync::Arc::new(parse_args()?);
    let source = std::sync::Arc::new(read_rows(&args.data)?);
    if source.is_empty() {
        bail!("{} has no rows", args.data);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tallies = runtime.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..args.connections)
            .map(|n| tokio::spawn(client(args.clone(), source.clone(), n, start)))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await?);
        }
        anyhow::Ok(out)
    })?;
    let mut latencies: Vec<Duration> = tallies.iter().flat_map(|t| t.latencies.clone()).collect();
    latencies.sort();
    let errors: usize = tallies.iter().map(|t| t.errors).sum();
    let cached: usize = tallies.iter().map(|t| t.cached).sum();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1e3
    };
    println!(
        "{:<22} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>7} {:>7}",
        args.label,
        latencies.len() as f64 / args.seconds,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies.len(),
        errors,
        cached
    );
    Ok(())
}
