//! Fifty clients for thirty seconds against the real `nomaly serve`: training,
//! detecting, uploading and listing at once, five tenants with ten clients each, under
//! the default per-tenant rate limit (clients wait out each 429's `Retry-After`). No
//! response may be a 5xx; every task accepted finishes exactly once (one
//! `task.completed` in the log and on each tenant's socket, one model per training);
//! the server's memory stays bounded (peak RSS printed); and no API key, key secret or
//! upload signature appears anywhere in its log.

use nomaly_tests::scratch;
use nomaly_tests::server::{Api, Server, Socket};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TENANTS: usize = 5;
const CLIENTS: usize = 50;
const SECONDS: u64 = 30;
/// The server's resident memory must stay under this (a 1 GB Lambda's worth).
const MEMORY_BOUND_KIB: u64 = 1024 * 1024;

/// A small deterministic generator, one per client: distinct rows in every request.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn rows(&mut self, n: usize, width: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| (0..width).map(|_| self.next() * 10.0).collect())
            .collect()
    }
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    /// Accepted tasks: (tenant index, task id, kind).
    tasks: Vec<(usize, String, &'static str)>,
    signatures: Vec<String>,
    unexpected: Vec<String>,
}

/// Sends a request, waiting out 429s (at most 30 tries); returns the final status and
/// body, and records every status seen.
async fn send(
    api: &Api,
    tally: &Mutex<Tally>,
    what: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    for _ in 0..30 {
        let (s, v) = api.call(method, path, body.clone()).await;
        {
            let mut t = tally.lock().unwrap();
            *t.statuses.entry(format!("{what} {s}")).or_default() += 1;
            if s >= 500 {
                t.unexpected.push(format!("{what}: {s} {v}"));
            }
        }
        if s != 429 {
            return (s, v);
        }
        assert_eq!(v["type"], "https://nomaly.dev/problems/rate-limited", "{v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (429, Value::Null)
}

async fn client(n: usize, api: Api, model: String, tally: Arc<Mutex<Tally>>, until: Instant) {
    let tenant = n % TENANTS;
    let mut rng = Lcg(n as u64 * 7919 + 1);
    while Instant::now() < until {
        let pick = rng.next();
        if pick < 0.12 {
            let body = json!({"algorithm": "hbos", "rows": rng.rows(300, 4)});
            let (s, v) = send(&api, &tally, "train", "POST", "/v1/models", Some(body)).await;
            match s {
                202 => tally.lock().unwrap().tasks.push((
                    tenant,
                    v["task"]["id"].as_str().unwrap().to_string(),
                    "train",
                )),
                429 => {}
                _ => tally
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("train: {s} {v}")),
            }
        } else if pick < 0.17 {
            let (s, v) = send(&api, &tally, "list", "GET", "/v1/tasks?limit=5", None).await;
            if s != 200 && s != 429 {
                tally
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("list: {s} {v}"));
            }
        } else if pick < 0.20 {
            let csv: String = std::iter::once("a,b,c\n".to_string())
                .chain(
                    rng.rows(200, 3)
                        .iter()
                        .map(|r| format!("{:.4},{:.4},{:.4}\n", r[0], r[1], r[2])),
                )
                .collect();
            let (s, grant) = send(
                &api,
                &tally,
                "upload",
                "POST",
                "/v1/datasets",
                Some(json!({"name": "load.csv", "size": csv.len()})),
            )
            .await;
            if s == 201 {
                let url = grant["upload"]["url"].as_str().unwrap().to_string();
                // A tenant sends at most `MAX_UPLOADS_PER_TENANT` at once and ten clients
                // share one: a 429 (Retry-After: 1) is sent again, as a client would.
                let bytes = csv.into_bytes();
                let mut put = api.put(&url, bytes.clone()).await;
                for _ in 0..5 {
                    if put != 429 {
                        break;
                    }
                    *tally
                        .lock()
                        .unwrap()
                        .statuses
                        .entry("upload-put 429".into())
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    put = api.put(&url, bytes.clone()).await;
                }
                let mut t = tally.lock().unwrap();
                *t.statuses.entry(format!("upload-put {put}")).or_default() += 1;
                if put != 200 {
                    t.unexpected.push(format!("upload PUT: {put}"));
                }
                if let Some(sig) = url.split("sig=").nth(1) {
                    t.signatures
                        .push(sig.split('&').next().unwrap_or("").to_string());
                }
            } else if s != 429 {
                tally
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("upload: {s} {grant}"));
            }
        } else {
            let body = json!({"model_id": model, "rows": rng.rows(100, 4)});
            let (s, v) = send(&api, &tally, "detect", "POST", "/v1/detect", Some(body)).await;
            match s {
                200 => assert_eq!(v["scores"].as_array().map(Vec::len), Some(100), "{v}"),
                202 => tally.lock().unwrap().tasks.push((
                    tenant,
                    v["task"]["id"].as_str().unwrap().to_string(),
                    "detect",
                )),
                429 => {}
                _ => tally
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("detect: {s} {v}")),
            }
        }
    }
}

