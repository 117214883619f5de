//! Every Lambda function under cargo-lambda's emulator, on moto server: the test stores
//! the state the sample events in `events/` name (a key, tasks, datasets, an upload, a
//! stream),
//! starts `cargo lambda watch` on loopback with the functions pointed at moto, invokes
//! each function with its events (`cargo lambda invoke --data-file`), and checks each
//! response and the state it left: task rows, models, queue messages, objects.
//!
//! moto accepts a push to any WebSocket connection (it never answers 410), so pushes are
//! shown only to go through; the 410 path is tested against a fake gateway in
//! shared/aws/tests and on the embedded stack in shared/lambda/tests.

use nomaly_aws::deployment::Deployment;
use nomaly_aws::Clients;
use nomaly_core::domain::{
    AlertDelivery, AlertMatch, AlertRule, ApiKey, BatchProgress, Channel, Connection, Dataset,
    DatasetStatus, DeliveryStatus, Destination, EventType, Stream, StreamState, Task, TaskKind,
    TaskStatus, TenantId,
};
use nomaly_core::ids::{AlertId, DatasetId, DeliveryId, KeyId, StreamId, TaskId};
use nomaly_core::ports::{BlobKey, Job};
use nomaly_core::service::{Services, Settings};
use nomaly_core::time::Timestamp;
use nomaly_detect::stream::{StreamDetector, StreamSpec};
use nomaly_tests::aws::{stack_env, MotoStack};
use nomaly_tests::repo_root;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY_ID: &str = "key_01JDKX0000000000000000KEY1";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const TASK_TRAIN: &str = "tsk_01JDKX000000000000000TASK1";
const TASK_DETECT: &str = "tsk_01JDKX000000000000000TASK2";
const TASK_QUEUED: &str = "tsk_01JDKX000000000000000TASK3";
const TASK_STALE: &str = "tsk_01JDKX000000000000000TASK4";
const MODEL: &str = "mdl_01JDKX00000000000000000MD1";
const DATASET_UPLOAD: &str = "dst_01JDKX0000000000000000DST1";
const DATASET_PROFILED: &str = "dst_01JDKX0000000000000000DST2";
const DATASET_DELETE: &str = "dst_01JDKX0000000000000000DST3";
const UPLOAD_SIZE: usize = 4242;
const STREAM: &str = "stm_01JDKX0000000000000000STM1";
const TASK_BATCH: &str = "tsk_01JDKX000000000000000TASK5";
const TASK_PLAN: &str = "tsk_01JDKX000000000000000TASK6";
const ALERT_RULE: &str = "alr_01JDKX0000000000000000AR01";
const ALERT_DELIVERY: &str = "alt_01JDKX0000000000000000AT01";

fn cargo_lambda() -> std::path::PathBuf {
    let path = repo_root().join(".venv").join("bin").join("cargo-lambda");
    assert!(
        path.is_file(),
        "{} is missing: tests/run.sh installs cargo-lambda from PyPI",
        path.display()
    );
    path
}

