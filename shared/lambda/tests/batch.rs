//! Batch scoring through the Lambda handlers on the embedded stack: `POST /v1/batch`
//! through the router, the planner through the `worker` function, the chunks through the
//! `chunks` function (all at once, and again as redeliveries), one part per chunk and a
//! manifest, the task completed exactly once; refusals; a chunk with a bad row, and a
//! chunk that fails every delivery, each failing the task with the chunk named; local
//! files from the imports folder only.

use async_trait::async_trait;
use axum::http::StatusCode;
use nomaly_core::domain::{EventType, TaskStatus, TenantId};
use nomaly_core::ids::{ModelId, TaskId};
use nomaly_core::ports::{BlobKey, BlobStore, JobQueue, StoreError, StoreResult};
use nomaly_core::service::worker::Lane;
use nomaly_core::service::{models, Settings};
use serde_json::{json, Value};
use std::sync::Arc;

use crate::support::{env_with, Env};

/// A CSV with a text column first and the model's three columns in another order:
/// `n` rows, every 97th an outlier.
fn csv(n: usize) -> Vec<u8> {
    let mut out = String::from("id,c,a,b\n");
    for i in 0..n {
        let (a, b, c) = if i % 97 == 50 {
            (40.0, -30.0, 90.0)
        } else {
            ((i % 17) as f64 * 0.1, (i % 13) as f64 * 0.2, (i % 7) as f64)
        };
        out.push_str(&format!("row-{i},{c},{a},{b}\n"));
    }
    out.into_bytes()
}

fn settings() -> Settings {
    Settings {
        batch_chunk_bytes: 1500,
        ..Default::default()
    }
}

/// A z-score model on columns a, b, c, trained through the API and the worker.
async fn model(e: &Env, key: &str) -> ModelId {
    let rows: Vec<Vec<f64>> = (0..300)
        .map(|i| vec![(i % 17) as f64 * 0.1, (i % 13) as f64 * 0.2, (i % 7) as f64])
        .collect();
    let (s, _, body) = e
        .post_models(
            key,
            json!({"algorithm": "zscore", "rows": rows, "columns": ["a", "b", "c"]}),
        )
        .await;
    assert_eq!(s.as_u16(), 202, "{body}");
    e.drain().await;
    ModelId::parse(body["model_id"].as_str().expect("model id")).expect("id")
}

/// A batch over 100 rows of `tenants/acme/data/x.csv` to output `x`, planned: its
/// chunk jobs wait on the chunks queue.
async fn planned_batch() -> (Env, TaskId) {
    let e = env_with(settings());
    let key = e.key("acme").await;
    let model_id = model(&e, &key).await;
    put(&e, "tenants/acme/data/x.csv", csv(100)).await;
    let id = submit(
        &e,
        &key,
        json!({"source": {"key": "tenants/acme/data/x.csv"}, "model_id": model_id, "output": "x"}),
    )
    .await;
    e.drain().await;
    (e, id)
}

async fn put(e: &Env, key: &str, bytes: Vec<u8>) {
    let key = BlobKey::parse(key).expect("key");
    e.services().blobs.put_blob(&key, bytes).await.expect("put");
}

async fn submit(e: &Env, key: &str, body: Value) -> TaskId {
    let (s, _, answer) = e.post_batch(key, body).await;
    assert_eq!(s.as_u16(), 202, "{answer}");
    assert_eq!(answer["task"]["kind"], "batch");
    TaskId::parse(answer["task"]["id"].as_str().expect("task id")).expect("id")
}

async fn task(e: &Env, tenant: &str, id: &TaskId) -> nomaly_core::domain::Task {
    e.services()
        .tasks
        .get_task(&TenantId::parse(tenant).unwrap(), id)
        .await
        .unwrap()
        .expect("task")
}

/// Every chunk job now queued, handled all at once by concurrent `chunks` invocations.
async fn run_chunks_concurrently(e: &Env) -> usize {
    let deliveries = e.stack.chunks.receive(10, 30).await.unwrap();
    let mut all = deliveries.clone();
    loop {
        let more = e.stack.chunks.receive(10, 30).await.unwrap();
        if more.is_empty() {
            break;
        }
        all.extend(more);
    }
    let handles: Vec<_> = all
        .iter()
        .map(|d| {
            let (services, d) = (e.services().clone(), d.clone());
            tokio::spawn(async move {
                nomaly_core::service::batch::handle_chunk(&services, &d, None).await
            })
        })
        .collect();
    for (h, d) in handles.into_iter().zip(&all) {
        let handled = h.await.expect("no panic");
        assert_eq!(handled, nomaly_core::service::tasks::Handled::Done);
        e.stack.chunks.delete(&d.receipt).await.unwrap();
    }
    all.len()
}

