//! The chains: what a stored event starts. `dataset.profiled` with training asked for
//! starts the training, exactly once per event even if the stream delivers it twice.

use crate::domain::payload::Payload;
use crate::domain::Event;
use crate::ids::TaskId;
use crate::ports::Claim;
use crate::service::input::FitSpec;
use crate::service::training::{self, TrainingData};
use crate::service::uses::{
    UsesBlobs, UsesDatasets, UsesIdempotency, UsesQueue, UsesSettings, UsesTasks,
};
use crate::service::Problem;

/// How long a chain's claim holds while it runs (past the events function's timeout).
const CHAIN_LEASE_SECS: u32 = 300;
/// How long a chain that ran is remembered (past the stream's 24 h retention).
const CHAIN_MEMORY_SECS: u32 = 7 * 24 * 3600;

/// Runs what `event` starts. Returns the task started, if any.
pub async fn chain(
    services: &(impl UsesTasks + UsesDatasets + UsesBlobs + UsesQueue + UsesIdempotency + UsesSettings),
    event: &Event,
) -> Result<Option<TaskId>, Problem> {
    let Ok(Payload::DatasetProfiled(profiled)) = Payload::decode(event.kind, &event.payload) else {
        return Ok(None);
    };
    if !profiled.train {
        return Ok(None);
    }
    let dataset_id = profiled.dataset_id;
    let key = format!("chain:{}", event.event_id);
    match services
        .idempotency()
        .claim(&event.tenant, &key, CHAIN_LEASE_SECS)
        .await?
    {
        Claim::New => {}
        Claim::Done(_) | Claim::InProgress => return Ok(None),
    }
    let started = async {
        let dataset = services
            .datasets()
            .get_dataset(&event.tenant, &dataset_id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("dataset {dataset_id} not found")))?;
        let spec: FitSpec = dataset
            .train_spec
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| Problem::invalid_data("the dataset's training spec is missing"))?;
        // Text and empty columns cannot be trained on: leave them out.
        let profile = crate::service::ingest::profile_of(services, &dataset).await?;
        let exclude = profile
            .as_ref()
            .and_then(|p| p.get("column_profiles"))
            .and_then(|c| c.as_array())
            .map(|cols| {
                cols.iter()
                    .filter(|c| c.get("type").and_then(|t| t.as_str()) != Some("numeric"))
                    .filter_map(|c| c.get("name").and_then(|n| n.as_str()).map(String::from))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        training::submit(
            services,
            &event.tenant,
            &event.correlation_id,
            spec,
            TrainingData::Dataset {
                dataset_id: dataset_id.clone(),
                exclude_columns: exclude,
            },
        )
        .await
    }
    .await;
    match started {
        Ok((task, model_id)) => {
            let note = serde_json::json!({"task_id": task.id, "model_id": model_id});
            services
                .idempotency()
                .complete(
                    &event.tenant,
                    &key,
                    note.to_string().as_bytes(),
                    CHAIN_MEMORY_SECS,
                )
                .await?;
            tracing::info!(task_id = %task.id, dataset_id = %dataset_id, "training started on upload");
            Ok(Some(task.id))
        }
        Err(p) if p.is_retryable() => {
            services.idempotency().release(&event.tenant, &key).await?;
            Err(p)
        }
        Err(p) => {
            // Cannot start (dataset deleted, bad spec): recorded so it is not retried.
            services
                .idempotency()
                .complete(&event.tenant, &key, p.detail.as_bytes(), CHAIN_MEMORY_SECS)
                .await?;
            tracing::warn!(dataset_id = %dataset_id, problem = %p, "training on upload not started");
            Ok(None)
        }
    }
}
