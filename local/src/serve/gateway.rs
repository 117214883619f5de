//! What API Gateway and S3 do on AWS, served by the local server itself:
//!
//! - `GET /ws?api_key=<key>`: the WebSocket API. `$connect` authenticates the key, each
//!   message runs the `ws` function's handler, and pushes reach the socket.
//! - `POST|GET|DELETE /@connections/{id}` (and `/{stage}/@connections/{id}`): the
//!   management API for this server's own connections, 410 Gone once a connection is
//!   closed, for the bearer of the management token only. The AWS notifier
//!   (`serve --aws`) pushes through it.
//! - `PUT /uploads/<key>?size=&expires=&sig=`: a signed upload. The body streams to a file
//!   under `<data-dir>/incoming/` (a few uploads per tenant at once, each dropped when its
//!   bytes stop arriving), which then moves into the blob store; ingest runs after, as
//!   the bucket's notification would.
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
use nomaly_core::limits;
use nomaly_core::ports::{BlobKey, PushError, PushNotifier};
use nomaly_core::service::{ingest, websocket, Problem, Services};
use nomaly_embedded::{LocalNotifier, LocalUploads};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
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
    /// Uploads being received.
    pub incoming: Incoming,
}

/// Uploads being received: where their bodies stream to, how many each tenant is
/// sending, and how long a body may pause.
#[derive(Clone)]
pub struct Incoming {
    folder: PathBuf,
    read_timeout: Duration,
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
}

impl Incoming {
    /// Uploads stream to `<data_dir>/incoming/`, emptied here of what a crash left.
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<Incoming> {
        let folder = data_dir.join("incoming");
        match std::fs::remove_dir_all(&folder) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&folder)?;
        Ok(Incoming {
            folder,
            read_timeout: Duration::from_secs(limits::UPLOAD_READ_TIMEOUT_SECS),
            per_tenant: Arc::default(),
        })
    }

    /// The same, dropping a body after `timeout` without bytes (tests use a short one).
    #[cfg(test)]
    pub fn with_read_timeout(mut self, timeout: Duration) -> Incoming {
        self.read_timeout = timeout;
        self
    }

    /// One of `tenant`'s upload slots, or `None` when all are taken.
    fn slot(&self, tenant: &str) -> Option<UploadSlot> {
        let mut counts = self.per_tenant.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(tenant.to_string()).or_insert(0);
        if *n >= limits::MAX_UPLOADS_PER_TENANT {
            return None;
        }
        *n += 1;
        Some(UploadSlot {
            per_tenant: self.per_tenant.clone(),
            tenant: tenant.to_string(),
        })
    }
}

/// A taken upload slot, given back when dropped.
struct UploadSlot {
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut counts = self.per_tenant.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

/// A partial upload's file, removed when dropped unless it was moved into the store.
struct PartFile(PathBuf);

impl Drop for PartFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.0.display(), error = %e, "a partial upload stays");
            }
            _ => {}
        }
    }
}

/// Why a body could not be received whole.
enum Receive {
    TooLarge,
    Stalled,
    Read(String),
    Write(std::io::Error),
}

