//! `ws`: the WebSocket API's `$connect`, `$disconnect` and `$default` routes.

use lambda_runtime::{service_fn, LambdaEvent};
use nomaly_lambda::ws;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::telemetry::init();
    let services = nomaly_aws::deployment::services_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        let services = services.clone();
        async move { Ok::<_, lambda_runtime::Error>(ws::handle(&services, event.payload).await) }
    }))
    .await
}
