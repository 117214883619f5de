//! Alert rules, deliveries and feedback in SQLite. A delivery's `count` lives in its own column,
//! so adding to it is one atomic `UPDATE` and a status write never overwrites it.

use super::{from_json, to_json, Records, SqliteStore};
use crate::db::sql;
use async_trait::async_trait;
use nomaly_core::domain::{AlertDelivery, AlertRule, Feedback, TenantId};
use nomaly_core::ids::{AlertId, DeliveryId};
use nomaly_core::ports::{AlertStore, FeedbackStore, Page, PageRequest, StoreError, StoreResult};
use rusqlite::{params, OptionalExtension};

fn with_count(body: &str, count: i64) -> StoreResult<AlertDelivery> {
    let mut d: AlertDelivery = from_json(body)?;
    d.count = count.max(0) as u64;
    Ok(d)
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn put_rule(&self, rule: &AlertRule) -> StoreResult<()> {
        self.insert(
            Records::AlertRules,
            &rule.tenant,
            rule.id.as_str(),
            rule.created_at,
            to_json(rule)?,
            true,
        )
        .await
    }

    async fn get_rule(&self, tenant: &TenantId, id: &AlertId) -> StoreResult<Option<AlertRule>> {
        self.fetch(Records::AlertRules, tenant, id.as_str()).await
    }

    async fn list_rules(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<AlertRule>> {
        self.list(Records::AlertRules, tenant, page).await
    }

    async fn delete_rule(&self, tenant: &TenantId, id: &AlertId) -> StoreResult<()> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.db
            .run("delete an alert rule", move |c| {
                let tx = c.transaction().map_err(sql("delete an alert rule"))?;
                let n = tx
                    .execute(
                        "DELETE FROM alert_rules WHERE tenant = ?1 AND id = ?2",
                        params![tenant, id],
                    )
                    .map_err(sql("delete an alert rule"))?;
                if n == 0 {
                    return Err(StoreError::NotFound(id));
                }
                tx.execute(
                    "DELETE FROM alert_deliveries WHERE tenant = ?1 AND rule = ?2",
                    params![tenant, id],
                )
                .map_err(sql("delete an alert rule"))?;
                tx.commit().map_err(sql("delete an alert rule"))
            })
            .await
    }

    async fn create_delivery(&self, d: &AlertDelivery) -> StoreResult<()> {
        let body = to_json(d)?;
        let (tenant, rule, id, count) = (
            d.tenant.to_string(),
            d.rule_id.to_string(),
            d.id.to_string(),
            d.count as i64,
        );
        self.db
            .run("store a delivery", move |c| {
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO alert_deliveries (tenant, rule, id, count, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![tenant, rule, id, count, body],
                    )
                    .map_err(sql("store a delivery"))?;
                if n == 0 {
                    Err(StoreError::AlreadyExists(id))
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn update_delivery(&self, d: &AlertDelivery) -> StoreResult<()> {
        let body = to_json(d)?;
        let (tenant, rule, id) = (
            d.tenant.to_string(),
            d.rule_id.to_string(),
            d.id.to_string(),
        );
        self.db
            .run("update a delivery", move |c| {
                let n = c
                    .execute(
                        "UPDATE alert_deliveries SET body = ?4 WHERE tenant = ?1 AND rule = ?2 AND id = ?3",
                        params![tenant, rule, id, body],
                    )
                    .map_err(sql("update a delivery"))?;
                if n == 0 {
                    Err(StoreError::NotFound(id))
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn get_delivery(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
    ) -> StoreResult<Option<AlertDelivery>> {
        let (tenant, rule, id) = (tenant.to_string(), rule.to_string(), id.to_string());
        let row: Option<(String, i64)> = self
            .db
            .run("read a delivery", move |c| {
                c.query_row(
                    "SELECT body, count FROM alert_deliveries WHERE tenant = ?1 AND rule = ?2 AND id = ?3",
                    params![tenant, rule, id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql("read a delivery"))
            })
            .await?;
        row.map(|(b, n)| with_count(&b, n)).transpose()
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        page: &PageRequest,
    ) -> StoreResult<Page<AlertDelivery>> {
        let limit = page.effective_limit();
        let after = match page.token.as_deref() {
            Some(t) => Some(
                DeliveryId::parse(t)
                    .map_err(|_| StoreError::BadPageToken)?
                    .to_string(),
            ),
            None => None,
        };
        let (tenant, rule) = (tenant.to_string(), rule.to_string());
        let rows: Vec<(String, String, i64)> = self
            .db
            .run("list deliveries", move |c| {
                let mut stmt = c
                    .prepare(
                        "SELECT id, body, count FROM alert_deliveries WHERE tenant = ?1 AND rule = ?2 AND id < ?3
                         ORDER BY id DESC LIMIT ?4",
                    )
                    .map_err(sql("list deliveries"))?;
                let rows = stmt
                    .query_map(
                        params![tenant, rule, after.unwrap_or_else(|| "~".into()), (limit + 1) as i64],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .map_err(sql("list deliveries"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql("list deliveries"));
                rows
            })
            .await?;
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let next_token = if more {
            rows.last().map(|(id, _, _)| id.clone())
        } else {
            None
        };
        let items = rows
            .iter()
            .map(|(_, b, n)| with_count(b, *n))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next_token })
    }

    async fn add_to_count(
        &self,
        tenant: &TenantId,
        rule: &AlertId,
        id: &DeliveryId,
        n: u64,
    ) -> StoreResult<()> {
        let (tenant, rule, id) = (tenant.to_string(), rule.to_string(), id.to_string());
        self.db
            .run("count into a delivery", move |c| {
                let changed = c
                    .execute(
                        "UPDATE alert_deliveries SET count = count + ?4 WHERE tenant = ?1 AND rule = ?2 AND id = ?3",
                        params![tenant, rule, id, n as i64],
                    )
                    .map_err(sql("count into a delivery"))?;
                if changed == 0 {
                    Err(StoreError::NotFound(id))
                } else {
                    Ok(())
                }
            })
            .await
    }
}

#[async_trait]
impl FeedbackStore for SqliteStore {
    async fn put_feedback(&self, feedback: &Feedback) -> StoreResult<()> {
        self.insert(
            Records::Feedback,
            &feedback.tenant,
            feedback.id.as_str(),
            feedback.created_at,
            to_json(feedback)?,
            false,
        )
        .await
    }

    async fn list_feedback(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Feedback>> {
        self.list(Records::Feedback, tenant, page).await
    }
}
