//! The `api` function: the shared router under lambda_http (API Gateway HTTP API).

use nomaly_core::service::Services;

/// Serves the router until the runtime stops.
pub async fn run(services: Services) -> Result<(), crate::Error> {
    lambda_http::run(nomaly_core::http::router(services)).await
}
