//! A tenant's alert rules: checked, stored, listed, changed, deleted, test-fired, and
//! their delivery logs read.

use super::{DEFAULT_COOLDOWN_SECS, MAX_COOLDOWN_SECS, MAX_RULES_PER_TENANT};
use crate::domain::{
    AlertDelivery, AlertMatch, AlertRule, DeliveryStatus, Destination, GroupBy, TenantId,
};
use crate::ids::{AlertId, DeliveryId};
use crate::ports::{Page, PageRequest, StoreError};
use crate::service::uses::{UsesAlertQueue, UsesAlerts, UsesIdempotency, UsesSender};
use crate::service::Problem;
use crate::time::Timestamp;
use crate::webhook::signature::new_secret;
use serde::{Deserialize, Serialize};

/// What `POST /v1/alerts` and `PUT /v1/alerts/{id}` take.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRequest {
    /// A name, 1 to 200 characters.
    pub name: String,
    /// Which events it sends.
    #[serde(rename = "match")]
    pub matches: AlertMatch,
    /// `{"webhook": {"url": "https://..."}}` or `{"eventbridge": {"bus": "..."}}`.
    pub destination: Destination,
    /// Seconds after an alert in which further matches of its group are counted into it
    /// rather than sent (0 to 604800; default 300; 0 sends every match).
    #[serde(default)]
    pub cooldown: Option<u32>,
    /// Fields that split matches into groups, each with its own cooldown: `stream`,
    /// `entity`, `model` (default: one group for the rule).
    #[serde(default)]
    pub group_by: Vec<GroupBy>,
    /// Whether it sends (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// Its id.
    pub id: AlertId,
    /// Its name.
    pub name: String,
    /// Which events it sends.
    #[serde(rename = "match")]
    pub matches: AlertMatch,
    /// Where they go.
    pub destination: Destination,
    /// The webhook's signing secret: only in the answer that made the rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Seconds of cooldown per group.
    pub cooldown: u32,
    /// What makes a group.
    pub group_by: Vec<GroupBy>,
    /// Whether it sends.
    pub enabled: bool,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    pub updated_at: String,
}

impl AlertView {
    fn of(rule: &AlertRule, with_secret: bool) -> Self {
        AlertView {
            id: rule.id.clone(),
            name: rule.name.clone(),
            matches: rule.matches.clone(),
            destination: rule.destination.clone(),
            secret: (with_secret && matches!(rule.destination, Destination::Webhook { .. }))
                .then(|| rule.secret.clone()),
            cooldown: rule.cooldown,
            group_by: rule.group_by.clone(),
            enabled: rule.enabled,
            created_at: rule.created_at.rfc3339(),
            updated_at: rule.updated_at.rfc3339(),
        }
    }
}

/// One delivery as the log shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The alert's id: the idempotency id its receiver sees (`Nomaly-Delivery-Id`).
    pub id: DeliveryId,
    /// The rule.
    pub rule_id: AlertId,
    /// The event that opened it (none for a test alert).
    pub event_id: Option<String>,
    /// That event's type.
    pub event_type: Option<String>,
    /// Its group (`stream=...,entity=...`), empty when the rule has no `group_by`.
    pub group: String,
    /// Anomalies (or matching events) it stands for, those of the cooldown included.
    pub count: u64,
    /// A test alert.
    pub test: bool,
    /// `pending`, `retrying`, `delivered` or `dead_lettered`.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's HTTP status.
    pub last_status: Option<u16>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The last attempt's round trip in milliseconds.
    pub latency_ms: Option<u64>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When the last attempt ended.
    pub last_attempt_at: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_at: Option<String>,
}

