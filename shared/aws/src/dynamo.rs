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
//! | stream entity | `T#<tenant>` | `ENTITY#<stream>#<name>` | `version` (compare-and-set), `seen_ms` (its last point, wall clock), the detector's state as `state` (binary) |
//! | stream's entity count | `T#<tenant>` | `ENTITIES#<stream>` | `n` (entities the stream holds), changed in the transactions that make and evict entities |
//! | alert rule | `T#<tenant>` | `ALERTRULE#<id>` | |
//! | alert delivery | `T#<tenant>` | `ALERTLOG#<rule>#<id>` | `n` (its count, added to in place) |
//! | feedback on a stream's result | `T#<tenant>` | `FEEDBACK#<id>` | |
//!
//! Ids are ULIDs, so a query on `T#<tenant>` with `begins_with(sk, "TASK#")` read
//! backwards lists tasks newest first; `ttl` (epoch seconds) lets DynamoDB drop expired
//! items, and reads also skip expired items themselves (TTL deletion lags). A stream's
//! entities sort by name under `ENTITY#<stream>#`, so one query lists them in name order.
//! Events table items: `pk` = tenant, `sk` = event id, `body`.

mod alerts;

use crate::error::sdk;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, DeleteRequest, KeysAndAttributes, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use nomaly_core::domain::{
    ApiKey, Connection, Dataset, EntityWritten, Event, ModelRecord, Stream, StreamEntity,
    StreamState, Task, TaskStatus, TenantId,
};
use nomaly_core::ids::{DatasetId, EventId, KeyId, ModelId, StreamId, TaskId};
use nomaly_core::ports::{
    BlobKey, Claim, ConnectionRegistry, DatasetStore, EntitiesRead, EventLog, ExpirySweeper,
    IdempotencyStore, KeyStore, ModelRegistry, Page, PageRequest, RateLimiter, ResultCache,
    StoreError, StoreResult, StreamStore, TaskStore,
};
use nomaly_core::time::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};

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
        self.list_in(tenant, prefix, page, false, parse).await
    }

    /// One page of a tenant's records under `prefix`, in key order (`forward`) or
    /// backwards, each item read by `read`.
    async fn list_in<T>(
        &self,
        tenant: &TenantId,
        prefix: &str,
        page: &PageRequest,
        forward: bool,
        read: impl Fn(&Item) -> StoreResult<T>,
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
            .scan_index_forward(forward)
            // The record (and a count kept beside it) only: a stream's state may be
            // hundreds of kilobytes.
            .projection_expression("pk, sk, body, n")
            .limit(page.effective_limit() as i32)
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("list items"))?;
        let items = out
            .items()
            .iter()
            .map(read)
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

    /// `BatchGetItem`s of 100 keys, the count's key in the first; keys DynamoDB left
    /// unprocessed are asked again after a pause.
    async fn get_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        names: &[String],
    ) -> StoreResult<EntitiesRead> {
        let pk = tenant_pk(tenant);
        let count_sk = entities_count_sk(stream);
        let mut seen = HashSet::new();
        let mut pending: VecDeque<Item> = std::iter::once(key(&pk, count_sk.clone()))
            .chain(
                names
                    .iter()
                    .filter(|name| seen.insert(name.as_str()))
                    .map(|name| key(&pk, entity_sk(stream, name))),
            )
            .collect();
        let mut read = EntitiesRead::default();
        let mut waits = 0;
        while !pending.is_empty() {
            let keys: Vec<Item> = pending
                .drain(..pending.len().min(KEYS_PER_BATCH_GET))
                .collect();
            let (items, unprocessed) = self.batch_get(keys).await?;
            for item in &items {
                match item.get("sk").and_then(|v| v.as_s().ok()) {
                    Some(sk) if *sk == count_sk => read.count = count_of(item),
                    _ => read.entities.push((parse(item)?, entity_state(item)?)),
                }
            }
            if unprocessed.is_empty() {
                waits = 0;
                continue;
            }
            waits += 1;
            if waits > UNPROCESSED_RETRIES && items.is_empty() {
                return Err(unfinished("read entities", unprocessed.len()));
            }
            for k in unprocessed.into_iter().rev() {
                pending.push_front(k);
            }
            pause(waits).await;
        }
        Ok(read)
    }

    /// `TransactWriteItems` of at most 99 entities and 3.5 MB, each with one update of
    /// the count when it makes entities (see [`DynamoStore::put_entity_batch`]).
    async fn put_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        writes: &[(StreamEntity, Vec<u8>)],
        max_entities: u64,
    ) -> StoreResult<Vec<EntityWritten>> {
        let puts = writes
            .iter()
            .enumerate()
            .map(|(index, (entity, state))| EntityPut::of(index, tenant, stream, entity, state))
            .collect::<StoreResult<Vec<_>>>()?;
        let count = key(&tenant_pk(tenant), entities_count_sk(stream));
        // Every write is answered: each batch overwrites its own.
        let mut written = vec![EntityWritten::Conflict; writes.len()];
        let batches = batches(
            puts,
            ENTITIES_PER_TRANSACTION,
            STATE_BYTES_PER_TRANSACTION,
            |p| p.bytes,
            |p| p.name.as_str(),
        );
        for batch in batches {
            self.put_entity_batch(&count, batch, max_entities, &mut written)
                .await?;
        }
        Ok(written)
    }

    /// A query of the stream's entities, filtered on `seen_ms`, projected to their keys
    /// and versions, page after page until `limit` are found.
    async fn idle_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        seen_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<(String, u64)>> {
        let prefix = entity_prefix(stream);
        let mut idle = Vec::new();
        let mut start: Option<Item> = None;
        while idle.len() < limit {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .filter_expression("#seen < :before")
                .projection_expression("sk, #v")
                .expression_attribute_names("#seen", "seen_ms")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":pk", s(tenant_pk(tenant)))
                .expression_attribute_values(":prefix", s(prefix.as_str()))
                .expression_attribute_values(":before", n(seen_before.millis()))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(sdk("list idle entities"))?;
            for item in out.items() {
                let name = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| sk.strip_prefix(prefix.as_str()));
                if let (Some(name), Some(version)) = (name, number(item, "version")) {
                    idle.push((name.to_string(), u64::try_from(version).unwrap_or(0)));
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        idle.truncate(limit);
        Ok(idle)
    }

    /// `TransactWriteItems` of at most 99 deletes conditioned on the version, each with
    /// one decrement of the count.
    async fn evict_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        which: &[(String, u64)],
    ) -> StoreResult<Vec<String>> {
        let pk = tenant_pk(tenant);
        let count = key(&pk, entities_count_sk(stream));
        let deletes: Vec<EntityDelete> = which
            .iter()
            .map(|(name, version)| EntityDelete {
                name: name.clone(),
                key: key(&pk, entity_sk(stream, name)),
                version: *version,
            })
            .collect();
        let mut evicted = Vec::new();
        let batches = batches(
            deletes,
            ENTITIES_PER_TRANSACTION,
            usize::MAX,
            |_| 0,
            |d| d.name.as_str(),
        );
        for batch in batches {
            self.evict_entity_batch(&count, batch, &mut evicted).await?;
        }
        Ok(evicted)
    }

    async fn list_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        page: &PageRequest,
    ) -> StoreResult<Page<StreamEntity>> {
        self.list_in(tenant, &entity_prefix(stream), page, true, parse)
            .await
    }

    /// The entities, then the count.
    async fn delete_entities(&self, tenant: &TenantId, stream: &StreamId) -> StoreResult<()> {
        let pk = tenant_pk(tenant);
        self.delete_prefix(&pk, &entity_prefix(stream), "delete entities")
            .await?;
        self.delete_keys(vec![key(&pk, entities_count_sk(stream))])
            .await
    }
}

