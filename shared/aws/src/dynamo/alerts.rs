//! Feedback on stream results (`FEEDBACK#<id>`), alert rules (`ALERTRULE#<id>`) and their delivery logs (`ALERTLOG#<rule>#<id>`, with
//! the delivery's count as its own number attribute `n`, so adding to it is one `ADD`
//! and a status write, which sets `body` alone, never overwrites it).

use super::{n, parse, s, sdk, tenant_item, tenant_pk, DynamoStore, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use nomaly_core::domain::{AlertDelivery, AlertRule, Feedback, TenantId};
use nomaly_core::ids::{AlertId, DeliveryId};
use nomaly_core::ports::{AlertStore, FeedbackStore, Page, PageRequest, StoreError, StoreResult};

const RULE: &str = "ALERTRULE#";

fn log_prefix(rule: &AlertId) -> String {
    format!("ALERTLOG#{rule}#")
}

fn with_count(item: &Item) -> StoreResult<AlertDelivery> {
    let mut d: AlertDelivery = parse(item)?;
    if let Some(count) = super::number(item, "n") {
        d.count = count.max(0) as u64;
    }
    Ok(d)
}

impl DynamoStore {
    /// Applies `expression` (with `:v` = `value`) to a delivery that exists; `NotFound`
    /// if there is none (for this tenant).
    async fn update_logged(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
        expression: &str,
        value: AttributeValue,
        operation: &'static str,
    ) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(tenant_pk(tenant)))
            .key("sk", s(format!("{}{id}", log_prefix(rule))))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":v", value)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::NotFound(id.to_string()))
            }
            Err(e) => Err(sdk(operation)(e)),
        }
    }
}

#[async_trait]
impl AlertStore for DynamoStore {
    async fn put_rule(&self, rule: &AlertRule) -> StoreResult<()> {
        self.put(tenant_item(&rule.tenant, RULE, rule.id.as_str(), rule)?)
            .await
    }

    async fn get_rule(&self, tenant: &TenantId, id: &AlertId) -> StoreResult<Option<AlertRule>> {
        self.get_record(tenant, RULE, id.as_str()).await
    }

    async fn list_rules(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<AlertRule>> {
        self.list(tenant, RULE, page).await
    }

    /// The rule, then its log.
    async fn delete_rule(&self, tenant: &TenantId, id: &AlertId) -> StoreResult<()> {
        let pk = tenant_pk(tenant);
        self.delete_existing(pk.clone(), format!("{RULE}{id}"), id.as_str())
            .await?;
        self.delete_prefix(&pk, &log_prefix(id), "delete a delivery log")
            .await
    }

    async fn create_delivery(&self, d: &AlertDelivery) -> StoreResult<()> {
        let mut item = tenant_item(&d.tenant, &log_prefix(&d.rule_id), d.id.as_str(), d)?;
        item.insert("n".into(), n(d.count as i64));
        self.put_new(item, d.id.as_str()).await
    }

    async fn update_delivery(&self, d: &AlertDelivery) -> StoreResult<()> {
        let body =
            serde_json::to_string(d).map_err(|e| StoreError::backend("encode a delivery", e))?;
        self.update_logged(
            &d.tenant,
            &d.rule_id,
            &d.id,
            "SET body = :v",
            s(body),
            "update a delivery",
        )
        .await
    }

    async fn get_delivery(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
    ) -> StoreResult<Option<AlertDelivery>> {
        self.get(tenant_pk(tenant), format!("{}{id}", log_prefix(rule)))
            .await?
            .map(|i| with_count(&i))
            .transpose()
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        page: &PageRequest,
    ) -> StoreResult<Page<AlertDelivery>> {
        self.list_in(tenant, &log_prefix(rule), page, false, with_count)
            .await
    }

    async fn add_to_count(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
        by: u64,
    ) -> StoreResult<()> {
        self.update_logged(
            tenant,
            rule,
            id,
            "ADD n :v",
            n(by as i64),
            "count into a delivery",
        )
        .await
    }
}

const FEEDBACK: &str = "FEEDBACK#";

#[async_trait]
impl FeedbackStore for DynamoStore {
    async fn put_feedback(&self, feedback: &Feedback) -> StoreResult<()> {
        let item = tenant_item(&feedback.tenant, FEEDBACK, feedback.id.as_str(), feedback)?;
        self.put_new(item, feedback.id.as_str()).await
    }

    async fn list_feedback(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Feedback>> {
        self.list(tenant, FEEDBACK, page).await
    }
}
