//! `api`: the HTTP API (API Gateway HTTP API → lambda_http → the shared router).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::telemetry::init();
    let services = nomaly_aws::deployment::services_from_env().await?;
    nomaly_lambda::api::run(services).await
}
