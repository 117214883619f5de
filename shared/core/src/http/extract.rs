//! Request parts every handler needs: the caller's tenant, the request's correlation id,
//! and bodies read under the size limit into problems rather than plain-text rejections.

use crate::domain::TenantId;
use crate::limits::MAX_BODY_BYTES;
use crate::service::Problem;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// The authenticated caller's tenant (set by the auth layer).
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

/// The id tying a request to its events, tasks and logs (`X-Correlation-Id`, or made).
#[derive(Debug, Clone)]
pub struct Correlation(pub String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            "application/problem+json".parse().expect("static"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert("retry-after", secs.into());
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or_else(|| Problem::unauthorized("send `Authorization: Bearer <api key>`"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Correlation {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        Ok(parts
            .extensions
            .get::<Correlation>()
            .cloned()
            .unwrap_or_else(|| Correlation(crate::ids::Ulid::new().encode())))
    }
}

/// Reads a body of at most [`MAX_BODY_BYTES`] bytes: 413 beyond.
pub async fn read_body(body: Body) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if too_large {
                Problem::too_large(format!(
                    "request bodies are limited to {MAX_BODY_BYTES} bytes (limit `Request body`)"
                ))
            } else {
                Problem::malformed_request(format!("the body could not be read: {e}"))
            }
        })
}

/// The body, read under the limit.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Problem;
    async fn from_request(req: Request, _: &S) -> Result<Self, Problem> {
        Ok(RawBody(read_body(req.into_body()).await?))
    }
}

/// The body's media type, lower-cased, without parameters.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Parses JSON into `T`: syntax errors are `malformed-request`, wrong shapes
/// `invalid-parameter`, both naming the line and column.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Problem::invalid_parameter(format!("body: {e}")),
        _ => Problem::malformed_request(format!("the body is not valid JSON: {e}")),
    })
}

/// A JSON body (`Content-Type: application/json`, 415 otherwise).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;
    async fn from_request(req: Request, _: &S) -> Result<Self, Problem> {
        match media_type(req.headers()).as_deref() {
            Some("application/json") => {}
            other => {
                return Err(Problem::unsupported_media_type(format!(
                    "send `Content-Type: application/json` (got {})",
                    other.unwrap_or("none")
                )))
            }
        }
        let bytes = read_body(req.into_body()).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}
