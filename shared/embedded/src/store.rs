//! Records in SQLite: every port of nomaly's state but blobs and the queue.

mod alerts;

use crate::db::{json, sql, Database};
use async_trait::async_trait;
use nomaly_core::domain::{
    ApiKey, Connection, Dataset, DatasetStatus, EntityWritten, Event, EventType, ModelRecord,
    Stream, StreamEntity, StreamState, Task, TenantId,
};
use nomaly_core::ids::{DatasetId, EventId, KeyId, ModelId, StreamId, TaskId};
use nomaly_core::ports::{
    BlobKey, Claim, ConnectionRegistry, DatasetStore, EntitiesRead, EventLog, ExpirySweeper,
    IdempotencyStore, KeyStore, ModelRegistry, Page, PageRequest, RateLimiter, ResultCache,
    StoreError, StoreResult, StreamStore, TaskStore,
};
use nomaly_core::time::Timestamp;
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The record ports on one SQLite database. Rate counters are kept in memory: the local
/// server is the one process serving a data folder (it holds the folder's lock), so its
/// counts are the only ones, and they need not outlive it.
#[derive(Clone)]
pub struct SqliteStore {
    db: Database,
    rates: Arc<Mutex<HashMap<TenantId, (i64, u32)>>>,
}

impl SqliteStore {
    /// The store on `db`.
    pub fn new(db: Database) -> Self {
        SqliteStore {
            db,
            rates: Arc::default(),
        }
    }
}

/// A listing position: the (created_ms, id) of the last item of a page, as hex.
fn encode_token(created_ms: i64, id: &str) -> String {
    hex::encode(format!("{created_ms}:{id}"))
}

fn decode_token(token: &str) -> StoreResult<(i64, String)> {
    let text = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(StoreError::BadPageToken)?;
    let (ms, id) = text.split_once(':').ok_or(StoreError::BadPageToken)?;
    let ms: i64 = ms.parse().map_err(|_| StoreError::BadPageToken)?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::BadPageToken);
    }
    Ok((ms, id.to_string()))
}

fn to_json<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(json("encode a record"))
}

fn from_json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(json("decode a record"))
}

/// Tables of tenant-scoped records listed newest first.
#[derive(Clone, Copy)]
enum Records {
    Tasks,
    Models,
    Datasets,
    Streams,
    AlertRules,
    Feedback,
}

impl Records {
    fn table(self) -> &'static str {
        match self {
            Records::Tasks => "tasks",
            Records::Models => "models",
            Records::Datasets => "datasets",
            Records::Streams => "streams",
            Records::AlertRules => "alert_rules",
            Records::Feedback => "feedback",
        }
    }
}

impl SqliteStore {
    /// Every tenant's datasets in `status`: for the local server's recovery at start,
    /// not a port (no listing crosses tenants on AWS).
    pub async fn datasets_in_status(&self, status: DatasetStatus) -> StoreResult<Vec<Dataset>> {
        let status = serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.bodies(
            "list datasets by status",
            "SELECT body FROM datasets WHERE json_extract(body, '$.status') = ?1 ORDER BY created_ms",
            vec![status.into()],
        )
        .await
    }

    /// Every tenant's events of `kind` stored at or after `since`, oldest first: for the
    /// local server's recovery at start.
    pub async fn events_since(&self, kind: EventType, since: Timestamp) -> StoreResult<Vec<Event>> {
        self.bodies(
            "list recent events",
            "SELECT body FROM events WHERE json_extract(body, '$.type') = ?1 \
             AND json_extract(body, '$.at') >= ?2 ORDER BY id",
            vec![kind.as_str().to_string().into(), since.millis().into()],
        )
        .await
    }

