//! The alert routes (rules, their test-fire, their delivery logs) and feedback on
//! stream results.

use super::extract::{JsonBody, Tenant};
use super::routes::{listing, parse_id, query, Answer, Listing};
use crate::domain::Feedback;
use crate::ids::{AlertId, DeliveryId};
use crate::service::alerts::{self, AlertRequest, AlertView, DeliveryView};
use crate::service::feedback::{self, FeedbackAnswer, FeedbackRequest};
use crate::service::Services;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

/// `POST /v1/alerts`: 201 and the rule, with its webhook secret (shown this once).
#[utoipa::path(post, path = "/v1/alerts", tag = "alerts", request_body = AlertRequest, responses((status = 201, description = "The rule, with `secret` for a webhook: keep it, it is not shown again", body = AlertView, headers(("Location" = String, description = "`/v1/alerts/{id}`")))))]
pub async fn create_alert(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<AlertRequest>,
) -> Answer {
    let rule = alerts::create(&services, &tenant, request).await?;
    let mut response = (StatusCode::CREATED, Json(&rule)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/alerts/{}", rule.id)) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /v1/alerts`.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(Listing), responses((status = 200, description = "The tenant's rules, newest first", body = super::answers::Page<AlertView>)))]
pub async fn list_alerts(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = alerts::list(&services, &tenant, &query(q)?.page()?).await?;
    Ok(listing(page.items, page.next_token))
}

/// `GET /v1/alerts/{id}`.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path, description = "Rule id")), responses((status = 200, description = "The rule (without its secret)", body = AlertView)))]
pub async fn get_alert(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "alert rule", AlertId::parse)?;
    Ok(Json(alerts::get(&services, &tenant, &id).await?).into_response())
}

/// `PUT /v1/alerts/{id}`: replaces the rule's settings; its id, secret and log stay.
#[utoipa::path(put, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path, description = "Rule id")), request_body = AlertRequest, responses((status = 200, description = "The rule as changed", body = AlertView)))]
pub async fn update_alert(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<AlertRequest>,
) -> Answer {
    let id = parse_id(&id, "alert rule", AlertId::parse)?;
    Ok(Json(alerts::update(&services, &tenant, &id, request).await?).into_response())
}

/// `DELETE /v1/alerts/{id}`: the rule and its delivery log.
#[utoipa::path(delete, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path, description = "Rule id")), responses((status = 204, description = "Deleted, with its log")))]
pub async fn delete_alert(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "alert rule", AlertId::parse)?;
    alerts::delete(&services, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/alerts/{id}/test`: queues a test alert (`"test": true`), whatever the
/// rule's match and cooldown.
#[utoipa::path(post, path = "/v1/alerts/{id}/test", tag = "alerts", params(("id" = String, Path, description = "Rule id")), responses((status = 202, description = "The test delivery, queued: follow it in the log", body = DeliveryView)))]
pub async fn test_alert(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "alert rule", AlertId::parse)?;
    let delivery = alerts::test_fire(&services, &tenant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)).into_response())
}

/// `GET /v1/alerts/{id}/deliveries`: the rule's delivery log, newest first.
#[utoipa::path(get, path = "/v1/alerts/{id}/deliveries", tag = "alerts", params(("id" = String, Path, description = "Rule id"), Listing), responses((status = 200, description = "Deliveries: status, attempts, latency, last error", body = super::answers::Page<DeliveryView>)))]
pub async fn list_deliveries(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let id = parse_id(&id, "alert rule", AlertId::parse)?;
    let page = alerts::deliveries(&services, &tenant, &id, &query(q)?.page()?).await?;
    Ok(listing(page.items, page.next_token))
}

/// `GET /v1/alerts/{id}/deliveries/{delivery_id}`.
#[utoipa::path(get, path = "/v1/alerts/{id}/deliveries/{delivery_id}", tag = "alerts", params(("id" = String, Path, description = "Rule id"), ("delivery_id" = String, Path, description = "Delivery id (`alt_...`)")), responses((status = 200, description = "One delivery", body = DeliveryView)))]
pub async fn get_delivery(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path((id, delivery)): Path<(String, String)>,
) -> Answer {
    let id = parse_id(&id, "alert rule", AlertId::parse)?;
    let delivery = parse_id(&delivery, "delivery", DeliveryId::parse)?;
    Ok(Json(alerts::delivery(&services, &tenant, &id, &delivery).await?).into_response())
}

/// `POST /v1/feedback`: a verdict on a stream's result; 201 with what it changed.
#[utoipa::path(post, path = "/v1/feedback", tag = "alerts", request_body = FeedbackRequest, responses((status = 201, description = "The verdict stored, and whether the stream's threshold moved (`feedback.effect` says how)", body = FeedbackAnswer)))]
pub async fn give_feedback(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<FeedbackRequest>,
) -> Answer {
    let answer = feedback::give(&services, &tenant, request).await?;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/feedback`: the tenant's verdicts, newest first.
#[utoipa::path(get, path = "/v1/feedback", tag = "alerts", params(Listing), responses((status = 200, description = "Verdicts, newest first", body = super::answers::Page<Feedback>)))]
pub async fn list_feedback(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = feedback::list(&services, &tenant, &query(q)?.page()?).await?;
    Ok(listing(page.items, page.next_token))
}
