//! The Lambda side of nomaly: each module turns one trigger's events into calls of the
//! shared use cases and the results into the response Lambda expects. The binaries under
//! `functions/` only build the services once and hand events to these handlers, which
//! are tested here without a network on the embedded stack.

pub mod api;
pub mod events;
pub mod ingest;
pub mod scheduler;
pub mod telemetry;
pub mod worker;
pub mod ws;

/// What a handler returns to the runtime on failure.
pub type Error = lambda_runtime::Error;

use lambda_runtime::{service_fn, LambdaEvent};
use nomaly_core::service::Services;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;

/// What every function does before its first event: JSON logs, malloc arenas held to
/// two, and the clients and services built once from the environment. [`run`] and
/// [`api::run`] start with it.
pub async fn start() -> Result<Services, Error> {
    telemetry::init();
    nomaly_core::memory::limit_malloc_arenas();
    Ok(nomaly_aws::deployment::services_from_env().await?)
}

/// What every function's `main` does: JSON logs, the clients and services built once
/// from the environment, then `handler` for every event until the runtime stops.
pub async fn run<E, R, F, Fut>(handler: F) -> Result<(), Error>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Services, E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Error>> + Send + 'static,
{
    run_with_context(move |services, event, _| handler(services, event)).await
}

/// As [`run`], handing `handler` the invocation's context as well (its deadline, for the
/// functions that stop their work before the timeout does).
pub async fn run_with_context<E, R, F, Fut>(handler: F) -> Result<(), Error>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(Services, E, lambda_runtime::Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Error>> + Send + 'static,
{
    let services = start().await?;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| {
        let invocation = handler(services.clone(), event.payload, event.context);
        async move {
            let result = invocation.await;
            telemetry::flush_metrics();
            result
        }
    }))
    .await
}