    /// The `body` column of every row `query` selects with `values`, parsed.
    async fn bodies<T: DeserializeOwned + Send + 'static>(
        &self,
        operation: &'static str,
        query: &'static str,
        values: Vec<rusqlite::types::Value>,
    ) -> StoreResult<Vec<T>> {
        let rows: Vec<String> = self
            .db
            .run(operation, move |c| {
                let mut stmt = c.prepare(query).map_err(sql(operation))?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(values), |r| r.get(0))
                    .map_err(sql(operation))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(sql(operation));
                rows
            })
            .await?;
        rows.iter().map(|b| from_json(b)).collect()
    }

    async fn insert(
        &self,
        r: Records,
        tenant: &TenantId,
        id: &str,
        created: Timestamp,
        body: String,
        upsert: bool,
    ) -> StoreResult<()> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.db
            .run("insert a record", move |c| {
                let verb = if upsert { "INSERT OR REPLACE" } else { "INSERT OR IGNORE" };
                let version_col = if matches!(r, Records::Tasks) { ", version" } else { "" };
                let version_val = if matches!(r, Records::Tasks) { ", 1" } else { "" };
                let q = format!(
                    "{verb} INTO {} (tenant, id, created_ms, body{version_col}) VALUES (?1, ?2, ?3, ?4{version_val})",
                    r.table()
                );
                let n = c.execute(&q, params![tenant, id, created.millis(), body]).map_err(sql("insert a record"))?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists(id));
                }
                Ok(())
            })
            .await
    }

    async fn fetch<T: DeserializeOwned + Send + 'static>(
        &self,
        r: Records,
        tenant: &TenantId,
        id: &str,
    ) -> StoreResult<Option<T>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let body: Option<String> = self
            .db
            .run("read a record", move |c| {
                c.query_row(
                    &format!(
                        "SELECT body FROM {} WHERE tenant = ?1 AND id = ?2",
                        r.table()
                    ),
                    params![tenant, id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql("read a record"))
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        r: Records,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<T>> {
        let limit = page.effective_limit();
        let after = page.token.as_deref().map(decode_token).transpose()?;
        let tenant = tenant.to_string();
        let rows: Vec<(i64, String, String)> = self
            .db
            .run("list records", move |c| {
                let (ms, id) = after.unwrap_or((i64::MAX, String::from("~")));
                let mut stmt = c
                    .prepare(&format!(
                        "SELECT created_ms, id, body FROM {} WHERE tenant = ?1 AND (created_ms < ?2 OR (created_ms = ?2 AND id < ?3))
                         ORDER BY created_ms DESC, id DESC LIMIT ?4",
                        r.table()
                    ))
                    .map_err(sql("list records"))?;
                let rows = stmt
                    .query_map(params![tenant, ms, id, (limit + 1) as i64], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .map_err(sql("list records"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql("list records"))?;
                Ok(rows)
            })
            .await?;
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let next_token = if more {
            rows.last().map(|(ms, id, _)| encode_token(*ms, id))
        } else {
            None
        };
        let items = rows
            .iter()
            .map(|(_, _, b)| from_json(b))
            .collect::<StoreResult<Vec<T>>>()?;
        Ok(Page { items, next_token })
    }

    async fn remove(&self, r: Records, tenant: &TenantId, id: &str) -> StoreResult<()> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.db
            .run("delete a record", move |c| {
                let n = c
                    .execute(
                        &format!("DELETE FROM {} WHERE tenant = ?1 AND id = ?2", r.table()),
                        params![tenant, id],
                    )
                    .map_err(sql("delete a record"))?;
                if n == 0 {
                    Err(StoreError::NotFound(id))
                } else {
                    Ok(())
                }
            })
            .await
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create_task(&self, task: &Task) -> StoreResult<()> {
        self.insert(
            Records::Tasks,
            &task.tenant,
            task.id.as_str(),
            task.created_at,
            to_json(task)?,
            false,
        )
        .await
    }

    async fn get_task(&self, tenant: &TenantId, id: &TaskId) -> StoreResult<Option<Task>> {
        self.fetch(Records::Tasks, tenant, id.as_str()).await
    }

    async fn list_tasks(&self, tenant: &TenantId, page: &PageRequest) -> StoreResult<Page<Task>> {
        self.list(Records::Tasks, tenant, page).await
    }

    async fn update_task(&self, task: &Task) -> StoreResult<()> {
        let row = TaskRow::of(task)?;
        self.db
            .run("update a task", move |c| row.compare_and_set(c))
            .await
    }
    async fn stale_running(&self, before: Timestamp, limit: usize) -> StoreResult<Vec<Task>> {
        self.bodies(
            "list stale running tasks",
            "SELECT body FROM tasks WHERE json_extract(body, '$.status') = 'running' \
             AND json_extract(body, '$.updated_at') < ?1 \
             ORDER BY json_extract(body, '$.updated_at') LIMIT ?2",
            vec![
                before.millis().into(),
                (PageRequest::cap(limit) as i64).into(),
            ],
        )
        .await
    }

    async fn count_running(&self, tenant: &TenantId, up_to: usize) -> StoreResult<usize> {
        let tenant = tenant.to_string();
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        self.db
            .run("count running tasks", move |c| {
                // `tasks_by_status` indexes exactly this expression.
                c.query_row(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE tenant = ?1 \
                     AND json_extract(body, '$.status') = 'running' LIMIT ?2)",
                    params![tenant, up_to],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| usize::try_from(n).unwrap_or(0))
                .map_err(sql("count running tasks"))
            })
            .await
    }
}

#[async_trait]
impl ModelRegistry for SqliteStore {
    async fn put_model(&self, model: &ModelRecord) -> StoreResult<()> {
        self.insert(
            Records::Models,
            &model.tenant,
            model.id.as_str(),
            model.created_at,
            to_json(model)?,
            false,
        )
        .await
    }

    async fn get_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<Option<ModelRecord>> {
        self.fetch(Records::Models, tenant, id.as_str()).await
    }

    async fn list_models(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<ModelRecord>> {
        self.list(Records::Models, tenant, page).await
    }

    async fn delete_model(&self, tenant: &TenantId, id: &ModelId) -> StoreResult<()> {
        self.remove(Records::Models, tenant, id.as_str()).await
    }
}

#[async_trait]
impl DatasetStore for SqliteStore {
    async fn put_dataset(&self, dataset: &Dataset) -> StoreResult<()> {
        self.insert(
            Records::Datasets,
            &dataset.tenant,
            dataset.id.as_str(),
            dataset.created_at,
            to_json(dataset)?,
            true,
        )
        .await
    }

    async fn get_dataset(&self, tenant: &TenantId, id: &DatasetId) -> StoreResult<Option<Dataset>> {
        self.fetch(Records::Datasets, tenant, id.as_str()).await
    }

    async fn list_datasets(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Dataset>> {
        self.list(Records::Datasets, tenant, page).await
    }

    async fn delete_dataset(&self, tenant: &TenantId, id: &DatasetId) -> StoreResult<()> {
        self.remove(Records::Datasets, tenant, id.as_str()).await
    }
}

/// A stream's state as the `state` and `state_key` columns hold it.
fn state_columns(state: &StreamState) -> (Option<Vec<u8>>, Option<String>) {
    match state {
        StreamState::Inline(bytes) => (Some(bytes.clone()), None),
        StreamState::Blob(key) => (None, Some(key.as_str().to_string())),
    }
}

fn state_of(bytes: Option<Vec<u8>>, key: Option<String>) -> StoreResult<StreamState> {
    match (bytes, key) {
        (_, Some(key)) => BlobKey::parse(&key)
            .map(StreamState::Blob)
            .map_err(|e| StoreError::backend("read a stream's state key", e)),
        (Some(bytes), None) => Ok(StreamState::Inline(bytes)),
        (None, None) => Err(StoreError::backend(
            "read a stream's state",
            std::io::Error::other("the stream has no state"),
        )),
    }
}

/// Why a write conditioned on a record's version changed no row: `Conflict` if the
/// record is there (its version moved), `NotFound` if not.
fn write_lost(
    c: &rusqlite::Connection,
    r: Records,
    tenant: &str,
    id: &str,
) -> StoreResult<StoreError> {
    let exists: Option<i64> = c
        .query_row(
            &format!(
                "SELECT version FROM {} WHERE tenant = ?1 AND id = ?2",
                r.table()
            ),
            params![tenant, id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("read a record's version"))?;
    Ok(match exists {
        Some(_) => StoreError::Conflict(id.to_string()),
        None => StoreError::NotFound(id.to_string()),
    })
}

#[async_trait]
impl StreamStore for SqliteStore {
    async fn create_stream(&self, stream: &Stream, state: &StreamState) -> StoreResult<()> {
        let (tenant, id) = (stream.tenant.to_string(), stream.id.to_string());
        let (body, created, version) = (
            to_json(stream)?,
            stream.created_at.millis(),
            stream.version as i64,
        );
        let (bytes, key) = state_columns(state);
        self.db
            .run("create a stream", move |c| {
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO streams (tenant, id, created_ms, version, body, state, state_key) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![tenant, id, created, version, body, bytes, key],
                    )
                    .map_err(sql("create a stream"))?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists(id));
                }
                Ok(())
            })
            .await
    }

    async fn get_stream(
        &self,
        tenant: &TenantId,
        id: &StreamId,
    ) -> StoreResult<Option<(Stream, StreamState)>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        type Row = (String, Option<Vec<u8>>, Option<String>);
        let row: Option<Row> = self
            .db
            .run("read a stream", move |c| {
                c.query_row(
                    "SELECT body, state, state_key FROM streams WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql("read a stream"))
            })
            .await?;
        row.map(|(body, bytes, key)| Ok((from_json(&body)?, state_of(bytes, key)?)))
            .transpose()
    }

    async fn list_streams(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Stream>> {
        self.list(Records::Streams, tenant, page).await
    }

    async fn update_stream(&self, stream: &Stream, state: &StreamState) -> StoreResult<()> {
        let (tenant, id) = (stream.tenant.to_string(), stream.id.to_string());
        let (body, version) = (to_json(stream)?, stream.version as i64);
        let (bytes, key) = state_columns(state);
        self.db
            .run("update a stream", move |c| {
                let n = c
                    .execute(
                        "UPDATE streams SET body = ?1, version = ?2, state = ?3, state_key = ?4 \
                         WHERE tenant = ?5 AND id = ?6 AND version = ?2 - 1",
                        params![body, version, bytes, key, tenant, id],
                    )
                    .map_err(sql("update a stream"))?;
                if n == 1 {
                    return Ok(());
                }
                Err(write_lost(c, Records::Streams, &tenant, &id)?)
            })
            .await
    }

    async fn delete_stream(
        &self,
        tenant: &TenantId,
        id: &StreamId,
        version: u64,
    ) -> StoreResult<()> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.db
            .run("delete a stream", move |c| {
                let n = c
                    .execute(
                        "DELETE FROM streams WHERE tenant = ?1 AND id = ?2 AND version = ?3",
                        params![tenant, id, version as i64],
                    )
                    .map_err(sql("delete a stream"))?;
                if n == 1 {
                    return Ok(());
                }
                Err(write_lost(c, Records::Streams, &tenant, &id)?)
            })
            .await
    }

    async fn get_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        names: &[String],
    ) -> StoreResult<EntitiesRead> {
        let (tenant, stream) = (tenant.to_string(), stream.to_string());
        let names = distinct(names);
        let (rows, count) = self
            .db
            .run("read entities", move |c| {
                let rows = entity_rows(c, &tenant, &stream, &names)?;
                Ok((rows, count_entities(c, &tenant, &stream)?))
            })
            .await?;
        let entities = rows
            .into_iter()
            .map(|(body, state)| Ok((from_json(&body)?, state)))
            .collect::<StoreResult<_>>()?;
        Ok(EntitiesRead { entities, count })
    }

    async fn put_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        writes: &[(StreamEntity, Vec<u8>)],
        max_entities: u64,
    ) -> StoreResult<Vec<EntityWritten>> {
        let rows = writes
            .iter()
            .map(|(entity, state)| EntityRow::of(tenant, stream, entity, state))
            .collect::<StoreResult<Vec<_>>>()?;
        let (tenant, stream) = (tenant.to_string(), stream.to_string());
        self.db
            .run("write entities", move |c| {
                // Dropped without a commit, the transaction rolls back.
                let tx = c.transaction().map_err(sql("write entities"))?;
                let mut count = count_entities(&tx, &tenant, &stream)?;
                let written = rows
                    .iter()
                    .map(|row| row.write(&tx, &tenant, &stream, &mut count, max_entities))
                    .collect::<StoreResult<Vec<_>>>()?;
                tx.commit().map_err(sql("write entities"))?;
                Ok(written)
            })
            .await
    }

    async fn idle_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        seen_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<(String, u64)>> {
        let (tenant, stream) = (tenant.to_string(), stream.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .run("list idle entities", move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT name, version FROM stream_entities \
                         WHERE tenant = ?1 AND stream = ?2 AND seen_ms < ?3 ORDER BY seen_ms LIMIT ?4",
                    )
                    .map_err(sql("list idle entities"))?;
                let rows = stmt
                    .query_map(params![tenant, stream, seen_before.millis(), limit], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .map_err(sql("list idle entities"))?
                    .map(|r| r.map(|(name, v)| (name, u64::try_from(v).unwrap_or(0))))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql("list idle entities"));
                rows
            })
            .await
    }

    async fn evict_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        which: &[(String, u64)],
    ) -> StoreResult<Vec<String>> {
        let (tenant, stream, which) = (tenant.to_string(), stream.to_string(), which.to_vec());
        self.db
            .run("evict entities", move |c| {
                let tx = c.transaction().map_err(sql("evict entities"))?;
                let mut evicted = Vec::new();
                for (name, version) in which {
                    let n = tx
                        .prepare_cached(
                            "DELETE FROM stream_entities \
                             WHERE tenant = ?1 AND stream = ?2 AND name = ?3 AND version = ?4",
                        )
                        .and_then(|mut d| {
                            d.execute(params![tenant, stream, name, db_version(version)])
                        })
                        .map_err(sql("evict entities"))?;
                    if n == 1 {
                        evicted.push(name);
                    }
                }
                tx.commit().map_err(sql("evict entities"))?;
                Ok(evicted)
            })
            .await
    }

    async fn list_entities(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        page: &PageRequest,
    ) -> StoreResult<Page<StreamEntity>> {
        let limit = page.effective_limit();
        let after = page
            .token
            .as_deref()
            .map(|t| decode_entity_token(t, stream))
            .transpose()?;
        let stream_id = stream.clone();
        let (tenant, stream) = (tenant.to_string(), stream.to_string());
        let rows: Vec<(String, String)> = self
            .db
            .run("list entities", move |c| {
                // A range on the primary key: after the token's name, or from the first.
                let (op, from) = match after {
                    Some(name) => (">", name),
                    None => (">=", String::new()),
                };
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT name, body FROM stream_entities WHERE tenant = ?1 AND stream = ?2 \
                         AND name {op} ?3 ORDER BY name LIMIT ?4"
                    ))
                    .map_err(sql("list entities"))?;
                let rows = stmt
                    .query_map(params![tenant, stream, from, (limit + 1) as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(sql("list entities"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql("list entities"));
                rows
            })
            .await?;
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let next_token = match rows.last() {
            Some((name, _)) if more => Some(encode_entity_token(&stream_id, name)),
            _ => None,
        };
        let items = rows
            .iter()
            .map(|(_, body)| from_json(body))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next_token })
    }

    async fn delete_entities(&self, tenant: &TenantId, stream: &StreamId) -> StoreResult<()> {
        let (tenant, stream) = (tenant.to_string(), stream.to_string());
        self.db
            .run("delete entities", move |c| {
                c.execute(
                    "DELETE FROM stream_entities WHERE tenant = ?1 AND stream = ?2",
                    params![tenant, stream],
                )
                .map_err(sql("delete entities"))?;
                Ok(())
            })
            .await
    }
}

