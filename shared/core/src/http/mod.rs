//! The HTTP API of `docs/architecture.md` as one axum [`Router`]: the `api` Lambda runs
//! it through lambda_http, the local server on a TCP listener. Every route but `/healthz` needs
//! `Authorization: Bearer <api key>`; errors are `application/problem+json`; a POST
//! with an `Idempotency-Key` gets the first response again when retried.

mod alert_routes;
pub mod answers;
pub mod extract;
mod idempotency;
pub mod openapi;
mod routes;

use crate::limits::MAX_BODY_BYTES;
use crate::service::{Problem, Services};
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use extract::{Correlation, Tenant};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use tracing::Instrument;

/// One route: its method, its path (under `/v1` for [`v1_routes`]) and its handler.
pub struct Route {
    /// The method it takes.
    pub method: Method,
    /// Its path, with `{id}` for a path parameter.
    pub path: &'static str,
    handler: MethodRouter<Services>,
}

/// A route for `method` on `path`, handled by `handler`.
fn at<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Services>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("{method} is not a method a route can take"));
    Route {
        method,
        path,
        handler: on(filter, handler),
    }
}

/// The routes that need no key. The router is built from these two tables alone, so a
/// test that walks them walks the router (`openapi.rs` checks each is documented).
pub fn open_routes() -> Vec<Route> {
    vec![
        at(Method::GET, "/healthz", routes::health),
        at(Method::GET, "/openapi.json", routes::openapi),
    ]
}

/// The routes under `/v1`, each behind the key check, the rate limit and idempotency.
pub fn v1_routes() -> Vec<Route> {
    use Method as M;
    vec![
        at(M::POST, "/detect", routes::detect),
        at(M::POST, "/batch", routes::submit_batch),
        at(M::POST, "/backtests", routes::submit_backtest),
        at(M::POST, "/models", routes::train),
        at(M::GET, "/models", routes::list_models),
        at(M::GET, "/models/{id}", routes::get_model),
        at(M::DELETE, "/models/{id}", routes::delete_model),
        at(M::GET, "/models/{id}/artifact", routes::model_artifact),
        at(M::POST, "/models/{id}/reports", routes::create_report),
        at(M::GET, "/tasks", routes::list_tasks),
        at(M::GET, "/tasks/{id}", routes::get_task),
        at(M::POST, "/tasks/{id}/cancel", routes::cancel_task),
        at(M::GET, "/tasks/{id}/result", routes::task_result),
        at(M::GET, "/tasks/{id}/report", routes::task_report),
        at(M::POST, "/datasets", routes::register_dataset),
        at(M::GET, "/datasets", routes::list_datasets),
        at(M::GET, "/datasets/{id}", routes::get_dataset),
        at(M::DELETE, "/datasets/{id}", routes::delete_dataset),
        at(M::GET, "/events", routes::list_events),
        at(M::POST, "/streams", routes::create_stream),
        at(M::GET, "/streams", routes::list_streams),
        at(M::GET, "/streams/{id}", routes::get_stream),
        at(M::DELETE, "/streams/{id}", routes::delete_stream),
        at(M::POST, "/streams/{id}/points", routes::append_points),
        at(M::GET, "/streams/{id}/entities", routes::list_entities),
        at(M::GET, "/streams/{id}/entities/{name}", routes::get_entity),
        at(M::POST, "/alerts", alert_routes::create_alert),
        at(M::GET, "/alerts", alert_routes::list_alerts),
        at(M::GET, "/alerts/{id}", alert_routes::get_alert),
        at(M::PUT, "/alerts/{id}", alert_routes::update_alert),
        at(M::DELETE, "/alerts/{id}", alert_routes::delete_alert),
        at(M::POST, "/alerts/{id}/test", alert_routes::test_alert),
        at(
            M::GET,
            "/alerts/{id}/deliveries",
            alert_routes::list_deliveries,
        ),
        at(
            M::GET,
            "/alerts/{id}/deliveries/{delivery_id}",
            alert_routes::get_delivery,
        ),
        at(M::POST, "/feedback", alert_routes::give_feedback),
        at(M::GET, "/feedback", alert_routes::list_feedback),
    ]
}

