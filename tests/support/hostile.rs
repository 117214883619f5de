//! A hostile tenant and a bystander, for the hostile-tenant suite (`tests/serve.rs`) and
//! the `hostile-load` benchmark: tenant A sends bombs, costly requests and a flood of
//! heavy jobs; tenant B keeps making small detections and checks every answer.

use crate::server::Api;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// A gzip CSV (`a,b,c` then rows of `0,0,0`) of at most `max_bytes`, as large an
/// inflation as fits: one compressed member of 64 MiB of rows, repeated (gzip readers
/// concatenate members). Returns the bytes and what they inflate to: about 4 GB from
/// 6 MB, the measured case.
pub fn gzip_bomb(max_bytes: usize) -> (Vec<u8>, u64) {
    let gzip = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).expect("gzip in memory");
        gz.finish().expect("gzip in memory")
    };
    let block = 64usize << 20;
    let rows = b"0,0,0\n".repeat(block / 6);
    let member = gzip(&rows);
    let header = b"a,b,c\n";
    let mut out = gzip(header);
    let mut inflated = header.len() as u64;
    while out.len() + member.len() <= max_bytes {
        out.extend_from_slice(&member);
        inflated += rows.len() as u64;
    }
    (out, inflated)
}

/// What the bystander saw.
#[derive(Debug, Default)]
pub struct Bystander {
    /// Each small detection's latency.
    pub latencies: Vec<Duration>,
    /// Answers that were not right, with what was wrong.
    pub wrong: Vec<String>,
}

impl Bystander {
    /// The `q` quantile of the latencies (0 when none).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    /// `n=..., p50=... ms, p99=... ms, max=... ms, wrong=...`.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "n={} p50={:.1} ms p99={:.1} ms max={:.1} ms wrong={}",
            self.latencies.len(),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            self.wrong.len()
        )
    }
}

/// Tenant B's work: small zscore detections of 100 rows, back to back until `until`,
/// each with new values (no cache answers) and one planted outlier that must be labelled.
pub async fn small_detections(api: &Api, until: Instant, seed: u64) -> Bystander {
    let mut seen = Bystander::default();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let rows: Vec<Vec<f64>> = (0..100u64)
            .map(|i| {
                if i == 42 {
                    vec![500.0, 500.0, 500.0]
                } else {
                    let v = ((i * 7 + n * 13 + seed) % 17) as f64 + (n % 1000) as f64 * 1e-3;
                    vec![v, v * 0.5, 10.0 - v]
                }
            })
            .collect();
        let started = Instant::now();
        let (status, answer) = api
            .call(
                "POST",
                "/v1/detect",
                Some(json!({"algorithm": "zscore", "rows": rows})),
            )
            .await;
        seen.latencies.push(started.elapsed());
        let scores = answer["scores"].as_array().map_or(0, Vec::len);
        if status != 200 || scores != 100 || answer["labels"][42] != json!(1) {
            seen.wrong.push(format!("request {n}: {status} {answer}"));
        }
    }
    seen
}

/// One of tenant A's requests and what came of it.
#[derive(Debug)]
pub struct Attack {
    /// What was sent.
    pub what: String,
    /// The answer's status.
    pub status: u16,
    /// How long the answer took.
    pub elapsed: Duration,
    /// The answer.
    pub answer: Value,
}

/// Tenant A's costly requests: the measured gzip bomb (6 GB from about 6 MB) and
/// parameters that would run for minutes. Each should be refused.
pub async fn costly_requests(url: &str, key: &str) -> Vec<Attack> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    // Just under the request body limit, so the inflation is what must stop it.
    let (bomb, inflated) = gzip_bomb(nomaly_core::limits::MAX_BODY_BYTES - 1024);
    let what = format!(
        "a {:.1} MB gzip body inflating to {:.1} GB",
        bomb.len() as f64 / 1e6,
        inflated as f64 / 1e9
    );
    let started = Instant::now();
    let response = http
        .post(format!("{url}/v1/detect?algorithm=zscore"))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(bomb)
        .send()
        .await
        .expect("the bomb is sent");
    let status = response.status().as_u16();
    let answer = response.json().await.unwrap_or(Value::Null);
    out.push(Attack {
        what,
        status,
        elapsed: started.elapsed(),
        answer,
    });
    let rows: Vec<Vec<f64>> = (0..20_000)
        .map(|i| vec![(i % 101) as f64, (i % 7) as f64])
        .collect();
    for (what, body) in [
        (
            "10,000 trees",
            json!({"algorithm": "iforest", "params": {"n_estimators": 10_000}, "rows": rows}),
        ),
        (
            "1,000 neighbours",
            json!({"algorithm": "lof", "params": {"n_neighbors": 1_000}, "rows": rows}),
        ),
        (
            "pca over 7,000 columns",
            json!({"algorithm": "pca", "rows": [vec![1.0; 7_000], vec![2.0; 7_000]]}),
        ),
    ] {
        let started = Instant::now();
        let response = http
            .post(format!("{url}/v1/detect"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        let answer = response.json().await.unwrap_or(Value::Null);
        out.push(Attack {
            what: what.to_string(),
            status,
            elapsed: started.elapsed(),
            answer,
        });
    }
    out
}

/// Tenant A queues `n` heavy trainings (isolation forests of 1,000 trees on 20,000 rows
/// of 8 columns); returns their task ids.
pub async fn flood(api: &Api, n: usize) -> Vec<String> {
    let rows: Vec<Vec<f64>> = (0..20_000u64)
        .map(|i| (0..8u64).map(|j| ((i * (j + 3)) % 97) as f64).collect())
        .collect();
    let body = json!({"algorithm": "iforest", "params": {"n_estimators": 1_000}, "rows": rows});
    let mut ids = Vec::new();
    for _ in 0..n {
        let (id, _) = api.accepted("/v1/models", body.clone()).await;
        ids.push(id);
    }
    ids
}
