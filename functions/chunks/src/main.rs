//! `chunks`: SQS batches of batch-scoring chunks (one byte range of a large object each),
//! with partial batch failures.

use nomaly_core::service::worker::Lane;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::run(|services, event| async move {
        Ok(nomaly_lambda::worker::handle_lane(&services, Lane::Chunks, event).await)
    })
    .await
}
