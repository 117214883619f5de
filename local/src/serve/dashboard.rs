//! The dashboard: one page of plain HTML, JavaScript and CSS (no build step), embedded in
//! the binary and served at `/`. It holds no data of its own: everything it shows comes
//! from the API and the WebSocket with the key the user pastes, so the page itself needs
//! no key. The same three files can be served from S3 (see docs/observability.md), with a
//! `config.json` beside them naming the API; here `config.json` is `{}`: this origin.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

/// Scripts, styles and connections from this origin only; no frames, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/`, `/dashboard/app.js`, `/dashboard/app.css` and `/config.json`.
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
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
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

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types_and_a_strict_policy() {
        for (path, kind, body) in [
            ("/", "text/html", INDEX),
            ("/dashboard/app.js", "text/javascript", APP_JS),
            ("/dashboard/app.css", "text/css", APP_CSS),
            ("/config.json", "application/json", "{}"),
        ] {
            let response = get_path(path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers().clone();
            assert!(headers[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .starts_with(kind));
            assert!(headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ascii")
                .contains("script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"));
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            assert_eq!(bytes, body.as_bytes(), "{path}");
        }
        // The page loads its assets by the paths served here.
        assert!(INDEX.contains("dashboard/app.js") && INDEX.contains("dashboard/app.css"));
    }
}
