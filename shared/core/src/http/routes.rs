//! The route handlers: each parses its input, calls a use case and shapes the answer.

use super::extract::{media_type, parse_json, Correlation, JsonBody, RawBody, Tenant};
use crate::domain::{TaskKind, TaskStatus};
use crate::ids::{DatasetId, EventId, ModelId, StreamId, TaskId};
use crate::limits::INLINE_RESULT_BYTES;
use crate::ports::BlobKey;
use crate::ports::PageRequest;
use crate::service::backtest::{self, BacktestRequest};
use crate::service::batch::{self, BatchRequest};
use crate::service::detection::{self, DetectQuery, DetectRequest, Outcome};
use crate::service::ingest::{self, UploadRequest};
use crate::service::input::Rows;
use crate::service::jobs;
use crate::service::report::{self, ReportRequest};
use crate::service::streams::{self, CreateStream, PointsRequest};
use crate::service::training::{self, TrainRequest};
use crate::service::{models, Problem, Services};
use crate::table::CsvOptions;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

type Answer = Result<Response, Problem>;

/// Liveness: no key needed, no storage touched.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// `?limit=&next_token=` of a listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    next_token: Option<String>,
}

impl Listing {
    fn page(self) -> Result<PageRequest, Problem> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(Problem::invalid_parameter(
                "`limit` must be between 1 and 1000",
            ));
        }
        Ok(PageRequest {
            limit,
            token: self.next_token,
        })
    }
}

fn query<T: serde::de::DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Problem> {
    q.map(|Query(v)| v)
        .map_err(|e| Problem::invalid_parameter(format!("query string: {}", e.body_text())))
}

/// A listing's JSON: `{"items": [...], "next_token": ...}`.
fn listing<T: serde::Serialize>(items: &[T], next_token: Option<String>) -> Response {
    Json(json!({"items": items, "next_token": next_token})).into_response()
}

fn accepted(task: &crate::domain::Task) -> Response {
    let location = format!("/v1/tasks/{}", task.id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({"task": jobs::view(task), "status_url": location})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    response
}

fn parse_id<T>(
    text: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, crate::ids::InvalidId>,
) -> Result<T, Problem> {
    parse(text).map_err(|_| Problem::not_found(format!("{what} {text} not found")))
}

/// `POST /v1/detect`: a JSON body, or a CSV body with the options in the query string.
pub async fn detect(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    headers: HeaderMap,
    q: Result<Query<DetectQuery>, axum::extract::rejection::QueryRejection>,
    RawBody(body): RawBody,
) -> Answer {
    let (rows, spec) = match media_type(&headers).as_deref() {
        Some("application/json") => {
            let request: DetectRequest = parse_json(&body)?;
            request.into_parts()?
        }
        Some("text/csv") => {
            let (spec, exclude) = query(q)?.into_parts()?;
            let rows = tokio::task::spawn_blocking(move || {
                Rows::from_csv(&body, &CsvOptions::request(&exclude))
            })
            .await
            .map_err(|e| Problem::internal(e.to_string()))??;
            (rows, spec)
        }
        other => {
            return Err(Problem::unsupported_media_type(format!(
                "send application/json or text/csv (got {})",
                other.unwrap_or("none")
            )))
        }
    };
    match detection::detect(&services, &tenant, &correlation, rows, spec).await? {
        Outcome::Done(d) => Ok(Json(d).into_response()),
        Outcome::Queued(task) => Ok(accepted(&task)),
    }
}

/// `POST /v1/batch`: 202 and a batch task, whose chunks are scored in parallel.
pub async fn submit_batch(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    JsonBody(request): JsonBody<BatchRequest>,
) -> Answer {
    let task = batch::submit(&services, &tenant, &correlation, request).await?;
    let mut response = accepted(&task);
    if let Ok(body) = serde_json::to_vec(
        &json!({"task": jobs::view(&task), "status_url": format!("/v1/tasks/{}", task.id), "result_url": format!("/v1/tasks/{}/result", task.id)}),
    ) {
        *response.body_mut() = axum::body::Body::from(body);
    }
    Ok(response)
}

/// `POST /v1/models`: 202 and a training task.
pub async fn train(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    JsonBody(request): JsonBody<TrainRequest>,
) -> Answer {
    let (spec, data) = request.into_parts()?;
    let (task, model_id) = training::submit(&services, &tenant, &correlation, spec, data).await?;
    let mut response = accepted(&task);
    if let Ok(body) = serde_json::to_vec(
        &json!({"task": jobs::view(&task), "model_id": model_id, "status_url": format!("/v1/tasks/{}", task.id)}),
    ) {
        *response.body_mut() = axum::body::Body::from(body);
    }
    Ok(response)
}

/// `GET /v1/models`.
pub async fn list_models(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .models
        .list_models(&tenant, &query(q)?.page()?)
        .await?;
    Ok(listing(&page.items, page.next_token))
}

/// `GET /v1/models/{id}`.
pub async fn get_model(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "model", ModelId::parse)?;
    let model = models::record(&services, &tenant, &id).await?;
    Ok(Json(model).into_response())
}