/// Names per `IN (...)` list when entities are read: well within SQLite's limit on
/// bound parameters.
const NAMES_PER_QUERY: usize = 500;

/// `names` without repeats, in their first order.
fn distinct(names: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect()
}

/// A version as the `version` columns hold it (a version past `i64::MAX` matches none).
fn db_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// The body and state of each of `names` that the stream holds, `NAMES_PER_QUERY` names
/// per query.
fn entity_rows(
    c: &rusqlite::Connection,
    tenant: &str,
    stream: &str,
    names: &[String],
) -> StoreResult<Vec<(String, Vec<u8>)>> {
    let mut rows = Vec::with_capacity(names.len());
    for chunk in names.chunks(NAMES_PER_QUERY) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut stmt = c
            .prepare_cached(&format!(
                "SELECT body, state FROM stream_entities \
                 WHERE tenant = ? AND stream = ? AND name IN ({marks})"
            ))
            .map_err(sql("read entities"))?;
        let values = [tenant, stream]
            .into_iter()
            .chain(chunk.iter().map(String::as_str));
        let found = stmt
            .query_map(rusqlite::params_from_iter(values), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql("read entities"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("read entities"))?;
        rows.extend(found);
    }
    Ok(rows)
}

/// How many entities the stream holds (the primary key's prefix makes it a range
/// count).
fn count_entities(c: &rusqlite::Connection, tenant: &str, stream: &str) -> StoreResult<u64> {
    c.prepare_cached("SELECT COUNT(*) FROM stream_entities WHERE tenant = ?1 AND stream = ?2")
        .and_then(|mut q| q.query_row(params![tenant, stream], |r| r.get::<_, i64>(0)))
        .map(|n| u64::try_from(n).unwrap_or(0))
        .map_err(sql("count entities"))
}

