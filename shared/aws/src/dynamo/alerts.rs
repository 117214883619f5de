//! Feedback on stream results (`FEEDBACK#<id>`), alert rules (`ALERTRULE#<id>`) and their delivery logs (`ALERTLOG#<rule>#<id>`, with
//! the delivery's count as its own number attribute `n`, so adding to it is one `ADD`
//! and a status write, which sets `body` alone, never overwrites it).

use super::{
    decode_token, encode_token, n, parse, s, sdk, tenant_item, tenant_pk, DynamoStore, Item,
};
use async_trait::async_trait;
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

    /// The rule, then its log page by page (`BatchWriteItem`s of 25).
    async fn delete_rule(&self, tenant: &TenantId, id: &AlertId) -> StoreResult<()> {
        let pk = tenant_pk(tenant);
        self.delete_existing(pk.clone(), format!("{RULE}{id}"), id.as_str())
            .await?;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .projection_expression("pk, sk")
                .expression_attribute_values(":pk", s(pk.as_str()))
                .expression_attribute_values(":prefix", s(log_prefix(id)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("delete a delivery log"))?;
            self.delete_keys(out.items().to_vec()).await?;
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(()),
            }
        }
    }

    async fn create_delivery(&self, d: &AlertDelivery) -> StoreResult<()> {
        let mut item = tenant_item(&d.tenant, &log_prefix(&d.rule_id), d.id.as_str(), d)?;
        item.insert("n".into(), n(d.count as i64));
        self.put_new(item, d.id.as_str()).await
    }

    async fn update_delivery(&self, d: &AlertDelivery) -> StoreResult<()> {
        let body =
            serde_json::to_string(d).map_err(|e| StoreError::backend("encode a delivery", e))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(tenant_pk(&d.tenant)))
            .key("sk", s(format!("{}{}", log_prefix(&d.rule_id), d.id)))
            .update_expression("SET body = :body")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":body", s(body))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::NotFound(d.id.to_string()))
            }
            Err(e) => Err(sdk("update a delivery")(e)),
        }
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
        let pk = tenant_pk(tenant);
        let prefix = log_prefix(rule);
        let start = page
            .token
            .as_deref()
            .map(|t| decode_token(t, &pk, &prefix))
            .transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .scan_index_forward(false)
            .limit(page.effective_limit() as i32)
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("list deliveries"))?;
        let items = out
            .items()
            .iter()
            .map(with_count)
            .collect::<StoreResult<Vec<_>>>()?;
        let next_token = out.last_evaluated_key().and_then(encode_token);
        Ok(Page { items, next_token })
    }

    async fn add_to_count(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
        by: u64,
    ) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(tenant_pk(tenant)))
            .key("sk", s(format!("{}{id}", log_prefix(rule))))
            .update_expression("ADD n :by")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":by", n(by as i64))
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
            Err(e) => Err(sdk("count into a delivery")(e)),
        }
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
