//! The contract suite on the embedded adapters (SQLite in a fresh data folder, files).

use nomaly_contract as contract;
use nomaly_embedded::{Database, FileBlobs, SqliteQueue, SqliteStore};
use std::path::PathBuf;

fn data_dir(name: &str) -> PathBuf {
    let dir = data_dir_kept(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The folder `data_dir(name)` made, without emptying it.
fn data_dir_kept(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nomaly-contract-{name}-{}", std::process::id()))
}

fn store(name: &str) -> SqliteStore {
    SqliteStore::new(Database::open(&data_dir(name)).expect("open the database"))
}

#[tokio::test]
async fn task_store_compare_and_set() {
    contract::task_store_compare_and_set(&store("cas")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_workers_finish_a_task_once() {
    contract::racing_workers_finish_a_task_once(&store("race")).await;
}

#[tokio::test]
async fn listings_page_past_one_page() {
    let s = store("pages");
    contract::listings_page_past_one_page(&s, &s).await;
}

#[tokio::test]
async fn tenants_are_kept_apart() {
    let s = store("tenants");
    contract::tenants_are_kept_apart(&s, &s, &s, &s).await;
}

#[tokio::test]
async fn events_replay_after() {
    contract::events_replay_after(&store("events")).await;
}

#[tokio::test]
async fn queue_redelivers_after_visibility_timeout() {
    let db = Database::open(&data_dir("redeliver")).expect("open");
    contract::queue_redelivers_after_visibility_timeout(&SqliteQueue::new(db, "jobs", 10)).await;
}

#[tokio::test]
async fn queue_delays_a_job_sent_for_later() {
    let db = Database::open(&data_dir("delay")).expect("open");
    contract::queue_delays_a_job_sent_for_later(&SqliteQueue::new(db, "jobs", 10)).await;
}

#[tokio::test]
async fn running_tasks_are_counted_per_tenant() {
    contract::running_tasks_are_counted_per_tenant(&store("running")).await;
}

#[tokio::test]
async fn queue_dead_letters_after_max_receives() {
    let db = Database::open(&data_dir("dlq")).expect("open");
    contract::queue_dead_letters_after_max_receives(&SqliteQueue::new(db, "jobs", 3), 3).await;
}

#[tokio::test]
async fn claim_check_carries_large_bodies() {
    let dir = data_dir("claim");
    let db = Database::open(&dir).expect("open");
    contract::claim_check_carries_large_bodies(
        &SqliteQueue::new(db, "jobs", 10),
        &FileBlobs::new(&dir),
    )
    .await;
}

#[tokio::test]
async fn blobs_round_trip() {
    contract::blobs_round_trip(&FileBlobs::new(&data_dir("blobs"))).await;
}

#[tokio::test]
async fn blobs_read_by_range() {
    contract::blobs_read_by_range(&FileBlobs::new(&data_dir("ranges"))).await;
}

#[tokio::test]
async fn keys_revoke_at_once() {
    contract::keys_revoke_at_once(&store("keys")).await;
}

#[tokio::test]
async fn alert_rules_and_deliveries() {
    contract::alert_rules_and_deliveries(&store("alerts")).await;
}

#[tokio::test]
async fn feedback_is_kept_per_tenant() {
    contract::feedback_is_kept_per_tenant(&store("feedback")).await;
}

#[tokio::test]
async fn connections_register_and_expire() {
    contract::connections_register_and_expire(&store("connections")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_returns_the_first_response() {
    contract::idempotency_returns_the_first_response(&store("idempotency")).await;
}

#[tokio::test]
async fn cache_round_trips() {
    contract::cache_round_trips(&store("cache")).await;
}

/// Embedded only: state survives closing and reopening the data folder.
#[tokio::test]
async fn state_survives_a_restart() {
    use nomaly_core::domain::{Task, TaskKind};
    use nomaly_core::ports::{JobQueue, TaskStore};
    let dir = data_dir("restart");
    let tenant = contract::tenant();
    let task = Task::new(tenant.clone(), TaskKind::Train, "c");
    {
        let db = Database::open(&dir).expect("open");
        SqliteStore::new(db.clone())
            .create_task(&task)
            .await
            .expect("create");
        let job = nomaly_core::ports::Job {
            job_id: nomaly_core::ids::JobId::new(),
            tenant: tenant.clone(),
            kind: "train".into(),
            correlation_id: "c".into(),
            body: serde_json::json!({}),
        };
        SqliteQueue::new(db, "jobs", 3)
            .send(&[job])
            .await
            .expect("send");
    }
    let db = Database::open(&dir).expect("reopen");
    assert_eq!(
        SqliteStore::new(db.clone())
            .get_task(&tenant, &task.id)
            .await
            .expect("get"),
        Some(task)
    );
    assert_eq!(
        SqliteQueue::new(db, "jobs", 3)
            .receive(10, 30)
            .await
            .expect("receive")
            .len(),
        1
    );
}

#[tokio::test]
async fn expired_entries_are_not_returned() {
    let s = store("ttl");
    contract::expired_entries_are_not_returned(&s, &s).await;
}

/// Embedded only: a receive with visibility 0 hands each job out once per call.
#[tokio::test]
async fn a_zero_visibility_receive_hands_a_job_out_once() {
    use nomaly_core::ports::JobQueue;
    let db = Database::open(&data_dir("zero-visibility")).expect("open");
    let queue = SqliteQueue::new(db, "jobs", 3);
    let job = nomaly_core::ports::Job {
        job_id: nomaly_core::ids::JobId::new(),
        tenant: contract::tenant(),
        kind: "train".into(),
        correlation_id: "c".into(),
        body: serde_json::json!({}),
    };
    queue.send(std::slice::from_ref(&job)).await.expect("send");
    let got = queue.receive(10, 0).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].receive_count, 1);
    let again = queue.receive(10, 0).await.expect("receive");
    assert_eq!(again.len(), 1, "visible again on the next call");
    assert_eq!(again[0].receive_count, 2);
}

/// Embedded only: tenants are served in turn. Tenant A queues 50 jobs, then tenant B one;
/// B's job is among the first two received, whether jobs are received one at a time or
/// ten at a time, and A's jobs still come oldest first.
#[tokio::test]
async fn the_queue_takes_tenants_in_turn() {
    use nomaly_core::domain::TenantId;
    use nomaly_core::ports::{Job, JobQueue};
    let job = |tenant: &TenantId, n: u64| Job {
        job_id: nomaly_core::ids::JobId::new(),
        tenant: tenant.clone(),
        kind: "train".into(),
        correlation_id: "c".into(),
        body: serde_json::json!({ "n": n }),
    };
    let (a, b) = (
        TenantId::parse("tenant-a").expect("tenant"),
        TenantId::parse("tenant-b").expect("tenant"),
    );
    for per_call in [1usize, 10] {
        let db = Database::open(&data_dir(&format!("turns-{per_call}"))).expect("open");
        let queue = SqliteQueue::new(db, "jobs", 3);
        let flood: Vec<Job> = (0..50).map(|n| job(&a, n)).collect();
        queue.send(&flood).await.expect("send A's jobs");
        queue.send(&[job(&b, 0)]).await.expect("send B's job");
        let mut order = Vec::new();
        while order.len() < 51 {
            let got = queue.receive(per_call, 600).await.expect("receive");
            assert!(!got.is_empty(), "all 51 jobs are received");
            order.extend(got.into_iter().map(|d| d.job));
        }
        let b_at = order
            .iter()
            .position(|j| j.tenant == b)
            .expect("B's job is received");
        assert!(
            b_at < 2,
            "B's job was received {}th of 51, {per_call} per receive",
            b_at + 1
        );
        let a_order: Vec<u64> = order
            .iter()
            .filter(|j| j.tenant == a)
            .filter_map(|j| j.body["n"].as_u64())
            .collect();
        assert_eq!(
            a_order,
            (0..50).collect::<Vec<_>>(),
            "A's jobs oldest first"
        );
    }
}

/// Embedded only: a queue written before jobs carried their tenant is migrated when the
/// database opens, and its jobs are received.
#[tokio::test]
async fn jobs_queued_before_the_tenant_column_are_received() {
    use nomaly_core::ports::JobQueue;
    let dir = data_dir("old-queue");
    std::fs::create_dir_all(&dir).expect("folder");
    let job = nomaly_core::ports::Job {
        job_id: nomaly_core::ids::JobId::new(),
        tenant: contract::tenant(),
        kind: "train".into(),
        correlation_id: "c".into(),
        body: serde_json::json!({ "old": true }),
    };
    {
        let old = rusqlite::Connection::open(dir.join("nomaly.db")).expect("open");
        old.execute_batch(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body TEXT NOT NULL,
                visible_ms INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT, dead INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX jobs_visible ON jobs (queue, dead, visible_ms, seq);
             CREATE UNIQUE INDEX jobs_receipt ON jobs (receipt);",
        )
        .expect("the old schema");
        old.execute(
            "INSERT INTO jobs (queue, body, visible_ms) VALUES ('jobs', ?1, 0)",
            [serde_json::to_string(&job).expect("encode")],
        )
        .expect("an old job");
    }
    let db = Database::open(&dir).expect("open and migrate");
    let queue = SqliteQueue::new(db, "jobs", 3);
    let got = queue.receive(10, 30).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, job);
    // Opening again finds nothing to migrate.
    drop(queue);
    Database::open(&dir).expect("reopen");
}

#[tokio::test]
async fn stale_running_tasks_are_found() {
    contract::stale_running_tasks_are_found(&store("stale")).await;
}

#[tokio::test]
async fn sweeping_deletes_expired_records() {
    let s = store("sweep");
    contract::sweeping_deletes_expired_records(&s, &s, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_instances() {
    // The local server is one process: its clones share one set of counters.
    let s = store("rate");
    contract::rate_limits_hold_across_instances(&s, &s.clone(), contract::Calls::Racing).await;
}

#[tokio::test]
async fn finishing_a_task_stores_both_or_neither() {
    let s = store("finish");
    contract::finishing_a_task_stores_both_or_neither(&s, &s).await;
}

#[tokio::test]
async fn stream_store_compare_and_set() {
    contract::stream_store_compare_and_set(&store("streams")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_store_batches_and_compare_and_set() {
    contract::entity_store_batches_and_compare_and_set(&store("entities")).await;
}

type Counted = std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>;

/// Files under `<dir>/blobs/<prefix>` (blobs are files named by their key).
fn count_files(dir: PathBuf) -> impl Fn(String) -> Counted + Sync {
    move |prefix: String| -> Counted {
        let folder = dir.join("blobs").join(prefix);
        Box::pin(async move {
            std::fs::read_dir(&folder)
                .map(|entries| entries.filter(|e| e.is_ok()).count())
                .unwrap_or(0)
        })
    }
}

fn stack(name: &str, inline_state_bytes: usize) -> nomaly_embedded::Stack {
    let settings = nomaly_core::service::Settings {
        stream_inline_state_bytes: inline_state_bytes,
        ..Default::default()
    };
    nomaly_embedded::Stack::open(&data_dir(name), "http://127.0.0.1:9", settings)
        .expect("open the stack")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_writers_lose_nothing_inline() {
    let s = stack("stream-race-inline", 300_000);
    let count = count_files(data_dir_kept("stream-race-inline"));
    contract::concurrent_stream_writers_lose_nothing(&s.services, 4, 25, &count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_writers_lose_nothing_with_state_in_blobs() {
    let s = stack("stream-race-blob", 1024);
    let count = count_files(data_dir_kept("stream-race-blob"));
    contract::concurrent_stream_writers_lose_nothing(&s.services, 4, 25, &count).await;
}
