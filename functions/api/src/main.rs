//! `api`: the HTTP API (API Gateway HTTP API → lambda_http → the shared router).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::api::run().await
}
