//! What a batch reads: the source a request names, checked against the tenant, and
//! opened for reading by range.

use crate::domain::TenantId;
use crate::ids::{DatasetId, ModelId};
use crate::ports::BlobKey;
use crate::service::chunks::{BlobSource, ByteSource, FileSource};
use crate::service::uses::{UsesBlobs, UsesDatasets, UsesSettings};
use crate::service::{ingest, Problem};
use serde::{Deserialize, Serialize};

/// `POST /v1/batch`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// What to score: exactly one of its fields.
    pub source: SourceSpec,
    /// The model that scores it.
    pub model_id: ModelId,
    /// The output's name: parts and manifest go under `batches/<output>/` in the
    /// tenant's storage.
    pub output: String,
}

/// Where a batch reads from, as asked.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// One of the caller's datasets.
    pub dataset_id: Option<String>,
    /// An object key under the caller's own prefix (`tenants/<tenant>/...`).
    pub key: Option<String>,
    /// A file under the local server's `<data-dir>/imports/` (local server only).
    pub file: Option<String>,
}

/// Where a batch reads from, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An object in the blob store, under the tenant's prefix.
    Blob(BlobKey),
    /// A file under the imports folder, by its path there.
    File(String),
}

impl Source {
    /// Checks what the caller asked for: a dataset must be theirs, a key must lie
    /// under their prefix (else 403), a file must be a plain path under the imports
    /// folder of a server that has one.
    pub async fn resolve(
        services: &(impl UsesDatasets + UsesSettings),
        tenant: &TenantId,
        spec: &SourceSpec,
    ) -> Result<Source, Problem> {
        match (&spec.dataset_id, &spec.key, &spec.file) {
            (Some(id), None, None) => {
                let id = DatasetId::parse(id)
                    .map_err(|e| Problem::invalid_parameter(format!("source.dataset_id: {e}")))?;
                services
                    .datasets()
                    .get_dataset(tenant, &id)
                    .await?
                    .ok_or_else(|| Problem::not_found(format!("dataset {id} not found")))?;
                Ok(Source::Blob(ingest::upload_key(tenant, &id)))
            }
            (None, Some(key), None) => {
                let parsed = BlobKey::parse(key).ok().filter(|k| k.belongs_to(tenant));
                parsed.map(Source::Blob).ok_or_else(|| {
                    Problem::forbidden(format!(
                        "source.key must be an object under your own prefix tenants/{tenant}/, \
                         its parts made of A-Z a-z 0-9 . _ - (rename objects with other characters)"
                    ))
                })
            }
            (None, None, Some(file)) => {
                if services.settings().imports_dir.is_none() {
                    return Err(Problem::forbidden(
                        "file sources are read only by the local server (from <data-dir>/imports/<tenant>/); \
                         upload the data and use source.dataset_id or source.key",
                    ));
                }
                let ok = !file.is_empty()
                    && file.split('/').all(|part| {
                        (1..=128).contains(&part.len())
                            && part != "."
                            && part != ".."
                            && part.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
                            })
                    });
                if !ok {
                    return Err(Problem::forbidden(format!(
                        "source.file `{file}` must be a path under your imports folder \
                         (parts of A-Z a-z 0-9 . _ - separated by /, no . or ..)"
                    )));
                }
                Ok(Source::File(file.clone()))
            }
            _ => Err(Problem::invalid_parameter(
                "source takes exactly one of dataset_id, key and file",
            )),
        }
    }

    /// Refuses a stored source that is not `tenant`'s (a job that names another tenant's
    /// object is never read, whatever put it on the queue).
    pub fn check(&self, tenant: &TenantId) -> Result<(), Problem> {
        match self {
            Source::Blob(key) if !key.belongs_to(tenant) => Err(Problem::forbidden(format!(
                "the source {} is not under tenants/{tenant}/",
                key.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// The source, read by range. A file is read from the tenant's own imports folder,
    /// `<imports>/<tenant>/`, and only when its real path (links followed) stays inside
    /// that folder.
    pub fn open<'a>(
        &'a self,
        services: &'a (impl UsesBlobs + UsesSettings),
        tenant: &TenantId,
    ) -> Result<Box<dyn ByteSource + 'a>, Problem> {
        match self {
            Source::Blob(key) => Ok(Box::new(BlobSource::new(services.blobs(), key))),
            Source::File(path) => {
                let dir =
                    services.settings().imports_dir.as_ref().ok_or_else(|| {
                        Problem::forbidden("this deployment reads no local files")
                    })?;
                let own = dir.join(tenant.as_str());
                let missing = || {
                    Problem::not_found(format!(
                        "there is no file imports/{tenant}/{path} (each tenant reads its own folder, <data-dir>/imports/<tenant>/)"
                    ))
                };
                let real = std::fs::canonicalize(own.join(path)).map_err(|_| missing())?;
                let root = std::fs::canonicalize(&own).map_err(|_| missing())?;
                if !real.starts_with(&root) {
                    return Err(Problem::forbidden(format!(
                        "imports/{tenant}/{path} leads out of your imports folder"
                    )));
                }
                Ok(Box::new(FileSource::new(
                    real,
                    format!("imports/{tenant}/{path}"),
                )))
            }
        }
    }

    /// The source as the API shows it.
    pub fn view(&self) -> serde_json::Value {
        match self {
            Source::Blob(key) => serde_json::json!({ "key": key.as_str() }),
            Source::File(path) => serde_json::json!({ "file": path }),
        }
    }
}