/// A listing position in a stream's entities: the stream and the last name of a page,
/// as hex.
fn encode_entity_token(stream: &StreamId, name: &str) -> String {
    hex::encode(format!("{stream}:{name}"))
}

/// The last name of the page before, from a token of this stream's listing.
fn decode_entity_token(token: &str, stream: &StreamId) -> StoreResult<String> {
    let text = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(StoreError::BadPageToken)?;
    match text.split_once(':') {
        Some((s, name)) if s == stream.as_str() => Ok(name.to_string()),
        _ => Err(StoreError::BadPageToken),
    }
}

/// An entity as the `stream_entities` table holds it, for a write.
struct EntityRow {
    name: String,
    version: i64,
    seen_ms: i64,
    body: String,
    state: Vec<u8>,
}

impl EntityRow {
    /// The row of `entity`, which must be of `stream` of `tenant`.
    fn of(
        tenant: &TenantId,
        stream: &StreamId,
        entity: &StreamEntity,
        state: &[u8],
    ) -> StoreResult<Self> {
        if &entity.tenant != tenant || &entity.stream_id != stream {
            return Err(StoreError::backend(
                "write entities",
                std::io::Error::other(format!(
                    "entity {:?} is not of stream {stream} of tenant {tenant}",
                    entity.name
                )),
            ));
        }
        Ok(EntityRow {
            name: entity.name.clone(),
            version: db_version(entity.version),
            seen_ms: entity.updated_at.millis(),
            body: to_json(entity)?,
            state: state.to_vec(),
        })
    }

