//! The state table and the events table on DynamoDB.
//!
//! State table items (`pk`, `sk` strings; `body` is the record as JSON):
//!
//! | record | pk | sk | other attributes |
//! |---|---|---|---|
//! | task | `T#<tenant>` | `TASK#<id>` | `version` (compare-and-set); while running, `gsi1pk` = `TASKS#RUNNING`, `gsi1sk` = updated ms + id |
//! | model | `T#<tenant>` | `MODEL#<id>` | |
//! | dataset | `T#<tenant>` | `DATASET#<id>` | |
//! | idempotency record | `T#<tenant>` | `IDEM#<key>` | `response` (binary), `ttl` |
//! | cached result | `T#<tenant>` | `CACHE#<key>` | `value` (binary), `ttl` |
//! | API key | `KEY#<id>` | `KEY` | `gsi1pk` = `T#<tenant>#KEYS`, `gsi1sk` = id |
//! | connection | `CONN#<id>` | `CONN` | `gsi1pk` = `T#<tenant>#CONNS`, `gsi1sk` = id, `ttl` |
//! | stream | `T#<tenant>` | `STREAM#<id>` | `version` (compare-and-set); the detector's state as `state` (binary) or, when large, `state_key` (the S3 key of that version's state) |
//! | request counter | `T#<tenant>` | `RATE#<window>` | `n` (requests counted), `ttl` |
//!
//! Ids are ULIDs, so a query on `T#<tenant>` with `begins_with(sk, "TASK#")` read
//! backwards lists tasks newest first; `ttl` (epoch seconds) lets DynamoDB drop expired
//! items, and reads also skip expired items themselves (TTL deletion lags). Events table
//! items: `pk` = tenant, `sk` = event id, `body`.

use crate::error::sdk;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use nomaly_core::domain::{
    ApiKey, Connection, Dataset, Event, ModelRecord, Stream, StreamState, Task, TaskStatus,
    TenantId,
};
use nomaly_core::ids::{DatasetId, EventId, KeyId, ModelId, StreamId, TaskId};
use nomaly_core::ports::{
    BlobKey, Claim, ConnectionRegistry, DatasetStore, EventLog, ExpirySweeper, IdempotencyStore,
    KeyStore, ModelRegistry, Page, PageRequest, RateLimiter, ResultCache, StoreError, StoreResult,
    StreamStore, TaskStore,
};
use nomaly_core::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

/// The record ports on two DynamoDB tables.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    events_table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

/// The item of a tenant's record: `pk` = `T#<tenant>`, `sk` = `<prefix><id>`, `body`.
fn tenant_item<T: Serialize>(
    tenant: &TenantId,
    prefix: &str,
    id: &str,
    record: &T,
) -> StoreResult<Item> {
    Ok(HashMap::from([
        ("pk".to_string(), s(tenant_pk(tenant))),
        ("sk".to_string(), s(format!("{prefix}{id}"))),
        ("body".to_string(), body(record)?),
    ]))
}

fn body<T: Serialize>(record: &T) -> StoreResult<AttributeValue> {
    serde_json::to_string(record)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::backend("encode a record", e))
}

fn parse<T: DeserializeOwned>(item: &Item) -> StoreResult<T> {
    let text = item
        .get("body")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| {
            StoreError::backend(
                "decode a record",
                crate::error::SdkFailure("item has no body".into()),
            )
        })?;
    serde_json::from_str(text).map_err(|e| StoreError::backend("decode a record", e))
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn live(item: &Item, now: Timestamp) -> bool {
    number(item, "ttl").is_none_or(|t| t > now.seconds())
}

/// A page token: the last evaluated key of a query, checked to lie in the caller's own
/// partition when it comes back.
fn encode_token(key: &Item) -> Option<String> {
    let pk = key.get("pk")?.as_s().ok()?;
    let sk = key.get("sk")?.as_s().ok()?;
    Some(hex::encode(serde_json::json!([pk, sk]).to_string()))
}

fn decode_token(token: &str, pk: &str, prefix: &str) -> StoreResult<Item> {
    let text = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(StoreError::BadPageToken)?;
    let (token_pk, sk): (String, String) =
        serde_json::from_str(&text).map_err(|_| StoreError::BadPageToken)?;
    if token_pk != pk || !sk.starts_with(prefix) {
        return Err(StoreError::BadPageToken);
    }
    Ok(HashMap::from([
        ("pk".to_string(), s(token_pk)),
        ("sk".to_string(), s(sk)),
    ]))
}