/// Entity writes or deletes per transaction: DynamoDB's 100 items, one kept for the count.
const ENTITIES_PER_TRANSACTION: usize = 99;

/// Bytes of entities (state and record) per transaction: a transaction carries at most
/// 4 MB.
const STATE_BYTES_PER_TRANSACTION: usize = 3_500_000;

/// Keys per `BatchGetItem`.
const KEYS_PER_BATCH_GET: usize = 100;

/// Deletes per `BatchWriteItem`.
const DELETES_PER_BATCH_WRITE: usize = 25;

/// Calls in a row that may leave keys or items unprocessed with nothing done before a
/// batch read or delete gives up.
const UNPROCESSED_RETRIES: u32 = 8;

/// Times a transaction cancelled by contention (another transaction on its items, or
/// throttling) is sent again before its contended writes are answered `Conflict`.
const CONTENDED_RETRIES: u32 = 4;

/// The sort key prefix of a stream's entities.
fn entity_prefix(stream: &StreamId) -> String {
    format!("ENTITY#{stream}#")
}

fn entity_sk(stream: &StreamId, name: &str) -> String {
    format!("ENTITY#{stream}#{name}")
}

/// The sort key of the item counting a stream's entities.
fn entities_count_sk(stream: &StreamId) -> String {
    format!("ENTITIES#{stream}")
}

