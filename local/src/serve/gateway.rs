//! What API Gateway and S3 do on AWS, served by the local server itself:
//!
//! - `GET /ws?api_key=<key>`: the WebSocket API. `$connect` authenticates the key, each
//!   message runs the `ws` function's handler, and pushes reach the socket.
//! - `POST|GET|DELETE /@connections/{id}` (and `/{stage}/@connections/{id}`): the
//!   management API for this server's own connections, 410 Gone once a connection is
//!   closed, for the bearer of the management token only. The AWS notifier
//!   (`serve --aws`) pushes through it.
//! - `PUT /uploads/<key>?size=&expires=&sig=`: a signed upload. It stores the object and
//!   then runs ingest, as the bucket's notification would.
//! - `GET /metrics`: the counters of `nomaly_core::metrics` in the Prometheus text
//!   format, for the bearer of the management token only (the Lambda functions write
//!   the same counters to CloudWatch as embedded metrics).
//! - `GET /downloads/<key>?type=&expires=&sig=`: a signed download (a report), served as
//!   the signed content type, as a presigned S3 GET would.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use nomaly_core::ports::{BlobKey, PushError, PushNotifier};
use nomaly_core::service::{ingest, websocket, Problem, Services};
use nomaly_embedded::{LocalNotifier, LocalUploads};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::watch;

/// Largest message the management API and the WebSocket take (API Gateway's limit).
const MAX_MESSAGE: usize = 128 * 1024;

/// Shared by the gateway routes.
#[derive(Clone)]
pub struct Gateway {
    pub services: Services,
    pub sessions: LocalNotifier,
    pub uploads: LocalUploads,
    pub stop: watch::Receiver<bool>,
    /// What the management API and `/metrics` take as `Authorization: Bearer <token>`
    /// (see [`super::token`]).
    pub management_token: std::sync::Arc<str>,
}

/// The whole HTTP surface: the API router and the gateway routes.
pub fn app(gateway: Gateway) -> Router {
    let api = nomaly_core::http::router(gateway.services.clone());
    let edge = Router::new()
        .route("/ws", get(connect))
        .route("/uploads/{*key}", put(upload))
        .route("/downloads/{*key}", get(download))
        .route("/metrics", get(metrics))
        .route(
            "/@connections/{id}",
            post(post_to_connection)
                .get(get_connection)
                .delete(delete_connection),
        )
        .route(
            "/{stage}/@connections/{id}",
            post(staged_post).get(staged_get).delete(staged_delete),
        )
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            management_needs_token,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(gateway);
    api.merge(edge).merge(super::dashboard::routes())
}

/// One line per request, as the API router logs its own.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    // Upload and connection paths carry tenant names and connection ids, not secrets;
    // query strings (signatures, keys) are never logged.
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// The management API and `/metrics` answer only the bearer of the management token, as
/// on AWS the management API answers only signed IAM callers: they act on every
/// tenant's connections and count every tenant's requests, so neither a tenant's key nor
/// being on this machine opens them.
async fn management_needs_token(State(g): State<Gateway>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.contains("/@connections/") || path == "/metrics" {
        let presented = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let allowed = presented.is_some_and(|p| {
            nomaly_core::constant_time::eq(p.as_bytes(), g.management_token.as_bytes())
        });
        if !allowed {
            return Problem::unauthorized(
                "the management API and /metrics take `Authorization: Bearer <management token>` ($NOMALY_MANAGEMENT_TOKEN, or the file management-token in the data folder)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

// ---- WebSocket ---------------------------------------------------------------------

#[derive(Deserialize)]
struct ConnectQuery {
    api_key: Option<String>,
}

fn connection_id() -> String {
    let mut bytes = [0u8; 16];
    // Unguessable: the id is what the management API acts on.
    if getrandom::fill(&mut bytes).is_err() {
        return format!("conn{}", nomaly_core::ids::Ulid::new().encode());
    }
    hex::encode(bytes)
}

async fn connect(
    State(g): State<Gateway>,
    query: Result<Query<ConnectQuery>, QueryRejection>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let key = query.ok().and_then(|Query(q)| q.api_key).or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
    });
    let id = connection_id();
    let outbox = g.sessions.open(&id);
    if let Err(p) = websocket::connect(&g.services, &id, key.as_deref()).await {
        g.sessions.close(&id);
        return p.into_response();
    }
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| session(g, id, outbox, socket))
}

async fn session(
    g: Gateway,
    id: String,
    mut outbox: tokio::sync::mpsc::Receiver<Vec<u8>>,
    mut socket: WebSocket,
) {
    let mut stop = g.stop.clone();
    // The connection record expires after this; close the socket then, as API Gateway
    // closes its sockets after 2 hours, so the client reconnects instead of going deaf.
    let expiry = tokio::time::sleep(std::time::Duration::from_secs(u64::from(
        g.services
            .settings
            .connection_ttl_secs
            .saturating_sub(60)
            .max(1),
    )));
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    websocket::message_received(&g.services, &id, text.as_bytes()).await;
                }
                Some(Ok(Message::Binary(bytes))) => {
                    websocket::message_received(&g.services, &id, &bytes).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    tracing::info!(connection = %id, error = %e, "socket error");
                    break;
                }
            },
            out = outbox.recv() => match out {
                Some(bytes) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                // Closed through the management API.
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            _ = stop.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            _ = &mut expiry => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        }
    }
    g.sessions.close(&id);
    if let Err(p) = websocket::disconnect(&g.services, &id).await {
        tracing::warn!(connection = %id, error = %p, "connection record not deleted");
    }
}