impl DynamoStore {
    /// The store on `table` (state) and `events_table`.
    pub fn new(client: Client, table: &str, events_table: &str) -> Self {
        DynamoStore {
            client,
            table: table.to_string(),
            events_table: events_table.to_string(),
        }
    }

    async fn put_new(&self, item: Item, what: &str) -> StoreResult<()> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists(what.to_string()))
            }
            Err(e) => Err(sdk("put an item")(e)),
        }
    }

    async fn put(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk("put an item"))?;
        Ok(())
    }

    async fn get(&self, pk: String, sk: String) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("get an item"))?;
        Ok(out.item)
    }

    /// Why a write conditioned on an item's version failed: `Conflict` if the item is
    /// there (the version moved), `NotFound` if not.
    async fn condition_failed(&self, pk: String, sk: String, id: &str) -> StoreResult<StoreError> {
        Ok(match self.get(pk, sk).await? {
            Some(_) => StoreError::Conflict(id.to_string()),
            None => StoreError::NotFound(id.to_string()),
        })
    }

    /// Replaces an item that has a `version` attribute if and only if the stored version
    /// is `version - 1`: the compare-and-set of tasks and streams. `Conflict` if it
    /// changed, `NotFound` if there is no such item.
    async fn put_next_version(&self, item: Item, version: u64, id: &str) -> StoreResult<()> {
        let (pk, sk) = match (item.get("pk"), item.get("sk")) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => (pk.clone(), sk.clone()),
            _ => {
                return Err(StoreError::backend(
                    "update an item",
                    crate::error::SdkFailure("the item has no key".into()),
                ))
            }
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk) AND version = :expected")
            .expression_attribute_values(":expected", n(version as i64 - 1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(self.condition_failed(pk, sk, id).await?)
            }
            Err(e) => Err(sdk("update an item")(e)),
        }
    }

    /// A tenant's record of one kind, if present.
    async fn get_record<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        prefix: &str,
        id: &str,
    ) -> StoreResult<Option<T>> {
        self.get(tenant_pk(tenant), format!("{prefix}{id}"))
            .await?
            .map(|i| parse(&i))
            .transpose()
    }

    async fn delete_existing(&self, pk: String, sk: String, what: &str) -> StoreResult<()> {
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::NotFound(what.to_string()))
            }
            Err(e) => Err(sdk("delete an item")(e)),
        }
    }

    /// One page of a tenant's records of one kind, newest first.
    async fn list<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        prefix: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<T>> {
        let pk = tenant_pk(tenant);
        let start = page
            .token
            .as_deref()
            .map(|t| decode_token(t, &pk, prefix))
            .transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .scan_index_forward(false)
            // The record only: a stream's state may be hundreds of kilobytes.
            .projection_expression("pk, sk, body")
            .limit(page.effective_limit() as i32)
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("list items"))?;
        let items = out
            .items()
            .iter()
            .map(parse)
            .collect::<StoreResult<Vec<T>>>()?;
        let next_token = out.last_evaluated_key().and_then(encode_token);
        Ok(Page { items, next_token })
    }

    /// Every item of a GSI partition (all pages), unexpired.
    async fn gsi_all(&self, gsi1pk: String) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        let now = Timestamp::now();
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(gsi1pk.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("query an index"))?;
            items.extend(out.items().iter().filter(|i| live(i, now)).cloned());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}

#[async_trait]
impl TaskStore for DynamoStore {
    async fn create_task(&self, task: &Task) -> StoreResult<()> {
        self.put_new(task_item(task)?, task.id.as_str()).await
    }

    async fn get_task(&self, tenant: &TenantId, id: &TaskId) -> StoreResult<Option<Task>> {
        self.get_record(tenant, "TASK#", id.as_str()).await
    }

    async fn list_tasks(&self, tenant: &TenantId, page: &PageRequest) -> StoreResult<Page<Task>> {
        self.list(tenant, "TASK#", page).await
    }

    async fn update_task(&self, task: &Task) -> StoreResult<()> {
        self.put_next_version(task_item(task)?, task.version, task.id.as_str())
            .await
    }

