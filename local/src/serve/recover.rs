//! What a crash of the last run may have left half done, finished at start (embedded
//! stack only: on AWS, S3 notifications and the DynamoDB stream redeliver by themselves).
//!
//! - An upload profiled in-process whose profiling was cut short leaves its dataset
//!   `profiling`, with the upload stored: it is profiled again (profiling is
//!   idempotent). Larger uploads are profiled by a queued job, which the restart
//!   resumes anyway.
//! - A `dataset.profiled` event asking for training is stored before the in-process
//!   stream hands it on; if the process died in between, its training never started.
//!   Every such event of the last day runs its chain again, under the same idempotency
//!   claim the dispatcher takes, so a chain that ran does not run twice.

use nomaly_core::domain::{DatasetStatus, EventType};
use nomaly_core::ports::StoreResult;
use nomaly_core::service::{chains, ingest, Services};
use nomaly_core::time::Timestamp;
use nomaly_embedded::SqliteStore;

/// How far back the chains of stored events are checked (the claims that guard them
/// last 7 days).
const CHAIN_WINDOW_SECS: i64 = 24 * 3600;

/// What the recovery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Datasets profiled again.
    pub profiled: usize,
    /// Trainings started by chains that had not run.
    pub chained: usize,
}

/// Finishes what the last run left half done; see the module documentation.
pub async fn recover(services: &Services, store: &SqliteStore) -> StoreResult<Recovered> {
    let mut done = Recovered::default();
    for dataset in store.datasets_in_status(DatasetStatus::Profiling).await? {
        if dataset.declared_size > services.settings.inline_profile_bytes {
            continue;
        }
        let correlation = format!("ingest-{}", dataset.id);
        match ingest::run_profile(
            services,
            &dataset.tenant,
            &correlation,
            &dataset.id,
            dataset.declared_size,
        )
        .await
        {
            Ok(_) => done.profiled += 1,
            Err(e) => {
                tracing::warn!(dataset_id = %dataset.id, error = ?e, "a dataset left profiling could not be profiled again")
            }
        }
    }
    let since = Timestamp::now().plus_seconds(-CHAIN_WINDOW_SECS);
    for event in store
        .events_since(EventType::DatasetProfiled, since)
        .await?
    {
        match chains::chain(services, &event).await {
            Ok(Some(task)) => {
                tracing::info!(event_id = %event.event_id, task_id = %task, "started the training an upload asked for");
                done.chained += 1;
            }
            Ok(None) => {}
            Err(p) => {
                tracing::warn!(event_id = %event.event_id, problem = %p, "a chain of the last run could not run")
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomaly_core::domain::{ApiKey, TenantId};
    use nomaly_core::ports::BlobKey;
    use nomaly_core::service::ingest::UploadRequest;
    use nomaly_core::service::Settings;
    use nomaly_embedded::Stack;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_mid_profile_or_before_the_chain_is_finished_at_start() {
        let dir = std::env::temp_dir().join(format!("nomaly-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stack = Stack::open(&dir, "http://127.0.0.1:9", Settings::default()).unwrap();
        let s = &stack.services;
        let tenant = TenantId::parse("acme").unwrap();
        s.keys
            .put_key(&ApiKey::issue(tenant.clone()).record)
            .await
            .unwrap();
        let csv: String = std::iter::once("a,b\n".to_string())
            .chain((0..200).map(|i| format!("{},{}\n", i % 7, i % 11)))
            .collect();
        let request: UploadRequest = serde_json::from_value(serde_json::json!({
            "name": "d.csv", "size": csv.len(), "train": {"algorithm": "zscore"}
        }))
        .unwrap();
        let grant = ingest::register(s, &tenant, request).await.unwrap();
        // The last run stored the upload, marked the dataset profiling, and died.
        let key = BlobKey::parse(&grant.dataset.blob_key).unwrap();
        s.blobs.put_blob(&key, csv.into_bytes()).await.unwrap();
        let mut dataset = grant.dataset.clone();
        dataset.status = DatasetStatus::Profiling;
        s.datasets.put_dataset(&dataset).await.unwrap();

        // Nothing of it was dispatched: the recovery profiles and starts the training.
        let first = recover(s, &stack.store).await.unwrap();
        assert_eq!(
            first,
            Recovered {
                profiled: 1,
                chained: 1
            }
        );
        let now = s
            .datasets
            .get_dataset(&tenant, &dataset.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.status, DatasetStatus::Profiled);
        let tasks = s
            .tasks
            .list_tasks(&tenant, &Default::default())
            .await
            .unwrap();
        assert_eq!(tasks.items.len(), 1, "the training the upload asked for");
        // A second start finds nothing left to do: the chain's claim holds.
        let again = recover(s, &stack.store).await.unwrap();
        assert_eq!(again, Recovered::default());
        let tasks = s
            .tasks
            .list_tasks(&tenant, &Default::default())
            .await
            .unwrap();
        assert_eq!(tasks.items.len(), 1, "no second training");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_that_kept_killing_its_profiler_is_rejected_not_retried() {
        let dir = std::env::temp_dir().join(format!("nomaly-recover-kill-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stack = Stack::open(&dir, "http://127.0.0.1:9", Settings::default()).unwrap();
        let s = &stack.services;
        let tenant = TenantId::parse("acme").unwrap();
        let csv = "a,b\n1,2\n3,4\n".to_string();
        let request: UploadRequest =
            serde_json::from_value(serde_json::json!({"name": "d.csv", "size": csv.len()}))
                .unwrap();
        let grant = ingest::register(s, &tenant, request).await.unwrap();
        let key = BlobKey::parse(&grant.dataset.blob_key).unwrap();
        s.blobs.put_blob(&key, csv.into_bytes()).await.unwrap();
        // Each start so far began profiling it, and the process died each time.
        let mut dataset = grant.dataset.clone();
        dataset.status = DatasetStatus::Profiling;
        dataset.profile_attempts = nomaly_core::limits::MAX_PROFILE_ATTEMPTS;
        s.datasets.put_dataset(&dataset).await.unwrap();
        recover(s, &stack.store).await.unwrap();
        let now = s
            .datasets
            .get_dataset(&tenant, &dataset.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.status, DatasetStatus::Rejected);
        let reason = now.error.unwrap_or_default();
        assert!(
            reason.contains("Profiling attempts per dataset"),
            "{reason}"
        );
        assert!(now.profile.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
