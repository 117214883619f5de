//! Trained models: where their artifacts live, loading them (kept in memory while the
//! process lives: a warm Lambda scores without re-reading S3), and the record a training
//! run leaves.

use crate::domain::{ModelRecord, TenantId};
use crate::ids::ModelId;
use crate::ports::{BlobKey, StoreError};
use crate::service::uses::{UsesBlobs, UsesLoadedModels, UsesModels};
use crate::service::Problem;
use crate::time::Timestamp;
use nomaly_detect::Model;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Models kept loaded at most.
const KEEP: usize = 32;

/// Loaded models by tenant and id. Model ids are never reused and a model never changes,
/// so an entry is valid until the model is deleted.
#[derive(Default)]
pub struct LoadedModels {
    models: Mutex<HashMap<(TenantId, ModelId), Arc<Model>>>,
}

impl LoadedModels {
    fn get(&self, tenant: &TenantId, id: &ModelId) -> Option<Arc<Model>> {
        let map = self.models.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(tenant.clone(), id.clone())).cloned()
    }

    fn put(&self, tenant: &TenantId, id: &ModelId, model: Arc<Model>) {
        let mut map = self.models.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KEEP {
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
        map.insert((tenant.clone(), id.clone()), model);
    }

    /// Forgets a deleted model.
    pub fn forget(&self, tenant: &TenantId, id: &ModelId) {
        let mut map = self.models.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(tenant.clone(), id.clone()));
    }
}

/// Where a model's artifact is stored.
pub fn artifact_key(tenant: &TenantId, id: &ModelId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["models", &format!("{id}.json")])
        .expect("a model id is a valid key part")
}

/// The tenant's model record `id`: 404 if the tenant has no such model.
pub async fn record(
    services: &impl UsesModels,
    tenant: &TenantId,
    id: &ModelId,
) -> Result<ModelRecord, Problem> {
    services
        .models()
        .get_model(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("model {id} not found")))
}

/// The tenant's model `id` with its record: 404 if the tenant has no such model.
pub async fn load(
    services: &(impl UsesModels + UsesBlobs + UsesLoadedModels),
    tenant: &TenantId,
    id: &ModelId,
) -> Result<(ModelRecord, Arc<Model>), Problem> {
    let record = record(services, tenant, id).await?;
    if let Some(model) = services.loaded_models().get(tenant, id) {
        return Ok((record, model));
    }
    let bytes = artifact(services, tenant, &record).await?;
    let model = tokio::task::spawn_blocking(move || Model::from_json(&bytes))
        .await
        .map_err(|e| Problem::internal(format!("loading model {id}: {e}")))??;
    let model = Arc::new(model);
    services.loaded_models().put(tenant, id, model.clone());
    Ok((record, model))
}

/// Where a model record says its artifact is: a key under the tenant's own prefix only.
pub fn stored_artifact_key(tenant: &TenantId, record: &ModelRecord) -> Result<BlobKey, Problem> {
    BlobKey::parse(&record.artifact_key)
        .ok()
        .filter(|k| k.belongs_to(tenant))
        .ok_or_else(|| {
            Problem::internal(format!("model {} has an invalid artifact key", record.id))
        })
}

/// The stored artifact of a model record (the JSON that `nomaly detect --model` reads).
pub async fn artifact(
    services: &impl UsesBlobs,
    tenant: &TenantId,
    record: &ModelRecord,
) -> Result<Vec<u8>, Problem> {
    let id = &record.id;
    let key = stored_artifact_key(tenant, record)?;
    services
        .blobs()
        .get_blob(&key)
        .await?
        .ok_or_else(|| Problem::internal(format!("model {id}'s artifact is missing from storage")))
}

/// Stores a fitted model's artifact and record under `id`. Storing the same id again
/// (a redelivered training job) keeps the first record: one model per id.
pub async fn save(
    services: &(impl UsesModels + UsesBlobs),
    tenant: &TenantId,
    id: &ModelId,
    model: &Model,
    params: serde_json::Value,
    labels: Option<&nomaly_detect::labels::LabelFit>,
) -> Result<ModelRecord, StoreError> {
    let key = artifact_key(tenant, id);
    services.blobs().put_blob(&key, model.to_json()).await?;
    let t = model.training();
    let mut record = ModelRecord {
        id: id.clone(),
        tenant: tenant.clone(),
        algorithm: model.algorithm().name().to_string(),
        params,
        feature_names: model.feature_names().to_vec(),
        training: serde_json::json!({
            "rows": t.rows,
            "anomalies": t.anomalies,
            "score_min": t.score_min,
            "score_max": t.score_max,
            "score_mean": t.score_mean,
            "threshold": model.threshold(),
            "threshold_rule": model.threshold_rule(),
            "seed": model.seed(),
        }),
        artifact_key: key.as_str().to_string(),
        version: nomaly_detect::model::FORMAT_VERSION,
        created_at: Timestamp::now(),
    };
    if let (Some(fit), Some(training)) = (labels, record.training.as_object_mut()) {
        training.insert("labels".into(), serde_json::json!(fit));
    }
    match services.models().put_model(&record).await {
        Ok(()) => Ok(record),
        Err(StoreError::AlreadyExists(_)) => services
            .models()
            .get_model(tenant, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.to_string())),
        Err(e) => Err(e),
    }
}

/// Deletes the tenant's model: its record, then its artifact.
pub async fn delete(
    services: &(impl UsesModels + UsesBlobs + UsesLoadedModels),
    tenant: &TenantId,
    id: &ModelId,
) -> Result<(), Problem> {
    let record = record(services, tenant, id).await?;
    services.models().delete_model(tenant, id).await?;
    services.loaded_models().forget(tenant, id);
    if let Ok(key) = BlobKey::parse(&record.artifact_key) {
        if key.belongs_to(tenant) {
            services.blobs().delete_blob(&key).await?;
        }
    }
    Ok(())
}