    async fn stale_running(&self, before: Timestamp, limit: usize) -> StoreResult<Vec<Task>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p AND gsi1sk < :before")
            .expression_attribute_values(":p", s(RUNNING_TASKS))
            .expression_attribute_values(":before", s(running_sort_key(before, "")))
            .limit(PageRequest::cap(limit) as i32)
            .send()
            .await
            .map_err(sdk("list stale running tasks"))?;
        out.items().iter().map(parse).collect()
    }

    async fn count_running(&self, tenant: &TenantId, up_to: usize) -> StoreResult<usize> {
        // The sparse running-tasks partition of `gsi1` holds only running tasks (as many
        // as the workers run at once, of every tenant), filtered to this tenant's items by
        // their table key: no read of the tenant's finished tasks, no scan of the table.
        let mut count = 0usize;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :p")
                .filter_expression("pk = :pk")
                .expression_attribute_values(":p", s(RUNNING_TASKS))
                .expression_attribute_values(":pk", s(tenant_pk(tenant)))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("count running tasks"))?;
            count += usize::try_from(out.count()).unwrap_or(0);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && count < up_to => start = Some(k),
                _ => return Ok(count.min(up_to)),
            }
        }
    }
}

/// The `gsi1` partition that holds running tasks (a sparse index: the attributes are
/// written only while a task runs), sorted by when they last changed.
const RUNNING_TASKS: &str = "TASKS#RUNNING";

fn running_sort_key(updated: Timestamp, id: &str) -> String {
    format!("{:015}#{id}", updated.millis().max(0))
}

/// A task's item: the record, its version (the compare-and-set token), and while it
/// runs, its place in the running-tasks index.
fn task_item(task: &Task) -> StoreResult<Item> {
    let mut item = tenant_item(&task.tenant, "TASK#", task.id.as_str(), task)?;
    item.insert("version".to_string(), n(task.version as i64));
    if task.status == TaskStatus::Running {
        item.insert("gsi1pk".to_string(), s(RUNNING_TASKS));
        item.insert(
            "gsi1sk".to_string(),
            s(running_sort_key(task.updated_at, task.id.as_str())),
        );
    }
    Ok(item)
}

/// A stream's item: the record, its version and its state (or the state's blob key).
fn stream_item(stream: &Stream, state: &StreamState) -> StoreResult<Item> {
    let mut item = tenant_item(&stream.tenant, "STREAM#", stream.id.as_str(), stream)?;
    item.insert("version".to_string(), n(stream.version as i64));
    match state {
        StreamState::Inline(bytes) => item.insert(
            "state".to_string(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes.clone())),
        ),
        StreamState::Blob(key) => item.insert("state_key".to_string(), s(key.as_str())),
    };
    Ok(item)
}

fn stream_state(item: &Item) -> StoreResult<StreamState> {
    if let Some(key) = item.get("state_key").and_then(|v| v.as_s().ok()) {
        return BlobKey::parse(key)
            .map(StreamState::Blob)
            .map_err(|e| StoreError::backend("read a stream's state key", e));
    }
    match item.get("state").and_then(|v| v.as_b().ok()) {
        Some(bytes) => Ok(StreamState::Inline(bytes.as_ref().to_vec())),
        None => Err(StoreError::backend(
            "read a stream's state",
            crate::error::SdkFailure("the stream item has no state".into()),
        )),
    }
}

#[async_trait]
impl StreamStore for DynamoStore {
    async fn create_stream(&self, stream: &Stream, state: &StreamState) -> StoreResult<()> {
        self.put_new(stream_item(stream, state)?, stream.id.as_str())
            .await
    }

    async fn get_stream(
        &self,
        tenant: &TenantId,
        id: &StreamId,
    ) -> StoreResult<Option<(Stream, StreamState)>> {
        self.get(tenant_pk(tenant), format!("STREAM#{id}"))
            .await?
            .map(|item| Ok((parse(&item)?, stream_state(&item)?)))
            .transpose()
    }

