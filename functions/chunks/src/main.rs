//! `chunks`: SQS batches of batch-scoring chunks (one byte range of a large object each),
//! with partial batch failures; a chunk still running near the invocation's timeout is
//! handed back.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::worker::run(nomaly_lambda::worker::Lane::Chunks).await
}