struct Watch {
    child: Child,
    port: u16,
    env: Vec<(String, String)>,
    /// What the emulator and the functions wrote (logs and metric lines).
    log: std::path::PathBuf,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn start(env: Vec<(String, String)>) -> Watch {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cmd = Command::new(cargo_lambda());
        cmd.args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--ignore-changes",
        ])
        .current_dir(repo_root());
        let log = std::env::temp_dir().join(format!("nomaly-emulator-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        cmd.stdout(file.try_clone().expect("log file"))
            .stderr(Stdio::from(file));
        for v in &vars {
            cmd.args(["--env-var", v]);
        }
        let child = cmd.spawn().expect("cargo lambda watch starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cargo lambda watch did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Watch {
            child,
            port,
            env,
            log,
        }
    }

    /// The JSON lines the functions wrote so far.
    fn json_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.find('{').map(|i| &l[i..]))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `cargo lambda invoke <function> --data-file events/<event>.json`: the function's
    /// JSON answer, or its error text.
    fn invoke(&self, function: &str, event: &str) -> Result<Value, String> {
        let file = repo_root().join("events").join(format!("{event}.json"));
        assert!(file.is_file(), "{} is missing", file.display());
        let started = Instant::now();
        let out = Command::new(cargo_lambda())
            .args([
                "lambda",
                "invoke",
                function,
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &self.port.to_string(),
                "--output-format",
                "json",
                "--data-file",
            ])
            .arg(&file)
            .current_dir(repo_root())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("cargo lambda invoke runs");
        println!(
            "invoke {function:9} {event:22} {:6.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        if out.status.success() {
            serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn ok(&self, function: &str, event: &str) -> Value {
        self.invoke(function, event)
            .unwrap_or_else(|e| panic!("{function} {event}: {e}"))
    }

    /// An HTTP API invocation: status and parsed body.
    fn http(&self, event: &str) -> (u64, Value, Value) {
        let r = self.ok("api", event);
        let status = r["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("{event}: {r}"));
        let body = r["body"]
            .as_str()
            .map(|b| serde_json::from_str(b).unwrap_or(json!(b)))
            .unwrap_or(Value::Null);
        (status, r["headers"].clone(), body)
    }
}

fn task_id(s: &str) -> TaskId {
    TaskId::parse(s).expect("a task id")
}

async fn task(services: &Services, tenant: &TenantId, id: &str) -> Task {
    services
        .tasks
        .get_task(tenant, &task_id(id))
        .await
        .expect("read")
        .expect("task exists")
}

async fn seed(services: &Services, tenant: &TenantId, queue_url: &str) {
    let key = ApiKey {
        id: KeyId::parse(KEY_ID).expect("key id"),
        tenant: tenant.clone(),
        secret_sha256: hex::encode(Sha256::digest(SECRET.as_bytes())),
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    services.keys.put_key(&key).await.expect("key");
    // A stream with 100 minutes of steady pressure learned, up to 04:59.
    let spec: StreamSpec =
        serde_json::from_value(json!({"detector": "rolling_median", "params": {"window": 60}}))
            .expect("spec");
    let mut detector = StreamDetector::new(spec.clone(), 1).expect("detector");
    let start = nomaly_core::time::parse_instant("2026-11-27T03:20:00Z").expect("time");
    for i in 0..100 {
        detector
            .update(start + 60 * i, &[4.0 + (i % 5) as f64 * 0.05])
            .expect("learn");
    }
    let mut stream = Stream::new(
        tenant.clone(),
        "pump 7 pressure".into(),
        serde_json::to_value(&spec).expect("json"),
        vec!["value".into()],
        spec.default_threshold(),
    );
    stream.id = StreamId::parse(STREAM).expect("stream id");
    stream.points = 100;
    stream.last_timestamp = Some(start + 60 * 99);
    services
        .streams
        .create_stream(
            &stream,
            &StreamState::Inline(detector.to_bytes().expect("state")),
        )
        .await
        .expect("stream");
    for (id, kind) in [
        (TASK_TRAIN, TaskKind::Train),
        (TASK_DETECT, TaskKind::Detect),
        (TASK_QUEUED, TaskKind::Train),
    ] {
        let mut t = Task::new(tenant.clone(), kind, "seed");
        t.id = task_id(id);
        services.tasks.create_task(&t).await.expect("task");
    }
    // Batches: the object they read, a task planned into the two chunks of
    // `chunks-sqs`, and a queued one for the planner of `worker-sqs-batch`.
    let sample = std::fs::read(repo_root().join("events/batch-sample.csv")).expect("sample");
    services
        .blobs
        .put_blob(
            &BlobKey::parse(&format!("tenants/{tenant}/data/batch-sample.csv")).expect("key"),
            sample,
        )
        .await
        .expect("batch source");
    let mut planned = Task::new(tenant.clone(), TaskKind::Batch, "seed");
    planned.id = task_id(TASK_BATCH);
    planned.status = TaskStatus::Running;
    planned.attempts = 1;
    planned.batch = Some(BatchProgress::new(2));
    services.tasks.create_task(&planned).await.expect("task");
    let mut queued = Task::new(tenant.clone(), TaskKind::Batch, "seed");
    queued.id = task_id(TASK_PLAN);
    services.tasks.create_task(&queued).await.expect("task");
    // An alert rule whose webhook is on loopback, and the delivery `notify-sqs` sends:
    // under Lambda no loopback address is allowed, so the attempt is refused for good.
    let now = Timestamp::now();
    let rule = AlertRule {
        id: AlertId::parse(ALERT_RULE).expect("rule id"),
        tenant: tenant.clone(),
        name: "pump alerts".into(),
        matches: AlertMatch {
            events: vec![EventType::AnomalyDetected],
            stream_id: None,
            model_id: None,
            entity: None,
            min_score: None,
        },
        destination: Destination::Webhook {
            url: "https://127.0.0.1:9/hook".into(),
        },
        secret: "whsec_seed".into(),
        cooldown: 300,
        group_by: vec![],
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    services.alerts.put_rule(&rule).await.expect("rule");
    services
        .alerts
        .create_delivery(&AlertDelivery {
            id: DeliveryId::parse(ALERT_DELIVERY).expect("delivery id"),
            test: true,
            ..AlertDelivery::pending(&rule, String::new(), 0, json!({"type": "alert.test"}))
        })
        .await
        .expect("delivery");
    // The detect job's rows, where the job says they are.
    let rows = json!({"columns": ["x", "y"], "rows": (0..200).map(|i| vec![(i % 9) as f64, (i % 4) as f64]).chain([vec![80.0, -80.0]]).collect::<Vec<_>>()});
    let input =
        BlobKey::parse(&format!("tenants/{tenant}/inputs/{TASK_DETECT}.json")).expect("key");
    services
        .blobs
        .put_blob(&input, serde_json::to_vec(&rows).expect("json"))
        .await
        .expect("input");
    // A task whose worker was lost an hour ago, with its job to send again.
    let job = Job {
        job_id: nomaly_core::ids::JobId::new(),
        tenant: tenant.clone(),
        kind: "train".into(),
        correlation_id: "seed".into(),
        body: json!({"task_id": TASK_STALE, "model_id": nomaly_core::ids::ModelId::new(), "spec": {"algorithm": "zscore"}, "data": {"source": "inline", "columns": ["a"], "rows": [[1.0], [2.0], [3.0]]}}),
    };
    let mut stale = Task::new(tenant.clone(), TaskKind::Train, "seed");
    stale.id = task_id(TASK_STALE);
    stale.job = Some(serde_json::to_value(&job).expect("job"));
    stale.status = TaskStatus::Running;
    stale.attempts = 1;
    stale.updated_at = Timestamp::now().plus_seconds(-3600);
    services
        .tasks
        .create_task(&stale)
        .await
        .expect("stale task");
    // Datasets: one awaiting its upload (uploaded here), one profiled that asks for
    // training, one to delete.
    let dataset = |id: &str, status: DatasetStatus, size: usize| Dataset {
        id: DatasetId::parse(id).expect("dataset id"),
        tenant: tenant.clone(),
        name: format!("{id}.csv"),
        blob_key: format!("tenants/{tenant}/uploads/{id}.upload"),
        declared_size: size as u64,
        train_on_upload: true,
        train_spec: Some(json!({"algorithm": "iforest", "params": {"n_estimators": 20}})),
        status,
        error: None,
        profile: None,
        profile_attempts: 0,
        created_at: Timestamp::now(),
    };
    services
        .datasets
        .put_dataset(&dataset(
            DATASET_UPLOAD,
            DatasetStatus::AwaitingUpload,
            UPLOAD_SIZE,
        ))
        .await
        .expect("dataset");
    let mut csv = String::from("temperature,pressure,site\n");
    let mut i = 0;
    while csv.len() < UPLOAD_SIZE {
        csv.push_str(&format!(
            "{}.{},{},s{}\n",
            20 + i % 7,
            i % 10,
            100 + i % 13,
            i % 3
        ));
        i += 1;
    }
    csv.truncate(UPLOAD_SIZE - 1);
    let cut = csv.rfind('\n').expect("lines");
    csv.truncate(cut + 1);
    while csv.len() < UPLOAD_SIZE {
        csv.push('\n');
    }
    let upload =
        BlobKey::parse(&format!("tenants/{tenant}/uploads/{DATASET_UPLOAD}.upload")).expect("key");
    services
        .blobs
        .put_blob(&upload, csv.into_bytes())
        .await
        .expect("upload");
    let mut profiled = dataset(DATASET_PROFILED, DatasetStatus::Profiled, 100);
    let object = BlobKey::parse(&profiled.blob_key).expect("key");
    let data: String = std::iter::once("a,b\n".to_string())
        .chain((0..120).map(|i| format!("{},{}\n", i % 11, i % 5)))
        .collect();
    services
        .blobs
        .put_blob(&object, data.into_bytes())
        .await
        .expect("profiled upload");
    profiled.profile = Some(
        json!({"rows": 120, "columns": 2, "column_profiles": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}]}),
    );
    services
        .datasets
        .put_dataset(&profiled)
        .await
        .expect("dataset");
    services
        .datasets
        .put_dataset(&dataset(DATASET_DELETE, DatasetStatus::AwaitingUpload, 10))
        .await
        .expect("dataset");
    // A browser already connected and listening to the tenant.
    services
        .connections
        .put_connection(&Connection {
            id: "Listener1conn=".into(),
            tenant: tenant.clone(),
            key_id: None,
            subscriptions: vec![Channel::Tenant],
            expires_at: Timestamp::now().plus_seconds(600),
        })
        .await
        .expect("connection");
    let _ = queue_url;
}

async fn queued_jobs(clients: &Clients, queue_url: &str) -> Vec<Job> {
    let out = clients
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive");
    out.messages()
        .iter()
        .filter_map(|m| m.body())
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_answers_its_sample_events_under_cargo_lambda() {
    let MotoStack {
        endpoint,
        clients,
        names,
        queues: provisioned,
        ..
    } = MotoStack::provision("nm-emu").await;
    let deployment = Deployment {
        table: names.table.clone(),
        events_table: names.events_table.clone(),
        bucket: names.bucket.clone(),
        queue_url: provisioned.queue_url.clone(),
        dead_letter_url: provisioned.dead_letter_url.clone(),
        chunks_queue_url: provisioned.chunks_queue_url.clone(),
        chunks_dead_letter_url: provisioned.chunks_dead_letter_url.clone(),
        alerts_queue_url: provisioned.alerts_queue_url.clone(),
        alerts_dead_letter_url: provisioned.alerts_dead_letter_url.clone(),
        alert_bus: None,
        ws_endpoint: endpoint.clone(),
    };
    let services = deployment.services(&clients, Settings::default());
    let tenant = TenantId::parse("acme").expect("tenant");
    seed(&services, &tenant, &provisioned.queue_url).await;

    let env: Vec<(String, String)> = stack_env(&names, &provisioned)
        .into_iter()
        .chain([
            ("NOMALY_WS_ENDPOINT", endpoint.as_str()),
            ("NOMALY_S3_PATH_STYLE", "1"),
            ("RUST_LOG", "info"),
        ])
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let watch = Watch::start(env);

    // worker: a batch of a training and a detection job.
    let r = watch.ok("worker", "worker-sqs");
    assert_eq!(r["batchItemFailures"], json!([]), "{r}");
    let trained = task(&services, &tenant, TASK_TRAIN).await;
    assert_eq!(
        (trained.status, trained.result.as_deref()),
        (TaskStatus::Completed, Some(MODEL)),
        "{trained:?}"
    );
    let model = services
        .models
        .get_model(
            &tenant,
            &nomaly_core::ids::ModelId::parse(MODEL).expect("id"),
        )
        .await
        .expect("read")
        .expect("model stored");
    assert_eq!(model.feature_names, vec!["a", "b"]);
    let artifact = BlobKey::parse(&model.artifact_key).expect("key");
    assert!(
        services
            .blobs
            .get_blob(&artifact)
            .await
            .expect("read")
            .is_some(),
        "artifact in S3"
    );
    let detected = task(&services, &tenant, TASK_DETECT).await;
    assert_eq!(detected.status, TaskStatus::Completed, "{detected:?}");
    let result = BlobKey::parse(detected.result.as_deref().expect("result key")).expect("key");
    let result: Value = serde_json::from_slice(
        &services
            .blobs
            .get_blob(&result)
            .await
            .expect("read")
            .expect("result object"),
    )
    .expect("json");
    assert_eq!(
        (result["rows"].as_u64(), result["labels"][200].as_u64()),
        (Some(201), Some(1))
    );
    // The same batch again (SQS delivers at least once): nothing runs twice.
    let r = watch.ok("worker", "worker-sqs");
    assert_eq!(r["batchItemFailures"], json!([]));
    let events = services
        .events
        .events_after(&tenant, None, 1000)
        .await
        .expect("events")
        .items;
    let completions = events
        .iter()
        .filter(|e| {
            e.kind.as_str() == "task.completed" && e.payload["task_id"] == json!(TASK_TRAIN)
        })
        .count();
    assert_eq!(completions, 1, "one completion for two deliveries");
    // A batch with one unreadable message fails only that one.
    let r = watch.ok("worker", "worker-sqs-poison");
    assert_eq!(
        r["batchItemFailures"],
        json!([{"itemIdentifier": "1f2e3d4c-0000-4000-8000-000000000004"}]),
        "{r}"
    );

    // api: every route.
    let (s, _, b) = watch.http("api-healthz");
    assert_eq!((s, b["status"].as_str()), (200, Some("ok")));
    let (s, h, b) = watch.http("api-unauthorized");
    assert_eq!(
        (s, h["content-type"].as_str()),
        (401, Some("application/problem+json")),
        "{b}"
    );
    let (s, _, b) = watch.http("api-detect");
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["labels"][60], 1, "the planted outlier");
    assert!(b["explanations"].is_array());
    let (s, _, b) = watch.http("api-detect-csv");
    assert_eq!(
        (s, b["labels"].clone()),
        (200, json!([0, 0, 0, 0, 1])),
        "{b}"
    );
    let (s, _, b) = watch.http("api-detect-model");
    assert_eq!(
        (s, b["model_id"].as_str(), b["labels"].clone()),
        (200, Some(MODEL), json!([0, 1])),
        "{b}"
    );
    let before = queued_jobs(&clients, &provisioned.queue_url).await.len();
    let (s, h, first) = watch.http("api-models-create");
    assert_eq!(s, 202, "{first}");
    let created = first["task"]["id"].as_str().expect("task id").to_string();
    assert_eq!(
        h["location"].as_str(),
        Some(format!("/v1/tasks/{created}").as_str())
    );
    let jobs = queued_jobs(&clients, &provisioned.queue_url).await;
    assert!(
        jobs.len() > before && jobs.iter().any(|j| j.body["task_id"] == json!(created)),
        "the training job is on the queue"
    );
    let (s, _, report) = watch.http("api-models-report");
    assert_eq!(
        (s, report["task"]["kind"].as_str()),
        (202, Some("report")),
        "{report}"
    );
    let report_task = report["task"]["id"].as_str().expect("task id").to_string();
    assert!(
        queued_jobs(&clients, &provisioned.queue_url)
            .await
            .iter()
            .any(|j| j.kind == "report" && j.body["task_id"] == json!(report_task)),
        "the report job is on the queue"
    );
    let (s, _, backtest) = watch.http("api-backtests-create");
    assert_eq!(
        (s, backtest["task"]["kind"].as_str()),
        (202, Some("backtest")),
        "{backtest}"
    );
    let backtest_task = backtest["task"]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    assert!(
        queued_jobs(&clients, &provisioned.queue_url)
            .await
            .iter()
            .any(|j| j.kind == "backtest" && j.body["task_id"] == json!(backtest_task)),
        "the backtest job is on the queue"
    );
    let (s, h, again) = watch.http("api-models-create");
    assert_eq!(
        (s, again["task"]["id"].as_str()),
        (202, Some(created.as_str())),
        "Idempotency-Key: the same task"
    );
    assert_eq!(h["idempotent-replayed"].as_str(), Some("true"));
    let (s, _, b) = watch.http("api-models-list");
    assert!(
        s == 200
            && b["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|m| m["id"] == json!(MODEL))),
        "{b}"
    );
    let (s, _, b) = watch.http("api-models-get");
    assert_eq!((s, b["algorithm"].as_str()), (200, Some("iforest")), "{b}");
    let (s, _, b) = watch.http("api-tasks-list");
    assert_eq!(
        (s, b["items"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{b}"
    );
    assert!(b["next_token"].is_string(), "more than one page: {b}");
    let (s, _, b) = watch.http("api-tasks-get");
    assert_eq!(
        (s, b["status"].as_str(), b["progress"].as_u64()),
        (200, Some("completed"), Some(100)),
        "{b}"
    );
    let (s, _, b) = watch.http("api-tasks-cancel");
    assert_eq!((s, b["status"].as_str()), (200, Some("cancelled")), "{b}");
    assert_eq!(
        task(&services, &tenant, TASK_QUEUED).await.status,
        TaskStatus::Cancelled
    );
    let (s, _, b) = watch.http("api-tasks-result");
    assert_eq!((s, b["rows"].as_u64()), (200, Some(201)), "{b}");
    let (s, _, b) = watch.http("api-datasets-create");
    assert_eq!(s, 201, "{b}");
    let url = b["upload"]["url"].as_str().expect("upload url");
    assert!(
        url.contains(&names.bucket)
            && url.contains("/tenants/acme/uploads/")
            && url.contains("X-Amz-Signature="),
        "{url}"
    );
    let (s, _, b) = watch.http("api-datasets-list");
    assert!(
        s == 200 && b["items"].as_array().is_some_and(|i| i.len() >= 4),
        "{b}"
    );
    let (s, _, b) = watch.http("api-datasets-get");
    assert_eq!((s, b["status"].as_str()), (200, Some("profiled")), "{b}");
    let (s, _, _) = watch.http("api-datasets-delete");
    assert_eq!(s, 204);
    assert!(services
        .datasets
        .get_dataset(&tenant, &DatasetId::parse(DATASET_DELETE).expect("id"))
        .await
        .expect("read")
        .is_none());
    let (s, _, b) = watch.http("api-events-list");
    assert!(
        s == 200
            && b["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|e| e["type"] == "task.completed")),
        "{b}"
    );

    // Streams, on DynamoDB through the api function.
    let (s, _, b) = watch.http("api-streams-create");
    assert_eq!(
        (s, b["detector"]["detector"].as_str()),
        (201, Some("rolling_median")),
        "{b}"
    );
    let (s, _, b) = watch.http("api-streams-points");
    assert_eq!(
        (
            s,
            b["scores"].as_array().map(Vec::len),
            b["points"].as_u64()
        ),
        (200, Some(3), Some(103)),
        "{b}"
    );
    assert_eq!(b["anomalies"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["anomalies"][0]["index"], 2, "the jump to 19.5: {b}");
    assert!(
        b["event_id"].is_string(),
        "the anomaly's event was stored: {b}"
    );

    // ingest: the upload is profiled.
    let r = watch.ok("ingest", "ingest-s3");
    assert_eq!(r["taken_in"], 1, "{r}");
    let uploaded = services
        .datasets
        .get_dataset(&tenant, &DatasetId::parse(DATASET_UPLOAD).expect("id"))
        .await
        .expect("read")
        .expect("dataset");
    assert_eq!(uploaded.status, DatasetStatus::Profiled, "{uploaded:?}");
    let profile = uploaded.profile.expect("profile");
    assert_eq!(profile["columns"], 3);
    assert_eq!(
        profile["usable_columns"],
        json!(["temperature", "pressure"])
    );
    let events = services
        .events
        .events_after(&tenant, None, 1000)
        .await
        .expect("events")
        .items;
    assert!(events.iter().any(|e| e.kind.as_str() == "dataset.profiled"
        && e.payload["dataset_id"] == json!(DATASET_UPLOAD)));

    // events: dataset.profiled with training asked for starts one training, however
    // often the stream delivers it.
    let trainings = |services: Services| async move {
        services
            .tasks
            .list_tasks(&TenantId::parse("acme").expect("t"), &Default::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter(|t| {
                t.kind == TaskKind::Train
                    && t.correlation_id == format!("ingest-{DATASET_PROFILED}")
            })
            .count()
    };
    let r = watch.ok("events", "events-stream");
    assert_eq!(r["batchItemFailures"], json!([]), "{r}");
    assert_eq!(trainings(services.clone()).await, 1);
    watch.ok("events", "events-stream");
    assert_eq!(
        trainings(services.clone()).await,
        1,
        "the chain runs once per event"
    );
    assert!(queued_jobs(&clients, &provisioned.queue_url)
        .await
        .iter()
        .any(|j| j.body["data"]["dataset_id"] == json!(DATASET_PROFILED)));

    // ws: connect (and refuse), subscribe, score, disconnect.
    let r = watch.ok("ws", "ws-connect");
    assert_eq!(r["statusCode"], 200, "{r}");
    let r = watch.ok("ws", "ws-connect-refused");
    assert_eq!(r["statusCode"], 401, "{r}");
    assert!(services
        .connections
        .get_connection("Refused1conn=")
        .await
        .expect("read")
        .is_none());
    let r = watch.ok("ws", "ws-subscribe");
    assert_eq!(r["statusCode"], 200, "{r}");
    let conn = services
        .connections
        .get_connection("Abc123conn=")
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(
        (conn.tenant.as_str(), conn.subscriptions.clone()),
        ("acme", vec![Channel::Tenant])
    );
    let r = watch.ok("ws", "ws-score");
    assert_eq!(r["statusCode"], 200, "{r}");
    let r = watch.ok("ws", "ws-score-stream");
    assert_eq!(r["statusCode"], 200, "{r}");
    let (stored, _) = services
        .streams
        .get_stream(&tenant, &StreamId::parse(STREAM).expect("id"))
        .await
        .expect("read")
        .expect("the stream");
    assert_eq!(
        (stored.points, stored.version),
        (104, 3),
        "the socket's point was appended"
    );
    let r = watch.ok("ws", "ws-disconnect");
    assert_eq!(r["statusCode"], 200, "{r}");
    assert!(services
        .connections
        .get_connection("Abc123conn=")
        .await
        .expect("read")
        .is_none());

    // scheduler: the lost task goes back on the queue.
    let r = watch.ok("scheduler", "scheduler-tick");
    assert!(r["requeued"].as_u64().is_some_and(|n| n >= 1), "{r}");
    assert_eq!(
        task(&services, &tenant, TASK_STALE).await.status,
        TaskStatus::Queued
    );
    assert!(queued_jobs(&clients, &provisioned.queue_url)
        .await
        .iter()
        .any(|j| j.body["task_id"] == json!(TASK_STALE)));

    // Batches. The route answers 202 with a task; the planner (worker) splits the
    // object with S3 ranged reads and sends its chunks to the chunks queue; the chunks
    // function scores two chunks, writes a part each and the manifest, and completes
    // the task once, however often the batch is delivered.
    let (s, _, body) = watch.http("api-batch-create");
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["task"]["kind"], "batch");
    let r = watch.ok("worker", "worker-sqs-batch");
    assert_eq!(r["batchItemFailures"], json!([]), "{r}");
    let plan = task(&services, &tenant, TASK_PLAN).await;
    assert_eq!(plan.status, TaskStatus::Running, "{plan:?}");
    assert_eq!(plan.batch.as_ref().map(|b| b.total), Some(3), "{plan:?}");
    let mut chunk_jobs = Vec::new();
    for _ in 0..5 {
        chunk_jobs.extend(
            queued_jobs(&clients, &provisioned.chunks_queue_url)
                .await
                .into_iter()
                .filter(|j| j.kind == "chunk" && j.body["task_id"] == json!(TASK_PLAN)),
        );
        if chunk_jobs.len() >= 3 {
            break;
        }
    }
    let mut indexes: Vec<u64> = chunk_jobs
        .iter()
        .filter_map(|j| j.body["index"].as_u64())
        .collect();
    indexes.sort();
    indexes.dedup();
    assert_eq!(
        indexes,
        vec![0, 1, 2],
        "one chunk job each on the chunks queue"
    );
    for _ in 0..2 {
        let r = watch.ok("chunks", "chunks-sqs");
        assert_eq!(r["batchItemFailures"], json!([]), "{r}");
    }
    let batch = task(&services, &tenant, TASK_BATCH).await;
    assert_eq!(batch.status, TaskStatus::Completed, "{batch:?}");
    let progress = batch.batch.clone().expect("progress");
    assert_eq!((progress.done, progress.rows), (2, 40));
    assert!(
        progress.anomalies >= 1,
        "row 33 is an outlier: {progress:?}"
    );
    assert_eq!(
        batch.result.as_deref(),
        Some(format!("tenants/acme/batches/sample/{TASK_BATCH}/manifest.json").as_str())
    );
    let mut lines = 0;
    for part in ["part-00000.csv", "part-00001.csv"] {
        let key = BlobKey::parse(&format!("tenants/acme/batches/sample/{TASK_BATCH}/{part}"))
            .expect("key");
        let bytes = services
            .blobs
            .get_blob(&key)
            .await
            .expect("read")
            .expect("part in S3");
        lines += bytes.iter().filter(|&&b| b == b'\n').count();
    }
    assert_eq!(lines, 40);
    let completions = services
        .events
        .events_after(&tenant, None, 1000)
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.kind == EventType::TaskCompleted && e.payload["task_id"] == json!(TASK_BATCH))
        .count();
    assert_eq!(completions, 1, "one completion for two deliveries");

    // Alerts: the notify function sends the delivery's first attempt and logs it. The
    // rule's webhook is on loopback, which a Lambda function never reaches.
    let r = watch.ok("notify", "notify-sqs");
    assert_eq!(r["batchItemFailures"], json!([]), "{r}");
    let logged = services
        .alerts
        .get_delivery(
            &tenant,
            &AlertId::parse(ALERT_RULE).expect("id"),
            &DeliveryId::parse(ALERT_DELIVERY).expect("id"),
        )
        .await
        .expect("read")
        .expect("the delivery");
    assert_eq!(logged.status, DeliveryStatus::DeadLettered, "{logged:?}");
    assert_eq!(logged.attempts, 1);
    assert!(
        logged
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("loopback")),
        "{logged:?}"
    );
    let again = watch.ok("notify", "notify-sqs");
    assert_eq!(
        again["batchItemFailures"],
        json!([]),
        "a duplicate message is acknowledged"
    );

    // Last, as it removes the model the others use.
    let (s, _, _) = watch.http("api-models-delete");
    assert_eq!(s, 204);

    // Each invocation ended with an Embedded Metric Format line, under the function's
    // name; log lines carry lambda_runtime's request id.
    let lines = watch.json_lines();
    let metrics: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    let sum = |function: &str, name: &str| -> u64 {
        metrics
            .iter()
            .filter(|m| m["Function"] == function)
            .filter_map(|m| m[name].as_u64())
            .sum()
    };
    println!(
        "EMF lines: {}; api Requests {}, worker JobsSucceeded {}, RowsScored {}",
        metrics.len(),
        sum("api", "Requests"),
        sum("worker", "JobsSucceeded"),
        sum("api", "RowsScored") + sum("worker", "RowsScored")
    );
    for m in &metrics {
        let directive = &m["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "nomaly", "{m}");
        for d in directive["Metrics"].as_array().expect("metrics") {
            assert!(m.get(d["Name"].as_str().expect("name")).is_some(), "{m}");
        }
    }
    assert!(
        sum("api", "Requests") >= 20,
        "every API invocation is counted"
    );
    assert!(sum("api", "ClientErrors") >= 1, "the unauthorized call");
    assert!(
        sum("worker", "JobsSucceeded") >= 2,
        "training and detection"
    );
    assert!(sum("worker", "JobsRetried") >= 1, "the poison batch");
    assert!(sum("api", "ColdStarts") >= 1 && sum("worker", "ColdStarts") >= 1);
    assert!(metrics
        .iter()
        .any(|m| m["Function"] == "api" && m["DetectLatency"].as_array().is_some()));
    let job_line = lines
        .iter()
        .find(|l| l["message"] == "task completed")
        .expect("the worker's `task completed` line");
    let spans = job_line["spans"].as_array().expect("spans");
    assert!(
        spans.iter().any(|s| s["requestId"].as_str().is_some()),
        "lambda_runtime's request id: {job_line}"
    );
    assert!(
        spans.iter().any(|s| s["name"] == "job"
            && s["task_id"].as_str().is_some()
            && s["tenant"] == "acme"),
        "{job_line}"
    );
    std::fs::remove_file(&watch.log).ok();
    assert!(
        services
            .blobs
            .get_blob(&artifact)
            .await
            .expect("read")
            .is_none(),
        "the artifact is deleted with the model"
    );
}
