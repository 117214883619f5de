//! The dashboard: one page of plain HTML, CSS and JavaScript modules (no build step),
//! embedded in the binary and served at `/`. It holds no data of its own: everything it
//! shows comes from the API and the WebSocket with the key the user pastes, so the page
//! itself needs no key. The same files can be served from S3 (see docs/observability.md),
//! with a `config.json` beside them naming the API; here `config.json` is `{}`: this origin.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nomaly_core::service::Problem;

const INDEX: &str = include_str!("../../dashboard/index.html");

const JS: &str = "text/javascript; charset=utf-8";

/// Everything under `/dashboard/`: (name, content type, body). `app.js` is the entry
/// module; it imports the others by relative path, so each of them must be listed here.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/app.css"),
    ),
    ("app.js", JS, include_str!("../../dashboard/app.js")),
    ("alerts.js", JS, include_str!("../../dashboard/alerts.js")),
    ("api.js", JS, include_str!("../../dashboard/api.js")),
    ("config.js", JS, include_str!("../../dashboard/config.js")),
    (
        "datasets.js",
        JS,
        include_str!("../../dashboard/datasets.js"),
    ),
    (
        "deliveries.js",
        JS,
        include_str!("../../dashboard/deliveries.js"),
    ),
    ("detect.js", JS, include_str!("../../dashboard/detect.js")),
    ("dom.js", JS, include_str!("../../dashboard/dom.js")),
    ("errors.js", JS, include_str!("../../dashboard/errors.js")),
    ("feed.js", JS, include_str!("../../dashboard/feed.js")),
    (
        "feedback.js",
        JS,
        include_str!("../../dashboard/feedback.js"),
    ),
    ("format.js", JS, include_str!("../../dashboard/format.js")),
    ("live.js", JS, include_str!("../../dashboard/live.js")),
    ("models.js", JS, include_str!("../../dashboard/models.js")),
    ("plot.js", JS, include_str!("../../dashboard/plot.js")),
    ("reports.js", JS, include_str!("../../dashboard/reports.js")),
    ("session.js", JS, include_str!("../../dashboard/session.js")),
    ("state.js", JS, include_str!("../../dashboard/state.js")),
    (
        "streamchart.js",
        JS,
        include_str!("../../dashboard/streamchart.js"),
    ),
    ("streams.js", JS, include_str!("../../dashboard/streams.js")),
    ("tasks.js", JS, include_str!("../../dashboard/tasks.js")),
    ("train.js", JS, include_str!("../../dashboard/train.js")),
    ("upload.js", JS, include_str!("../../dashboard/upload.js")),
];

/// Scripts, styles and connections from this origin only; no frames, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/`, `/dashboard/{name}` for each of [`FILES`] and `/config.json`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/config.json",
            get(|| async { asset("application/json", "{}") }),
        )
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route("/dashboard/{name}", get(file))
}

/// One of [`FILES`] by name; any other name is not found.
async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => asset(content_type, body),
        None => Problem::not_found("no such dashboard file").into_response(),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get_path(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("answer")
    }

    async fn assert_served(path: &str, kind: &str, body: &str) {
        let response = get_path(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .starts_with(kind),
            "{path}"
        );
        assert!(headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .contains(
                "script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
            ));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(bytes, body.as_bytes(), "{path}");
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types_and_a_strict_policy() {
        assert_served("/", "text/html", INDEX).await;
        assert_served("/config.json", "application/json", "{}").await;
        for (name, kind, body) in FILES {
            assert_served(&format!("/dashboard/{name}"), kind, body).await;
        }
        // The page loads its entry module and its styles by the paths served here.
        assert!(INDEX.contains(r#"<script type="module" src="dashboard/app.js">"#));
        assert!(INDEX.contains("dashboard/app.css"));
    }

    #[tokio::test]
    async fn every_module_a_module_imports_is_served() {
        for (name, _, body) in FILES.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            for line in body.lines().filter(|l| l.contains(" from './")) {
                let imported = line
                    .split(" from './")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or_default();
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == imported),
                    "{name} imports ./{imported}, which is not served"
                );
            }
        }
    }

    #[tokio::test]
    async fn other_names_are_not_found() {
        for path in [
            "/dashboard/nope.js",
            "/dashboard/index.html",
            "/dashboard/..%2Fsrc%2Fmain.rs",
            "/dashboard/",
        ] {
            assert_eq!(
                get_path(path).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}
