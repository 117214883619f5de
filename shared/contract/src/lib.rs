//! The contract suite: what every implementation of nomaly's ports must do, written once
//! and run against each adapter set (embedded in `shared/embedded/tests`, AWS on moto in
//! `shared/aws/tests`). Each function panics with a message saying what broke.
//!
//! Every check makes its own tenants with random names, so checks can share a backend.

mod alerts;
pub mod webhook_receiver;

pub use alerts::{alert_rules_and_deliveries, feedback_is_kept_per_tenant};
use nomaly_core::claim_check;
use nomaly_core::domain::{
    ApiKey, Channel, Connection, EntitySplit, EntityWritten, Event, EventType, ModelRecord,
    RecentPoint, Stream, StreamEntity, StreamState, Task, TaskKind, TaskStatus, TenantId,
};
use nomaly_core::ids::{JobId, ModelId, TaskId};
use nomaly_core::ports::{
    BlobKey, BlobStore, Claim, ConnectionRegistry, EventLog, ExpirySweeper, IdempotencyStore, Job,
    JobQueue, KeyStore, ModelRegistry, PageRequest, RateLimiter, ResultCache, StoreError,
    StreamStore, TaskStore,
};
use nomaly_core::service::streams::{self, CreateStream, Point};
use nomaly_core::service::Services;
use nomaly_core::time::Timestamp;
use nomaly_detect::stream::{StreamDetector, StreamSpec};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A tenant with a random name, unique to one check.
pub fn tenant() -> TenantId {
    let id = TaskId::new();
    TenantId::parse(&format!("t-{}", id.as_str()[4..].to_ascii_lowercase()))
        .expect("valid tenant name")
}

fn model(tenant: &TenantId) -> ModelRecord {
    let id = ModelId::new();
    ModelRecord {
        artifact_key: format!("tenants/{tenant}/models/{id}.json"),
        id,
        tenant: tenant.clone(),
        algorithm: "iforest".into(),
        params: serde_json::json!({"n_estimators": 100}),
        feature_names: vec!["a".into(), "b".into()],
        training: serde_json::json!({"rows": 10}),
        version: 1,
        created_at: Timestamp::now(),
    }
}