impl DeliveryView {
    /// The view of `d`.
    pub fn of(d: &AlertDelivery) -> Self {
        DeliveryView {
            id: d.id.clone(),
            rule_id: d.rule_id.clone(),
            event_id: d.event_id.as_ref().map(|e| e.to_string()),
            event_type: d.event_type.map(|t| t.as_str().to_string()),
            group: d.group.clone(),
            count: d.count,
            test: d.test,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            latency_ms: d.latency_ms,
            created_at: d.created_at.rfc3339(),
            last_attempt_at: d.last_attempt_at.map(|t| t.rfc3339()),
            next_attempt_at: d.next_attempt_at.map(|t| t.rfc3339()),
        }
    }
}

/// The checked parts of a request.
struct Checked {
    name: String,
    matches: AlertMatch,
    destination: Destination,
    cooldown: u32,
    group_by: Vec<GroupBy>,
    enabled: bool,
}

async fn check(services: &impl UsesSender, request: AlertRequest) -> Result<Checked, Problem> {
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Problem::invalid_data("`name` must be 1 to 200 characters"));
    }
    let mut matches = request.matches;
    if matches.events.is_empty() {
        return Err(Problem::invalid_data(
            "`match.events` must name at least one event type",
        ));
    }
    let mut seen = Vec::new();
    matches.events.retain(|e| {
        let new = !seen.contains(e);
        seen.push(*e);
        new
    });
    if let Some(entity) = &matches.entity {
        if entity.is_empty() || entity.len() > 256 {
            return Err(Problem::invalid_data(
                "`match.entity` must be 1 to 256 bytes",
            ));
        }
    }
    if let Some(score) = matches.min_score {
        if !score.is_finite() || score < 0.0 {
            return Err(Problem::invalid_data(
                "`match.min_score` must be a finite number, 0 or more",
            ));
        }
    }
    let cooldown = request.cooldown.unwrap_or(DEFAULT_COOLDOWN_SECS);
    if cooldown > MAX_COOLDOWN_SECS {
        return Err(Problem::invalid_data(format!(
            "`cooldown` is at most {MAX_COOLDOWN_SECS} seconds (7 days)"
        )));
    }
    let mut group_by = Vec::new();
    for g in request.group_by {
        if !group_by.contains(&g) {
            group_by.push(g);
        }
    }
    match &request.destination {
        Destination::Webhook { url } => {
            services
                .sender()
                .check_url(url)
                .await
                .map_err(|why| Problem::invalid_data(format!("`destination.webhook.url`: {why}")))?;
        }
        Destination::Eventbridge { bus } => match services.sender().bus() {
            Some(ours) if ours == bus => {}
            Some(ours) => {
                return Err(Problem::invalid_data(format!(
                    "this deployment may put events only on its own bus, `{ours}`"
                )))
            }
            None => {
                return Err(Problem::invalid_data(
                    "EventBridge destinations need the AWS deployment (with its AlertBusName); use a webhook here",
                ))
            }
        },
    }
    Ok(Checked {
        name,
        matches,
        destination: request.destination,
        cooldown,
        group_by,
        enabled: request.enabled.unwrap_or(true),
    })
}

/// Makes a rule; the answer holds its webhook secret, shown this once.
pub async fn create(
    services: &(impl UsesAlerts + UsesSender),
    tenant: &TenantId,
    request: AlertRequest,
) -> Result<AlertView, Problem> {
    let c = check(services, request).await?;
    let existing = services
        .alerts()
        .list_rules(
            tenant,
            &PageRequest {
                limit: MAX_RULES_PER_TENANT + 1,
                token: None,
            },
        )
        .await?;
    if existing.items.len() >= MAX_RULES_PER_TENANT {
        return Err(Problem::conflict(format!(
            "a tenant may have at most {MAX_RULES_PER_TENANT} alert rules; delete one first"
        )));
    }
    let now = Timestamp::now();
    let rule = AlertRule {
        id: AlertId::new(),
        tenant: tenant.clone(),
        name: c.name,
        matches: c.matches,
        destination: c.destination,
        secret: new_secret(),
        cooldown: c.cooldown,
        group_by: c.group_by,
        enabled: c.enabled,
        created_at: now,
        updated_at: now,
    };
    services.alerts().put_rule(&rule).await?;
    tracing::info!(alert_id = %rule.id, tenant = %tenant, "alert rule made");
    Ok(AlertView::of(&rule, true))
}

