//! Faults injected through the ports: storage errors in the middle of a task's
//! transitions, a panicking job inside an SQS batch, a job that fails every time, and a
//! WebSocket connection that is gone. Each test drives the same handlers the Lambda
//! functions run, on the embedded stack, with one port wrapped by [`Faulty`].

use async_trait::async_trait;
use nomaly_core::domain::{Event, ModelRecord, Task, TaskStatus, TenantId};
use nomaly_core::ids::{EventId, ModelId, TaskId};
use nomaly_core::ports::{
    BlobKey, BlobStore, EventLog, JobQueue, ModelRegistry, Page, PageRequest, StoreError,
    StoreResult, TaskStore,
};
use nomaly_core::time::Timestamp;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::support::{env, rows, Env};

/// What an armed fault point does when reached.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// The call fails with a backend error (a throttled or unreachable store).
    Error,
    /// The call panics (a bug in the job's code path).
    Panic,
}

/// Fault points, each armed for a number of hits.
#[derive(Default)]
struct Faults {
    armed: Mutex<HashMap<&'static str, (u32, Mode)>>,
    tripped: Mutex<Vec<&'static str>>,
}

impl Faults {
    fn arm(&self, point: &'static str, times: u32, mode: Mode) {
        self.armed.lock().unwrap().insert(point, (times, mode));
    }

    fn disarm(&self) {
        self.armed.lock().unwrap().clear();
    }

    fn tripped(&self) -> usize {
        self.tripped.lock().unwrap().len()
    }

    fn check(&self, point: &'static str) -> StoreResult<()> {
        let mode = {
            let mut armed = self.armed.lock().unwrap();
            match armed.get_mut(point) {
                Some((n, mode)) if *n > 0 => {
                    *n -= 1;
                    *mode
                }
                _ => return Ok(()),
            }
        };
        self.tripped.lock().unwrap().push(point);
        match mode {
            Mode::Error => Err(StoreError::backend(
                "injected fault",
                std::io::Error::other(format!("{point} failed (injected)")),
            )),
            Mode::Panic => panic!("injected panic at {point}"),
        }
    }
}

/// The fault point of a task write, by the status written (a task finishes through the
/// event log's `append_with_task`, with the same point).
fn status_point(task: &Task) -> &'static str {
    match task.status {
        TaskStatus::Completed => "update_task:completed",
        TaskStatus::Failed => "update_task:failed",
        TaskStatus::Running => "update_task:running",
        _ => "update_task:other",
    }
}

/// The stack's task store, models, blobs and event log, each call passing a fault point
/// first (`update_task:<new status>`, `put_model`, `put_blob`, `append`).
struct Faulty {
    faults: Arc<Faults>,
    tasks: Arc<dyn TaskStore>,
    models: Arc<dyn ModelRegistry>,
    blobs: Arc<dyn BlobStore>,
    events: Arc<dyn EventLog>,
}

#[async_trait]
impl TaskStore for Faulty {
    async fn create_task(&self, task: &Task) -> StoreResult<()> {
        self.faults.check("create_task")?;
        self.tasks.create_task(task).await
    }
    async fn get_task(&self, tenant: &TenantId, id: &TaskId) -> StoreResult<Option<Task>> {
        self.tasks.get_task(tenant, id).await
    }
    async fn list_tasks(&self, tenant: &TenantId, page: &PageRequest) -> StoreResult<Page<Task>> {
        self.tasks.list_tasks(tenant, page).await
    }
    async fn update_task(&self, task: &Task) -> StoreResult<()> {
        self.faults.check(status_point(task))?;
        self.tasks.update_task(task).await
    }
    async fn stale_running(&self, before: Timestamp, limit: usize) -> StoreResult<Vec<Task>> {
        self.tasks.stale_running(before, limit).await
    }
    async fn count_running(&self, tenant: &TenantId, up_to: usize) -> StoreResult<usize> {
        self.tasks.count_running(tenant, up_to).await
    }
}

