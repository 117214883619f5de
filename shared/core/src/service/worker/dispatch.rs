//! The one dispatch point: a job's body decides which use case runs it.

use super::body::JobBody;
use super::lifecycle::Output;
use super::reporter::Reporter;
use crate::domain::payload::Outcome;
use crate::service::jobs::JobError;
use crate::service::Services;
use crate::service::{backtest, batch, detection, ingest, report, training};

pub(super) async fn run(
    services: &Services,
    body: &JobBody,
    tenant: &crate::domain::TenantId,
    correlation_id: &str,
    reporter: Reporter,
) -> Result<Option<Output>, JobError> {
    match body {
        JobBody::Train(job) => {
            reporter.report(0.05);
            let r = reporter.clone();
            let record =
                training::run_job(services, tenant, job, move |p| r.report(0.1 + 0.8 * p)).await?;
            Ok(Some(Output {
                result: record.id.to_string(),
                outcome: Outcome::Train {
                    model_id: record.id,
                    algorithm: record.algorithm,
                    training: record.training,
                },
            }))
        }
        JobBody::Detect(job) => {
            reporter.report(0.05);
            let r = reporter.clone();
            let (key, detection) =
                detection::run_job(services, tenant, correlation_id, job, move |p| {
                    r.report(0.1 + 0.8 * p)
                })
                .await?;
            Ok(Some(Output {
                result: key.as_str().to_string(),
                outcome: Outcome::Detect {
                    model_id: detection.model_id,
                    rows: detection.rows,
                    anomalies: detection.anomalies,
                    result_url: format!("/v1/tasks/{}/result", job.task_id),
                },
            }))
        }
        JobBody::Profile(job) => {
            reporter.report(0.05);
            let dataset =
                ingest::run_profile(services, tenant, correlation_id, &job.dataset_id, job.size)
                    .await?;
            Ok(Some(Output {
                result: dataset.id.to_string(),
                outcome: Outcome::Profile {
                    dataset_id: dataset.id,
                    status: dataset.status,
                },
            }))
        }
        JobBody::Report(job) => {
            reporter.report(0.05);
            let r = reporter.clone();
            let (key, summary) =
                report::run_job(services, tenant, job, move |p| r.report(0.05 + 0.9 * p)).await?;
            Ok(Some(Output {
                result: key.as_str().to_string(),
                outcome: Outcome::Report {
                    model_id: job.model_id.clone(),
                    rows: summary.rows,
                    anomalies: summary.anomalies,
                    bytes: summary.bytes,
                    report_url: format!("/v1/tasks/{}/report", job.task_id),
                },
            }))
        }
        JobBody::Backtest(job) => {
            reporter.report(0.01);
            let r = reporter.clone();
            let summary = backtest::run_job(services, tenant, job, move |p| r.report(p)).await?;
            Ok(Some(Output {
                result: backtest::result_key(tenant, &job.task_id)
                    .as_str()
                    .to_string(),
                outcome: Outcome::Backtest {
                    points: summary.points,
                    anomalies: summary.anomalies,
                    threshold: summary.threshold,
                    evaluation: summary.evaluation,
                    best: summary.best,
                    result_url: format!("/v1/tasks/{}/result", job.task_id),
                },
            }))
        }
        JobBody::Batch(job) => {
            reporter.report(0.01);
            let plan = batch::plan(services, tenant, job).await?;
            let progress = reporter.start_batch(plan.chunks.len() as u32).await?;
            batch::send_chunks(services, tenant, correlation_id, job, &plan, &progress).await?;
            Ok(None)
        }
    }
}
