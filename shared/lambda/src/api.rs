//! The `api` function: the shared router under lambda_http (API Gateway HTTP API).

use nomaly_core::service::Services;

/// Serves the router until the runtime stops.
pub async fn run(services: Services) -> Result<(), crate::Error> {
    let router = nomaly_core::http::router(services);
    // The invocation's metrics are written as its response leaves.
    let service = tower::ServiceBuilder::new()
        .map_result(|result| {
            crate::telemetry::flush_metrics();
            result
        })
        .service(router);
    lambda_http::run(service).await
}