// ---- Management API ----------------------------------------------------------------

fn gone(id: &str) -> Response {
    (
        StatusCode::GONE,
        [("x-amzn-errortype", "GoneException")],
        Json(serde_json::json!({"message": format!("connection {id} is gone")})),
    )
        .into_response()
}

async fn post_to_connection(
    State(g): State<Gateway>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if body.len() > MAX_MESSAGE {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [("x-amzn-errortype", "PayloadTooLargeException")],
            Json(serde_json::json!({"message": "messages are limited to 128 KB"})),
        )
            .into_response();
    }
    match g.sessions.push(&id, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(PushError::Gone(_)) => gone(&id),
        Err(e) => Problem::internal(e.to_string()).into_response(),
    }
}

async fn get_connection(
    State(g): State<Gateway>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    match g.sessions.opened_at(&id) {
        Some(at) => Json(serde_json::json!({
            "connectedAt": at.rfc3339(),
            "lastActiveAt": at.rfc3339(),
            "identity": {"sourceIp": peer.ip().to_string()}
        }))
        .into_response(),
        None => gone(&id),
    }
}

async fn delete_connection(State(g): State<Gateway>, Path(id): Path<String>) -> Response {
    if g.sessions.close(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        gone(&id)
    }
}

async fn staged_post(
    state: State<Gateway>,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    post_to_connection(state, Path(id), body).await
}

async fn staged_get(
    state: State<Gateway>,
    Path((_, id)): Path<(String, String)>,
    peer: ConnectInfo<SocketAddr>,
) -> Response {
    get_connection(state, Path(id), peer).await
}

async fn staged_delete(state: State<Gateway>, Path((_, id)): Path<(String, String)>) -> Response {
    delete_connection(state, Path(id)).await
}

// ---- Uploads -----------------------------------------------------------------------

#[derive(Deserialize)]
struct Signed {
    size: u64,
    expires: i64,
    sig: String,
}