    async fn list_streams(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Stream>> {
        self.list(tenant, "STREAM#", page).await
    }

    async fn update_stream(&self, stream: &Stream, state: &StreamState) -> StoreResult<()> {
        self.put_next_version(
            stream_item(stream, state)?,
            stream.version,
            stream.id.as_str(),
        )
        .await
    }

    async fn delete_stream(
        &self,
        tenant: &TenantId,
        id: &StreamId,
        version: u64,
    ) -> StoreResult<()> {
        let (pk, sk) = (tenant_pk(tenant), format!("STREAM#{id}"));
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(sk.clone()))
            .condition_expression("attribute_exists(pk) AND version = :expected")
            .expression_attribute_values(":expected", n(version as i64))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(self.condition_failed(pk, sk, id.as_str()).await?)
            }
            Err(e) => Err(sdk("delete a stream")(e)),
        }
    }
}

#[async_trait]
impl ModelRegistry for DynamoStore {
    async fn put_model(&self, model: &ModelRecord) -> StoreResult<()> {
        let item = tenant_item(&model.tenant, "MODEL#", model.id.as_str(), model)?;
        self.put_new(item, model.id.as_str()).await
    }

    async fn get_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<Option<ModelRecord>> {
        self.get_record(tenant, "MODEL#", id.as_str()).await
    }

    async fn list_models(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<ModelRecord>> {
        self.list(tenant, "MODEL#", page).await
    }

    async fn delete_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<()> {
        self.delete_existing(tenant_pk(tenant), format!("MODEL#{id}"), id.as_str())
            .await
    }
}

#[async_trait]
impl DatasetStore for DynamoStore {
    async fn put_dataset(&self, dataset: &Dataset) -> StoreResult<()> {
        self.put(tenant_item(
            &dataset.tenant,
            "DATASET#",
            dataset.id.as_str(),
            dataset,
        )?)
        .await
    }

    async fn get_dataset(&self, tenant: &TenantId, id: &DatasetId) -> StoreResult<Option<Dataset>> {
        self.get_record(tenant, "DATASET#", id.as_str()).await
    }

    async fn list_datasets(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Dataset>> {
        self.list(tenant, "DATASET#", page).await
    }

    async fn delete_dataset(&self, tenant: &TenantId, id: &DatasetId) -> StoreResult<()> {
        self.delete_existing(tenant_pk(tenant), format!("DATASET#{id}"), id.as_str())
            .await
    }
}

fn event_item(event: &Event) -> StoreResult<Item> {
    Ok(HashMap::from([
        ("pk".to_string(), s(event.tenant.to_string())),
        ("sk".to_string(), s(event.event_id.to_string())),
        ("body".to_string(), body(event)?),
    ]))
}

#[async_trait]
impl EventLog for DynamoStore {
    /// One `TransactWriteItems` over the two tables: the task's conditional put and the
    /// event's put-if-absent. A cancelled transaction says which condition failed.
    async fn append_with_task(&self, event: &Event, task: &Task) -> StoreResult<()> {
        let built = |e| StoreError::backend("finish a task", e);
        let task_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(task_item(task)?))
            .condition_expression("attribute_exists(pk) AND version = :expected")
            .expression_attribute_values(":expected", n(task.version as i64 - 1))
            .build()
            .map_err(built)?;
        let event_put = Put::builder()
            .table_name(&self.events_table)
            .set_item(Some(event_item(event)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(built)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(task_put).build())
            .transact_items(TransactWriteItem::builder().put(event_put).build())
            .send()
            .await;
        let Err(e) = result else {
            return Ok(());
        };
        let failed = |i: usize| match e.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
                .cancellation_reasons()
                .get(i)
                .and_then(|r| r.code())
                .is_some_and(|code| code == "ConditionalCheckFailed"),
            _ => false,
        };
        if failed(0) {
            let (pk, sk) = (tenant_pk(&task.tenant), format!("TASK#{}", task.id));
            return match self.get(pk, sk).await? {
                Some(_) => Err(StoreError::Conflict(task.id.to_string())),
                None => Err(StoreError::NotFound(task.id.to_string())),
            };
        }
        if failed(1) {
            return Err(StoreError::AlreadyExists(event.event_id.to_string()));
        }
        Err(sdk("finish a task")(e))
    }