/// Every route as (method, full path): what the OpenAPI document must describe.
pub fn route_list() -> Vec<(Method, String)> {
    let open = open_routes()
        .into_iter()
        .map(|r| (r.method, r.path.to_string()));
    let v1 = v1_routes()
        .into_iter()
        .map(|r| (r.method, format!("/v1{}", r.path)));
    open.chain(v1).collect()
}

/// Adds `routes` to `router`; routes on one path share it (axum merges their methods).
fn with(router: Router<Services>, routes: Vec<Route>) -> Router<Services> {
    routes
        .into_iter()
        .fold(router, |router, r| router.route(r.path, r.handler))
}

/// The API: `/healthz`, `/openapi.json` and `/v1/...`.
pub fn router(services: Services) -> Router {
    let v1 = with(Router::new(), v1_routes())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            services.clone(),
            idempotency::layer,
        ))
        .layer(middleware::from_fn_with_state(
            services.clone(),
            authenticate,
        ));
    with(Router::new(), open_routes())
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(frame))
        .with_state(services)
}

async fn not_found() -> Problem {
    Problem::not_found("no such route; see the API reference at /openapi.json")
}

async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed("this route does not take this method")
}

/// Correlation id, body size check, one log line per request, and a problem for any
/// failure before a handler ran, and for a handler that panics (a 500, instead of a
/// dropped connection).
async fn frame(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation = req
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| format!("req_{}", crate::ids::Ulid::new().encode()));
    req.extensions_mut()
        .insert(Correlation(correlation.clone()));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Every line logged while the request runs carries these; `tenant` once known.
    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation,
        method = %method,
        path = %path,
        tenant = tracing::field::Empty
    );
    let mut response = if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        Problem::too_large(format!(
            "request bodies are limited to {MAX_BODY_BYTES} bytes (limit `Request body`)"
        ))
        .into_response()
    } else {
        match AssertUnwindSafe(next.run(req).instrument(span.clone()))
            .catch_unwind()
            .await
        {
            Ok(response) => as_problem(response).await,
            Err(_) => {
                // The panic itself was printed by the panic hook.
                tracing::error!(method = %method, path = %path, correlation_id = %correlation, "the request's handler panicked");
                Problem::internal(format!(
                    "the request failed on our side; quote {correlation} when reporting it"
                ))
                .into_response()
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert("x-correlation-id", v);
    }
    let tenant = response
        .extensions()
        .get::<Tenant>()
        .map(|t| t.0.to_string());
    crate::metrics::global().request(response.status().as_u16());
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        tenant = tenant.as_deref().unwrap_or("-"),
        correlation_id = %correlation,
        "request"
    );
    response
}

/// Turns an error answered below the handlers (an extractor's rejection, such as a path
/// that is not valid UTF-8 once decoded) into a problem, so every error is
/// `application/problem+json`.
async fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut problem = Problem::for_status(status.as_u16(), detail).into_response();
    problem.extensions_mut().extend(parts.extensions);
    problem
}

/// Resolves the bearer key to a tenant (401 otherwise) and counts the request against
/// the tenant's rate limit (429 past it).
async fn authenticate(State(services): State<Services>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_string);
    let Some(presented) = presented else {
        return Problem::unauthorized("send `Authorization: Bearer <api key>`").into_response();
    };
    match services.keys.authenticate(&presented).await {
        Ok(tenant) => {
            tracing::Span::current().record("tenant", tracing::field::display(&tenant));
            if let Err(p) = crate::service::rate_limit::admit(&services, &tenant).await {
                let mut response = p.into_response();
                response.extensions_mut().insert(Tenant(tenant));
                return response;
            }
            req.extensions_mut().insert(Tenant(tenant.clone()));
            let mut response = next.run(req).await;
            response.extensions_mut().insert(Tenant(tenant));
            response
        }
        Err(p) => p.into_response(),
    }
}

/// Whether a method changes state (and so takes an `Idempotency-Key`).
fn is_post(method: &Method) -> bool {
    method == Method::POST
}