/// The answer for a stored JSON document past what a Lambda response carries (see the
/// limits table's `Result answered inline`): a download URL, as for reports.
async fn download_answer(services: &Services, key: &BlobKey, bytes: u64) -> Answer {
    let grant = services
        .uploads
        .presign_download(key, "application/json", report::DOWNLOAD_URL_SECS)
        .await?;
    Ok(Json(json!({
        "url": grant.url,
        "expires_at": grant.expires_at.rfc3339(),
        "content_type": "application/json",
        "bytes": bytes,
    }))
    .into_response())
}

/// `GET /v1/models/{id}/artifact`: the saved model, as `nomaly detect --model` reads it.
pub async fn model_artifact(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "model", ModelId::parse)?;
    let record = models::record(&services, &tenant, &id).await?;
    let key = models::stored_artifact_key(&tenant, &record)?;
    if let Some(size) = services.blobs.blob_size(&key).await? {
        if size > INLINE_RESULT_BYTES as u64 {
            return download_answer(&services, &key, size).await;
        }
    }
    let bytes = models::artifact(&services, &tenant, &record).await?;
    let disposition = format!("attachment; filename=\"{id}.json\"");
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_string(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// `POST /v1/models/{id}/reports`: 202 and a report task over a dataset or inline rows.
pub async fn create_report(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ReportRequest>,
) -> Answer {
    let id = parse_id(&id, "model", ModelId::parse)?;
    let task = report::submit(&services, &tenant, &correlation, &id, request).await?;
    Ok(accepted(&task))
}

/// `POST /v1/backtests`: queue a stream detector's run over a history.
pub async fn submit_backtest(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    JsonBody(request): JsonBody<BacktestRequest>,
) -> Answer {
    let task = backtest::submit(&services, &tenant, &correlation, request).await?;
    Ok(accepted(&task))
}

/// `GET /v1/tasks/{id}/report`: a completed report task's page, as a presigned URL.
pub async fn task_report(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let task = task_of(&services, &tenant, &id).await?;
    let grant = report::download(&services, &task).await?;
    Ok(Json(json!({
        "url": grant.url,
        "expires_at": grant.expires_at.rfc3339(),
        "content_type": report::CONTENT_TYPE,
    }))
    .into_response())
}

/// `DELETE /v1/models/{id}`: the record and the artifact.
pub async fn delete_model(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "model", ModelId::parse)?;
    models::delete(&services, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/tasks`.
pub async fn list_tasks(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .tasks
        .list_tasks(&tenant, &query(q)?.page()?)
        .await?;
    let items: Vec<Value> = page.items.iter().map(jobs::view).collect();
    Ok(listing(&items, page.next_token))
}

async fn task_of(
    services: &Services,
    tenant: &crate::domain::TenantId,
    id: &str,
) -> Result<crate::domain::Task, Problem> {
    let id = parse_id(id, "task", TaskId::parse)?;
    services
        .tasks
        .get_task(tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("task {id} not found")))
}

/// `GET /v1/tasks/{id}`.
pub async fn get_task(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let task = task_of(&services, &tenant, &id).await?;
    Ok(Json(jobs::view(&task)).into_response())
}

/// `POST /v1/tasks/{id}/cancel`: a queued or running task stops (a running worker's
/// output is discarded); a finished one is 409.
pub async fn cancel_task(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "task", TaskId::parse)?;
    let cancelled = crate::service::tasks::cancel(&services, &tenant, &id, &correlation).await?;
    Ok(Json(jobs::view(&cancelled)).into_response())
}

/// Which parts of a batch's manifest an answer lists (`?offset=`, from 0).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartsPage {
    #[serde(default)]
    offset: Option<usize>,
}

/// `GET /v1/tasks/{id}/result`: a completed detection task's scores, a batch's parts,
/// or a backtest's scores and evaluation.
pub async fn task_result(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    q: Result<Query<PartsPage>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = query(q)?;
    let task = task_of(&services, &tenant, &id).await?;
    if !matches!(
        task.kind,
        TaskKind::Detect | TaskKind::Batch | TaskKind::Backtest
    ) {
        return Err(Problem::not_found(format!(
            "task {} is a {} task; only detection, batch and backtest tasks have a result document (see `result`)",
            task.id,
            task.kind.as_str()
        )));
    }
    if task.status != TaskStatus::Completed {
        return Err(Problem::conflict(format!(
            "task {} is {}",
            task.id,
            task.status.as_str()
        )));
    }
    if task.kind == TaskKind::Batch {
        let offset = page.offset.unwrap_or(0);
        return Ok(Json(batch::result(&services, &task, offset).await?).into_response());
    }
    let key = match task.kind {
        TaskKind::Backtest => backtest::result_key(&tenant, &task.id),
        _ => detection::result_key(&tenant, &task.id),
    };
    let bytes = services
        .blobs
        .get_blob(&key)
        .await?
        .ok_or_else(|| Problem::not_found("the result has expired or was deleted"))?;
    if bytes.len() > INLINE_RESULT_BYTES {
        return download_answer(&services, &key, bytes.len() as u64).await;
    }
    let mut response = Response::new(axum::body::Body::from(bytes));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `POST /v1/datasets`: a dataset record and a presigned upload.
pub async fn register_dataset(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<UploadRequest>,
) -> Answer {
    let grant = ingest::register(&services, &tenant, request).await?;
    Ok((StatusCode::CREATED, Json(grant)).into_response())
}

/// `GET /v1/datasets`.
pub async fn list_datasets(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .datasets
        .list_datasets(&tenant, &query(q)?.page()?)
        .await?;
    Ok(listing(&page.items, page.next_token))
}

/// `GET /v1/datasets/{id}`: the record with its profile.
pub async fn get_dataset(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "dataset", DatasetId::parse)?;
    let mut dataset = services
        .datasets
        .get_dataset(&tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("dataset {id} not found")))?;
    dataset.profile = ingest::profile_of(&services, &dataset).await?;
    Ok(Json(dataset).into_response())
}

/// `DELETE /v1/datasets/{id}`: the record and the upload.
pub async fn delete_dataset(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "dataset", DatasetId::parse)?;
    ingest::delete(&services, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?after=&limit=` of the event log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/events?after=<event id>`: the tenant's audit log, oldest first.
pub async fn list_events(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid_parameter(
            "`limit` must be between 1 and 1000",
        ));
    }
    let after = q
        .after
        .map(|a| {
            EventId::parse(&a)
                .map_err(|_| Problem::invalid_parameter("`after` must be an event id (evt_...)"))
        })
        .transpose()?;
    let page = services
        .events
        .events_after(&tenant, after.as_ref(), limit)
        .await?;
    Ok(listing(&page.items, page.next_token))
}

/// `POST /v1/streams`: 201 and the new stream.
pub async fn create_stream(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<CreateStream>,
) -> Answer {
    let stream = streams::create(&services, &tenant, request).await?;
    let location = format!("/v1/streams/{}", stream.id);
    let mut response = (StatusCode::CREATED, Json(streams::view(&stream, None))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /v1/streams`.
pub async fn list_streams(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .streams
        .list_streams(&tenant, &query(q)?.page()?)
        .await?;
    let items: Vec<Value> = page.items.iter().map(|s| streams::view(s, None)).collect();
    Ok(listing(&items, page.next_token))
}

/// `GET /v1/streams/{id}`.
pub async fn get_stream(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "stream", StreamId::parse)?;
    let (stream, state) = streams::get(&services, &tenant, &id).await?;
    Ok(Json(streams::view(&stream, Some(&state))).into_response())
}

/// `DELETE /v1/streams/{id}`: the record and its state.
pub async fn delete_stream(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "stream", StreamId::parse)?;
    streams::delete(&services, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/streams/{id}/points`: JSON `{"points": [...]}` or CSV with a `timestamp`
/// column; answers each point's score.
pub async fn append_points(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Answer {
    let id = parse_id(&id, "stream", StreamId::parse)?;
    let points = match media_type(&headers).as_deref() {
        Some("application/json") => {
            let request: PointsRequest = parse_json(&body)?;
            streams::points_from_json(request.points)?
        }
        Some("text/csv") => {
            let (stream, _) = streams::get(&services, &tenant, &id).await?;
            let columns = stream.columns;
            tokio::task::spawn_blocking(move || streams::points_from_csv(&body, &columns))
                .await
                .map_err(|e| Problem::internal(e.to_string()))??
        }
        other => {
            return Err(Problem::unsupported_media_type(format!(
                "send application/json or text/csv (got {})",
                other.unwrap_or("none")
            )))
        }
    };
    let appended = streams::append(&services, &tenant, &correlation, &id, points).await?;
    Ok(Json(appended).into_response())
}
