//! Errors as users see them: RFC 9457 problem details with a stable `type` per error,
//! the same over HTTP (`application/problem+json`) and on the WebSocket.

use crate::ports::StoreError;
use crate::table::TableError;
use nomaly_detect::DetectError;
use serde::Serialize;

/// Where the problem types are documented; a problem's `type` is this plus its slug.
pub const TYPE_BASE: &str = "https://nomaly.dev/problems/";

/// A problem to report to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {slug}: {detail}")]
pub struct Problem {
    /// HTTP status.
    pub status: u16,
    /// Stable identifier, e.g. `invalid-data`.
    pub slug: &'static str,
    /// Short summary of the type (the same for every problem of the type).
    pub title: &'static str,
    /// What went wrong this time.
    pub detail: String,
    /// Seconds to wait before retrying, when that helps.
    pub retry_after: Option<u32>,
}

/// The JSON body of a problem.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemBody<'a> {
    /// URI of the type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Summary.
    pub title: &'a str,
    /// HTTP status.
    pub status: u16,
    /// This occurrence.
    pub detail: &'a str,
}

macro_rules! problems {
    ($($fn_name:ident => $status:literal, $slug:literal, $title:literal;)*) => {
        impl Problem {
            $(
                #[doc = concat!("`", $slug, "` (", stringify!($status), "): ", $title, ".")]
                pub fn $fn_name(detail: impl Into<String>) -> Self {
                    Problem {
                        status: $status,
                        slug: $slug,
                        title: $title,
                        detail: detail.into(),
                        retry_after: None,
                    }
                }
            )*
        }

        /// Every problem type: (slug, status, title), for the docs and the tests.
        pub const PROBLEM_TYPES: &[(&str, u16, &str)] = &[$(($slug, $status, $title)),*];
    };
}

problems! {
    malformed_request => 400, "malformed-request", "The request could not be read";
    invalid_data => 422, "invalid-data", "The data cannot be used";
    invalid_parameter => 400, "invalid-parameter", "A parameter is missing or out of range";
    unauthorized => 401, "unauthorized", "A valid API key is required";
    forbidden => 403, "forbidden", "The key may not do this";
    not_found => 404, "not-found", "No such resource";
    method_not_allowed => 405, "method-not-allowed", "The route does not take this method";
    conflict => 409, "conflict", "The resource is not in a state that allows this";
    idempotency_in_progress => 409, "idempotency-key-in-progress", "A request with this Idempotency-Key is still being processed";
    idempotency_mismatch => 422, "idempotency-key-reused", "The Idempotency-Key was used with a different request";
    too_large => 413, "payload-too-large", "The request body is too large";
    unsupported_media_type => 415, "unsupported-media-type", "The body's content type is not accepted";
    rate_limited => 429, "rate-limited", "Too many requests for this tenant; retry after the time given";
    unavailable => 503, "storage-unavailable", "A backing service failed; retry later";
    internal => 500, "internal", "Something went wrong on our side";
}

impl Problem {
    /// Whether trying again may succeed: the service or one behind it failed (5xx),
    /// not the request. The one rule that decides a retry: of an upload taken in, of a
    /// job, of an event's chain.
    pub fn is_retryable(&self) -> bool {
        self.status >= 500
    }

    /// The `type` URI.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_BASE}{}", self.slug)
    }

    /// The JSON body.
    pub fn body(&self) -> ProblemBody<'_> {
        ProblemBody {
            kind: self.type_uri(),
            title: self.title,
            status: self.status,
            detail: &self.detail,
        }
    }

    /// The problem for a bare status from a layer below the handlers (an extractor's
    /// rejection, a body limit), with its text as the detail.
    pub fn for_status(status: u16, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        match status {
            404 => Problem::not_found(detail),
            405 => Problem::method_not_allowed(detail),
            413 => Problem::too_large(detail),
            415 => Problem::unsupported_media_type(detail),
            422 => Problem::invalid_data(detail),
            400..=499 => Problem::invalid_parameter(detail),
            _ => Problem::internal(detail),
        }
    }

    /// The same problem with a `Retry-After`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            StoreError::AlreadyExists(what) => Problem::conflict(format!("{what} already exists")),
            StoreError::Conflict(what) => {
                Problem::conflict(format!("{what} changed at the same time; retry"))
            }
            StoreError::BadPageToken => {
                Problem::invalid_parameter("next_token is not a token this listing gave out")
            }
            e @ StoreError::Backend { .. } => {
                tracing::error!(error = %e, "storage failed");
                Problem::unavailable("a backing service failed; retry in a few seconds")
                    .retry_after(2)
            }
        }
    }
}

impl From<TableError> for Problem {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Limit(limit) => limit.into(),
            other => Problem::invalid_data(format!("CSV body: {other}")),
        }
    }
}

impl From<crate::bounded::Exceeded> for Problem {
    fn from(e: crate::bounded::Exceeded) -> Self {
        Problem::too_large(e.to_string())
    }
}

impl From<DetectError> for Problem {
    fn from(e: DetectError) -> Self {
        match e {
            DetectError::InvalidParameter { .. } | DetectError::UnknownAlgorithm(_) => {
                Problem::invalid_parameter(e.to_string())
            }
            DetectError::InvalidModel(_) | DetectError::UnsupportedVersion { .. } => {
                tracing::error!(error = %e, "a stored model does not load");
                Problem::internal(format!("the stored model cannot be used: {e}"))
            }
            _ => Problem::invalid_data(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_unique_and_statuses_are_errors() {
        let mut slugs: Vec<&str> = PROBLEM_TYPES.iter().map(|p| p.0).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), PROBLEM_TYPES.len());
        assert!(PROBLEM_TYPES.iter().all(|p| p.1 >= 400));
        let p = Problem::not_found("task tsk_x not found");
        let body = serde_json::to_value(p.body()).unwrap();
        assert_eq!(body["type"], "https://nomaly.dev/problems/not-found");
        assert_eq!(body["status"], 404);
    }

    #[test]
    fn backend_failures_are_503_and_hide_details() {
        let e = StoreError::backend("put task", std::io::Error::other("secret endpoint"));
        let p = Problem::from(e);
        assert_eq!(p.status, 503);
        assert!(!p.detail.contains("secret"));
    }
}
