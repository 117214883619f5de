//! `worker`: SQS batches of jobs (train, detect, profile, report), with partial batch
//! failures; a job still running near the invocation's timeout is handed back.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::worker::run(nomaly_lambda::worker::Lane::Jobs).await
}
