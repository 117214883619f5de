//! Running a `report` job: score the rows with the model, explain the top rows, render
//! and store the page.

use super::{render, report_key, ReportJob, TOP_ANOMALIES};
use crate::domain::TenantId;
use crate::ports::BlobKey;
use crate::service::detection::{score_with, Contribution};
use crate::service::input::Rows;
use crate::service::jobs::JobError;
use crate::service::training::TrainingData;
use crate::service::uses::{UsesBlobs, UsesDatasets, UsesLoadedModels, UsesModels, UsesSettings};
use crate::service::{datasets, models, profile, Problem};
use serde::Serialize;

/// Features shown per explained row.
const TOP_FEATURES: usize = 5;

/// What a finished report says of itself (the `task.completed` payload's core).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Rows scored.
    pub rows: usize,
    /// Of which anomalies.
    pub anomalies: usize,
    /// Size of the page in bytes.
    pub bytes: usize,
}

/// Runs a `report` job: load the model and the rows, score, explain the top rows,
/// render and store the page. `progress` gets 0 to 1. A redelivered job renders the
/// page again under the same key.
pub async fn run_job(
    services: &(impl UsesModels + UsesDatasets + UsesBlobs + UsesSettings + UsesLoadedModels),
    tenant: &TenantId,
    job: &ReportJob,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Result<(BlobKey, Summary), JobError> {
    let (record, model) = models::load(services, tenant, &job.model_id).await?;
    // The dataset's record is read once: for its rows, its name and its profile.
    let (rows, source, stored_profile) = match &job.data {
        TrainingData::Dataset {
            dataset_id,
            exclude_columns,
        } => {
            let dataset = datasets::profiled_dataset(services, tenant, dataset_id).await?;
            let rows = datasets::dataset_rows(services, tenant, &dataset, exclude_columns).await?;
            let profile = crate::service::ingest::profile_of(services, &dataset).await?;
            (
                rows,
                format!("dataset {} ({})", dataset.name, dataset.id),
                profile,
            )
        }
        TrainingData::Inline(rows) => (
            rows.clone(),
            format!("{} rows sent with the request", rows.len()),
            None,
        ),
    };
    let (rows, _) = rows.for_model(&record.feature_names)?;
    progress(0.1);
    let render = move || -> Result<(String, Summary), Problem> {
        let profile = match stored_profile {
            Some(p) => Some(p),
            None => profile_of(&rows)?,
        };
        let detection = score_with(&model, Some(record.id.clone()), &rows, false, None, &|p| {
            progress(0.1 + 0.7 * p)
        })?;
        let mut order: Vec<usize> = (0..detection.scores.len()).collect();
        order.sort_by(|&a, &b| detection.scores[b].total_cmp(&detection.scores[a]));
        let x = rows.matrix();
        let mut method = None;
        let mut top = Vec::new();
        for &row in order.iter().take(TOP_ANOMALIES) {
            let e = model.explain(x.row(row))?;
            method.get_or_insert(e.method.clone());
            top.push(render::TopAnomaly {
                row,
                score: detection.scores[row],
                features: e
                    .features
                    .into_iter()
                    .take(TOP_FEATURES)
                    .map(|f| Contribution {
                        feature: f.feature,
                        contribution: f.contribution,
                    })
                    .collect(),
            });
        }
        progress(0.9);
        let page = render::html(&render::Contents {
            model: &record,
            source,
            detection: &detection,
            top,
            explanation_method: method,
            profile: profile.as_ref(),
            generated_at: crate::time::Timestamp::now().rfc3339(),
        });
        let summary = Summary {
            rows: detection.rows,
            anomalies: detection.anomalies,
            bytes: page.len(),
        };
        Ok((page, summary))
    };
    let (page, summary) = tokio::task::spawn_blocking(render)
        .await
        .map_err(|e| JobError::Fail(Problem::internal(format!("rendering stopped: {e}"))))??;
    let key = report_key(tenant, &job.task_id);
    services.blobs().put_blob(&key, page.into_bytes()).await?;
    Ok((key, summary))
}

/// The profile of inline rows, as an upload of the same values would get (column names
/// quoted as CSV needs).
fn profile_of(rows: &Rows) -> Result<Option<serde_json::Value>, Problem> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Problem::invalid_data(format!("the rows could not be profiled: {e}"))
    };
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(&rows.columns)
        .map_err(|e| unreadable(&e))?;
    for r in &rows.rows {
        csv.write_record(r.iter().map(|v| format!("{v:?}")))
            .map_err(|e| unreadable(&e))?;
    }
    let bytes = csv.into_inner().map_err(|e| unreadable(&e))?;
    let p = profile::profile_csv(&bytes).map_err(|e| unreadable(&e))?;
    Ok(serde_json::to_value(p).ok())
}