#[async_trait]
impl ModelRegistry for Faulty {
    async fn put_model(&self, model: &ModelRecord) -> StoreResult<()> {
        self.faults.check("put_model")?;
        self.models.put_model(model).await
    }
    async fn get_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<Option<ModelRecord>> {
        self.models.get_model(tenant, id).await
    }
    async fn list_models(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<ModelRecord>> {
        self.models.list_models(tenant, page).await
    }
    async fn delete_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<()> {
        self.models.delete_model(tenant, id).await
    }
}

#[async_trait]
impl BlobStore for Faulty {
    async fn put_blob(&self, key: &BlobKey, bytes: Vec<u8>) -> StoreResult<()> {
        self.faults.check("put_blob")?;
        self.blobs.put_blob(key, bytes).await
    }
    async fn get_blob(&self, key: &BlobKey) -> StoreResult<Option<Vec<u8>>> {
        self.blobs.get_blob(key).await
    }
    async fn delete_blob(&self, key: &BlobKey) -> StoreResult<()> {
        self.blobs.delete_blob(key).await
    }
    async fn blob_size(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        self.blobs.blob_size(key).await
    }
    async fn get_blob_range(
        &self,
        key: &BlobKey,
        start: u64,
        end: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.blobs.get_blob_range(key, start, end).await
    }
}

#[async_trait]
impl EventLog for Faulty {
    async fn append(&self, event: &Event) -> StoreResult<()> {
        self.faults.check("append")?;
        self.events.append(event).await
    }
    async fn append_with_task(&self, event: &Event, task: &Task) -> StoreResult<()> {
        self.faults.check(status_point(task))?;
        self.events.append_with_task(event, task).await
    }
    async fn events_after(
        &self,
        tenant: &TenantId,
        after: Option<&EventId>,
        limit: usize,
    ) -> StoreResult<Page<Event>> {
        self.events.events_after(tenant, after, limit).await
    }
}

/// An embedded stack whose task store, models, blobs and event log pass through faults.
fn faulty_env() -> (Env, Arc<Faults>) {
    let mut e = env();
    let faults = Arc::new(Faults::default());
    let s = e.stack.services.clone();
    let faulty = Arc::new(Faulty {
        faults: faults.clone(),
        tasks: s.tasks,
        models: s.models,
        blobs: s.blobs,
        events: s.events,
    });
    e.services.tasks = faulty.clone();
    e.services.models = faulty.clone();
    e.services.blobs = faulty.clone();
    e.services.events = faulty;
    (e, faults)
}

async fn task(e: &Env, tenant: &TenantId, id: &TaskId) -> Task {
    e.stack
        .services
        .tasks
        .get_task(tenant, id)
        .await
        .unwrap()
        .unwrap()
}

async fn models(e: &Env, tenant: &TenantId) -> Vec<ModelRecord> {
    e.stack
        .services
        .models
        .list_models(tenant, &PageRequest::default())
        .await
        .unwrap()
        .items
}

async fn events_of(e: &Env, tenant: &str, kind: &str, task: &TaskId) -> usize {
    e.events(tenant)
        .await
        .iter()
        .filter(|ev| ev.kind.as_str() == kind && ev.payload["task_id"] == json!(task))
        .count()
}

#[tokio::test]
async fn a_storage_error_in_any_step_of_finishing_a_task_is_retried_and_leaves_no_half_state() {
    for point in ["put_blob", "put_model", "update_task:completed"] {
        let (e, faults) = faulty_env();
        let key = e.key("acme").await;
        let t = TenantId::parse("acme").unwrap();
        let id = e.train(&key, 40).await;
        faults.arm(point, 1, Mode::Error);
        let (n, failed) = e.batch(10).await;
        assert_eq!((n, failed.len()), (1, 1), "{point}: the delivery fails");
        assert_eq!(faults.tripped(), 1, "{point} was reached");

        // What a reader sees after the failure: the task handed back, not finished.
        let after = task(&e, &t, &id).await;
        assert_eq!(after.status, TaskStatus::Queued, "{point}: handed back");
        assert!(after.result.is_none(), "{point}");
        assert_eq!(events_of(&e, "acme", "task.completed", &id).await, 0);
        // A model record, if one was stored, is whole: its artifact loads.
        for m in models(&e, &t).await {
            let (s, _, _) = e
                .request("GET", &format!("/v1/models/{}/artifact", m.id))
                .key(&key)
                .send()
                .await;
            assert_eq!(s.as_u16(), 200, "{point}: a listed model has its artifact");
        }

        // The redelivery completes it: once, with one model.
        let (n, failed) = e.batch(10).await;
        assert_eq!((n, failed.len()), (1, 0), "{point}: the retry succeeds");
        let done = task(&e, &t, &id).await;
        assert_eq!(done.status, TaskStatus::Completed, "{point}");
        assert_eq!(done.attempts, 2, "{point}");
        assert_eq!(models(&e, &t).await.len(), 1, "{point}: one model version");
        assert_eq!(
            done.result.as_deref(),
            Some(models(&e, &t).await[0].id.as_str())
        );
        assert_eq!(
            events_of(&e, "acme", "task.completed", &id).await,
            1,
            "{point}"
        );
        assert_eq!(e.batch(10).await.0, 0, "{point}: nothing left queued");
    }
}

#[tokio::test]
async fn a_panicking_job_fails_only_its_own_item_of_the_batch() {
    let (e, faults) = faulty_env();
    let key = e.key("acme").await;
    let t = TenantId::parse("acme").unwrap();
    let (a, b) = (e.train(&key, 40).await, e.train(&key, 40).await);
    faults.arm("put_blob", 1, Mode::Panic);
    let (n, failed) = e.batch(10).await;
    assert_eq!((n, failed.len()), (2, 1), "one item of two fails");
    let statuses = [task(&e, &t, &a).await.status, task(&e, &t, &b).await.status];
    assert!(
        statuses.contains(&TaskStatus::Completed) && statuses.contains(&TaskStatus::Queued),
        "one completed, the panicked one handed back at once: {statuses:?}"
    );
    let (n, failed) = e.batch(10).await;
    assert_eq!((n, failed.len()), (1, 0), "the redelivered item completes");
    for id in [&a, &b] {
        assert_eq!(task(&e, &t, id).await.status, TaskStatus::Completed);
        assert_eq!(events_of(&e, "acme", "task.completed", id).await, 1);
    }
    assert_eq!(models(&e, &t).await.len(), 2, "one model per task");
}

#[tokio::test]
async fn a_poison_job_is_dead_lettered_and_its_task_failed_once() {
    // A job whose storage always fails, and one whose code always panics.
    for (mode, expected) in [
        (Mode::Error, "put_blob failed (injected)"),
        (Mode::Panic, "the handler panicked"),
    ] {
        let (e, faults) = faulty_env();
        let key = e.key("acme").await;
        let t = TenantId::parse("acme").unwrap();
        let id = e.train(&key, 40).await;
        faults.arm("put_blob", u32::MAX, mode);
        let mut deliveries = 0;
        for _ in 0..10 {
            let (n, failed) = e.batch(10).await;
            if n == 0 {
                break;
            }
            assert_eq!(failed.len(), n);
            deliveries += n;
        }
        let max = e.services().settings.max_receives as usize;
        assert_eq!(
            deliveries, max,
            "{mode:?}: received {max} times, then no more"
        );
        let failed = task(&e, &t, &id).await;
        assert_eq!(
            failed.status,
            TaskStatus::Failed,
            "{mode:?}: not left queued"
        );
        let error = failed.error.unwrap_or_default();
        assert!(
            error.contains(expected) && error.contains("after 3 deliveries"),
            "{mode:?}: the last error is kept: {error}"
        );
        assert_eq!(events_of(&e, "acme", "task.failed", &id).await, 1);
        assert_eq!(events_of(&e, "acme", "task.completed", &id).await, 0);
        let dead = e.stack.queue.dead_letters(10).await.unwrap();
        assert_eq!(
            dead.len(),
            1,
            "{mode:?}: the job is in the dead-letter queue"
        );
        assert_eq!(dead[0].body["task_id"], json!(id));
        faults.disarm();
        assert_eq!(e.batch(10).await.0, 0, "{mode:?}: nothing retries it");
        assert!(models(&e, &t).await.is_empty());
    }
}

#[tokio::test]
async fn a_gone_connection_is_forgotten_and_the_others_still_get_the_event() {
    let e = env();
    let key = e.key("acme").await;
    let mut inboxes = Vec::new();
    for conn in ["c1", "c2", "c3"] {
        inboxes.push(e.listen(conn, &key).await);
    }
    // c2's client went away without a $disconnect: pushes to it are 410 Gone.
    drop(inboxes.remove(1));
    let id = e.train(&key, 40).await;
    e.drain().await;
    e.stream("acme", None).await;
    for inbox in &mut inboxes {
        let mut kinds = Vec::new();
        while let Ok(m) = inbox.try_recv() {
            let v: Value = serde_json::from_slice(&m).unwrap();
            if v["payload"]["task_id"] == json!(id) {
                kinds.push(v["type"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("task.completed"),
            "{kinds:?}"
        );
    }
    let c = e.services().connections.as_ref();
    assert!(
        c.get_connection("c2").await.unwrap().is_none(),
        "the gone one is forgotten"
    );
    assert!(c.get_connection("c1").await.unwrap().is_some());
    assert!(c.get_connection("c3").await.unwrap().is_some());
}

#[tokio::test]
async fn a_panicking_request_gets_a_500_problem_and_the_next_one_works() {
    let (e, faults) = faulty_env();
    let key = e.key("acme").await;
    faults.arm("create_task", 1, Mode::Panic);
    let (s, h, body) = e
        .post_models(&key, json!({"algorithm": "zscore", "rows": rows(40)}))
        .await;
    assert_eq!(s.as_u16(), 500, "{body}");
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(body["type"], "https://nomaly.dev/problems/internal");
    assert!(body["detail"].as_str().unwrap().contains("req_"), "{body}");
    e.train(&key, 40).await;
    assert_eq!(faults.tripped(), 1);
}
