//! The body of a job on the jobs queue, decoded once, after the claim check, into the
//! input of the use case that runs it.

use crate::domain::TaskKind;
use crate::ids::TaskId;
use crate::service::backtest::BacktestJob;
use crate::service::batch::BatchJob;
use crate::service::detection::DetectJob;
use crate::service::ingest::ProfileJob;
use crate::service::report::ReportJob;
use crate::service::training::TrainJob;

/// A job's body, one variant per task kind.
#[derive(Debug, Clone)]
pub enum JobBody {
    /// Fit and store a model.
    Train(TrainJob),
    /// Score rows too many to score inline.
    Detect(DetectJob),
    /// Profile an uploaded dataset.
    Profile(ProfileJob),
    /// Render a report on a model's scores.
    Report(ReportJob),
    /// Plan a batch and send its chunk jobs.
    Batch(BatchJob),
    /// Run a stream detector over a history.
    Backtest(BacktestJob),
}

impl JobBody {
    /// Decodes the body of a job of `kind`.
    pub fn decode(kind: TaskKind, body: &serde_json::Value) -> Result<Self, serde_json::Error> {
        fn read<T: serde::de::DeserializeOwned>(
            body: &serde_json::Value,
        ) -> Result<T, serde_json::Error> {
            T::deserialize(body)
        }
        Ok(match kind {
            TaskKind::Train => JobBody::Train(read(body)?),
            TaskKind::Detect => JobBody::Detect(read(body)?),
            TaskKind::Profile => JobBody::Profile(read(body)?),
            TaskKind::Report => JobBody::Report(read(body)?),
            TaskKind::Batch => JobBody::Batch(read(body)?),
            TaskKind::Backtest => JobBody::Backtest(read(body)?),
        })
    }

    /// The body as it travels (what `jobs::submit` sent).
    #[cfg(test)]
    pub fn encode(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            JobBody::Train(job) => serde_json::to_value(job),
            JobBody::Detect(job) => serde_json::to_value(job),
            JobBody::Profile(job) => serde_json::to_value(job),
            JobBody::Report(job) => serde_json::to_value(job),
            JobBody::Batch(job) => serde_json::to_value(job),
            JobBody::Backtest(job) => serde_json::to_value(job),
        }
    }

    /// The task the job works for.
    pub fn task_id(&self) -> &TaskId {
        match self {
            JobBody::Train(job) => &job.task_id,
            JobBody::Detect(job) => &job.task_id,
            JobBody::Profile(job) => &job.task_id,
            JobBody::Report(job) => &job.task_id,
            JobBody::Batch(job) => &job.task_id,
            JobBody::Backtest(job) => &job.task_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Job;
    use crate::service::batch::ChunkJob;
    use crate::service::jobs::JobKind;
    use serde::Deserialize;

    fn fixtures() -> Vec<(String, String)> {
        crate::fixtures::stored("jobs")
    }

    #[test]
    fn sent_jobs_of_every_kind_decode_and_encode_byte_for_byte() {
        let mut kinds = std::collections::BTreeSet::new();
        for (path, text) in fixtures() {
            let job: Job = serde_json::from_str(&text).expect(&path);
            let kind = JobKind::parse(&job.kind).unwrap_or_else(|| panic!("{path}: kind"));
            let body = match kind {
                JobKind::Task(kind) => JobBody::decode(kind, &job.body)
                    .unwrap_or_else(|e| panic!("{path}: {e}"))
                    .encode(),
                JobKind::Chunk => ChunkJob::deserialize(&job.body)
                    .map(serde_json::to_value)
                    .unwrap_or_else(|e| panic!("{path}: {e}")),
            };
            let again = Job {
                body: body.expect("encodes"),
                ..job.clone()
            };
            let written = serde_json::to_string(&again).expect("encodes") + "\n";
            assert_eq!(written, text, "{path} re-encodes differently");
            kinds.insert(kind.as_str());
        }
        for kind in TaskKind::ALL
            .map(JobKind::Task)
            .into_iter()
            .chain([JobKind::Chunk])
        {
            assert!(
                kinds.contains(kind.as_str()),
                "no fixture of a {} job",
                kind.as_str()
            );
        }
    }

    #[test]
    fn a_body_of_another_kind_does_not_decode() {
        let (_, text) = fixtures()
            .into_iter()
            .find(|(path, _)| path.ends_with("profile.json"))
            .expect("a profile job");
        let job: Job = serde_json::from_str(&text).expect("a job");
        assert!(JobBody::decode(TaskKind::Profile, &job.body).is_ok());
        assert!(JobBody::decode(TaskKind::Train, &job.body).is_err());
    }
}
