//! `ingest`: S3 ObjectCreated notifications for dataset uploads.

use lambda_runtime::{service_fn, LambdaEvent};
use nomaly_lambda::ingest;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::telemetry::init();
    let services = nomaly_aws::deployment::services_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        let services = services.clone();
        async move {
            let taken = ingest::handle(&services, event.payload).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({ "taken_in": taken }))
        }
    }))
    .await
}