/// `GET /metrics`: aggregate counters of every tenant, so not for tenants' keys: the
/// management token's bearer only ([`management_needs_token`]).
async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        nomaly_core::metrics::global().prometheus(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SignedDownload {
    #[serde(rename = "type")]
    content_type: String,
    expires: i64,
    sig: String,
}

/// What a download may run: nothing. A report is static HTML with inline styles and
/// SVG; even if a value escaped its escaping, no script would run.
const DOWNLOAD_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";

async fn download(
    State(g): State<Gateway>,
    Path(key): Path<String>,
    signed: Result<Query<SignedDownload>, QueryRejection>,
) -> Response {
    let (Ok(Query(signed)), Ok(key)) = (signed, BlobKey::parse(&key)) else {
        return Problem::forbidden("the download URL is not valid").into_response();
    };
    if !g
        .uploads
        .verify_download(&key, &signed.content_type, signed.expires, &signed.sig)
    {
        return Problem::forbidden(
            "the download URL is not valid (wrong signature, another key, or expired): ask for a new one",
        )
        .into_response();
    }
    match g.services.blobs.get_blob(&key).await {
        Ok(Some(bytes)) => (
            [
                (axum::http::header::CONTENT_TYPE, signed.content_type),
                (
                    axum::http::header::CONTENT_SECURITY_POLICY,
                    DOWNLOAD_POLICY.to_string(),
                ),
                (
                    axum::http::header::X_CONTENT_TYPE_OPTIONS,
                    "nosniff".to_string(),
                ),
                (axum::http::header::CACHE_CONTROL, "private".to_string()),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => Problem::not_found("the object is gone").into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn upload(
    State(g): State<Gateway>,
    Path(key): Path<String>,
    signed: Result<Query<Signed>, QueryRejection>,
    body: Body,
) -> Response {
    let refused = || {
        Problem::forbidden(
            "the upload URL is not valid (wrong signature, another key, or expired): ask for a new one",
        )
        .into_response()
    };
    let (Ok(Query(signed)), Ok(key)) = (signed, BlobKey::parse(&key)) else {
        return refused();
    };
    if !g
        .uploads
        .verify(&key, signed.size, signed.expires, &signed.sig)
    {
        return refused();
    }
    if let Err(p) = ingest::check_upload_open(&g.services, key.as_str()).await {
        return p.into_response();
    }
    let limit = usize::try_from(signed.size).unwrap_or(usize::MAX);
    let bytes = match http_body_util::Limited::new(body, limit.saturating_add(1))
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Problem::too_large(format!(
                "the body is larger than the {} bytes this URL was signed for",
                signed.size
            ))
            .into_response()
        }
        Err(e) => {
            return Problem::malformed_request(format!("reading the upload: {e}")).into_response()
        }
    };
    if bytes.len() as u64 != signed.size {
        return Problem::malformed_request(format!(
            "the body is {} bytes; this URL was signed for exactly {}",
            bytes.len(),
            signed.size
        ))
        .into_response();
    }
    let size = signed.size;
    if let Err(e) = g.services.blobs.put_blob(&key, Vec::from(bytes)).await {
        return Problem::from(e).into_response();
    }
    // The bucket notification's part: stored first, then taken in. The uploader's PUT
    // succeeded either way, as on S3; the outcome shows on the dataset.
    if let Err(p) = ingest::object_created(&g.services, key.as_str(), size).await {
        tracing::error!(key = key.as_str(), error = %p, "ingest failed after an upload");
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_management_api_and_metrics_take_the_token_even_from_loopback() {
        let dir = std::env::temp_dir().join(format!(
            "nomaly-gateway-{}",
            nomaly_core::ids::Ulid::new().encode()
        ));
        let stack = nomaly_embedded::Stack::open(
            &dir,
            "http://127.0.0.1:9",
            nomaly_core::service::Settings::default(),
        )
        .expect("a stack");
        let (_stop_tx, stop) = watch::channel(false);
        let app = app(Gateway {
            services: stack.services.clone(),
            sessions: stack.notifier.clone(),
            uploads: stack.uploads.clone(),
            stop,
            management_token: "the-management-token".into(),
        });
        let loopback = SocketAddr::from(([127, 0, 0, 1], 40000));
        let call = |method: &str, path: &str, bearer: Option<&str>| {
            let mut request = Request::builder().method(method).uri(path);
            if let Some(b) = bearer {
                request = request.header("authorization", format!("Bearer {b}"));
            }
            let mut request = request.body(Body::from("{}")).expect("request");
            request.extensions_mut().insert(ConnectInfo(loopback));
            app.clone().oneshot(request)
        };
        let key = nomaly_core::domain::ApiKey::issue(
            nomaly_core::domain::TenantId::parse("acme").expect("tenant"),
        );
        stack.services.keys.put_key(&key.record).await.expect("key");
        for (method, path) in [
            ("GET", "/metrics"),
            ("GET", "/@connections/0123456789abcdef"),
            ("POST", "/@connections/0123456789abcdef"),
            ("DELETE", "/live/@connections/0123456789abcdef"),
        ] {
            for bearer in [None, Some("wrong"), Some(key.plaintext.as_str())] {
                let answer = call(method, path, bearer).await.expect("answer");
                assert_eq!(
                    answer.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {bearer:?}"
                );
            }
            let answer = call(method, path, Some("the-management-token"))
                .await
                .expect("answer");
            let expected = if path == "/metrics" {
                StatusCode::OK
            } else {
                StatusCode::GONE
            };
            assert_eq!(answer.status(), expected, "{method} {path} with the token");
        }
        // The token does not stand in for a tenant's key on the API.
        let answer = call("GET", "/v1/tasks", Some("the-management-token"))
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        std::fs::remove_dir_all(&dir).ok();
    }
}