async fn rule_of(
    services: &impl UsesAlerts,
    tenant: &TenantId,
    id: &AlertId,
) -> Result<AlertRule, Problem> {
    services
        .alerts()
        .get_rule(tenant, id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("alert rule {id} not found")))
}

/// One rule (without its secret).
pub async fn get(
    services: &impl UsesAlerts,
    tenant: &TenantId,
    id: &AlertId,
) -> Result<AlertView, Problem> {
    Ok(AlertView::of(&rule_of(services, tenant, id).await?, false))
}

/// A page of rules.
pub async fn list(
    services: &impl UsesAlerts,
    tenant: &TenantId,
    page: &PageRequest,
) -> Result<Page<AlertView>, Problem> {
    let page = services.alerts().list_rules(tenant, page).await?;
    Ok(Page {
        items: page.items.iter().map(|r| AlertView::of(r, false)).collect(),
        next_token: page.next_token,
    })
}

/// Replaces a rule's settings; its id, secret and log stay.
pub async fn update(
    services: &(impl UsesAlerts + UsesSender),
    tenant: &TenantId,
    id: &AlertId,
    request: AlertRequest,
) -> Result<AlertView, Problem> {
    let mut rule = rule_of(services, tenant, id).await?;
    let c = check(services, request).await?;
    rule.name = c.name;
    rule.matches = c.matches;
    rule.destination = c.destination;
    rule.cooldown = c.cooldown;
    rule.group_by = c.group_by;
    rule.enabled = c.enabled;
    rule.updated_at = Timestamp::now();
    services.alerts().put_rule(&rule).await?;
    Ok(AlertView::of(&rule, false))
}

/// Deletes a rule and its log; deliveries still queued are dropped when they come up.
pub async fn delete(
    services: &impl UsesAlerts,
    tenant: &TenantId,
    id: &AlertId,
) -> Result<(), Problem> {
    match services.alerts().delete_rule(tenant, id).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound(_)) => {
            Err(Problem::not_found(format!("alert rule {id} not found")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Queues a test alert for a rule, whatever its match and cooldown.
pub async fn test_fire(
    services: &(impl UsesAlerts + UsesAlertQueue + UsesIdempotency),
    tenant: &TenantId,
    id: &AlertId,
) -> Result<DeliveryView, Problem> {
    let rule = rule_of(services, tenant, id).await?;
    let now = Timestamp::now();
    let delivery = AlertDelivery {
        test: true,
        ..AlertDelivery::pending(
            &rule,
            String::new(),
            0,
            serde_json::json!({
                "type": "alert.test",
                "at": now.rfc3339(),
                "payload": {"message": format!("a test alert of rule {}", rule.name)},
            }),
        )
    };
    super::route::open(
        services,
        &rule,
        delivery.clone(),
        &format!("test:{}", delivery.id),
    )
    .await?;
    Ok(DeliveryView::of(&delivery))
}

/// A page of a rule's deliveries, newest first.
pub async fn deliveries(
    services: &impl UsesAlerts,
    tenant: &TenantId,
    id: &AlertId,
    page: &PageRequest,
) -> Result<Page<DeliveryView>, Problem> {
    rule_of(services, tenant, id).await?;
    let page = services.alerts().list_deliveries(tenant, id, page).await?;
    Ok(Page {
        items: page.items.iter().map(DeliveryView::of).collect(),
        next_token: page.next_token,
    })
}

/// One delivery of a rule.
pub async fn delivery(
    services: &impl UsesAlerts,
    tenant: &TenantId,
    id: &AlertId,
    delivery: &DeliveryId,
) -> Result<DeliveryView, Problem> {
    services
        .alerts()
        .get_delivery(tenant, id, delivery)
        .await?
        .map(|d| DeliveryView::of(&d))
        .ok_or_else(|| Problem::not_found(format!("delivery {delivery} not found")))
}