    /// Stores the row if the stored version is one less (at version 1: if there is none
    /// and `count`, the stream's entities so far, is below `max`).
    fn write(
        &self,
        c: &rusqlite::Connection,
        tenant: &str,
        stream: &str,
        count: &mut u64,
        max: u64,
    ) -> StoreResult<EntityWritten> {
        if self.version != 1 {
            return self.update(c, tenant, stream);
        }
        let exists = c
            .prepare_cached(
                "SELECT 1 FROM stream_entities WHERE tenant = ?1 AND stream = ?2 AND name = ?3",
            )
            .and_then(|mut q| q.exists(params![tenant, stream, self.name]))
            .map_err(sql("write entities"))?;
        if exists {
            return Ok(EntityWritten::Conflict);
        }
        if *count >= max {
            return Ok(EntityWritten::OverCap);
        }
        c.prepare_cached(
            "INSERT INTO stream_entities (tenant, stream, name, version, seen_ms, body, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut q| {
            q.execute(params![
                tenant,
                stream,
                self.name,
                self.version,
                self.seen_ms,
                self.body,
                self.state
            ])
        })
        .map_err(sql("write entities"))?;
        *count += 1;
        Ok(EntityWritten::Stored)
    }

    /// Replaces the stored row if its version is one less.
    fn update(
        &self,
        c: &rusqlite::Connection,
        tenant: &str,
        stream: &str,
    ) -> StoreResult<EntityWritten> {
        let n = c
            .prepare_cached(
                "UPDATE stream_entities SET version = ?1, seen_ms = ?2, body = ?3, state = ?4 \
                 WHERE tenant = ?5 AND stream = ?6 AND name = ?7 AND version = ?1 - 1",
            )
            .and_then(|mut q| {
                q.execute(params![
                    self.version,
                    self.seen_ms,
                    self.body,
                    self.state,
                    tenant,
                    stream,
                    self.name
                ])
            })
            .map_err(sql("write entities"))?;
        Ok(if n == 1 {
            EntityWritten::Stored
        } else {
            EntityWritten::Conflict
        })
    }
}

