//! The one dispatch point: a job's kind decides which use case runs its body.

use super::lifecycle::Output;
use super::reporter::Reporter;
use crate::service::backtest::{self, BacktestJob};
use crate::service::batch::{self, BatchJob};
use crate::service::detection::{self, DetectJob};
use crate::service::ingest::{self, ProfileJob};
use crate::service::jobs::{JobError, JobKind};
use crate::service::report::{self, ReportJob};
use crate::service::training::{self, TrainJob};
use crate::service::{Problem, Services};

pub(super) async fn run(
    services: &Services,
    kind: JobKind,
    body: &serde_json::Value,
    tenant: &crate::domain::TenantId,
    correlation_id: &str,
    reporter: Reporter,
) -> Result<Option<Output>, JobError> {
    let bad_body =
        |e: serde_json::Error| JobError::Fail(Problem::invalid_data(format!("job body: {e}")));
    match kind {
        JobKind::Train => {
            let job: TrainJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let r = reporter.clone();
            let record =
                training::run_job(services, tenant, &job, move |p| r.report(0.1 + 0.8 * p)).await?;
            Ok(Some(Output {
                result: record.id.to_string(),
                payload: serde_json::json!({
                    "model_id": record.id,
                    "algorithm": record.algorithm,
                    "training": record.training,
                }),
            }))
        }
        JobKind::Detect => {
            let job: DetectJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let r = reporter.clone();
            let (key, detection) =
                detection::run_job(services, tenant, correlation_id, &job, move |p| {
                    r.report(0.1 + 0.8 * p)
                })
                .await?;
            Ok(Some(Output {
                result: key.as_str().to_string(),
                payload: serde_json::json!({
                    "model_id": detection.model_id,
                    "rows": detection.rows,
                    "anomalies": detection.anomalies,
                    "result_url": format!("/v1/tasks/{}/result", job.task_id),
                }),
            }))
        }
        JobKind::Profile => {
            let job: ProfileJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let dataset =
                ingest::run_profile(services, tenant, correlation_id, &job.dataset_id, job.size)
                    .await?;
            Ok(Some(Output {
                result: dataset.id.to_string(),
                payload: serde_json::json!({ "dataset_id": dataset.id, "status": dataset.status }),
            }))
        }
        JobKind::Report => {
            let job: ReportJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.05);
            let r = reporter.clone();
            let (key, summary) =
                report::run_job(services, tenant, &job, move |p| r.report(0.05 + 0.9 * p)).await?;
            Ok(Some(Output {
                result: key.as_str().to_string(),
                payload: serde_json::json!({
                    "model_id": job.model_id,
                    "rows": summary.rows,
                    "anomalies": summary.anomalies,
                    "bytes": summary.bytes,
                    "report_url": format!("/v1/tasks/{}/report", job.task_id),
                }),
            }))
        }
        JobKind::Backtest => {
            let job: BacktestJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.01);
            let r = reporter.clone();
            let summary = backtest::run_job(services, tenant, &job, move |p| r.report(p)).await?;
            let mut payload = serde_json::to_value(&summary)
                .map_err(|e| JobError::Fail(Problem::internal(e.to_string())))?;
            payload["result_url"] = serde_json::json!(format!("/v1/tasks/{}/result", job.task_id));
            Ok(Some(Output {
                result: backtest::result_key(tenant, &job.task_id)
                    .as_str()
                    .to_string(),
                payload,
            }))
        }
        JobKind::Batch => {
            let job: BatchJob = serde_json::from_value(body.clone()).map_err(bad_body)?;
            reporter.report(0.01);
            let plan = batch::plan(services, tenant, &job).await?;
            let progress = reporter.start_batch(plan.chunks.len() as u32).await?;
            batch::send_chunks(services, tenant, correlation_id, &job, &plan, &progress).await?;
            Ok(None)
        }
    }
}
