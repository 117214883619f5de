//! A stream split by entity at fleet scale: `ENTITIES` entities × `POINTS` points each,
//! appended through the service in requests of `REQUEST` points across entities (each
//! request holds `REQUEST / STEPS` entities × `STEPS` consecutive points), on SQLite
//! (the local server's store) or on DynamoDB (moto on loopback). Prints points per
//! second, storage calls per request, and stored state bytes per entity.
//!
//! Storage calls are counted where they leave the process: each SQLite statement batch
//! the store runs (`nomaly_embedded::storage_calls`), and each DynamoDB API call the SDK
//! makes (`nomaly_aws::sdk_calls`). Anomaly events go to the SQLite event log in both
//! runs, so the DynamoDB figures count entity reads and writes only.
//!
//! ```text
//! cargo run --release -p nomaly-bench --bin stream-entities -- sqlite [ENTITIES POINTS REQUEST]
//! AWS_ENDPOINT_URL=http://127.0.0.1:5099 ... cargo run --release -p nomaly-bench --bin stream-entities -- dynamodb
//! ```

use anyhow::{bail, Context, Result};
use nomaly_core::domain::TenantId;
use nomaly_core::service::streams::{self, CreateStream, Point};
use nomaly_core::service::Settings;
use std::sync::Arc;
use std::time::Instant;

/// Consecutive points of one entity in a request.
const STEPS: usize = 10;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = args
        .first()
        .map(String::as_str)
        .unwrap_or("sqlite")
        .to_string();
    let number = |i: usize, default: usize| -> Result<usize> {
        args.get(i)
            .map(|a| a.parse().with_context(|| format!("argument {i}: {a:?}")))
            .unwrap_or(Ok(default))
    };
    let (entities, points, request) = (number(1, 10_000)?, number(2, 100)?, number(3, 1_000)?);
    if request % STEPS != 0 || points % STEPS != 0 || entities % (request / STEPS) != 0 {
        bail!("POINTS and REQUEST must be multiples of {STEPS}, and ENTITIES of REQUEST/{STEPS}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(&store, entities, points, request))
}

/// Calls made so far by the store under test.
fn calls(store: &str) -> u64 {
    match store {
        "dynamodb" => nomaly_aws::sdk_calls(),
        _ => nomaly_embedded::storage_calls(),
    }
}

async fn run(store: &str, entities: usize, points: usize, request: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nomaly-entities-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let settings = Settings::default();
    let stack = nomaly_embedded::Stack::open(&dir, "http://127.0.0.1:1", settings)
        .context("open the local stack")?;
    let mut services = stack.services.clone();
    match store {
        "sqlite" => {}
        "dynamodb" => {
            let clients = nomaly_aws::Clients::from_env(true).await;
            let suffix = nomaly_core::ids::JobId::new().as_str()[20..].to_ascii_lowercase();
            let names = nomaly_aws::provision::Names::with_prefix(&format!("nm-bench-{suffix}"));
            nomaly_aws::provision::ensure(&clients, &names, 3)
                .await
                .context("provision the table on the endpoint (is moto running?)")?;
            services.streams = Arc::new(nomaly_aws::DynamoStore::new(
                clients.dynamodb.clone(),
                &names.table,
                &names.events_table,
            ));
        }
        other => bail!("store must be sqlite or dynamodb, not {other:?}"),
    }
    let tenant = TenantId::parse("bench").context("tenant")?;
    let create: CreateStream = serde_json::from_value(serde_json::json!({
        "name": "fleet", "entity": "host", "max_entities": entities,
        "detector": "seasonal", "params": {"period": 24, "cycles": 3, "residual_window": 96, "warmup": 48},
    }))?;
    let stream = streams::create(&services, &tenant, create)
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    let per_request = request / STEPS;
    let requests = entities / per_request * points / STEPS;
    println!(
        "{store}: {entities} entities × {points} points, {requests} requests of {request} points ({per_request} entities × {STEPS} points), seasonal detector (period 24)"
    );
    let (start, calls_before) = (Instant::now(), calls(store));
    let (mut slowest, mut anomalies) = (0f64, 0usize);
    for round in 0..points / STEPS {
        for group in 0..entities / per_request {
            let mut batch = Vec::with_capacity(request);
            for e in group * per_request..(group + 1) * per_request {
                for i in round * STEPS..(round + 1) * STEPS {
                    let phase = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
                    let wobble = ((i * 7919 + e * 31) % 13) as f64 * 0.05;
                    let mut p = Point::new(
                        1_396_310_400 + 3600 * i as i64,
                        vec![20.0 + (e % 50) as f64 + 5.0 * phase.sin() + wobble],
                    );
                    p.entity = Some(("host".to_string(), format!("host-{e:05}")));
                    batch.push(p);
                }
            }
            let one = Instant::now();
            let answer = streams::append(&services, &tenant, "bench", &stream.id, batch)
                .await
                .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
            slowest = slowest.max(one.elapsed().as_secs_f64());
            anomalies += answer.anomalies.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let made = calls(store) - calls_before;
    // State bytes: every entity's stored state, read back in pages of 1,000 names.
    let (mut bytes, mut counted) = (0usize, 0usize);
    for chunk in (0..entities).collect::<Vec<_>>().chunks(1000) {
        let names: Vec<String> = chunk.iter().map(|e| format!("host-{e:05}")).collect();
        let read = services
            .streams
            .get_entities(&tenant, &stream.id, &names)
            .await
            .context("read the entities back")?;
        counted += read.entities.len();
        bytes += read.entities.iter().map(|(_, s)| s.len()).sum::<usize>();
    }
    let total = entities * points;
    println!("  points/s                 {:>10.0}", total as f64 / secs);
    println!(
        "  storage calls/request    {:>10.2}",
        made as f64 / requests as f64
    );
    println!(
        "  state bytes/entity       {:>10.0}",
        bytes as f64 / counted.max(1) as f64
    );
    println!(
        "  wall time                {secs:>10.1} s (slowest request {:.0} ms)",
        slowest * 1000.0
    );
    println!("  entities stored          {counted:>10}");
    println!("  anomalies                {anomalies:>10}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