/// The key of an item of the state table.
fn key(pk: &str, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

/// A version as a number attribute.
fn version_n(version: u64) -> AttributeValue {
    AttributeValue::N(version.to_string())
}

/// The version a write at `version` is made from (`-1` for version 0, which none has).
fn previous_n(version: u64) -> AttributeValue {
    AttributeValue::N((i128::from(version) - 1).to_string())
}

/// The count item's `n` (0 when absent).
fn count_of(item: &Item) -> u64 {
    number(item, "n").map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

fn entity_state(item: &Item) -> StoreResult<Vec<u8>> {
    item.get("state")
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| {
            StoreError::backend(
                "read an entity's state",
                crate::error::SdkFailure("the entity item has no state".into()),
            )
        })
}

/// A batch read or delete that DynamoDB kept leaving unprocessed.
fn unfinished(operation: &'static str, left: usize) -> StoreError {
    StoreError::backend(
        operation,
        crate::error::SdkFailure(format!(
            "{left} keys still unprocessed after {UNPROCESSED_RETRIES} tries"
        )),
    )
}

/// A fresh idempotency token for one transaction.
fn request_token(operation: &'static str) -> StoreResult<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::backend(operation, crate::error::SdkFailure(e.to_string())))?;
    Ok(hex::encode(bytes))
}

/// Waits before the `attempt`th retry: 25 ms doubling to 800 ms, plus up to 25 ms of
/// jitter so racing writers part.
async fn pause(attempt: u32) {
    let mut jitter = [0u8; 1];
    let jitter = getrandom::fill(&mut jitter).map_or(0, |_| u64::from(jitter[0]) % 25);
    let ms = (25u64 << attempt.saturating_sub(1).min(5)) + jitter;
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Splits `items` into batches of at most `max_items` and `max_bytes` (an item larger
/// than `max_bytes` goes alone), in order, never with one name twice in a batch
/// (DynamoDB refuses two operations on one item in a transaction).
fn batches<T>(
    items: Vec<T>,
    max_items: usize,
    max_bytes: usize,
    bytes: impl Fn(&T) -> usize,
    name: impl Fn(&T) -> &str,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let (mut batch, mut size, mut names) = (Vec::new(), 0usize, HashSet::new());
    for item in items {
        let full = batch.len() == max_items
            || (!batch.is_empty() && size.saturating_add(bytes(&item)) > max_bytes)
            || names.contains(name(&item));
        if full {
            out.push(std::mem::take(&mut batch));
            (size, names) = (0, HashSet::new());
        }
        size = size.saturating_add(bytes(&item));
        names.insert(name(&item).to_string());
        batch.push(item);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// One entity's write: its item and what its condition needs.
struct EntityPut {
    /// Its place in the caller's writes.
    index: usize,
    name: String,
    version: u64,
    /// The state's and record's bytes.
    bytes: usize,
    item: Item,
}

impl EntityPut {
    /// The write of `entity`, which must be of `stream` of `tenant`.
    fn of(
        index: usize,
        tenant: &TenantId,
        stream: &StreamId,
        entity: &StreamEntity,
        state: &[u8],
    ) -> StoreResult<Self> {
        if &entity.tenant != tenant || &entity.stream_id != stream {
            return Err(StoreError::backend(
                "write entities",
                crate::error::SdkFailure(format!(
                    "entity {:?} is not of stream {stream} of tenant {tenant}",
                    entity.name
                )),
            ));
        }
        let mut item = tenant_item(tenant, &entity_prefix(stream), &entity.name, entity)?;
        let record = item
            .get("body")
            .and_then(|b| b.as_s().ok())
            .map_or(0, String::len);
        item.insert("version".to_string(), version_n(entity.version));
        item.insert("seen_ms".to_string(), n(entity.updated_at.millis()));
        item.insert(
            "state".to_string(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(state.to_vec())),
        );
        Ok(EntityPut {
            index,
            name: entity.name.clone(),
            version: entity.version,
            bytes: state.len() + record,
            item,
        })
    }

    /// A new entity: made if absent, and counted.
    fn is_new(&self) -> bool {
        self.version == 1
    }

    /// The conditional put, for a transaction.
    fn transact_item(&self, table: &str) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.item.clone()));
        let put = if self.is_new() {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("#v = :prev")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":prev", previous_n(self.version))
        };
        let put = put
            .build()
            .map_err(|e| StoreError::backend("write entities", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// One entity's eviction, if still at `version`.
struct EntityDelete {
    name: String,
    key: Item,
    version: u64,
}

impl EntityDelete {
    fn transact_item(&self, table: &str) -> StoreResult<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(self.key.clone()))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", version_n(self.version))
            .build()
            .map_err(|e| StoreError::backend("evict entities", e))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

/// Adds `k` to a stream's entity count; with `room`, only if the count is at most
/// `room` (and then a failed condition returns the count).
fn count_update(
    table: &str,
    count: &Item,
    k: i64,
    room: Option<u64>,
    operation: &'static str,
) -> StoreResult<TransactWriteItem> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(count.clone()))
        .update_expression("ADD #n :k")
        .expression_attribute_names("#n", "n")
        .expression_attribute_values(":k", n(k));
    let update = match room {
        Some(room) => update
            .condition_expression("attribute_not_exists(#n) OR #n <= :room")
            .expression_attribute_values(":room", version_n(room))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld),
        None => update,
    };
    let update = update
        .build()
        .map_err(|e| StoreError::backend(operation, e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// Why one item of a cancelled transaction failed.
#[derive(Debug, Clone, PartialEq)]
enum Reason {
    /// It did not stop the transaction.
    Passed,
    /// Its condition failed; the item as it was, when asked for.
    ConditionFailed(Option<Item>),
    /// Another transaction held it, or the table was throttled: worth another try.
    Contended,
    /// Anything else (a validation error): the batch cannot be written.
    Other(String),
}

impl Reason {
    fn of(reason: &CancellationReason) -> Self {
        match reason.code() {
            None | Some("None") => Reason::Passed,
            Some("ConditionalCheckFailed") => Reason::ConditionFailed(reason.item().cloned()),
            Some(
                "TransactionConflict"
                | "ThrottlingError"
                | "ProvisionedThroughputExceeded"
                | "RequestLimitExceeded",
            ) => Reason::Contended,
            Some(code) => Reason::Other(format!("{code}: {}", reason.message().unwrap_or(""))),
        }
    }
}

/// What a cancelled entity transaction says of each of its items, in order; an error
/// when it names one that no retry fixes, or gives no reasons.
fn reasons_of(reasons: &[CancellationReason], operation: &'static str) -> StoreResult<Vec<Reason>> {
    let reasons: Vec<Reason> = reasons.iter().map(Reason::of).collect();
    let failure = reasons.iter().find_map(|r| match r {
        Reason::Other(text) => Some(text.clone()),
        _ => None,
    });
    match failure {
        Some(text) => Err(StoreError::backend(
            operation,
            crate::error::SdkFailure(format!("transaction cancelled: {text}")),
        )),
        None if reasons.iter().all(|r| *r == Reason::Passed) => Err(StoreError::backend(
            operation,
            crate::error::SdkFailure("transaction cancelled with no reason given".into()),
        )),
        None => Ok(reasons),
    }
}

impl DynamoStore {
    /// Sends one transaction: `None` if it was applied, the reasons if it was cancelled.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        operation: &'static str,
    ) -> StoreResult<Option<Vec<Reason>>> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            // The SDK's own retries resend this token: a transaction whose answer was
            // lost is not applied twice, nor answered as a lost condition.
            .client_request_token(request_token(operation)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    reasons_of(c.cancellation_reasons(), operation).map(Some)
                }
                _ => Err(sdk(operation)(e)),
            },
        }
    }

    /// Writes one batch of entities, in rounds: a cancelled transaction stored nothing,
    /// so after each the writes that lost their condition are answered `Conflict`, the
    /// new ones the count has no room for `OverCap` (the count as it was comes back with
    /// the failed condition), and the rest are sent again. A round cancelled only by
    /// contention is retried after a pause, up to [`CONTENDED_RETRIES`] times, and then
    /// its contended writes are answered `Conflict`.
    async fn put_entity_batch(
        &self,
        count: &Item,
        mut puts: Vec<EntityPut>,
        max: u64,
        written: &mut [EntityWritten],
    ) -> StoreResult<()> {
        let mut room = max;
        let mut contended = 0;
        let rounds = puts.len() + CONTENDED_RETRIES as usize + 2;
        for _ in 0..rounds {
            keep_room(&mut puts, room, written);
            if puts.is_empty() {
                return Ok(());
            }
            let new = puts.iter().filter(|p| p.is_new()).count() as u64;
            let mut items = puts
                .iter()
                .map(|p| p.transact_item(&self.table))
                .collect::<StoreResult<Vec<_>>>()?;
            if new > 0 {
                let update = count_update(
                    &self.table,
                    count,
                    new as i64,
                    Some(max - new),
                    "write entities",
                )?;
                items.push(update);
            }
            let Some(reasons) = self.transact(items, "write entities").await? else {
                for p in &puts {
                    written[p.index] = EntityWritten::Stored;
                }
                return Ok(());
            };
            let reason = |i: usize| reasons.get(i).cloned().unwrap_or(Reason::Passed);
            let lost: Vec<bool> = (0..puts.len())
                .map(|i| matches!(reason(i), Reason::ConditionFailed(_)))
                .collect();
            let count_reason = if new > 0 {
                reason(puts.len())
            } else {
                Reason::Passed
            };
            if let Reason::ConditionFailed(item) = &count_reason {
                let held = match item {
                    Some(item) => count_of(item),
                    None => self
                        .get(pk_of(count), sk_of(count))
                        .await?
                        .map_or(0, |i| count_of(&i)),
                };
                room = max.saturating_sub(held);
            }
            if lost.contains(&true) || matches!(count_reason, Reason::ConditionFailed(_)) {
                drop_marked(&mut puts, &lost, EntityWritten::Conflict, written);
                continue;
            }
            // Cancelled by contention alone.
            contended += 1;
            if contended <= CONTENDED_RETRIES {
                pause(contended).await;
                continue;
            }
            let held: Vec<bool> = (0..puts.len())
                .map(|i| {
                    reason(i) == Reason::Contended
                        || (count_reason == Reason::Contended && puts[i].is_new())
                })
                .collect();
            drop_marked(&mut puts, &held, EntityWritten::Conflict, written);
            contended = 0;
        }
        for p in &puts {
            written[p.index] = EntityWritten::Conflict;
        }
        Ok(())
    }

    /// Evicts one batch of entities, in rounds as [`DynamoStore::put_entity_batch`]
    /// writes: an entity whose version moved is not evicted, and the rest are sent
    /// again; one still contended after [`CONTENDED_RETRIES`] pauses is left in place.
    async fn evict_entity_batch(
        &self,
        count: &Item,
        mut deletes: Vec<EntityDelete>,
        evicted: &mut Vec<String>,
    ) -> StoreResult<()> {
        let mut contended = 0;
        while !deletes.is_empty() {
            let mut items = deletes
                .iter()
                .map(|d| d.transact_item(&self.table))
                .collect::<StoreResult<Vec<_>>>()?;
            let k = deletes.len() as i64;
            items.push(count_update(
                &self.table,
                count,
                -k,
                None,
                "evict entities",
            )?);
            let Some(reasons) = self.transact(items, "evict entities").await? else {
                evicted.extend(deletes.into_iter().map(|d| d.name));
                return Ok(());
            };
            let reason = |i: usize| reasons.get(i).cloned().unwrap_or(Reason::Passed);
            let moved: Vec<bool> = (0..deletes.len())
                .map(|i| matches!(reason(i), Reason::ConditionFailed(_)))
                .collect();
            if moved.contains(&true) {
                retain_unmarked(&mut deletes, &moved);
                continue;
            }
            contended += 1;
            if contended <= CONTENDED_RETRIES {
                pause(contended).await;
                continue;
            }
            let held: Vec<bool> = (0..deletes.len())
                .map(|i| reason(i) == Reason::Contended)
                .collect();
            if !held.contains(&true) {
                // Only the count was contended: give up on the batch, nothing evicted.
                return Ok(());
            }
            retain_unmarked(&mut deletes, &held);
            contended = 0;
        }
        Ok(())
    }

    /// One `BatchGetItem` of up to 100 keys, consistent: the items found and the keys
    /// left unprocessed.
    async fn batch_get(&self, keys: Vec<Item>) -> StoreResult<(Vec<Item>, Vec<Item>)> {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::backend("read entities", e))?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(sdk("read entities"))?;
        let items = out
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default();
        let unprocessed = out
            .unprocessed_keys
            .and_then(|mut u| u.remove(&self.table))
            .map(|k| k.keys)
            .unwrap_or_default();
        Ok((items, unprocessed))
    }

    /// Deletes every item of partition `pk` whose sort key begins with `prefix`: a query
    /// of their keys, page by page, each page deleted with `BatchWriteItem`s of 25.
    async fn delete_prefix(
        &self,
        pk: &str,
        prefix: &str,
        operation: &'static str,
    ) -> StoreResult<()> {
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .projection_expression("pk, sk")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(sdk(operation))?;
            self.delete_keys(out.items().to_vec()).await?;
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(()),
            }
        }
    }

    /// Deletes the items of `keys` with `BatchWriteItem`s of 25, sending what DynamoDB
    /// left unprocessed again after a pause.
    async fn delete_keys(&self, keys: Vec<Item>) -> StoreResult<()> {
        let mut pending: VecDeque<WriteRequest> = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|e| StoreError::backend("delete entities", e))
            })
            .collect::<StoreResult<_>>()?;
        let mut waits = 0;
        while !pending.is_empty() {
            let batch: Vec<WriteRequest> = pending
                .drain(..pending.len().min(DELETES_PER_BATCH_WRITE))
                .collect();
            let sent = batch.len();
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, batch)
                .send()
                .await
                .map_err(sdk("delete entities"))?;
            let unprocessed = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if unprocessed.is_empty() {
                waits = 0;
                continue;
            }
            waits += 1;
            if waits > UNPROCESSED_RETRIES && unprocessed.len() == sent {
                return Err(unfinished("delete entities", unprocessed.len()));
            }
            for w in unprocessed.into_iter().rev() {
                pending.push_front(w);
            }
            pause(waits).await;
        }
        Ok(())
    }
}