    async fn append(&self, event: &Event) -> StoreResult<()> {
        let item = event_item(event)?;
        match self
            .client
            .put_item()
            .table_name(&self.events_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists(event.event_id.to_string()))
            }
            Err(e) => Err(sdk("append an event")(e)),
        }
    }

    async fn events_after(
        &self,
        tenant: &TenantId,
        after: Option<&EventId>,
        limit: usize,
    ) -> StoreResult<Page<Event>> {
        let limit = PageRequest::cap(limit);
        let query = self
            .client
            .query()
            .table_name(&self.events_table)
            .expression_attribute_values(":pk", s(tenant.to_string()))
            .scan_index_forward(true)
            .limit(limit as i32)
            .consistent_read(true);
        let query = match after {
            Some(id) => query
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":after", s(id.to_string())),
            None => query.key_condition_expression("pk = :pk"),
        };
        let out = query.send().await.map_err(sdk("list events"))?;
        let items: Vec<Event> = out.items().iter().map(parse).collect::<StoreResult<_>>()?;
        let next_token = match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => items.last().map(|e| e.event_id.to_string()),
            _ => None,
        };
        Ok(Page { items, next_token })
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn put_key(&self, key: &ApiKey) -> StoreResult<()> {
        let item = HashMap::from([
            ("pk".to_string(), s(format!("KEY#{}", key.id))),
            ("sk".to_string(), s("KEY")),
            ("gsi1pk".to_string(), s(format!("T#{}#KEYS", key.tenant))),
            ("gsi1sk".to_string(), s(key.id.to_string())),
            ("body".to_string(), body(key)?),
        ]);
        self.put_new(item, key.id.as_str()).await
    }

    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<ApiKey>> {
        self.get(format!("KEY#{id}"), "KEY".into())
            .await?
            .map(|i| parse(&i))
            .transpose()
    }

    async fn list_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>> {
        let items = self.gsi_all(format!("T#{tenant}#KEYS")).await?;
        let mut keys = items
            .iter()
            .map(parse)
            .collect::<StoreResult<Vec<ApiKey>>>()?;
        keys.retain(|k| &k.tenant == tenant);
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    async fn revoke_key(&self, tenant: &TenantId, id: &KeyId) -> StoreResult<()> {
        let key = match self.get_key(id).await? {
            Some(k) if &k.tenant == tenant => k.revoked(),
            _ => return Err(StoreError::NotFound(id.to_string())),
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("KEY#{id}")))
            .key("sk", s("KEY"))
            .update_expression("SET body = :b")
            .expression_attribute_values(":b", body(&key)?)
            .send()
            .await
            .map_err(sdk("revoke a key"))?;
        Ok(())
    }
}

#[async_trait]
impl ConnectionRegistry for DynamoStore {
    async fn put_connection(&self, connection: &Connection) -> StoreResult<()> {
        self.put(HashMap::from([
            ("pk".to_string(), s(format!("CONN#{}", connection.id))),
            ("sk".to_string(), s("CONN")),
            (
                "gsi1pk".to_string(),
                s(format!("T#{}#CONNS", connection.tenant)),
            ),
            ("gsi1sk".to_string(), s(connection.id.clone())),
            ("ttl".to_string(), n(connection.expires_at.seconds())),
            ("body".to_string(), body(connection)?),
        ]))
        .await
    }

    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        let now = Timestamp::now();
        let item = self.get(format!("CONN#{id}"), "CONN".into()).await?;
        let connection: Option<Connection> = item.map(|i| parse(&i)).transpose()?;
        Ok(connection.filter(|c| c.expires_at > now))
    }

    async fn delete_connection(&self, id: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("CONN#{id}")))
            .key("sk", s("CONN"))
            .send()
            .await
            .map_err(sdk("delete a connection"))?;
        Ok(())
    }

    async fn tenant_connections(&self, tenant: &TenantId) -> StoreResult<Vec<Connection>> {
        let now = Timestamp::now();
        let items = self.gsi_all(format!("T#{tenant}#CONNS")).await?;
        let mut connections = items
            .iter()
            .map(parse)
            .collect::<StoreResult<Vec<Connection>>>()?;
        connections.retain(|c| &c.tenant == tenant && c.expires_at > now);
        connections.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(connections)
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(&self, tenant: &TenantId, key: &str, ttl_secs: u32) -> StoreResult<Claim> {
        let now = Timestamp::now();
        let (pk, sk) = (tenant_pk(tenant), format!("IDEM#{key}"));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk.clone()))
            .item("sk", s(sk.clone()))
            .item("ttl", n(now.plus_seconds(i64::from(ttl_secs)).seconds()))
            .condition_expression("attribute_not_exists(pk) OR #ttl <= :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now.seconds()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::New),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                let item = self.get(pk, sk).await?;
                Ok(
                    match item
                        .as_ref()
                        .and_then(|i| i.get("response"))
                        .and_then(|v| v.as_b().ok())
                    {
                        Some(b) => Claim::Done(b.as_ref().to_vec()),
                        None => Claim::InProgress,
                    },
                )
            }
            Err(e) => Err(sdk("claim an idempotency key")(e)),
        }
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        key: &str,
        response: &[u8],
        ttl_secs: u32,
    ) -> StoreResult<()> {
        let expires = Timestamp::now().plus_seconds(i64::from(ttl_secs)).seconds();
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(tenant_pk(tenant)))
            .key("sk", s(format!("IDEM#{key}")))
            .update_expression("SET #r = :r, #ttl = :ttl")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#r", "response")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":r", AttributeValue::B(response.to_vec().into()))
            .expression_attribute_values(":ttl", n(expires))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::NotFound(key.to_string()))
            }
            Err(e) => Err(sdk("complete an idempotency key")(e)),
        }
    }

    async fn release(&self, tenant: &TenantId, key: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(tenant_pk(tenant)))
            .key("sk", s(format!("IDEM#{key}")))
            .send()
            .await
            .map_err(sdk("release an idempotency key"))?;
        Ok(())
    }
}

