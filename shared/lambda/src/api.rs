//! The `api` function: the shared router under lambda_http (API Gateway HTTP API).

/// The `api` function's `main`: starts as every function does ([`crate::start`]), then
/// serves the router until the runtime stops.
pub async fn run() -> Result<(), crate::Error> {
    let services = crate::start().await?;
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