/// A task as the `tasks` table holds it, for a compare-and-set.
struct TaskRow {
    tenant: String,
    id: String,
    version: i64,
    body: String,
}

impl TaskRow {
    fn of(task: &Task) -> StoreResult<Self> {
        Ok(TaskRow {
            tenant: task.tenant.to_string(),
            id: task.id.to_string(),
            version: task.version as i64,
            body: to_json(task)?,
        })
    }

    /// Replaces the stored task if its version is one less; `Conflict` or `NotFound`.
    fn compare_and_set(&self, c: &rusqlite::Connection) -> StoreResult<()> {
        let n = c
            .execute(
                "UPDATE tasks SET body = ?1, version = ?2 WHERE tenant = ?3 AND id = ?4 AND version = ?2 - 1",
                params![self.body, self.version, self.tenant, self.id],
            )
            .map_err(sql("update a task"))?;
        if n == 1 {
            return Ok(());
        }
        Err(write_lost(c, Records::Tasks, &self.tenant, &self.id)?)
    }
}

/// Inserts an event row; `AlreadyExists` if its id is stored.
fn insert_event(c: &rusqlite::Connection, event: &Event) -> StoreResult<()> {
    let body = to_json(event)?;
    let id = event.event_id.to_string();
    let n = c
        .execute(
            "INSERT OR IGNORE INTO events (tenant, id, body) VALUES (?1, ?2, ?3)",
            params![event.tenant.to_string(), id, body],
        )
        .map_err(sql("append an event"))?;
    if n == 0 {
        Err(StoreError::AlreadyExists(id))
    } else {
        Ok(())
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append(&self, event: &Event) -> StoreResult<()> {
        let event = event.clone();
        self.db
            .run("append an event", move |c| insert_event(c, &event))
            .await
    }

    async fn append_with_task(&self, event: &Event, task: &Task) -> StoreResult<()> {
        let (event, row) = (event.clone(), TaskRow::of(task)?);
        self.db
            .run("finish a task", move |c| {
                // Dropped without a commit, the transaction rolls back.
                let tx = c.transaction().map_err(sql("finish a task"))?;
                row.compare_and_set(&tx)?;
                insert_event(&tx, &event)?;
                tx.commit().map_err(sql("finish a task"))
            })
            .await
    }

    async fn events_after(
        &self,
        tenant: &TenantId,
        after: Option<&EventId>,
        limit: usize,
    ) -> StoreResult<Page<Event>> {
        let limit = PageRequest::cap(limit);
        let (tenant, after) = (
            tenant.to_string(),
            after.map(|e| e.to_string()).unwrap_or_default(),
        );
        let rows: Vec<String> = self
            .db
            .run("list events", move |c| {
                let mut stmt = c
                    .prepare("SELECT body FROM events WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
                    .map_err(sql("list events"))?;
                let rows = stmt
                    .query_map(params![tenant, after, (limit + 1) as i64], |r| r.get(0))
                    .map_err(sql("list events"))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(sql("list events"))?;
                Ok(rows)
            })
            .await?;
        let more = rows.len() > limit;
        let items: Vec<Event> = rows[..rows.len().min(limit)]
            .iter()
            .map(|b| from_json(b))
            .collect::<StoreResult<_>>()?;
        let next_token = if more {
            items.last().map(|e| e.event_id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_token })
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn put_key(&self, key: &ApiKey) -> StoreResult<()> {
        let body = to_json(key)?;
        let (id, tenant) = (key.id.to_string(), key.tenant.to_string());
        self.db
            .run("store a key", move |c| {
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO api_keys (id, tenant, body) VALUES (?1, ?2, ?3)",
                        params![id, tenant, body],
                    )
                    .map_err(sql("store a key"))?;
                if n == 0 {
                    Err(StoreError::AlreadyExists(id))
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn get_key(&self, id: &KeyId) -> StoreResult<Option<ApiKey>> {
        let id = id.to_string();
        let body: Option<String> = self
            .db
            .run("read a key", move |c| {
                c.query_row(
                    "SELECT body FROM api_keys WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("read a key"))
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn list_keys(&self, tenant: &TenantId) -> StoreResult<Vec<ApiKey>> {
        self.bodies(
            "list keys",
            "SELECT body FROM api_keys WHERE tenant = ?1 ORDER BY id",
            vec![tenant.to_string().into()],
        )
        .await
    }

    async fn revoke_key(&self, tenant: &TenantId, id: &KeyId) -> StoreResult<()> {
        let key = match self.get_key(id).await? {
            Some(k) if &k.tenant == tenant => k.revoked(),
            _ => return Err(StoreError::NotFound(id.to_string())),
        };
        let body = to_json(&key)?;
        let (id, tenant) = (id.to_string(), tenant.to_string());
        self.db
            .run("revoke a key", move |c| {
                c.execute(
                    "UPDATE api_keys SET body = ?1 WHERE id = ?2 AND tenant = ?3",
                    params![body, id, tenant],
                )
                .map_err(sql("revoke a key"))?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl ConnectionRegistry for SqliteStore {
    async fn put_connection(&self, connection: &Connection) -> StoreResult<()> {
        let body = to_json(connection)?;
        let (id, tenant, expires) = (
            connection.id.clone(),
            connection.tenant.to_string(),
            connection.expires_at.millis(),
        );
        self.db
            .run("store a connection", move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO connections (id, tenant, expires_ms, body) VALUES (?1, ?2, ?3, ?4)",
                    params![id, tenant, expires, body],
                )
                .map_err(sql("store a connection"))?;
                Ok(())
            })
            .await
    }

    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        let (id, now) = (id.to_string(), Timestamp::now().millis());
        let body: Option<String> = self
            .db
            .run("read a connection", move |c| {
                c.query_row(
                    "SELECT body FROM connections WHERE id = ?1 AND expires_ms > ?2",
                    params![id, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("read a connection"))
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn delete_connection(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.db
            .run("delete a connection", move |c| {
                c.execute("DELETE FROM connections WHERE id = ?1", params![id])
                    .map_err(sql("delete a connection"))?;
                Ok(())
            })
            .await
    }

    async fn tenant_connections(&self, tenant: &TenantId) -> StoreResult<Vec<Connection>> {
        self.bodies(
            "list connections",
            "SELECT body FROM connections WHERE tenant = ?1 AND expires_ms > ?2 ORDER BY id",
            vec![tenant.to_string().into(), Timestamp::now().millis().into()],
        )
        .await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(&self, tenant: &TenantId, key: &str, ttl_secs: u32) -> StoreResult<Claim> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        let now = Timestamp::now();
        let expires = now.plus_seconds(i64::from(ttl_secs)).millis();
        self.db
            .run("claim an idempotency key", move |c| {
                let tx = c.transaction().map_err(sql("claim an idempotency key"))?;
                let existing: Option<(Option<Vec<u8>>, i64)> = tx
                    .query_row(
                        "SELECT response, expires_ms FROM idempotency WHERE tenant = ?1 AND key = ?2",
                        params![tenant, key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(sql("claim an idempotency key"))?;
                let claim = match existing {
                    Some((Some(response), exp)) if exp > now.millis() => Claim::Done(response),
                    Some((None, exp)) if exp > now.millis() => Claim::InProgress,
                    _ => {
                        tx.execute(
                            "INSERT OR REPLACE INTO idempotency (tenant, key, response, expires_ms) VALUES (?1, ?2, NULL, ?3)",
                            params![tenant, key, expires],
                        )
                        .map_err(sql("claim an idempotency key"))?;
                        Claim::New
                    }
                };
                tx.commit().map_err(sql("claim an idempotency key"))?;
                Ok(claim)
            })
            .await
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        key: &str,
        response: &[u8],
        ttl_secs: u32,
    ) -> StoreResult<()> {
        let (tenant, key, response) = (tenant.to_string(), key.to_string(), response.to_vec());
        let expires = Timestamp::now().plus_seconds(i64::from(ttl_secs)).millis();
        self.db
            .run("complete an idempotency key", move |c| {
                let n = c
                    .execute(
                        "UPDATE idempotency SET response = ?1, expires_ms = ?4 WHERE tenant = ?2 AND key = ?3",
                        params![response, tenant, key, expires],
                    )
                    .map_err(sql("complete an idempotency key"))?;
                if n == 0 {
                    Err(StoreError::NotFound(key))
                } else {
                    Ok(())
                }
            })
            .await
    }
    async fn release(&self, tenant: &TenantId, key: &str) -> StoreResult<()> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.db
            .run("release an idempotency key", move |c| {
                c.execute(
                    "DELETE FROM idempotency WHERE tenant = ?1 AND key = ?2",
                    params![tenant, key],
                )
                .map_err(sql("release an idempotency key"))?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl ExpirySweeper for SqliteStore {
    async fn sweep_expired(&self, limit: usize) -> StoreResult<usize> {
        let (now, limit) = (Timestamp::now().millis(), limit as i64);
        self.db
            .run("sweep expired records", move |c| {
                let mut deleted = 0usize;
                for table in ["connections", "idempotency", "cache"] {
                    let left = limit - deleted as i64;
                    if left <= 0 {
                        break;
                    }
                    deleted += c
                        .execute(
                            &format!(
                                "DELETE FROM {table} WHERE rowid IN \
                                 (SELECT rowid FROM {table} WHERE expires_ms <= ?1 LIMIT ?2)"
                            ),
                            params![now, left],
                        )
                        .map_err(sql("sweep expired records"))?;
                }
                Ok(deleted)
            })
            .await
    }
}

#[async_trait]
impl ResultCache for SqliteStore {
    async fn get_cached(&self, tenant: &TenantId, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let (tenant, key, now) = (
            tenant.to_string(),
            key.to_string(),
            Timestamp::now().millis(),
        );
        self.db
            .run("read the cache", move |c| {
                c.query_row(
                    "SELECT value FROM cache WHERE tenant = ?1 AND key = ?2 AND expires_ms > ?3",
                    params![tenant, key, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("read the cache"))
            })
            .await
    }

    async fn put_cached(
        &self,
        tenant: &TenantId,
        key: &str,
        value: &[u8],
        ttl_secs: u32,
    ) -> StoreResult<()> {
        let expires = Timestamp::now().plus_seconds(i64::from(ttl_secs)).millis();
        let (tenant, key, value) = (tenant.to_string(), key.to_string(), value.to_vec());
        self.db
            .run("write the cache", move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO cache (tenant, key, value, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![tenant, key, value, expires],
                )
                .map_err(sql("write the cache"))?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl RateLimiter for SqliteStore {
    /// One counter per tenant, for its latest window (so memory grows with tenants, not
    /// with time).
    async fn admit(
        &self,
        tenant: &TenantId,
        window: i64,
        _window_secs: u32,
        limit: u32,
    ) -> StoreResult<bool> {
        let mut rates = self
            .rates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = rates.entry(tenant.clone()).or_insert((window, 0));
        // A caller with an older clock reading than the counter's counts in its window.
        if entry.0 < window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            return Ok(false);
        }
        entry.1 += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_page_tokens_belong_to_their_stream() {
        let (stream, other) = (StreamId::new(), StreamId::new());
        let t = encode_entity_token(&stream, "host:1/é");
        assert_eq!(decode_entity_token(&t, &stream).unwrap(), "host:1/é");
        assert!(matches!(
            decode_entity_token(&t, &other),
            Err(StoreError::BadPageToken)
        ));
        for bad in [
            "",
            "zz",
            &hex::encode("no-colon"),
            &hex::encode([0xff, 0xfe]),
        ] {
            assert!(
                matches!(
                    decode_entity_token(bad, &stream),
                    Err(StoreError::BadPageToken)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let t = encode_token(42, "tsk_01ABC");
        assert_eq!(decode_token(&t).unwrap(), (42, "tsk_01ABC".to_string()));
        for bad in [
            "",
            "zz",
            &hex::encode("42"),
            &hex::encode("x:tsk"),
            &hex::encode("1:a'b"),
        ] {
            assert!(
                matches!(decode_token(bad), Err(StoreError::BadPageToken)),
                "{bad}"
            );
        }
    }
}
