//! What follows an event being stored (the `events` function on the events table's
//! stream): push it to every connection of the tenant subscribed to a matching channel
//! (a gone connection is forgotten; the others still get it), and run the chains
//! (`dataset.profiled` with training asked for starts the training, exactly once per
//! event even if the stream delivers it twice).

use crate::domain::{Connection, Event, EventType};
use crate::ids::{DatasetId, TaskId};
use crate::ports::{Claim, PushError};
use crate::service::input::FitSpec;
use crate::service::training::{self, TrainingData};
use crate::service::{Problem, Services};

/// How long a chain's claim holds while it runs (past the events function's timeout).
const CHAIN_LEASE_SECS: u32 = 300;
/// How long a chain that ran is remembered (past the stream's 24 h retention).
const CHAIN_MEMORY_SECS: u32 = 7 * 24 * 3600;

/// How one event's pushes went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Connections that got it.
    pub delivered: usize,
    /// Gone connections, now forgotten.
    pub gone: usize,
    /// Pushes that failed otherwise (logged; not retried, so others get no duplicate).
    pub failed: usize,
    /// Connections whose key was revoked: sent nothing, closed and forgotten.
    pub revoked: usize,
}

/// The message pushed for an event.
pub fn message(event: &Event) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": event.kind,
        "event_id": event.event_id,
        "at": event.at.rfc3339(),
        "correlation_id": event.correlation_id,
        "payload": event.payload,
    }))
    .unwrap_or_default()
}

/// What became of one push.
enum Outcome {
    Delivered,
    Gone,
    Failed,
    Revoked,
}

/// Pushes `event` to its tenant's subscribed connections, up to
/// [`FANOUT_CONCURRENCY`](crate::limits::FANOUT_CONCURRENCY) at once: one tenant's many
/// sockets must not hold the events stream's shard for one round trip each.
pub async fn push(services: &Services, event: &Event) -> Result<Pushed, Problem> {
    use futures_util::stream::{self, StreamExt};
    let connections = services
        .connections
        .tenant_connections(&event.tenant)
        .await?;
    let wanted: Vec<Connection> = connections.into_iter().filter(|c| c.wants(event)).collect();
    // Whether each key is still valid, looked up once per event.
    let mut keys: std::collections::HashMap<Option<crate::ids::KeyId>, bool> =
        std::collections::HashMap::new();
    for c in &wanted {
        if keys.contains_key(&c.key_id) {
            continue;
        }
        let live = services.connection_key_live(c).await.unwrap_or_else(|e| {
            // Pushing on is the lesser harm than failing the whole event.
            tracing::warn!(connection = %c.id, error = %e, "the connection's key could not be checked");
            true
        });
        keys.insert(c.key_id.clone(), live);
    }
    let body = message(event);
    let outcomes: Vec<Result<Outcome, Problem>> = stream::iter(wanted.into_iter().map(|c| {
        let live = keys.get(&c.key_id).copied().unwrap_or(true);
        push_one(services, c, &body, live)
    }))
    .buffer_unordered(crate::limits::FANOUT_CONCURRENCY)
    .collect()
    .await;
    let mut pushed = Pushed::default();
    for outcome in outcomes {
        match outcome? {
            Outcome::Delivered => pushed.delivered += 1,
            Outcome::Gone => pushed.gone += 1,
            Outcome::Failed => pushed.failed += 1,
            Outcome::Revoked => pushed.revoked += 1,
        }
    }
    Ok(pushed)
}

/// Pushes `body` to one connection (or closes it when its key is no longer `live`).
async fn push_one(
    services: &Services,
    c: Connection,
    body: &[u8],
    live: bool,
) -> Result<Outcome, Problem> {
    if !live {
        crate::service::connections::close(services, &c.id).await;
        return Ok(Outcome::Revoked);
    }
    match services.notifier.push(&c.id, body).await {
        Ok(()) => Ok(Outcome::Delivered),
        Err(PushError::Gone(_)) => {
            tracing::info!(connection = %c.id, "connection gone; forgetting it");
            services.connections.delete_connection(&c.id).await?;
            Ok(Outcome::Gone)
        }
        Err(e) => {
            tracing::warn!(connection = %c.id, error = %e, "push failed");
            Ok(Outcome::Failed)
        }
    }
}

/// Runs what `event` starts. Returns the task started, if any.
pub async fn chain(services: &Services, event: &Event) -> Result<Option<TaskId>, Problem> {
    if event.kind != EventType::DatasetProfiled
        || event.payload.get("train") != Some(&serde_json::Value::Bool(true))
    {
        return Ok(None);
    }
    let Some(dataset_id) = event
        .payload
        .get("dataset_id")
        .and_then(|v| v.as_str())
        .and_then(|s| DatasetId::parse(s).ok())
    else {
        return Ok(None);
    };
    let key = format!("chain:{}", event.event_id);
    match services
        .idempotency
        .claim(&event.tenant, &key, CHAIN_LEASE_SECS)
        .await?
    {
        Claim::New => {}
        Claim::Done(_) | Claim::InProgress => return Ok(None),
    }
    let started = async {
        let dataset = services
            .datasets
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
                .idempotency
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
            services.idempotency.release(&event.tenant, &key).await?;
            Err(p)
        }
        Err(p) => {
            // Cannot start (dataset deleted, bad spec): recorded so it is not retried.
            services
                .idempotency
                .complete(&event.tenant, &key, p.detail.as_bytes(), CHAIN_MEMORY_SECS)
                .await?;
            tracing::warn!(dataset_id = %dataset_id, problem = %p, "training on upload not started");
            Ok(None)
        }
    }
}

/// Handles one stored event: pushes, then chains.
pub async fn handle(services: &Services, event: &Event) -> Result<Pushed, Problem> {
    let pushed = push(services, event).await?;
    chain(services, event).await?;
    Ok(pushed)
}