/// Every event of a tenant, paging through the log.
async fn all_events(api: &Api, tally: &Mutex<Tally>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let path = match out.last() {
            Some(e) => format!(
                "/v1/events?limit=1000&after={}",
                e["event_id"].as_str().unwrap()
            ),
            None => "/v1/events?limit=1000".to_string(),
        };
        let (s, page) = send(api, tally, "events", "GET", &path, None).await;
        assert_eq!(s, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return out;
        }
        out.extend(items);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clients_for_thirty_seconds_no_5xx_no_lost_or_duplicated_task() {
    let dir = scratch("load");
    let server = Server::start(&dir, &["--workers", "2", "--log-format", "json"], &[]);
    let keys: Vec<String> = (0..TENANTS)
        .map(|i| server.key(&format!("load{i}")))
        .collect();
    let tally = Arc::new(Mutex::new(Tally::default()));

    // One model per tenant to detect with, and one socket per tenant counting pushes.
    let mut models = Vec::new();
    let mut sockets = Vec::new();
    for key in &keys {
        let api = Api::new(&server, key);
        let mut socket = Socket::connect(&server, key).await;
        socket.subscribe("tenant").await;
        sockets.push(socket);
        let (task, answer) = api
            .accepted(
                "/v1/models",
                json!({"algorithm": "zscore", "rows": Lcg(3).rows(500, 4)}),
            )
            .await;
        api.wait_task(&task, Duration::from_secs(60)).await;
        models.push(answer["model_id"].as_str().unwrap().to_string());
    }
    let pushes: Vec<Arc<Mutex<Vec<String>>>> = (0..TENANTS).map(|_| Arc::default()).collect();
    let stop = Arc::new(tokio::sync::Notify::new());
    let readers: Vec<_> = sockets
        .into_iter()
        .zip(pushes.iter().cloned())
        .map(|(mut socket, seen)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.notified() => return,
                        m = socket.next(Duration::from_secs(600)) => match m {
                            Some(m) if m["type"] == "task.completed" => seen
                                .lock()
                                .unwrap()
                                .push(m["payload"]["task_id"].as_str().unwrap_or("").to_string()),
                            Some(_) => {}
                            None => return,
                        },
                    }
                }
            })
        })
        .collect();

    // Memory, sampled every half second through the run.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let rss_samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sampler = {
        let (sampling, samples, pid) = (sampling.clone(), rss_samples.clone(), server.pid());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                    })
                {
                    samples.lock().unwrap().push(kib);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    let started = Instant::now();
    let until = started + Duration::from_secs(SECONDS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let api = Api::new(&server, &keys[n % TENANTS]);
            tokio::spawn(client(
                n,
                api,
                models[n % TENANTS].clone(),
                tally.clone(),
                until,
            ))
        })
        .collect();
    for c in clients {
        c.await.expect("a client panicked");
    }
    let ran = started.elapsed();

    // Every accepted task finishes.
    let tasks = tally.lock().unwrap().tasks.clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    for (tenant, id, kind) in &tasks {
        let api = Api::new(&server, &keys[*tenant]);
        loop {
            let (s, task) = send(
                &api,
                &tally,
                "poll",
                "GET",
                &format!("/v1/tasks/{id}"),
                None,
            )
            .await;
            assert_eq!(s, 200, "{task}");
            if task["status"] != "queued" && task["status"] != "running" {
                assert_eq!(task["status"], "completed", "{kind} task: {task}");
                break;
            }
            assert!(Instant::now() < deadline, "task {id} not finished: {task}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();

    // Exactly once: one completion event per task, one model per training.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.notify_waiters();
    for r in readers {
        let _ = r.await;
    }
    for (t, key) in keys.iter().enumerate() {
        let api = Api::new(&server, key);
        let events = all_events(&api, &tally).await;
        let mut completions: HashMap<String, usize> = HashMap::new();
        for e in events.iter().filter(|e| e["type"] == "task.completed") {
            *completions
                .entry(e["payload"]["task_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        let mine: Vec<&(usize, String, &str)> = tasks.iter().filter(|x| x.0 == t).collect();
        for (_, id, _) in &mine {
            assert_eq!(
                completions.get(id),
                Some(&1),
                "task {id}: completions in the log"
            );
        }
        let pushed = pushes[t].lock().unwrap().clone();
        let mut counted: HashMap<&str, usize> = HashMap::new();
        for id in &pushed {
            *counted.entry(id.as_str()).or_default() += 1;
        }
        for (_, id, _) in &mine {
            assert_eq!(
                counted.get(id.as_str()),
                Some(&1),
                "task {id}: completions pushed"
            );
        }
        let (s, listed) = send(&api, &tally, "models", "GET", "/v1/models?limit=1000", None).await;
        assert_eq!(s, 200);
        let trainings = mine.iter().filter(|x| x.2 == "train").count();
        assert_eq!(
            listed["items"].as_array().unwrap().len(),
            trainings + 1,
            "one model per training, plus the first"
        );
    }

    let peak = server.memory_kib("VmHWM").expect("peak RSS");
    let samples = rss_samples.lock().unwrap().clone();
    let tally = tally.lock().unwrap();
    let total: u64 = tally.statuses.values().sum();
    println!(
        "load: {CLIENTS} clients, {TENANTS} tenants, {:.1} s: {total} responses ({:.0}/s), {} tasks accepted, all completed once",
        ran.as_secs_f64(),
        total as f64 / ran.as_secs_f64(),
        tasks.len()
    );
    println!("load: responses by kind and status: {:?}", tally.statuses);
    println!(
        "load: server RSS min {} MiB, max sampled {} MiB, peak (VmHWM) {} MiB",
        samples.iter().min().unwrap_or(&0) / 1024,
        samples.iter().max().unwrap_or(&0) / 1024,
        peak / 1024
    );
    assert!(
        tally.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        tally.unexpected
    );
    assert!(
        tally.statuses.keys().any(|k| k.starts_with("train 202")),
        "some training was accepted"
    );
    assert!(peak < MEMORY_BOUND_KIB, "peak RSS {peak} KiB");

    // No secret in the log: keys, their secret halves, upload signatures.
    let log_path = server.log.clone();
    assert!(server.interrupt(), "the server stops cleanly");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log.len() > 10_000, "the log has the run in it");
    for key in &keys {
        let secret = key.rsplit('_').next().unwrap();
        assert!(!log.contains(key.as_str()), "an API key is in the log");
        assert!(!log.contains(secret), "a key's secret is in the log");
    }
    for sig in &tally.signatures {
        assert!(
            !log.contains(sig.as_str()),
            "an upload signature is in the log"
        );
    }
    println!(
        "load: log of {} KiB scanned: no key, secret or upload signature ({} signatures checked)",
        log.len() / 1024,
        tally.signatures.len()
    );
}
