//! The API's contract as an OpenAPI 3.1 document, derived from the route handlers'
//! annotations and the types they take and answer. Served at `GET /openapi.json` and
//! committed as `docs/openapi.json`; the tests below fail when either drifts from the
//! router.

use super::{alert_routes, routes};
use crate::service::problem::ProblemBody;
use utoipa::openapi::response::{ResponseBuilder, Responses};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, PathItem, Ref, RefOr};
use utoipa::{Modify, OpenApi};

/// The document's definition: every route handler, and the security every route but the
/// open ones needs.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "nomaly",
        description = "Anomaly detection as a service: score rows now, train models in the background, follow streams. Every route under /v1 needs `Authorization: Bearer <api key>`. Errors are `application/problem+json` (RFC 9457). A POST with an `Idempotency-Key` header answers the first response again for 24 hours.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        routes::health,
        routes::openapi,
        routes::detect,
        routes::submit_batch,
        routes::submit_backtest,
        routes::train,
        routes::list_models,
        routes::get_model,
        routes::delete_model,
        routes::model_artifact,
        routes::create_report,
        routes::list_tasks,
        routes::get_task,
        routes::cancel_task,
        routes::task_result,
        routes::task_report,
        routes::register_dataset,
        routes::list_datasets,
        routes::get_dataset,
        routes::delete_dataset,
        routes::list_events,
        routes::create_stream,
        routes::list_streams,
        routes::get_stream,
        routes::delete_stream,
        routes::append_points,
        routes::list_entities,
        routes::get_entity,
        alert_routes::create_alert,
        alert_routes::list_alerts,
        alert_routes::get_alert,
        alert_routes::update_alert,
        alert_routes::delete_alert,
        alert_routes::test_alert,
        alert_routes::list_deliveries,
        alert_routes::get_delivery,
        alert_routes::give_feedback,
        alert_routes::list_feedback,
    ),
    components(schemas(ProblemBody)),
    modifiers(&Conventions),
    tags(
        (name = "service", description = "Health and this document: no key needed"),
        (name = "detection", description = "Score rows now"),
        (name = "batch", description = "Score large objects in parallel chunks"),
        (name = "models", description = "Train, read and delete models; reports"),
        (name = "tasks", description = "Background work and its results"),
        (name = "datasets", description = "Uploads, profiled"),
        (name = "events", description = "The tenant's audit log"),
        (name = "streams", description = "Time series scored point by point; backtests"),
        (name = "alerts", description = "Rules that send events to webhooks or EventBridge, their delivery logs, and feedback on stream results"),
    )
)]
struct ApiDoc;

/// The conventions every `/v1` operation shares: the bearer key, and problems for errors.
struct Conventions;

/// The name of the bearer-key security scheme.
const BEARER: &str = "api_key";

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An API key made with `nomaly keys create`"))
                        .build(),
                ),
            );
        }
        let problem = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ProblemBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let secured = path.starts_with("/v1/");
            for op in operations(item) {
                let responses: &mut Responses = &mut op.responses;
                responses.responses.insert(
                    "4XX".into(),
                    problem("A problem with the request: see the problem types in docs/api.md"),
                );
                responses.responses.insert(
                    "5XX".into(),
                    problem("A problem on our side, or a backing service down (`Retry-After`)"),
                );
                if secured {
                    op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
                }
            }
        }
    }
}

/// The operations of a path, whatever their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as pretty-printed JSON with a final newline, as committed in
/// `docs/openapi.json`.
pub fn json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

    #[test]
    fn the_committed_document_is_the_codes() {
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == json(),
            "docs/openapi.json differs from the code's document; write it again with\n  \
             cargo run -p nomaly -- openapi > docs/openapi.json"
        );
    }

    /// Every (method, path) of the document, as `GET /v1/tasks/{id}`.
    fn documented() -> BTreeSet<String> {
        let value = serde_json::to_value(document()).expect("json");
        let mut out = BTreeSet::new();
        for (path, item) in value["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_is_documented_and_nothing_else() {
        let routed: BTreeSet<String> = crate::http::route_list()
            .into_iter()
            .map(|(method, path)| format!("{method} {path}"))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes not in the document: {undocumented:?}; documented but not routed: {unrouted:?}"
        );
        assert!(routed.len() >= 26, "the walk found {} routes", routed.len());
    }

    #[test]
    fn only_the_open_routes_go_without_a_key() {
        let value = serde_json::to_value(document()).expect("json");
        for (path, item) in value["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert_eq!(
                    secured,
                    path.starts_with("/v1/"),
                    "{method} {path}: security {}",
                    op["security"]
                );
            }
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let text = json();
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        let schemas = value["components"]["schemas"].as_object().expect("schemas");
        let mut missing = Vec::new();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            if !schemas.contains_key(name) {
                missing.push(name.to_string());
            }
        }
        assert!(missing.is_empty(), "unresolved references: {missing:?}");
        assert_eq!(value["openapi"], "3.1.0");
    }
}