/// Answers `OverCap` to the new entities past the first `room` and drops them.
fn keep_room(puts: &mut Vec<EntityPut>, room: u64, written: &mut [EntityWritten]) {
    let mut new = 0u64;
    let over: Vec<bool> = puts
        .iter()
        .map(|p| {
            new += u64::from(p.is_new());
            p.is_new() && new > room
        })
        .collect();
    drop_marked(puts, &over, EntityWritten::OverCap, written);
}

/// Answers `answer` to the marked writes and drops them.
fn drop_marked(
    puts: &mut Vec<EntityPut>,
    marked: &[bool],
    answer: EntityWritten,
    written: &mut [EntityWritten],
) {
    for (p, _) in puts.iter().zip(marked).filter(|(_, m)| **m) {
        written[p.index] = answer;
    }
    retain_unmarked(puts, marked);
}

/// Keeps the items not marked.
fn retain_unmarked<T>(items: &mut Vec<T>, marked: &[bool]) {
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        !marked.get(i - 1).copied().unwrap_or(false)
    });
}

fn pk_of(key: &Item) -> String {
    key.get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn sk_of(key: &Item) -> String {
    key.get("sk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(batches: &[Vec<(&str, usize)>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn entity_batches_split_by_count_bytes_and_repeated_names() {
        let names: Vec<String> = (0..250).map(|i| format!("e{i}")).collect();
        let small: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 1000)).collect();
        let by_count = batches(small, 99, 3_500_000, |i| i.1, |i| i.0);
        assert_eq!(sizes(&by_count), vec![99, 99, 52]);
        let big: Vec<(&str, usize)> = names[..20].iter().map(|n| (n.as_str(), 300_000)).collect();
        assert_eq!(
            sizes(&batches(big, 99, 3_500_000, |i| i.1, |i| i.0)),
            vec![11, 9]
        );
        let huge = vec![("a", 5_000_000), ("b", 10)];
        assert_eq!(
            sizes(&batches(huge, 99, 3_500_000, |i| i.1, |i| i.0)),
            vec![1, 1],
            "an item over the cap goes alone"
        );
        let twice = vec![("a", 1), ("b", 1), ("a", 1), ("c", 1)];
        let split = batches(twice, 99, 100, |i| i.1, |i| i.0);
        assert_eq!(
            split,
            vec![vec![("a", 1), ("b", 1)], vec![("a", 1), ("c", 1)]]
        );
        assert!(batches(Vec::<(&str, usize)>::new(), 99, 100, |i| i.1, |i| i.0).is_empty());
    }

    #[test]
    fn cancellation_reasons_are_classified() {
        let reason = |code: &str| CancellationReason::builder().code(code).build();
        let reasons = [
            reason("None"),
            reason("ConditionalCheckFailed"),
            reason("TransactionConflict"),
        ];
        assert_eq!(
            reasons_of(&reasons, "test").expect("retryable"),
            vec![
                Reason::Passed,
                Reason::ConditionFailed(None),
                Reason::Contended
            ]
        );
        assert!(reasons_of(&[reason("ValidationError")], "test").is_err());
        assert!(reasons_of(&[reason("None")], "test").is_err());
        assert!(reasons_of(&[], "test").is_err());
    }

    #[test]
    fn new_entities_past_the_room_are_over_cap() {
        let (t, stream) = (TenantId::parse("acme").expect("tenant"), StreamId::new());
        let entity = |name: &str, version: u64| StreamEntity {
            tenant: t.clone(),
            stream_id: stream.clone(),
            name: name.into(),
            points: 0,
            anomalies: 0,
            last_timestamp: None,
            last_anomaly: None,
            interval: None,
            threshold: None,
            recent: Vec::new(),
            version,
            write_id: String::new(),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        };
        let mut puts: Vec<EntityPut> = [("a", 1), ("b", 2), ("c", 1), ("d", 1)]
            .iter()
            .enumerate()
            .map(|(i, (name, v))| EntityPut::of(i, &t, &stream, &entity(name, *v), b"{}"))
            .collect::<StoreResult<_>>()
            .expect("puts");
        let mut written = vec![EntityWritten::Stored; 4];
        keep_room(&mut puts, 1, &mut written);
        let kept: Vec<&str> = puts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(kept, vec!["a", "b"]);
        assert_eq!(
            written,
            vec![
                EntityWritten::Stored,
                EntityWritten::Stored,
                EntityWritten::OverCap,
                EntityWritten::OverCap
            ]
        );
        let other = TenantId::parse("other").expect("tenant");
        assert!(EntityPut::of(0, &other, &stream, &entity("a", 1), b"{}").is_err());
    }
}
