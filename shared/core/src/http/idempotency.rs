//! `Idempotency-Key` on POST: the first response to a key is stored (for 24 hours) and
//! returned again for a retry of the same request; the same key with a different
//! request is 422, and a retry while the first is still running is 409. Server errors
//! are not stored, so a retry after one runs again.

use super::extract::{read_body, Tenant};
use crate::domain::TenantId;
use crate::limits::IDEMPOTENT_INLINE_BYTES;
use crate::ports::{BlobKey, Claim};
use crate::service::uses::UsesBlobs;
use crate::service::{Problem, Services};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a stored response is returned again.
const TTL_SECS: u32 = 24 * 3600;
/// How long a claim holds while its request runs: past the API's 29 s timeout, so a
/// request that died mid-way blocks its retries only this long.
const LEASE_SECS: u32 = 60;
/// Response headers kept with a stored response.
const KEPT: [&str; 3] = ["content-type", "location", "retry-after"];

#[derive(Serialize, Deserialize)]
struct Stored {
    request: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Where the body is when it was too large to keep in the record (the claim check):
    /// `body` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_blob: Option<String>,
}

pub(super) async fn layer(State(services): State<Services>, req: Request, next: Next) -> Response {
    if !super::is_post(req.method()) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key") else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_string()
        }
        _ => {
            return Problem::invalid_parameter(
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
            .into_response()
        }
    };
    let Some(Tenant(tenant)) = req.extensions().get::<Tenant>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update(b" ");
    h.update(parts.uri.to_string());
    h.update(b"\n");
    h.update(&bytes);
    let fingerprint = hex::encode(h.finalize());
    let record_key = format!("http:{key}");
    match services
        .idempotency
        .claim(&tenant, &record_key, LEASE_SECS)
        .await
    {
        Err(e) => return Problem::from(e).into_response(),
        Ok(Claim::InProgress) => {
            return Problem::idempotency_in_progress(
                "the first request with this key is still running; retry shortly",
            )
            .retry_after(1)
            .into_response()
        }
        Ok(Claim::Done(stored)) => {
            return match serde_json::from_slice::<Stored>(&stored) {
                Ok(s) if s.request == fingerprint => match check_out(&services, &tenant, s).await {
                    Ok(s) => replay(s),
                    Err(p) => p.into_response(),
                },
                Ok(_) => Problem::idempotency_mismatch(
                    "this Idempotency-Key was used for a different request",
                )
                .into_response(),
                Err(_) => {
                    Problem::internal("the stored response could not be read").into_response()
                }
            }
        }
        Ok(Claim::New) => {}
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    // Answers are bounded by the routes that make them (large ones are download URLs),
    // not by the request body's limit.
    let body = match axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| Problem::internal(format!("reading the answer: {e}")))
    {
        Ok(b) => b,
        Err(p) => {
            let _ = services.idempotency.release(&tenant, &record_key).await;
            return p.into_response();
        }
    };
    if parts.status.is_server_error() {
        if let Err(e) = services.idempotency.release(&tenant, &record_key).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    } else {
        let stored = Stored {
            request: fingerprint,
            status: parts.status.as_u16(),
            headers: KEPT
                .iter()
                .filter_map(|h| {
                    parts
                        .headers
                        .get(*h)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| (h.to_string(), v.to_string()))
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            body_blob: None,
        };
        let stored = match check_in(&services, &tenant, &record_key, stored).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "could not store a large idempotent answer");
                let _ = services.idempotency.release(&tenant, &record_key).await;
                None
            }
        };
        if let Some(bytes) = stored.and_then(|s| serde_json::to_vec(&s).ok()) {
            if let Err(e) = services
                .idempotency
                .complete(&tenant, &record_key, &bytes, TTL_SECS)
                .await
            {
                // Too large for an item, or storage failed: let a retry run again rather
                // than answer 409 until the lease runs out.
                tracing::warn!(error = %e, "could not store an idempotent response");
                let _ = services.idempotency.release(&tenant, &record_key).await;
            }
        }
    }
    Response::from_parts(parts, Body::from(body))
}

/// Where a large answer to the tenant's request under `record_key` is kept.
fn body_key(tenant: &TenantId, record_key: &str) -> Result<BlobKey, Problem> {
    let name = hex::encode(Sha256::digest(record_key.as_bytes()));
    BlobKey::for_tenant(tenant, &["idempotency", &format!("{name}.body")])
        .map_err(|e| Problem::internal(e.to_string()))
}

/// The answer as its record keeps it: whole when small, else its body in the blob store
/// (an idempotency record is one DynamoDB item, at most 400 KB).
async fn check_in(
    services: &impl UsesBlobs,
    tenant: &TenantId,
    record_key: &str,
    mut stored: Stored,
) -> Result<Stored, Problem> {
    if stored.body.len() <= IDEMPOTENT_INLINE_BYTES {
        return Ok(stored);
    }
    let key = body_key(tenant, record_key)?;
    let body = std::mem::take(&mut stored.body);
    services.blobs().put_blob(&key, body.into_bytes()).await?;
    stored.body_blob = Some(key.as_str().to_string());
    Ok(stored)
}

/// The stored answer with its body read back when it was kept apart.
async fn check_out(
    services: &impl UsesBlobs,
    tenant: &TenantId,
    mut stored: Stored,
) -> Result<Stored, Problem> {
    let Some(reference) = stored.body_blob.take() else {
        return Ok(stored);
    };
    let key = BlobKey::parse(&reference)
        .ok()
        .filter(|k| k.belongs_to(tenant))
        .ok_or_else(|| Problem::internal("the stored answer's key is invalid"))?;
    let body = services
        .blobs()
        .get_blob(&key)
        .await?
        .ok_or_else(|| Problem::internal("the stored answer is missing from storage"))?;
    stored.body = String::from_utf8_lossy(&body).into_owned();
    Ok(stored)
}

fn replay(stored: Stored) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (k, v) in stored.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            response.headers_mut().insert(k, v);
        }
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
