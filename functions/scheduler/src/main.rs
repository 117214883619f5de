//! `scheduler`: on an EventBridge schedule, re-queue lost tasks and sweep expired records.

use lambda_runtime::{service_fn, LambdaEvent};
use nomaly_lambda::scheduler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::telemetry::init();
    let services = nomaly_aws::deployment::services_from_env().await?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let services = services.clone();
        async move { scheduler::handle(&services).await }
    }))
    .await
}