/// Streams `body` into `file`, at most `limit + 1` bytes, each read within `timeout`.
/// Returns how many bytes were written.
async fn receive(
    mut body: Body,
    file: &std::path::Path,
    limit: u64,
    timeout: Duration,
) -> Result<u64, Receive> {
    let mut out = tokio::fs::File::create(file)
        .await
        .map_err(Receive::Write)?;
    let mut written = 0u64;
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err(Receive::Stalled),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Receive::Read(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        written += data.len() as u64;
        if written > limit {
            return Err(Receive::TooLarge);
        }
        out.write_all(&data).await.map_err(Receive::Write)?;
    }
    out.flush().await.map_err(Receive::Write)?;
    Ok(written)
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
    // Keys are `tenants/<tenant>/...` (checked when parsed): the slot is the tenant's.
    let tenant = key.as_str().split('/').nth(1).unwrap_or_default();
    let Some(_slot) = g.incoming.slot(tenant) else {
        return Problem::rate_limited(format!(
            "this tenant is sending {} uploads already, the most at once; retry when one ends",
            limits::MAX_UPLOADS_PER_TENANT
        ))
        .retry_after(1)
        .into_response();
    };
    let part = PartFile(
        g.incoming
            .folder
            .join(format!("{}.part", nomaly_core::ids::Ulid::new().encode())),
    );
    let received = receive(body, &part.0, signed.size, g.incoming.read_timeout).await;
    let problem = match received {
        Ok(n) if n == signed.size => None,
        Ok(n) => Some(Problem::malformed_request(format!(
            "the body is {n} bytes; this URL was signed for exactly {}",
            signed.size
        ))),
        Err(Receive::TooLarge) => Some(Problem::too_large(format!(
            "the body is larger than the {} bytes this URL was signed for",
            signed.size
        ))),
        Err(Receive::Stalled) => Some(Problem::malformed_request(format!(
            "no bytes of the upload arrived for {} s; it was dropped, and nothing was stored",
            g.incoming.read_timeout.as_secs_f64()
        ))),
        Err(Receive::Read(e)) => Some(Problem::malformed_request(format!(
            "reading the upload: {e}"
        ))),
        Err(Receive::Write(e)) => {
            tracing::error!(error = %e, "an upload could not be written to disk");
            Some(
                Problem::unavailable("the upload could not be written; retry later").retry_after(5),
            )
        }
    };
    if let Some(p) = problem {
        return p.into_response();
    }
    let size = signed.size;
    if let Err(e) = g.services.blobs.put_blob_file(&key, &part.0).await {
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

    /// A gateway on a fresh embedded stack in a scratch folder.
    struct Local {
        dir: std::path::PathBuf,
        stack: nomaly_embedded::Stack,
        app: Router,
        _stop: watch::Sender<bool>,
    }

    fn local(read_timeout: Duration) -> Local {
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
        let (stop_tx, stop) = watch::channel(false);
        let app = app(Gateway {
            services: stack.services.clone(),
            sessions: stack.notifier.clone(),
            uploads: stack.uploads.clone(),
            stop,
            management_token: "the-management-token".into(),
            incoming: Incoming::open(&dir)
                .expect("an incoming folder")
                .with_read_timeout(read_timeout),
        });
        Local {
            dir,
            stack,
            app,
            _stop: stop_tx,
        }
    }

    #[tokio::test]
    async fn the_management_api_and_metrics_take_the_token_even_from_loopback() {
        let Local {
            dir,
            stack,
            app,
            _stop,
        } = local(Duration::from_secs(limits::UPLOAD_READ_TIMEOUT_SECS));
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

    /// An upload the test sends: its URL's path and query, and its key.
    struct Grant {
        path: String,
        key: BlobKey,
    }

    async fn register(app: &Router, api_key: &str, size: usize) -> Grant {
        let request = Request::builder()
            .method("POST")
            .uri("/v1/datasets")
            .header("authorization", format!("Bearer {api_key}"))
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({"name": "d.csv", "size": size}).to_string(),
            ))
            .expect("request");
        let answer = app.clone().oneshot(request).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::CREATED);
        let body = answer.into_body().collect().await.expect("body").to_bytes();
        let grant: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let url = grant["upload"]["url"].as_str().expect("url");
        let path = url
            .strip_prefix("http://127.0.0.1:9")
            .expect("a local URL")
            .to_string();
        let key = path
            .strip_prefix("/uploads/")
            .and_then(|rest| rest.split('?').next())
            .expect("an upload path");
        Grant {
            path: path.clone(),
            key: BlobKey::parse(key).expect("a key"),
        }
    }

    fn put(grant: &Grant, body: Body) -> Request<Body> {
        Request::builder()
            .method("PUT")
            .uri(&grant.path)
            .body(body)
            .expect("request")
    }

    /// A body that sends its first bytes and then nothing, never ending.
    fn stalling() -> Body {
        use futures_util::StreamExt;
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
            b"a,b\n1,2\n",
        ))]);
        Body::from_stream(first.chain(futures_util::stream::pending()))
    }

    #[tokio::test]
    async fn uploads_stream_to_disk_a_few_per_tenant_and_are_dropped_when_they_stall() {
        let Local {
            dir,
            stack,
            app,
            _stop,
        } = local(Duration::from_secs(2));
        let mut keys = Vec::new();
        for tenant in ["acme", "globex"] {
            let key = nomaly_core::domain::ApiKey::issue(
                nomaly_core::domain::TenantId::parse(tenant).expect("tenant"),
            );
            stack.services.keys.put_key(&key.record).await.expect("key");
            keys.push(key.plaintext);
        }
        let csv = b"a,b\n1,2\n3,4\n".to_vec();
        let cap = limits::MAX_UPLOADS_PER_TENANT;
        let mut acme = Vec::new();
        for _ in 0..cap + 1 {
            acme.push(register(&app, &keys[0], csv.len()).await);
        }
        let globex = register(&app, &keys[1], csv.len()).await;

        // `cap` uploads of acme's that stall after their first bytes hold its slots...
        let stalled: Vec<_> = acme[..cap]
            .iter()
            .map(|g| tokio::spawn(app.clone().oneshot(put(g, stalling()))))
            .collect();
        let parts = dir.join("incoming");
        let started = Instant::now();
        while std::fs::read_dir(&parts).expect("incoming").count() < cap {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "uploads started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ...so its next is refused at once, with nothing stored,
        let refused = app
            .clone()
            .oneshot(put(&acme[cap], Body::from(csv.clone())))
            .await
            .expect("answer");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        let blobs = &stack.services.blobs;
        assert_eq!(blobs.blob_size(&acme[cap].key).await.expect("size"), None);
        // while another tenant's upload goes through whole.
        let taken = app
            .clone()
            .oneshot(put(&globex, Body::from(csv.clone())))
            .await
            .expect("answer");
        assert_eq!(taken.status(), StatusCode::OK);
        assert_eq!(
            blobs.get_blob(&globex.key).await.expect("read"),
            Some(csv.clone())
        );

        // The stalled uploads are dropped after the read timeout: 400, nothing stored,
        // no partial file left behind.
        for (answer, grant) in stalled.into_iter().zip(&acme) {
            let answer = answer.await.expect("joined").expect("answer");
            assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
            let body = answer.into_body().collect().await.expect("body").to_bytes();
            assert!(
                String::from_utf8_lossy(&body).contains("no bytes of the upload arrived"),
                "{}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(blobs.blob_size(&grant.key).await.expect("size"), None);
        }
        assert_eq!(std::fs::read_dir(&parts).expect("incoming").count(), 0);

        // The slots are free again; a body past its signed size is refused whole.
        let mut longer = csv.clone();
        longer.extend_from_slice(b"5,6\n");
        let too_long = app
            .clone()
            .oneshot(put(&acme[0], Body::from(longer)))
            .await
            .expect("answer");
        assert_eq!(too_long.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(blobs.blob_size(&acme[0].key).await.expect("size"), None);
        let taken = app
            .clone()
            .oneshot(put(&acme[cap], Body::from(csv.clone())))
            .await
            .expect("answer");
        assert_eq!(taken.status(), StatusCode::OK);
        assert_eq!(
            blobs.get_blob(&acme[cap].key).await.expect("read"),
            Some(csv)
        );
        assert_eq!(std::fs::read_dir(&parts).expect("incoming").count(), 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
