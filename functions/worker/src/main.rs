//! `worker`: SQS batches of jobs (train, detect, profile, report), with partial batch failures.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::run(|services, event| async move {
        Ok(nomaly_lambda::worker::handle(&services, event).await)
    })
    .await
}