#[tokio::test]
async fn a_batch_is_scored_in_chunks_counted_once_and_completed_once() {
    let e = env_with(settings());
    let key = e.key("acme").await;
    let model_id = model(&e, &key).await;
    let data = csv(600);
    put(&e, "tenants/acme/data/big.csv", data.clone()).await;
    let id = submit(
        &e,
        &key,
        json!({"source": {"key": "tenants/acme/data/big.csv"}, "model_id": model_id, "output": "run-1"}),
    )
    .await;

    // The planner, through the worker function: the task stays running with its plan.
    assert_eq!(e.batch(10).await, (1, Vec::new()));
    let planned = task(&e, "acme", &id).await;
    assert_eq!(planned.status, TaskStatus::Running);
    let total = planned.batch.as_ref().expect("plan recorded").total;
    assert!(
        total >= 8,
        "600 rows of ~20 bytes in 1500-byte chunks: {total}"
    );

    // Every chunk at once; then every chunk job again (SQS delivers at least once).
    let mut copies = Vec::new();
    {
        let mut seen = Vec::new();
        loop {
            let got = e.stack.chunks.receive(10, 30).await.unwrap();
            if got.is_empty() {
                break;
            }
            seen.extend(got);
        }
        assert_eq!(seen.len(), total as usize, "one job per chunk");
        for d in &seen {
            copies.push(d.job.clone());
            e.stack
                .chunks
                .change_visibility(&d.receipt, 0)
                .await
                .unwrap();
        }
    }
    assert_eq!(run_chunks_concurrently(&e).await, total as usize);
    let done = task(&e, "acme", &id).await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let progress = done.batch.clone().expect("progress");
    assert_eq!((progress.done, progress.rows), (total, 600));

    e.services().chunks.send(&copies).await.unwrap();
    assert_eq!(run_chunks_concurrently(&e).await, total as usize);
    let again = task(&e, "acme", &id).await;
    assert_eq!(again.version, done.version, "redeliveries change nothing");

    // One task.completed, progress announced on the way, nothing failed.
    let events = e.events("acme").await;
    let of_task = |kind: EventType| {
        events
            .iter()
            .filter(|ev| ev.kind == kind && ev.payload["task_id"] == id.as_str())
            .count()
    };
    assert_eq!(of_task(EventType::TaskCompleted), 1);
    assert_eq!(of_task(EventType::TaskFailed), 0);
    assert!(of_task(EventType::TaskProgress) >= 2);

    // The parts, in order, are the model's scores of every row.
    let (_, loaded) = models::load(e.services(), &TenantId::parse("acme").unwrap(), &model_id)
        .await
        .unwrap();
    let header_end = data.iter().position(|&b| b == b'\n').unwrap();
    let whole =
        nomaly_core::service::chunks::score_chunk(&loaded, "id,c,a,b", &data[header_end + 1..])
            .unwrap();
    let mut joined = Vec::new();
    for i in 0..total {
        let part =
            BlobKey::parse(&format!("tenants/acme/batches/run-1/{id}/part-{i:05}.csv")).unwrap();
        joined.extend(
            e.services()
                .blobs
                .get_blob(&part)
                .await
                .unwrap()
                .expect("part"),
        );
    }
    assert_eq!(
        joined, whole.csv,
        "the parts are every row's score, in order"
    );
    assert_eq!(progress.anomalies, whole.anomalies as u64);
    assert!(
        progress.anomalies >= 7,
        "rows 50, 147, ... 532 are outliers"
    );

    // The API: the task with its chunks, the manifest with a URL per part.
    let (s, view) = e.get(&format!("/v1/tasks/{id}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(view["progress"], 100);
    assert_eq!(view["chunks"]["done"], total);
    assert_eq!(
        view["result"],
        format!("tenants/acme/batches/run-1/{id}/manifest.json")
    );
    let (s, manifest) = e.get(&format!("/v1/tasks/{id}/result"), &key).await;
    assert_eq!(s, StatusCode::OK, "{manifest}");
    assert_eq!(manifest["rows"], 600);
    assert_eq!(manifest["parts"].as_array().unwrap().len(), total as usize);
    assert!(manifest["parts"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with("http"));

    // The same output name again is another batch, in its own folder; another tenant
    // sees nothing.
    let second = submit(
        &e,
        &key,
        json!({"source": {"key": "tenants/acme/data/big.csv"}, "model_id": model_id, "output": "run-1"}),
    )
    .await;
    assert_ne!(second, id);
    let other = e.key("globex").await;
    let (s, _) = e.get(&format!("/v1/tasks/{id}/result"), &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A manifest that names another tenant's object (written by anything but this batch)
    // gets no URL for it: only the tenant's own parts are signed.
    let manifest_key =
        BlobKey::parse(&format!("tenants/acme/batches/run-1/{id}/manifest.json")).unwrap();
    let stored = e
        .services()
        .blobs
        .get_blob(&manifest_key)
        .await
        .unwrap()
        .unwrap();
    let mut tampered: Value = serde_json::from_slice(&stored).unwrap();
    let own = tampered["parts"][0].clone();
    tampered["parts"] = json!([
        "tenants/globex/uploads/secret.csv",
        "tenants/acme/../globex/uploads/secret.csv",
        "elsewhere/secret.csv",
        own,
    ]);
    e.services()
        .blobs
        .put_blob(&manifest_key, serde_json::to_vec(&tampered).unwrap())
        .await
        .unwrap();
    let (s, manifest) = e.get(&format!("/v1/tasks/{id}/result"), &key).await;
    assert_eq!(s, StatusCode::OK, "{manifest}");
    let signed: Vec<&str> = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    assert_eq!(signed, vec![own.as_str().unwrap()], "{manifest}");
    assert!(!manifest.to_string().contains("globex"), "{manifest}");
    // A task whose result names another tenant's manifest answers no manifest at all.
    let tenant = TenantId::parse("acme").unwrap();
    let mut task = e
        .services()
        .tasks
        .get_task(&tenant, &id)
        .await
        .unwrap()
        .unwrap();
    task.result = Some(format!("tenants/globex/batches/run-1/{id}/manifest.json"));
    let answer = nomaly_core::service::batch::result(e.services(), &task, 0).await;
    assert!(answer.is_err(), "{answer:?}");
}

#[tokio::test]
async fn refusals_store_nothing_and_name_the_problem() {
    let e = env_with(settings());
    let key = e.key("acme").await;
    let other = e.key("globex").await;
    let model_id = model(&e, &key).await;
    put(&e, "tenants/acme/data/x.csv", csv(50)).await;
    put(&e, "tenants/globex/data/x.csv", csv(50)).await;
    let ok_source = json!({"key": "tenants/acme/data/x.csv"});
    let cases: Vec<(&str, Value, u16)> = vec![
        (
            "another tenant's key",
            json!({"source": {"key": "tenants/globex/data/x.csv"}, "model_id": model_id, "output": "o"}),
            403,
        ),
        (
            "a key outside any tenant",
            json!({"source": {"key": "uploads/x.csv"}, "model_id": model_id, "output": "o"}),
            403,
        ),
        (
            "a key climbing out",
            json!({"source": {"key": "tenants/acme/../globex/data/x.csv"}, "model_id": model_id, "output": "o"}),
            403,
        ),
        (
            "a local file on a deployment without imports",
            json!({"source": {"file": "x.csv"}, "model_id": model_id, "output": "o"}),
            403,
        ),
        (
            "two sources",
            json!({"source": {"key": "tenants/acme/data/x.csv", "file": "x.csv"}, "model_id": model_id, "output": "o"}),
            400,
        ),
        (
            "no source",
            json!({"source": {}, "model_id": model_id, "output": "o"}),
            400,
        ),
        (
            "another tenant's dataset",
            json!({"source": {"dataset_id": nomaly_core::ids::DatasetId::new()}, "model_id": model_id, "output": "o"}),
            404,
        ),
        (
            "a missing object",
            json!({"source": {"key": "tenants/acme/data/none.csv"}, "model_id": model_id, "output": "o"}),
            404,
        ),
        (
            "an unknown model",
            json!({"source": ok_source, "model_id": ModelId::new(), "output": "o"}),
            404,
        ),
        (
            "an output that is a path",
            json!({"source": ok_source, "model_id": model_id, "output": "../o"}),
            400,
        ),
        (
            "an unknown field",
            json!({"source": ok_source, "model_id": model_id, "output": "o", "speed": 9}),
            400,
        ),
    ];
    for (what, body, status) in cases {
        let (s, _, answer) = e.post_batch(&key, body).await;
        assert_eq!(s.as_u16(), status, "{what}: {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {answer}"
        );
    }
    // Another tenant may not use acme's model; no key is 401.
    let (s, _, _) = e
        .post_batch(&other, json!({"source": {"key": "tenants/globex/data/x.csv"}, "model_id": model_id, "output": "o"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = e
        .post_batch(
            "",
            json!({"source": ok_source, "model_id": model_id, "output": "o"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        e.stack.queue.receive(10, 0).await.unwrap().len(),
        0,
        "nothing queued"
    );
}

#[tokio::test]
async fn a_bad_row_fails_the_task_naming_its_chunk_and_the_rest_stop() {
    let e = env_with(settings());
    let key = e.key("acme").await;
    let model_id = model(&e, &key).await;
    let mut data = String::from_utf8(csv(400)).unwrap();
    data = data.replace("row-200,", "row-200,oops,");
    put(&e, "tenants/acme/data/bad.csv", data.into_bytes()).await;
    let id = submit(
        &e,
        &key,
        json!({"source": {"key": "tenants/acme/data/bad.csv"}, "model_id": model_id, "output": "bad"}),
    )
    .await;
    e.drain().await;
    let mut handled = 0;
    for _ in 0..50 {
        let (n, failed) = e.batch_on(Lane::Chunks, 1).await;
        assert!(failed.is_empty(), "a bad row is not retried");
        if n == 0 {
            break;
        }
        handled += n;
    }
    let t = task(&e, "acme", &id).await;
    assert_eq!(t.status, TaskStatus::Failed);
    let error = t.error.unwrap();
    assert!(error.starts_with("chunk "), "{error}");
    assert!(error.contains("bytes "), "{error}");
    assert!(
        handled as u32 >= t.batch.unwrap().total,
        "every chunk was handled"
    );
    let manifest = BlobKey::parse(&format!("tenants/acme/batches/bad/{id}/manifest.json")).unwrap();
    assert!(e
        .services()
        .blobs
        .get_blob(&manifest)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_source_without_the_models_columns_fails_in_the_planner_before_any_chunk() {
    let e = env_with(settings());
    let key = e.key("acme").await;
    let model_id = model(&e, &key).await;
    let data = String::from_utf8(csv(300))
        .unwrap()
        .replacen("id,c,a,b", "id,z,a,b", 1);
    put(&e, "tenants/acme/data/other.csv", data.into_bytes()).await;
    let id = submit(
        &e,
        &key,
        json!({"source": {"key": "tenants/acme/data/other.csv"}, "model_id": model_id, "output": "other"}),
    )
    .await;
    e.drain().await;
    let t = task(&e, "acme", &id).await;
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(
        t.error
            .as_deref()
            .unwrap_or_default()
            .contains("no `c` column"),
        "{t:?}"
    );
    assert!(t.batch.is_none(), "nothing was planned");
    assert!(
        e.stack.chunks.receive(10, 0).await.unwrap().is_empty(),
        "no chunk was sent"
    );
}

#[tokio::test]
async fn a_chunk_whose_part_is_written_is_counted_from_its_part_not_scored_again() {
    let (e, id) = planned_batch().await;
    // As if a delivery wrote chunk 0's part and lost its count (the task kept changing
    // under it): the next delivery counts the part it finds.
    put(
        &e,
        &format!("tenants/acme/batches/x/{id}/part-00000.csv"),
        b"0.5,0\n7.5,1\n0.25,0\n".to_vec(),
    )
    .await;
    let d = loop {
        let got = e.stack.chunks.receive(1, 30).await.unwrap().remove(0);
        if got.job.body["index"] == 0 {
            break got;
        }
        e.stack
            .chunks
            .change_visibility(&got.receipt, 0)
            .await
            .unwrap();
    };
    let handled = nomaly_core::service::batch::handle_chunk(e.services(), &d, None).await;
    assert_eq!(handled, nomaly_core::service::tasks::Handled::Done);
    let progress = task(&e, "acme", &id).await.batch.expect("progress");
    assert_eq!(
        (progress.done, progress.rows, progress.anomalies),
        (1, 3, 1)
    );
}

#[tokio::test]
async fn a_planner_run_again_on_a_source_split_differently_fails_the_batch() {
    let (e, id) = planned_batch().await;
    let planned = task(&e, "acme", &id).await;
    assert!(planned.batch.is_some());
    // The object grows, and the planner's job arrives again (a lost worker's re-send).
    put(&e, "tenants/acme/data/x.csv", csv(400)).await;
    let job: nomaly_core::ports::Job =
        serde_json::from_value(planned.job.clone().expect("job")).expect("envelope");
    e.services().queue.send(&[job]).await.unwrap();
    e.drain().await;
    let t = task(&e, "acme", &id).await;
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(
        t.error
            .as_deref()
            .unwrap_or_default()
            .contains("the source changed"),
        "{t:?}"
    );
}

/// Blobs whose ranged reads fail (S3 down for reads), everything else as the store.
struct RangesDown(Arc<dyn BlobStore>);

#[async_trait]
impl BlobStore for RangesDown {
    async fn put_blob(&self, key: &BlobKey, bytes: Vec<u8>) -> StoreResult<()> {
        self.0.put_blob(key, bytes).await
    }
    async fn get_blob(&self, key: &BlobKey) -> StoreResult<Option<Vec<u8>>> {
        self.0.get_blob(key).await
    }
    async fn delete_blob(&self, key: &BlobKey) -> StoreResult<()> {
        self.0.delete_blob(key).await
    }
    async fn blob_size(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        self.0.blob_size(key).await
    }
    async fn get_blob_range(&self, _: &BlobKey, _: u64, _: u64) -> StoreResult<Option<Vec<u8>>> {
        Err(StoreError::backend(
            "read a range",
            std::io::Error::other("S3 is down"),
        ))
    }
}

#[tokio::test]
async fn a_chunk_failing_every_delivery_fails_the_task_on_the_last() {
    let (mut e, id) = planned_batch().await;
    e.services.blobs = Arc::new(RangesDown(e.services.blobs.clone()));
    // Deliveries 1 and 2 are retried and leave the task running; the third fails it.
    for delivery in 1..=3 {
        let (n, failed) = e.batch_on(Lane::Chunks, 1).await;
        assert_eq!((n, failed.len()), (1, 1), "delivery {delivery}");
        let t = task(&e, "acme", &id).await;
        let expected = if delivery < 3 {
            TaskStatus::Running
        } else {
            TaskStatus::Failed
        };
        assert_eq!(t.status, expected, "after delivery {delivery}");
    }
    let error = task(&e, "acme", &id).await.error.unwrap();
    assert!(error.starts_with("chunk 0 (bytes "), "{error}");
    assert!(error.contains("after 3 deliveries"), "{error}");
}

#[tokio::test]
async fn the_local_server_reads_files_under_its_imports_folder_only() {
    let dir = std::env::temp_dir().join(format!("nomaly-imports-{}", TaskId::new()));
    std::fs::create_dir_all(dir.join("acme/nested")).unwrap();
    std::fs::write(dir.join("acme/nested/data.csv"), csv(300)).unwrap();
    // Another tenant's file, and a link in acme's folder that leads to it.
    std::fs::create_dir_all(dir.join("globex")).unwrap();
    std::fs::write(dir.join("globex/secret.csv"), csv(10)).unwrap();
    std::os::unix::fs::symlink(dir.join("globex/secret.csv"), dir.join("acme/link.csv")).unwrap();
    let e = env_with(Settings {
        imports_dir: Some(dir.clone()),
        ..settings()
    });
    let key = e.key("acme").await;
    let model_id = model(&e, &key).await;
    for bad in [
        "../data.csv",
        "/etc/passwd",
        "nested/../../x",
        "nested//data.csv",
        "",
    ] {
        let (s, _, body) = e
            .post_batch(
                &key,
                json!({"source": {"file": bad}, "model_id": model_id, "output": "f"}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{bad}: {body}");
    }
    // A link out of the folder is refused; another tenant's file is not there at all.
    let (s, _, body) = e
        .post_batch(
            &key,
            json!({"source": {"file": "link.csv"}, "model_id": model_id, "output": "f"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.to_string().contains("secret"), "{body}");
    let (s, _, body) = e
        .post_batch(&key,
            json!({"source": {"file": "../globex/secret.csv"}, "model_id": model_id, "output": "f"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let id = submit(
        &e,
        &key,
        json!({"source": {"file": "nested/data.csv"}, "model_id": model_id, "output": "f"}),
    )
    .await;
    e.drain().await;
    while e.batch_on(Lane::Chunks, 10).await.0 > 0 {}
    let t = task(&e, "acme", &id).await;
    assert_eq!(t.status, TaskStatus::Completed, "{:?}", t.error);
    assert_eq!(t.batch.unwrap().rows, 300);
    let _ = std::fs::remove_dir_all(&dir);
}