/// Tasks: create once, read back, compare-and-set updates, terminal states stay put.
pub async fn task_store_compare_and_set(tasks: &dyn TaskStore) {
    let t = tenant();
    let task = Task::new(t.clone(), TaskKind::Train, "c-1");
    tasks.create_task(&task).await.expect("create a task");
    assert!(
        matches!(
            tasks.create_task(&task).await,
            Err(StoreError::AlreadyExists(_))
        ),
        "creating the same task twice must fail"
    );
    assert_eq!(
        tasks.get_task(&t, &task.id).await.expect("get"),
        Some(task.clone())
    );
    let running = task
        .transition(TaskStatus::Running)
        .expect("queued -> running");
    tasks
        .update_task(&running)
        .await
        .expect("first update wins");
    assert!(
        matches!(
            tasks.update_task(&running).await,
            Err(StoreError::Conflict(_))
        ),
        "replaying an update must conflict"
    );
    let done = running
        .transition(TaskStatus::Completed)
        .expect("running -> completed");
    tasks.update_task(&done).await.expect("complete");
    // A stale writer holding the running version cannot fail the completed task.
    let stale = running
        .transition(TaskStatus::Failed)
        .expect("running -> failed");
    assert!(matches!(
        tasks.update_task(&stale).await,
        Err(StoreError::Conflict(_))
    ));
    let stored = tasks
        .get_task(&t, &task.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored.status, TaskStatus::Completed);
    assert_eq!(stored.version, done.version);
    let ghost = Task::new(t.clone(), TaskKind::Train, "c-2")
        .transition(TaskStatus::Running)
        .expect("transition");
    assert!(matches!(
        tasks.update_task(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Two workers race to finish one task from the same version: exactly one wins, and
/// the stored task is the winner's.
pub async fn racing_workers_finish_a_task_once(tasks: &dyn TaskStore) {
    let t = tenant();
    for round in 0..10 {
        let task = Task::new(t.clone(), TaskKind::Detect, format!("race-{round}"));
        tasks.create_task(&task).await.expect("create");
        let running = task.transition(TaskStatus::Running).expect("transition");
        tasks.update_task(&running).await.expect("start");
        let mut a = running
            .transition(TaskStatus::Completed)
            .expect("transition");
        a.result = Some("worker-a".into());
        let mut b = running
            .transition(TaskStatus::Completed)
            .expect("transition");
        b.result = Some("worker-b".into());
        let (ra, rb) = tokio::join!(tasks.update_task(&a), tasks.update_task(&b));
        let wins = [ra.is_ok(), rb.is_ok()];
        assert_eq!(
            wins.iter().filter(|w| **w).count(),
            1,
            "round {round}: {ra:?} / {rb:?}"
        );
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(
            matches!(loser, Err(StoreError::Conflict(_))),
            "the loser conflicts"
        );
        let stored = tasks
            .get_task(&t, &task.id)
            .await
            .expect("get")
            .expect("present");
        let winner = if wins[0] { "worker-a" } else { "worker-b" };
        assert_eq!(stored.result.as_deref(), Some(winner));
    }
}

/// Listings page past one page without losing or repeating items, newest first; a
/// forged token is refused.
pub async fn listings_page_past_one_page(tasks: &dyn TaskStore, models: &dyn ModelRegistry) {
    let t = tenant();
    let mut made = Vec::new();
    for i in 0..23 {
        let task = Task::new(t.clone(), TaskKind::Train, format!("p-{i}"));
        tasks.create_task(&task).await.expect("create");
        made.push(task.id);
        models.put_model(&model(&t)).await.expect("put model");
    }
    let mut seen = Vec::new();
    let mut page = PageRequest {
        limit: 5,
        token: None,
    };
    let mut pages = 0;
    loop {
        let p = tasks.list_tasks(&t, &page).await.expect("list");
        assert!(p.items.len() <= 5);
        seen.extend(p.items.iter().map(|t| t.id.clone()));
        pages += 1;
        match p.next_token {
            Some(token) => page.token = Some(token),
            None => break,
        }
    }
    assert!(pages >= 5, "23 items in pages of 5 took {pages} pages");
    assert_eq!(seen.len(), 23, "every task listed once");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        23,
        "no task listed twice"
    );
    made.reverse();
    assert_eq!(seen, made, "newest first");
    let mut count = 0;
    let mut page = PageRequest {
        limit: 7,
        token: None,
    };
    loop {
        let p = models.list_models(&t, &page).await.expect("list models");
        count += p.items.len();
        match p.next_token {
            Some(token) => page.token = Some(token),
            None => break,
        }
    }
    assert_eq!(count, 23);
    let forged = PageRequest {
        limit: 5,
        token: Some("not-a-token".into()),
    };
    assert!(matches!(
        tasks.list_tasks(&t, &forged).await,
        Err(StoreError::BadPageToken)
    ));
}

/// Tenant A can neither read nor list nor change tenant B's records.
pub async fn tenants_are_kept_apart(
    tasks: &dyn TaskStore,
    models: &dyn ModelRegistry,
    events: &dyn EventLog,
    keys: &dyn KeyStore,
) {
    let (a, b) = (tenant(), tenant());
    let task = Task::new(b.clone(), TaskKind::Train, "b");
    tasks.create_task(&task).await.expect("create");
    let m = model(&b);
    models.put_model(&m).await.expect("put model");
    events
        .append(&Event::new(
            b.clone(),
            EventType::TaskCompleted,
            "b",
            serde_json::json!({}),
        ))
        .await
        .expect("append");
    let key = ApiKey::issue(b.clone()).record;
    keys.put_key(&key).await.expect("put key");

    assert_eq!(tasks.get_task(&a, &task.id).await.expect("get"), None);
    assert!(tasks
        .list_tasks(&a, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());
    let mut forged = task.transition(TaskStatus::Running).expect("transition");
    forged.tenant = a.clone();
    assert!(
        tasks.update_task(&forged).await.is_err(),
        "A cannot update B's task"
    );
    assert_eq!(
        tasks
            .get_task(&b, &task.id)
            .await
            .expect("get")
            .map(|t| t.status),
        Some(TaskStatus::Queued),
        "B's task is untouched"
    );
    assert_eq!(models.get_model(&a, &m.id).await.expect("get"), None);
    assert!(models
        .list_models(&a, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());
    assert!(matches!(
        models.delete_model(&a, &m.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        models.get_model(&b, &m.id).await.expect("get").is_some(),
        "B's model survives"
    );
    assert!(events
        .events_after(&a, None, 100)
        .await
        .expect("events")
        .items
        .is_empty());
    assert!(keys.list_keys(&a).await.expect("keys").is_empty());
    assert!(matches!(
        keys.revoke_key(&a, &key.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(keys
        .get_key(&key.id)
        .await
        .expect("get key")
        .expect("present")
        .revoked_at
        .is_none());
}

/// Events come back oldest first, after a given id, across pages; appending an id twice
/// stores it once.
pub async fn events_replay_after(events: &dyn EventLog) {
    let t = tenant();
    let mut ids = Vec::new();
    for i in 0..12 {
        let e = Event::new(
            t.clone(),
            EventType::TaskProgress,
            "c",
            serde_json::json!({"progress": i}),
        );
        events.append(&e).await.expect("append");
        ids.push(e.event_id.clone());
        if i == 0 {
            assert!(matches!(
                events.append(&e).await,
                Err(StoreError::AlreadyExists(_))
            ));
        }
    }
    let all = events.events_after(&t, None, 100).await.expect("all");
    assert_eq!(
        all.items
            .iter()
            .map(|e| e.event_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    let later = events
        .events_after(&t, Some(&ids[4]), 100)
        .await
        .expect("after");
    assert_eq!(later.items.len(), 7);
    assert_eq!(later.items[0].event_id, ids[5]);
    let first = events.events_after(&t, None, 5).await.expect("page");
    assert_eq!(first.items.len(), 5);
    assert!(first.next_token.is_some());
}

fn job(tenant: &TenantId, kind: &str, body: serde_json::Value) -> Job {
    Job {
        job_id: JobId::new(),
        tenant: tenant.clone(),
        kind: kind.into(),
        correlation_id: "c".into(),
        body,
    }
}

/// At-least-once delivery: a received job is hidden, comes back after its visibility
/// timeout with a higher receive count, comes back at once when its visibility is set to
/// 0, and is gone once deleted; a receipt from an earlier delivery is accepted.
pub async fn queue_redelivers_after_visibility_timeout(queue: &dyn JobQueue) {
    let t = tenant();
    let sent = job(&t, "train", serde_json::json!({"n": 1}));
    queue.send(std::slice::from_ref(&sent)).await.expect("send");
    let first = receive_job(queue, &sent.job_id, 1).await;
    assert_eq!(first.receive_count, 1);
    let hidden = queue.receive(10, 1).await.expect("receive");
    assert!(
        hidden.iter().all(|d| d.job.job_id != sent.job_id),
        "hidden while in flight"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = receive_job(queue, &sent.job_id, 30).await;
    assert_eq!(second.receive_count, 2, "redelivered with a higher count");
    assert_eq!(second.job, sent);
    queue
        .change_visibility(&second.receipt, 0)
        .await
        .expect("make visible now");
    let third = receive_job(queue, &sent.job_id, 30).await;
    assert_eq!(third.receive_count, 3, "visible again at once");
    // SQS accepts a receipt from an earlier delivery ("the message might not be deleted"),
    // so the port only promises no error; the current receipt deletes for good.
    queue
        .delete(&first.receipt)
        .await
        .expect("an old receipt is accepted");
    queue.delete(&third.receipt).await.expect("delete");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = queue.receive(10, 1).await.expect("receive");
    assert!(
        after.iter().all(|d| d.job.job_id != sent.job_id),
        "deleted for good"
    );
}

/// Receives until `id` arrives (other checks' jobs may share the queue: they are made
/// visible again at once).
async fn receive_job(
    queue: &dyn JobQueue,
    id: &JobId,
    visibility: u32,
) -> nomaly_core::ports::Delivery {
    for _ in 0..50 {
        for d in queue.receive(10, visibility).await.expect("receive") {
            if &d.job.job_id == id {
                return d;
            }
            queue.change_visibility(&d.receipt, 0).await.ok();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} was not delivered");
}

/// A job sent for later stays hidden for its delay, then is delivered as a new message
/// (its first receive).
pub async fn queue_delays_a_job_sent_for_later(queue: &dyn JobQueue) {
    let t = tenant();
    let later = job(&t, "train", serde_json::json!({"later": true}));
    queue
        .send_after(std::slice::from_ref(&later), 2)
        .await
        .expect("send for later");
    let early = queue.receive(10, 1).await.expect("receive");
    assert!(
        early.iter().all(|d| d.job.job_id != later.job_id),
        "hidden during its delay"
    );
    for d in &early {
        queue.change_visibility(&d.receipt, 0).await.ok();
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let d = receive_job(queue, &later.job_id, 30).await;
    assert_eq!(d.receive_count, 1);
    assert_eq!(d.job, later);
    queue.delete(&d.receipt).await.expect("delete");
}

/// A job received more than the maximum is dead-lettered and never delivered again.
pub async fn queue_dead_letters_after_max_receives(queue: &dyn JobQueue, max_receives: u32) {
    let t = tenant();
    let poison = job(&t, "poison", serde_json::json!({}));
    queue
        .send(std::slice::from_ref(&poison))
        .await
        .expect("send");
    for n in 1..=max_receives {
        let d = receive_job(queue, &poison.job_id, 1).await;
        assert_eq!(d.receive_count, n);
        queue
            .change_visibility(&d.receipt, 0)
            .await
            .expect("give it back");
    }
    let mut dead = false;
    for _ in 0..50 {
        let delivered = queue.receive(10, 1).await.expect("receive");
        assert!(
            delivered.iter().all(|d| d.job.job_id != poison.job_id),
            "delivered after {max_receives} receives"
        );
        for d in &delivered {
            queue.change_visibility(&d.receipt, 0).await.ok();
        }
        if queue
            .dead_letters(10)
            .await
            .expect("dead letters")
            .iter()
            .any(|j| j.job_id == poison.job_id)
        {
            dead = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dead, "the poison job is in the dead-letter queue");
}

/// A job body over SQS's 256 KiB travels through the blob store and comes back whole.
pub async fn claim_check_carries_large_bodies(queue: &dyn JobQueue, blobs: &dyn BlobStore) {
    let t = tenant();
    let rows: Vec<Vec<f64>> = (0..20_000)
        .map(|i| vec![i as f64 * 0.5, 1.0, 2.0])
        .collect();
    let big = job(&t, "detect", serde_json::json!({ "rows": rows }));
    assert!(serde_json::to_vec(&big.body).expect("encode").len() > 256 * 1024);
    let small = claim_check::check_in(&big, blobs).await.expect("check in");
    assert!(serde_json::to_vec(&small).expect("encode").len() < 4 * 1024);
    queue
        .send(std::slice::from_ref(&small))
        .await
        .expect("send");
    let d = receive_job(queue, &big.job_id, 30).await;
    let back = claim_check::check_out(&d.job, blobs)
        .await
        .expect("check out");
    assert_eq!(back, big);
    queue.delete(&d.receipt).await.expect("delete");
    // A reference into another tenant's folder is refused.
    let mut stolen = small.clone();
    stolen.tenant = tenant();
    assert!(claim_check::check_out(&stolen, blobs).await.is_err());
    let little = job(&t, "detect", serde_json::json!({"rows": [[1.0]]}));
    assert_eq!(
        claim_check::check_in(&little, blobs).await.expect("small"),
        little
    );
}

/// Blobs: put, get back, replace, delete.
pub async fn blobs_round_trip(blobs: &dyn BlobStore) {
    let t = tenant();
    let key = BlobKey::for_tenant(&t, &["datasets", "d.csv"]).expect("key");
    assert_eq!(blobs.get_blob(&key).await.expect("get"), None);
    blobs
        .put_blob(&key, b"a,b\n1,2\n".to_vec())
        .await
        .expect("put");
    blobs
        .put_blob(&key, b"a,b\n3,4\n".to_vec())
        .await
        .expect("replace");
    assert_eq!(
        blobs.get_blob(&key).await.expect("get").as_deref(),
        Some(&b"a,b\n3,4\n"[..])
    );
    blobs.delete_blob(&key).await.expect("delete");
    assert_eq!(blobs.get_blob(&key).await.expect("get"), None);
    blobs
        .delete_blob(&key)
        .await
        .expect("deleting twice is fine");
}

/// Blobs read by size and byte range, never whole: ranges cut short at the end, empty
/// past it, and `None` for a missing object.
pub async fn blobs_read_by_range(blobs: &dyn BlobStore) {
    let t = tenant();
    let key = BlobKey::for_tenant(&t, &["imports", "big.csv"]).expect("key");
    assert_eq!(blobs.blob_size(&key).await.expect("size"), None);
    assert_eq!(
        blobs.get_blob_range(&key, 0, 10).await.expect("range"),
        None
    );
    let bytes: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    blobs.put_blob(&key, bytes.clone()).await.expect("put");
    assert_eq!(blobs.blob_size(&key).await.expect("size"), Some(100_000));
    for (start, end) in [(0, 1), (0, 100_000), (12_345, 67_890), (99_990, 100_000)] {
        assert_eq!(
            blobs
                .get_blob_range(&key, start, end)
                .await
                .expect("range")
                .as_deref(),
            Some(&bytes[start as usize..end as usize]),
            "{start}..{end}"
        );
    }
    assert_eq!(
        blobs
            .get_blob_range(&key, 99_990, 200_000)
            .await
            .expect("range")
            .as_deref(),
        Some(&bytes[99_990..]),
        "a range past the end is cut short"
    );
    for (start, end) in [(100_000, 100_010), (150_000, 160_000), (5, 5)] {
        assert_eq!(
            blobs.get_blob_range(&key, start, end).await.expect("range"),
            Some(Vec::new()),
            "{start}..{end} is empty"
        );
    }
    blobs.delete_blob(&key).await.expect("delete");
}

/// Keys: stored hashed, found by id, revoked at once.
pub async fn keys_revoke_at_once(keys: &dyn KeyStore) {
    let t = tenant();
    let issued = ApiKey::issue(t.clone());
    keys.put_key(&issued.record).await.expect("put");
    let (id, secret) = ApiKey::split(&issued.plaintext).expect("split");
    let stored = keys.get_key(&id).await.expect("get").expect("present");
    assert!(stored.accepts(secret));
    keys.revoke_key(&t, &id).await.expect("revoke");
    let stored = keys.get_key(&id).await.expect("get").expect("present");
    assert!(!stored.accepts(secret), "a revoked key opens nothing");
    assert_eq!(keys.list_keys(&t).await.expect("list").len(), 1);
}

/// Connections: stored, listed per tenant, forgotten; expired ones are not returned.
pub async fn connections_register_and_expire(connections: &dyn ConnectionRegistry) {
    let t = tenant();
    let live = Connection {
        id: format!("conn-{}", JobId::new()),
        tenant: t.clone(),
        key_id: None,
        subscriptions: vec![Channel::Tenant],
        expires_at: Timestamp::now().plus_seconds(600),
    };
    let expired = Connection {
        id: format!("conn-{}", JobId::new()),
        expires_at: Timestamp::now().plus_seconds(-1),
        ..live.clone()
    };
    connections.put_connection(&live).await.expect("put");
    connections.put_connection(&expired).await.expect("put");
    assert_eq!(
        connections.get_connection(&live.id).await.expect("get"),
        Some(live.clone())
    );
    assert_eq!(
        connections.get_connection(&expired.id).await.expect("get"),
        None,
        "expired"
    );
    let listed = connections.tenant_connections(&t).await.expect("list");
    assert_eq!(listed, vec![live.clone()]);
    connections
        .delete_connection(&live.id)
        .await
        .expect("delete");
    assert_eq!(
        connections.get_connection(&live.id).await.expect("get"),
        None
    );
    assert!(connections
        .tenant_connections(&tenant())
        .await
        .expect("list")
        .is_empty());
}

/// Idempotency: one `New` among concurrent claims, then the stored response.
pub async fn idempotency_returns_the_first_response(store: &dyn IdempotencyStore) {
    let t = tenant();
    let (a, b) = tokio::join!(store.claim(&t, "k1", 60), store.claim(&t, "k1", 60));
    let claims = [a.expect("claim"), b.expect("claim")];
    assert_eq!(
        claims.iter().filter(|c| **c == Claim::New).count(),
        1,
        "{claims:?}"
    );
    assert!(claims.contains(&Claim::InProgress));
    store
        .complete(&t, "k1", b"{\"task\":1}", 60)
        .await
        .expect("complete");
    assert_eq!(
        store.claim(&t, "k1", 60).await.expect("claim"),
        Claim::Done(b"{\"task\":1}".to_vec())
    );
    assert_eq!(
        store.claim(&tenant(), "k1", 60).await.expect("claim"),
        Claim::New,
        "keys are per tenant"
    );
    assert_eq!(store.claim(&t, "k2", 60).await.expect("claim"), Claim::New);
    store.release(&t, "k2").await.expect("release");
    assert_eq!(
        store.claim(&t, "k2", 60).await.expect("claim"),
        Claim::New,
        "a released key can be claimed again"
    );
}

/// Running tasks that stopped changing are listed for the scheduler; tasks that are
/// queued, finished or recently changed are not.
pub async fn stale_running_tasks_are_found(tasks: &dyn TaskStore) {
    let t = tenant();
    let (to_run, queued, to_finish) = (
        Task::new(t.clone(), TaskKind::Train, "c"),
        Task::new(t.clone(), TaskKind::Train, "c"),
        Task::new(t.clone(), TaskKind::Train, "c"),
    );
    for task in [&to_run, &queued, &to_finish] {
        tasks.create_task(task).await.expect("create");
    }
    let running = to_run.transition(TaskStatus::Running).expect("start");
    tasks.update_task(&running).await.expect("start");
    let started = to_finish.transition(TaskStatus::Running).expect("start");
    tasks.update_task(&started).await.expect("start");
    let finished = started.transition(TaskStatus::Completed).expect("finish");
    tasks.update_task(&finished).await.expect("finish");
    let ours = |found: Vec<Task>| -> Vec<TaskId> {
        found
            .into_iter()
            .filter(|x| x.tenant == t)
            .map(|x| x.id)
            .collect()
    };
    let later = running.updated_at.plus_seconds(1);
    assert_eq!(
        ours(tasks.stale_running(later, 1000).await.expect("list")),
        vec![running.id.clone()],
        "only the running task is stale"
    );
    assert!(
        ours(
            tasks
                .stale_running(running.updated_at, 1000)
                .await
                .expect("list")
        )
        .is_empty(),
        "a task changed at the cut-off is not stale yet"
    );
    let progressed = running.with_progress(50).expect("progress");
    tasks.update_task(&progressed).await.expect("progress");
    let before_progress = running.updated_at.plus_seconds(-1);
    assert!(ours(
        tasks
            .stale_running(before_progress, 1000)
            .await
            .expect("list")
    )
    .is_empty());
}

/// A tenant's running tasks are counted (up to a cap), not its queued or finished ones,
/// and never another tenant's. The count may come from an index that lags a write, so it
/// is read until it settles.
pub async fn running_tasks_are_counted_per_tenant(tasks: &dyn TaskStore) {
    let (t, other) = (tenant(), tenant());
    let mut running = Vec::new();
    for _ in 0..3 {
        let task = Task::new(t.clone(), TaskKind::Train, "c");
        tasks.create_task(&task).await.expect("create");
        let started = task.transition(TaskStatus::Running).expect("start");
        tasks.update_task(&started).await.expect("start");
        running.push(started);
    }
    tasks
        .create_task(&Task::new(t.clone(), TaskKind::Train, "c"))
        .await
        .expect("a queued task");
    let done = running[0]
        .transition(TaskStatus::Completed)
        .expect("finish");
    for _ in 0..4 {
        let task = Task::new(other.clone(), TaskKind::Train, "c");
        tasks.create_task(&task).await.expect("create");
        let started = task.transition(TaskStatus::Running).expect("start");
        tasks.update_task(&started).await.expect("start");
    }
    let settle = |expected: usize, up_to: usize, tenant: TenantId| async move {
        let mut seen = usize::MAX;
        for _ in 0..50 {
            seen = tasks.count_running(&tenant, up_to).await.expect("count");
            if seen == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("counted {seen} running tasks of {tenant}, expected {expected} (up to {up_to})");
    };
    settle(3, 100, t.clone()).await;
    settle(2, 2, t.clone()).await;
    settle(4, 100, other.clone()).await;
    settle(0, 100, tenant()).await;
    tasks.update_task(&done).await.expect("finish one");
    settle(2, 100, t.clone()).await;
}

/// The sweeper deletes expired connections, cache entries and idempotency records.
pub async fn sweeping_deletes_expired_records(
    sweeper: &dyn ExpirySweeper,
    cache: &dyn ResultCache,
    connections: &dyn ConnectionRegistry,
) {
    let t = tenant();
    cache.put_cached(&t, "sweep", b"v", 1).await.expect("put");
    let conn = Connection {
        id: format!("sweep-{}", TaskId::new()),
        tenant: t.clone(),
        key_id: None,
        subscriptions: vec![Channel::Tenant],
        expires_at: Timestamp::now().plus_seconds(1),
    };
    connections.put_connection(&conn).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let deleted = sweeper.sweep_expired(100_000).await.expect("sweep");
    assert!(deleted >= 2, "swept {deleted}, expected at least our two");
    assert_eq!(
        sweeper.sweep_expired(100_000).await.expect("sweep again"),
        0
    );
}

/// The cache returns what was put, per tenant.
pub async fn cache_round_trips(cache: &dyn ResultCache) {
    let t = tenant();
    assert_eq!(cache.get_cached(&t, "m:abc").await.expect("get"), None);
    cache
        .put_cached(&t, "m:abc", b"scores", 60)
        .await
        .expect("put");
    assert_eq!(
        cache.get_cached(&t, "m:abc").await.expect("get").as_deref(),
        Some(&b"scores"[..])
    );
    assert_eq!(
        cache.get_cached(&tenant(), "m:abc").await.expect("get"),
        None
    );
}

/// Cached results and idempotency records stop counting once their time to live has
/// passed, whether or not the backend has deleted them yet (DynamoDB's TTL deletion lags
/// by up to days, and moto never deletes: reads check the expiry themselves).
pub async fn expired_entries_are_not_returned(
    cache: &dyn ResultCache,
    idempotency: &dyn IdempotencyStore,
) {
    let t = tenant();
    cache.put_cached(&t, "short", b"v", 1).await.expect("put");
    idempotency.claim(&t, "short", 1).await.expect("claim");
    idempotency
        .complete(&t, "short", b"first", 1)
        .await
        .expect("complete");
    assert_eq!(
        idempotency.claim(&t, "short", 1).await.expect("claim"),
        Claim::Done(b"first".to_vec())
    );
    // A short claim whose work finished is kept for the completion's own time.
    idempotency.claim(&t, "extended", 1).await.expect("claim");
    idempotency
        .complete(&t, "extended", b"kept", 60)
        .await
        .expect("complete");
    // TTLs count whole seconds: wait past the next second boundary and one more.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        idempotency.claim(&t, "extended", 1).await.expect("claim"),
        Claim::Done(b"kept".to_vec()),
        "completing extends a claim's lease"
    );
    assert_eq!(
        cache.get_cached(&t, "short").await.expect("get"),
        None,
        "expired cache entry"
    );
    assert_eq!(
        idempotency.claim(&t, "short", 60).await.expect("claim"),
        Claim::New,
        "an expired idempotency key can be claimed again"
    );
}

/// How the calls of [`rate_limits_hold_across_instances`] are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// All at once: the backend must count atomically.
    Racing,
    /// One after another, alternating between the limiters: for a stand-in backend that
    /// does not apply conditional writes atomically (moto's DynamoDB over-admits under
    /// concurrent requests; DynamoDB itself applies each conditional update atomically).
    Alternating,
}

/// Request counters: two limiters on one backend (two processes, or two Lambda
/// instances) together admit at most `limit` requests of a tenant per window (even when
/// they race, with [`Calls::Racing`]); a new window starts from zero; tenants are counted
/// apart.
pub async fn rate_limits_hold_across_instances(
    a: &dyn RateLimiter,
    b: &dyn RateLimiter,
    calls: Calls,
) {
    let (t, other) = (tenant(), tenant());
    // A window number far from the clock's, so no other check shares it.
    let window = 1_000_000 + i64::from(rand_u16());
    let limit = 7;
    let limiter = |i: usize| if i.is_multiple_of(2) { a } else { b };
    let outcomes = match calls {
        Calls::Racing => {
            futures_util::future::join_all((0..24).map(|i| limiter(i).admit(&t, window, 60, limit)))
                .await
        }
        Calls::Alternating => {
            let mut out = Vec::new();
            for i in 0..24 {
                out.push(limiter(i).admit(&t, window, 60, limit).await);
            }
            out
        }
    };
    let admitted = outcomes
        .into_iter()
        .map(|r| r.expect("admit"))
        .filter(|ok| *ok)
        .count();
    assert_eq!(
        admitted, limit as usize,
        "admitted {admitted} of 24 calls ({calls:?}) with limit {limit}"
    );
    assert!(
        !a.admit(&t, window, 60, limit).await.expect("admit"),
        "the window is spent"
    );
    assert!(
        b.admit(&t, window + 1, 60, limit).await.expect("admit"),
        "the next window starts again"
    );
    assert!(
        a.admit(&other, window, 60, limit).await.expect("admit"),
        "another tenant has its own count"
    );
}

fn rand_u16() -> u16 {
    let id = JobId::new();
    let tail = id.as_str().as_bytes();
    tail[tail.len() - 3..].iter().fold(0u16, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u16::from(*b))
    })
}

/// A task's final write and its event are one transaction: a lost compare-and-set stores
/// no event, an event id already stored leaves the task as it was, and a win stores both.
pub async fn finishing_a_task_stores_both_or_neither(tasks: &dyn TaskStore, events: &dyn EventLog) {
    let t = tenant();
    let task = Task::new(t.clone(), TaskKind::Train, "c-fin");
    tasks.create_task(&task).await.expect("create a task");
    let running = task
        .transition(TaskStatus::Running)
        .expect("queued -> running");
    tasks.update_task(&running).await.expect("start");
    let event_of = |task: &Task| {
        Event::new(
            t.clone(),
            EventType::TaskCompleted,
            "c-fin",
            serde_json::json!({"task_id": task.id}),
        )
    };
    // A stale writer (from the queued version) loses, and its event is not stored.
    let stale = running.clone();
    let lost = event_of(&stale);
    assert!(matches!(
        events.append_with_task(&lost, &stale).await,
        Err(StoreError::Conflict(_))
    ));
    let done = running
        .transition(TaskStatus::Completed)
        .expect("running -> completed");
    let won = event_of(&done);
    // An event id already stored cancels the whole write: the task stays running.
    events.append(&won).await.expect("append");
    assert!(matches!(
        events.append_with_task(&won, &done).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        tasks
            .get_task(&t, &task.id)
            .await
            .expect("get")
            .map(|x| x.status),
        Some(TaskStatus::Running),
        "the task write was rolled back with the event's"
    );
    let fresh = event_of(&done);
    events
        .append_with_task(&fresh, &done)
        .await
        .expect("finish");
    assert_eq!(tasks.get_task(&t, &task.id).await.expect("get"), Some(done));
    let stored: Vec<_> = events
        .events_after(&t, None, 100)
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(
        stored,
        vec![won.event_id, fresh.event_id],
        "the lost write's event is absent"
    );
    // An unknown task: NotFound, nothing stored.
    let ghost = Task::new(t.clone(), TaskKind::Train, "c-ghost")
        .transition(TaskStatus::Running)
        .expect("queued -> running");
    assert!(matches!(
        events.append_with_task(&event_of(&ghost), &ghost).await,
        Err(StoreError::NotFound(_))
    ));
}

fn stream(tenant: &TenantId) -> Stream {
    Stream::new(
        tenant.clone(),
        "cpu".into(),
        serde_json::json!({"detector": "seasonal"}),
        vec!["value".into()],
        7.0,
    )
}

/// Streams: created once, read back with their state (inline bytes or a blob pointer),
/// compare-and-set updates where exactly one of racing writers wins, listings without
/// state, other tenants kept out, deletion.
pub async fn stream_store_compare_and_set(streams: &dyn StreamStore) {
    let (t, other) = (tenant(), tenant());
    let s = stream(&t);
    // 200 KB of state, in the record itself (within DynamoDB's 400 KB item).
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let inline = StreamState::Inline(big.clone());
    streams
        .create_stream(&s, &inline)
        .await
        .expect("create a stream");
    assert!(
        matches!(
            streams.create_stream(&s, &inline).await,
            Err(StoreError::AlreadyExists(_))
        ),
        "a second create with the same id must be AlreadyExists"
    );
    let (read, state) = streams
        .get_stream(&t, &s.id)
        .await
        .expect("get")
        .expect("the stream is there");
    assert_eq!(read, s);
    assert_eq!(state, inline, "the state's bytes come back as stored");
    assert_eq!(
        streams.get_stream(&other, &s.id).await.expect("get"),
        None,
        "another tenant reads nothing"
    );

    let mut next = s.clone();
    next.version = 2;
    next.points = 10;
    let key = BlobKey::for_tenant(&t, &["streams", s.id.as_str(), "state-2.json"]).expect("key");
    let pointer = StreamState::Blob(key);
    streams
        .update_stream(&next, &pointer)
        .await
        .expect("update from version 1");
    assert!(
        matches!(
            streams.update_stream(&next, &inline).await,
            Err(StoreError::Conflict(_))
        ),
        "an update made from a stale version must be a Conflict"
    );
    let (read, state) = streams
        .get_stream(&t, &s.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!((read.version, read.points), (2, 10));
    assert_eq!(state, pointer, "the pointer replaced the inline state");

    // Racing writers from version 2: exactly one wins.
    let racers: Vec<Stream> = (0..6)
        .map(|i| {
            let mut r = next.clone();
            r.version = 3;
            r.points = 100 + i;
            r
        })
        .collect();
    let states: Vec<StreamState> = (0..6u8)
        .map(|i| StreamState::Inline(vec![i; 1000]))
        .collect();
    let outcomes = futures_util::future::join_all(
        racers
            .iter()
            .zip(&states)
            .map(|(r, st)| streams.update_stream(r, st)),
    )
    .await;
    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing writer wins: {outcomes:?}"
    );
    for o in &outcomes {
        assert!(
            o.is_ok() || matches!(o, Err(StoreError::Conflict(_))),
            "{o:?}"
        );
    }
    let (read, state) = streams
        .get_stream(&t, &s.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(read, racers[winners[0]], "the winner's record is stored");
    assert_eq!(state, states[winners[0]], "with the winner's state");

    let mut ghost = stream(&t);
    ghost.version = 2;
    assert!(
        matches!(
            streams.update_stream(&ghost, &inline).await,
            Err(StoreError::NotFound(_))
        ),
        "updating a stream that does not exist is NotFound"
    );
    let mut foreign = read.clone();
    foreign.tenant = other.clone();
    foreign.version = 4;
    assert!(
        matches!(
            streams.update_stream(&foreign, &inline).await,
            Err(StoreError::NotFound(_))
        ),
        "another tenant cannot update the stream"
    );

    let second = stream(&t);
    streams
        .create_stream(&second, &StreamState::Inline(b"{}".to_vec()))
        .await
        .expect("create a second stream");
    let page = streams
        .list_streams(&t, &PageRequest::default())
        .await
        .expect("list");
    let ids: Vec<_> = page.items.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, vec![second.id.clone(), s.id.clone()], "newest first");
    assert!(streams
        .list_streams(&other, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());
    assert!(matches!(
        streams.delete_stream(&other, &s.id, 3).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        matches!(
            streams.delete_stream(&t, &s.id, 2).await,
            Err(StoreError::Conflict(_))
        ),
        "a delete made from a stale version must be a Conflict"
    );
    assert!(streams.get_stream(&t, &s.id).await.expect("get").is_some());
    streams.delete_stream(&t, &s.id, 3).await.expect("delete");
    assert_eq!(streams.get_stream(&t, &s.id).await.expect("get"), None);
    assert!(matches!(
        streams.delete_stream(&t, &s.id, 3).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Entity `name` of stream `s` at `version`, its last point seen at `seen`.
fn entity(s: &Stream, name: &str, version: u64, seen: Timestamp) -> StreamEntity {
    StreamEntity {
        tenant: s.tenant.clone(),
        stream_id: s.id.clone(),
        name: name.to_string(),
        points: version * 10,
        anomalies: version,
        last_timestamp: Some(1_700_000_000 + version as i64),
        last_anomaly: None,
        interval: Some(60),
        threshold: None,
        recent: vec![RecentPoint {
            t: 1_700_000_000,
            v: 1.5,
            s: 0.25,
            e: Some(1.25),
            b: None,
        }],
        version,
        write_id: format!("w-{name}-{version}"),
        created_at: seen,
        updated_at: seen,
    }
}

/// The name of entity `i` (names sort as their numbers do).
fn entity_name(i: usize) -> String {
    format!("host-{i:03}")
}

/// Entity `i`'s detector state at `version`: most are small, every third is about 20 KB,
/// and the first twelve about 300 KB (near a DynamoDB item's 400 KB), so that one batch
/// of them spans transactions by bytes as well as by count.
fn entity_state(i: usize, version: u64) -> Vec<u8> {
    let len = i + match i {
        0..12 => 300_000,
        _ if i.is_multiple_of(3) => 20_000,
        _ => 200,
    };
    (0..len as u64)
        .map(|j| (j * 31 + i as u64 + version * 7) as u8)
        .collect()
}

/// The write of entity `i` of `s` at `version`, seen at `seen`.
fn entity_write(s: &Stream, i: usize, version: u64, seen: Timestamp) -> (StreamEntity, Vec<u8>) {
    (
        entity(s, &entity_name(i), version, seen),
        entity_state(i, version),
    )
}

/// `put_entities`, which must not fail.
async fn put_entities(
    streams: &dyn StreamStore,
    s: &Stream,
    writes: &[(StreamEntity, Vec<u8>)],
    max: u64,
) -> Vec<EntityWritten> {
    streams
        .put_entities(&s.tenant, &s.id, writes, max)
        .await
        .expect("put entities")
}

/// The entities of `s` among `names`, by name, and the stream's count.
async fn entities_by_name(
    streams: &dyn StreamStore,
    tenant: &TenantId,
    s: &Stream,
    names: &[String],
) -> (HashMap<String, (StreamEntity, Vec<u8>)>, u64) {
    let read = streams
        .get_entities(tenant, &s.id, names)
        .await
        .expect("get entities");
    let found = read
        .entities
        .into_iter()
        .map(|(e, state)| (e.name.clone(), (e, state)))
        .collect();
    (found, read.count)
}

/// Checks that `found` holds exactly `expected` (compared without printing the states).
fn assert_entities(
    found: &HashMap<String, (StreamEntity, Vec<u8>)>,
    expected: &[(StreamEntity, Vec<u8>)],
    what: &str,
) {
    assert_eq!(found.len(), expected.len(), "{what}: how many come back");
    for (e, state) in expected {
        let got = found
            .get(&e.name)
            .unwrap_or_else(|| panic!("{what}: {} is missing", e.name));
        assert_eq!(&got.0, e, "{what}: {}'s record", e.name);
        assert!(
            &got.1 == state,
            "{what}: {}'s state comes back as written ({} bytes, got {})",
            e.name,
            state.len(),
            got.1.len()
        );
    }
}

/// Every entity of the stream, page by page (`limit` a page): the names in the order
/// listed, and how many non-empty pages there were.
async fn list_all_entities(
    streams: &dyn StreamStore,
    tenant: &TenantId,
    s: &Stream,
    limit: usize,
) -> (Vec<StreamEntity>, usize) {
    let (mut all, mut pages, mut token) = (Vec::new(), 0, None);
    loop {
        let page = streams
            .list_entities(tenant, &s.id, &PageRequest { limit, token })
            .await
            .expect("list entities");
        assert!(page.items.len() <= limit, "a page holds at most its limit");
        pages += usize::from(!page.items.is_empty());
        all.extend(page.items);
        match page.next_token {
            Some(next) => token = Some(next),
            None => return (all, pages),
        }
    }
}

/// Entities of a stream split by entity: 250 written in one call (states up to 300 KB,
/// so the backend batches by bytes) and read back in one call with the count; per-entity
/// compare-and-set (stale writes are `Conflict`, one of two racing writers wins, and a
/// batch mixing both stores exactly its fresh writes); the cap on new entities, exact;
/// idle entities found and evicted only at the version seen; listings in name order over
/// pages; other tenants kept out; deletion of them all.
pub async fn entity_store_batches_and_compare_and_set(streams: &dyn StreamStore) {
    use EntityWritten::{Conflict, OverCap, Stored};
    let (t, other) = (tenant(), tenant());
    let mut s = stream(&t);
    s.entity = Some(EntitySplit {
        field: "host".into(),
        max_entities: 1000,
        idle_ttl: 3600,
    });
    streams
        .create_stream(&s, &StreamState::Inline(b"{}".to_vec()))
        .await
        .expect("create a stream split by entity");
    let now = Timestamp::now();
    let names: Vec<String> = (0..250).map(entity_name).collect();

    // 250 new entities in one call, all stored, read back in one call.
    let first: Vec<_> = (0..250).map(|i| entity_write(&s, i, 1, now)).collect();
    assert_eq!(
        put_entities(streams, &s, &first, 1000).await,
        vec![Stored; 250],
        "250 new entities are stored"
    );
    let mut asked = names.clone();
    asked.extend(["nobody".to_string(), "host-999".to_string()]);
    let (found, count) = entities_by_name(streams, &t, &s, &asked).await;
    assert_entities(&found, &first, "250 entities and 2 unknown names");
    assert_eq!(count, 250, "the stream counts its 250 entities");

    // Compare-and-set per entity.
    let second: Vec<_> = (0..5).map(|i| entity_write(&s, i, 2, now)).collect();
    assert_eq!(
        put_entities(streams, &s, &second, 1000).await,
        vec![Stored; 5],
        "writes from version 1 are stored"
    );
    assert_eq!(
        put_entities(streams, &s, &second, 1000).await,
        vec![Conflict; 5],
        "the same writes again are stale: Conflict"
    );
    let mixed = vec![
        entity_write(&s, 0, 3, now),
        entity_write(&s, 1, 2, now),
        entity_write(&s, 2, 3, now),
    ];
    assert_eq!(
        put_entities(streams, &s, &mixed, 1000).await,
        vec![Stored, Conflict, Stored],
        "a batch stores its fresh writes and only them"
    );
    let (found, count) = entities_by_name(streams, &t, &s, &names[..3]).await;
    assert_entities(
        &found,
        &[mixed[0].clone(), second[1].clone(), mixed[2].clone()],
        "after a mixed batch",
    );
    assert_eq!(count, 250, "updates do not count as new entities");

    // Two writers racing on one entity from the same version: exactly one wins.
    let (mut a, mut b) = (entity_write(&s, 10, 2, now), entity_write(&s, 10, 2, now));
    a.0.write_id = "racer-a".into();
    b.0.write_id = "racer-b".into();
    b.1 = vec![7; 3000];
    let (ra, rb) = tokio::join!(
        streams.put_entities(&t, &s.id, std::slice::from_ref(&a), 1000),
        streams.put_entities(&t, &s.id, std::slice::from_ref(&b), 1000)
    );
    let (ra, rb) = (ra.expect("racer a"), rb.expect("racer b"));
    let winner = match (ra.as_slice(), rb.as_slice()) {
        ([Stored], [Conflict]) => &a,
        ([Conflict], [Stored]) => &b,
        other => panic!("exactly one racing writer wins: {other:?}"),
    };
    let (found, _) = entities_by_name(streams, &t, &s, &names[10..11]).await;
    assert_entities(&found, std::slice::from_ref(winner), "the race's winner");

    // The cap on new entities is exact; updates are not held by it.
    let fresh = |name: &str| (entity(&s, name, 1, now), b"{}".to_vec());
    let capped = vec![
        fresh("new-a"),
        entity_write(&s, 20, 2, now),
        fresh("new-b"),
        fresh("new-c"),
        fresh("new-d"),
        fresh("new-e"),
    ];
    assert_eq!(
        put_entities(streams, &s, &capped, 252).await,
        vec![Stored, Stored, Stored, OverCap, OverCap, OverCap],
        "with room for 2 more, the first 2 new entities are stored"
    );
    let new_names: Vec<String> = ["new-a", "new-b", "new-c", "new-d", "new-e"]
        .map(String::from)
        .to_vec();
    let (found, count) = entities_by_name(streams, &t, &s, &new_names).await;
    assert_entities(&found, &[capped[0].clone(), capped[2].clone()], "capped");
    assert_eq!(count, 252, "the count stops at the cap");
    assert_eq!(
        put_entities(
            streams,
            &s,
            &[entity_write(&s, 30, 1, now), fresh("new-f")],
            252
        )
        .await,
        vec![Conflict, OverCap],
        "at the cap: an existing entity written as new is a Conflict, a new one OverCap"
    );

    // Two writers racing to make the same new entity: one makes it, counted once.
    let make = [fresh("new-g")];
    let (ra, rb) = tokio::join!(
        streams.put_entities(&t, &s.id, &make, 1000),
        streams.put_entities(&t, &s.id, &make, 1000)
    );
    let mut outcomes = [ra.expect("racer a"), rb.expect("racer b")].concat();
    outcomes.sort_by_key(|o| *o != Stored);
    assert_eq!(
        outcomes,
        vec![Stored, Conflict],
        "one racer makes the entity"
    );
    let (_, count) = entities_by_name(streams, &t, &s, &[]).await;
    assert_eq!(count, 253, "a new entity made in a race is counted once");

    // Idle entities, evicted only at the version seen.
    let long_ago = now.plus_seconds(-3600);
    let idle: Vec<_> = (100..105)
        .map(|i| entity_write(&s, i, 2, long_ago))
        .collect();
    assert_eq!(
        put_entities(streams, &s, &idle, 1000).await,
        vec![Stored; 5]
    );
    let before = now.plus_seconds(-60);
    let mut found = streams
        .idle_entities(&t, &s.id, before, 100)
        .await
        .expect("idle entities");
    found.sort();
    let expected: Vec<(String, u64)> = (100..105).map(|i| (entity_name(i), 2)).collect();
    assert_eq!(
        found, expected,
        "the entities last seen an hour ago are idle"
    );
    let two = streams
        .idle_entities(&t, &s.id, before, 2)
        .await
        .expect("idle entities");
    assert!(
        two.len() == 2 && two.iter().all(|e| expected.contains(e)),
        "at most `limit` idle entities: {two:?}"
    );
    let which = vec![
        (entity_name(100), 2),
        (entity_name(101), 1),
        (entity_name(102), 2),
        ("nobody".to_string(), 1),
    ];
    let mut evicted = streams
        .evict_entities(&t, &s.id, &which)
        .await
        .expect("evict");
    evicted.sort();
    assert_eq!(
        evicted,
        vec![entity_name(100), entity_name(102)],
        "only entities still at the version given are evicted"
    );
    assert!(
        streams
            .evict_entities(&other, &s.id, &[(entity_name(103), 2)])
            .await
            .expect("evict")
            .is_empty(),
        "another tenant evicts nothing"
    );
    let (found, count) = entities_by_name(streams, &t, &s, &names[100..105]).await;
    assert_entities(
        &found,
        &[idle[1].clone(), idle[3].clone(), idle[4].clone()],
        "after eviction",
    );
    assert_eq!(count, 251, "evicted entities leave the count");

    // Listings: records in name order, over pages.
    let mut expected: Vec<String> = names
        .iter()
        .filter(|n| **n != entity_name(100) && **n != entity_name(102))
        .cloned()
        .chain(["new-a", "new-b", "new-g"].map(String::from))
        .collect();
    expected.sort();
    let (listed, pages) = list_all_entities(streams, &t, &s, 100).await;
    let listed_names: Vec<String> = listed.iter().map(|e| e.name.clone()).collect();
    assert_eq!(listed_names, expected, "every entity, in name order");
    assert!(
        pages >= 3,
        "251 entities at 100 a page span 3 pages, not {pages}"
    );
    assert_eq!(listed[0], mixed[0].0, "a listed record is the stored one");
    assert!(matches!(
        streams
            .list_entities(
                &t,
                &s.id,
                &PageRequest {
                    limit: 10,
                    token: Some("zz".into()),
                },
            )
            .await,
        Err(StoreError::BadPageToken)
    ));

    // Other tenants: nothing to read, list, find idle, or overwrite.
    let (found, count) = entities_by_name(streams, &other, &s, &names).await;
    assert!(found.is_empty() && count == 0, "another tenant reads none");
    assert!(list_all_entities(streams, &other, &s, 100)
        .await
        .0
        .is_empty());
    assert!(streams
        .idle_entities(&other, &s.id, now.plus_seconds(60), 100)
        .await
        .expect("idle")
        .is_empty());
    let mut theirs = s.clone();
    theirs.tenant = other.clone();
    let intruder = (entity(&theirs, &entity_name(0), 4, now), vec![1; 10]);
    assert_eq!(
        put_entities(streams, &theirs, std::slice::from_ref(&intruder), 1000).await,
        vec![Conflict],
        "another tenant's write finds no entity to update"
    );
    let own = (entity(&theirs, &entity_name(0), 1, now), vec![2; 10]);
    assert_eq!(
        put_entities(streams, &theirs, std::slice::from_ref(&own), 1000).await,
        vec![Stored],
        "another tenant's entity of the same name is its own"
    );
    assert!(
        streams
            .put_entities(&other, &s.id, &[entity_write(&s, 0, 4, now)], 1000)
            .await
            .is_err(),
        "a write of one tenant's entity under another tenant is refused"
    );
    let (found, _) = entities_by_name(streams, &t, &s, &names[..1]).await;
    assert_entities(&found, &mixed[..1], "another tenant changed nothing");

    // One entity twice in a batch: written in turn.
    let twice = [fresh("new-h"), (entity(&s, "new-h", 2, now), vec![3; 10])];
    assert_eq!(
        put_entities(streams, &s, &twice, 1000).await,
        vec![Stored, Stored],
        "two writes of one entity in a batch apply in order"
    );
    let (found, count) = entities_by_name(streams, &t, &s, &["new-h".to_string()]).await;
    assert_entities(&found, &twice[1..], "the later write of a batch");
    assert_eq!(count, 252);

    // Deleting them all.
    streams
        .delete_entities(&t, &s.id)
        .await
        .expect("delete entities");
    let (found, count) = entities_by_name(streams, &t, &s, &expected).await;
    assert!(found.is_empty() && count == 0, "none left, count 0");
    assert!(list_all_entities(streams, &t, &s, 100).await.0.is_empty());
    let (found, count) = entities_by_name(streams, &other, &s, &names[..1]).await;
    assert_entities(&found, &[own], "another tenant's entities stay");
    assert_eq!(count, 1);
    streams
        .delete_entities(&other, &s.id)
        .await
        .expect("delete entities");
}

/// Through the use case: `writers` concurrent writers each append `per_writer` points one
/// request at a time to one stream. No update is lost: the stream counts every point,
/// the stored detector state equals replaying every point in the order the writes won
/// (their versions), and every answered score is the replay's score. With
/// `stream_inline_state_bytes` set low, this runs the blob-pointer path, and no state
/// object but the current one is left behind (`count_objects` counts the blobs under a
/// key prefix).
pub async fn concurrent_stream_writers_lose_nothing(
    services: &Services,
    writers: usize,
    per_writer: usize,
    count_objects: &(dyn Fn(String) -> futures_util::future::BoxFuture<'static, usize> + Sync),
) {
    let t = tenant();
    let request: CreateStream = serde_json::from_value(serde_json::json!({
        "name": "racing",
        "detector": "half_space_trees",
        "params": {"n_trees": 5, "height": 6, "window_size": 16, "seed": 3},
        "shingle": 2,
    }))
    .expect("a create request");
    let created = streams::create(services, &t, request)
        .await
        .expect("create the stream");
    let id = created.id.clone();
    // Every point at the same second, so any order the writes win in is a valid order;
    // no two alike, so none is taken for a duplicate of the one before it.
    let value = |w: usize, i: usize| (w * per_writer + i) as f64 / 10.0;
    let runs = (0..writers).map(|w| {
        let (t, id) = (t.clone(), id.clone());
        async move {
            let mut answers = Vec::new();
            for i in 0..per_writer {
                let point = Point::new(1_700_000_000, vec![value(w, i)]);
                let a = streams::append(services, &t, "c-race", &id, vec![point.clone()])
                    .await
                    .unwrap_or_else(|p| panic!("writer {w} point {i}: {p}"));
                let score = a.scores[0].expect("a new point is learned, not dropped");
                answers.push((a.version, point, score, a.retries));
            }
            answers
        }
    });
    let mut answers: Vec<(u64, Point, f64, u32)> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    let total = writers * per_writer;
    let retries: u32 = answers.iter().map(|a| a.3).sum();
    answers.sort_by_key(|a| a.0);
    let versions: Vec<u64> = answers.iter().map(|a| a.0).collect();
    let expected: Vec<u64> = (2..2 + total as u64).collect();
    assert_eq!(
        versions, expected,
        "each write made exactly one new version"
    );
    let (stored, state) = streams::get(services, &t, &id)
        .await
        .expect("get the stream");
    assert_eq!(stored.points, total as u64, "every point was counted");
    assert_eq!(stored.version, 1 + total as u64);
    let spec: StreamSpec = serde_json::from_value(stored.detector.clone()).expect("the spec");
    let mut replay = StreamDetector::new(spec, 1).expect("a detector");
    for (version, point, score, _) in &answers {
        let again = replay.update(point.t, &point.values).expect("replay");
        assert_eq!(
            again.score.to_bits(),
            score.to_bits(),
            "version {version}: the answered score is the replay's"
        );
    }
    let bytes = match &state {
        StreamState::Inline(b) => b.clone(),
        StreamState::Blob(key) => services
            .blobs
            .get_blob(key)
            .await
            .expect("read the state blob")
            .expect("the state blob is there"),
    };
    assert_eq!(
        StreamDetector::from_bytes(&bytes).expect("the stored state loads"),
        replay,
        "the stored state is every point learned in the order the writes won"
    );
    let prefix = format!("tenants/{t}/streams/{id}/");
    let objects = count_objects(prefix.clone()).await;
    assert_eq!(
        objects,
        usize::from(state.blob().is_some()),
        "only the current state object is left under {prefix}"
    );
    eprintln!(
        "{writers} writers x {per_writer} points: {retries} lost compare-and-set rounds retried, state {}",
        if state.blob().is_some() { "in the blob store" } else { "inline" }
    );
    streams::delete(services, &t, &id).await.expect("delete");
    if let StreamState::Blob(key) = &state {
        assert_eq!(
            services.blobs.get_blob(key).await.expect("get"),
            None,
            "deleting the stream deletes its state"
        );
    }
}