#[async_trait]
impl ExpirySweeper for DynamoStore {
    /// Scans for items whose `ttl` has passed and deletes them, at most 10 pages a call.
    /// On AWS, DynamoDB's own TTL deletes them too (within days); this is the backstop.
    async fn sweep_expired(&self, limit: usize) -> StoreResult<usize> {
        let now = Timestamp::now().seconds();
        let mut deleted = 0;
        let mut start = None;
        for _ in 0..10 {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#ttl < :now")
                .projection_expression("pk, sk")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", n(now))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("scan for expired items"))?;
            for item in out.items() {
                if deleted >= limit {
                    return Ok(deleted);
                }
                let (Some(pk), Some(sk)) = (item.get("pk"), item.get("sk")) else {
                    continue;
                };
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", pk.clone())
                    .key("sk", sk.clone())
                    .condition_expression("#ttl < :now")
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":now", n(now))
                    .send()
                    .await;
                match result {
                    Ok(_) => deleted += 1,
                    // Refreshed since the scan read it: no longer expired.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                    Err(e) => return Err(sdk("delete an expired item")(e)),
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        Ok(deleted)
    }
}

#[async_trait]
impl ResultCache for DynamoStore {
    async fn get_cached(&self, tenant: &TenantId, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let now = Timestamp::now();
        let item = self.get(tenant_pk(tenant), format!("CACHE#{key}")).await?;
        Ok(item.filter(|i| live(i, now)).and_then(|i| {
            i.get("value")
                .and_then(|v| v.as_b().ok())
                .map(|b| b.as_ref().to_vec())
        }))
    }

    async fn put_cached(
        &self,
        tenant: &TenantId,
        key: &str,
        value: &[u8],
        ttl_secs: u32,
    ) -> StoreResult<()> {
        self.put(HashMap::from([
            ("pk".to_string(), s(tenant_pk(tenant))),
            ("sk".to_string(), s(format!("CACHE#{key}"))),
            (
                "value".to_string(),
                AttributeValue::B(value.to_vec().into()),
            ),
            (
                "ttl".to_string(),
                n(Timestamp::now().plus_seconds(i64::from(ttl_secs)).seconds()),
            ),
        ]))
        .await
    }
}

#[async_trait]
impl RateLimiter for DynamoStore {
    /// One conditional `ADD` on the window's counter item: DynamoDB applies it atomically,
    /// so concurrent Lambda instances together count at most `limit`. The item expires a
    /// window after its own.
    async fn admit(
        &self,
        tenant: &TenantId,
        window: i64,
        window_secs: u32,
        limit: u32,
    ) -> StoreResult<bool> {
        let expires = (window + 2) * i64::from(window_secs);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(tenant_pk(tenant)))
            .key("sk", s(format!("RATE#{window}")))
            .update_expression("ADD #n :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(#n) OR #n < :limit")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .expression_attribute_values(":ttl", n(expires))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk("count a request")(e)),
        }
    }
}
