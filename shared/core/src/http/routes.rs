//! The route handlers: each parses its input, calls a use case and shapes the answer.

use super::answers::{
    status_url, Accepted, AcceptedBatch, AcceptedTraining, Download, Health, Page, StreamView,
    TaskView,
};
use super::extract::{media_type, parse_json, Correlation, JsonBody, RawBody, Tenant};
use crate::domain::{Dataset, Event, ModelRecord, TaskKind, TaskStatus};
use crate::ids::{DatasetId, EventId, ModelId, StreamId, TaskId};
use crate::limits::INLINE_RESULT_BYTES;
use crate::ports::BlobKey;
use crate::ports::PageRequest;
use crate::service::backtest::{self, BacktestRequest};
use crate::service::batch::{self, BatchRequest};
use crate::service::detection::{self, DetectQuery, DetectRequest, Detection, Outcome};
use crate::service::ingest::{self, UploadGrant, UploadRequest};
use crate::service::input::Rows;
use crate::service::report::{self, ReportRequest};
use crate::service::streams::{self, Appended, CreateStream, EntityView, PointsRequest};
use crate::service::training::{self, TrainRequest};
use crate::service::uses::{UsesTasks, UsesUploads};
use crate::service::{models, Problem, Services};
use crate::table::CsvOptions;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

pub(super) type Answer = Result<Response, Problem>;

/// Liveness: no key needed, no storage touched.
#[utoipa::path(get, path = "/healthz", tag = "service", security(), responses((status = 200, description = "The service is up", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The OpenAPI 3.1 document of this API: no key needed.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(), responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    // Built once per process: an open route costs a copy, not a rebuild.
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(super::openapi::json).clone(),
    )
        .into_response()
}

/// `?limit=&next_token=` of a listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// Items per page, 1 to 1000 (default 50).
    #[serde(default)]
    limit: Option<usize>,
    /// The `next_token` of the page before.
    #[serde(default)]
    next_token: Option<String>,
}

impl Listing {
    pub(super) fn page(self) -> Result<PageRequest, Problem> {
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

pub(super) fn query<T: serde::de::DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, Problem> {
    q.map(|Query(v)| v)
        .map_err(|e| Problem::invalid_parameter(format!("query string: {}", e.body_text())))
}

/// A listing's JSON: `{"items": [...], "next_token": ...}`.
pub(super) fn listing<T: serde::Serialize>(items: Vec<T>, next_token: Option<String>) -> Response {
    Json(Page { items, next_token }).into_response()
}

/// 202 with `body` and `Location: /v1/tasks/{id}`.
fn accepted_with<B: serde::Serialize>(task: &crate::domain::Task, body: B) -> Response {
    let location = status_url(&task.id);
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    response
}

fn accepted(task: &crate::domain::Task) -> Response {
    accepted_with(task, Accepted::of(task))
}

pub(super) fn parse_id<T>(
    text: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, crate::ids::InvalidId>,
) -> Result<T, Problem> {
    parse(text).map_err(|_| Problem::not_found(format!("{what} {text} not found")))
}

/// `POST /v1/detect`: a JSON body, or a CSV body with the options in the query string.
#[utoipa::path(post, path = "/v1/detect", tag = "detection", params(DetectQuery), request_body(description = "Rows as JSON, or a CSV body with the options in the query string", content((DetectRequest = "application/json"), (String = "text/csv"))), responses((status = 200, description = "Scored now", body = Detection), (status = 202, description = "Too large to score now: a task scores it", body = Accepted)))]
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
#[utoipa::path(post, path = "/v1/batch", tag = "batch", request_body = BatchRequest, responses((status = 202, description = "A batch task", body = AcceptedBatch)))]
pub async fn submit_batch(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    JsonBody(request): JsonBody<BatchRequest>,
) -> Answer {
    let task = batch::submit(&services, &tenant, &correlation, request).await?;
    let body = AcceptedBatch {
        result_url: format!("/v1/tasks/{}/result", task.id),
        status_url: status_url(&task.id),
        task: (&task).into(),
    };
    Ok(accepted_with(&task, body))
}

/// `POST /v1/models`: 202 and a training task.
#[utoipa::path(post, path = "/v1/models", tag = "models", request_body = TrainRequest, responses((status = 202, description = "A training task and the model it will make", body = AcceptedTraining)))]
pub async fn train(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    JsonBody(request): JsonBody<TrainRequest>,
) -> Answer {
    let (spec, data) = request.into_parts()?;
    let (task, model_id) = training::submit(&services, &tenant, &correlation, spec, data).await?;
    let body = AcceptedTraining {
        model_id,
        status_url: status_url(&task.id),
        task: (&task).into(),
    };
    Ok(accepted_with(&task, body))
}

/// `GET /v1/models`.
#[utoipa::path(get, path = "/v1/models", tag = "models", params(Listing), responses((status = 200, description = "The tenant's models", body = Page<ModelRecord>)))]
pub async fn list_models(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .models
        .list_models(&tenant, &query(q)?.page()?)
        .await?;
    Ok(listing(page.items, page.next_token))
}

/// `GET /v1/models/{id}`.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "Model id")), responses((status = 200, description = "The model", body = ModelRecord)))]
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
async fn download_answer(services: &impl UsesUploads, key: &BlobKey, bytes: u64) -> Answer {
    let grant = services
        .uploads()
        .presign_download(key, "application/json", report::DOWNLOAD_URL_SECS)
        .await?;
    Ok(Json(Download {
        bytes: Some(bytes),
        content_type: "application/json".into(),
        expires_at: grant.expires_at.rfc3339(),
        url: grant.url,
    })
    .into_response())
}

/// `GET /v1/models/{id}/artifact`: the saved model, as `nomaly detect --model` reads it.
#[utoipa::path(get, path = "/v1/models/{id}/artifact", tag = "models", params(("id" = String, Path, description = "Model id")), responses((status = 200, description = "The saved model as `nomaly detect --model` reads it, or a download when it is too large to answer inline", content((Object = "application/json")))))]
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
#[utoipa::path(post, path = "/v1/models/{id}/reports", tag = "models", params(("id" = String, Path, description = "Model id")), request_body = ReportRequest, responses((status = 202, description = "A report task", body = Accepted)))]
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
#[utoipa::path(post, path = "/v1/backtests", tag = "streams", request_body = BacktestRequest, responses((status = 202, description = "A backtest task", body = Accepted)))]
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
#[utoipa::path(get, path = "/v1/tasks/{id}/report", tag = "tasks", params(("id" = String, Path, description = "Task id")), responses((status = 200, description = "A presigned download of the report page", body = Download)))]
pub async fn task_report(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let task = task_of(&services, &tenant, &id).await?;
    let grant = report::download(&services, &task).await?;
    Ok(Json(Download {
        bytes: None,
        content_type: report::CONTENT_TYPE.into(),
        expires_at: grant.expires_at.rfc3339(),
        url: grant.url,
    })
    .into_response())
}

/// `DELETE /v1/models/{id}`: the record and the artifact.
#[utoipa::path(delete, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "Model id")), responses((status = 204, description = "Deleted, with its artifact")))]
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
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(Listing), responses((status = 200, description = "The tenant's tasks", body = Page<TaskView>)))]
pub async fn list_tasks(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .tasks
        .list_tasks(&tenant, &query(q)?.page()?)
        .await?;
    let items: Vec<TaskView> = page.items.iter().map(TaskView::from).collect();
    Ok(listing(items, page.next_token))
}

async fn task_of(
    services: &impl UsesTasks,
    tenant: &crate::domain::TenantId,
    id: &str,
) -> Result<crate::domain::Task, Problem> {
    let id = parse_id(id, "task", TaskId::parse)?;
    services
        .tasks()
        .get_task(tenant, &id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("task {id} not found")))
}

/// `GET /v1/tasks/{id}`.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "Task id")), responses((status = 200, description = "The task", body = TaskView)))]
pub async fn get_task(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let task = task_of(&services, &tenant, &id).await?;
    Ok(Json(TaskView::from(&task)).into_response())
}

/// `POST /v1/tasks/{id}/cancel`: a queued or running task stops (a running worker's
/// output is discarded); a finished one is 409.
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "Task id")), responses((status = 200, description = "The task, cancelled", body = TaskView)))]
pub async fn cancel_task(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Correlation(correlation): Correlation,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "task", TaskId::parse)?;
    let cancelled = crate::service::tasks::cancel(&services, &tenant, &id, &correlation).await?;
    Ok(Json(TaskView::from(&cancelled)).into_response())
}

/// Which parts of a batch's manifest an answer lists (`?offset=`, from 0).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PartsPage {
    /// A batch's first part to list (default 0); the answer's `next_offset` is the next.
    #[serde(default)]
    offset: Option<usize>,
}

/// `GET /v1/tasks/{id}/result`: a completed detection task's scores, a batch's parts,
/// or a backtest's scores and evaluation.
#[utoipa::path(get, path = "/v1/tasks/{id}/result", tag = "tasks", params(("id" = String, Path, description = "Task id"), PartsPage), responses((status = 200, description = "A detection's scores, a backtest's scores and verdict, a batch's manifest page, or a download of a document too large to answer inline", body = Object)))]
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
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", request_body = UploadRequest, responses((status = 201, description = "The dataset and where to upload its file", body = UploadGrant)))]
pub async fn register_dataset(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<UploadRequest>,
) -> Answer {
    let grant = ingest::register(&services, &tenant, request).await?;
    Ok((StatusCode::CREATED, Json(grant)).into_response())
}

/// `GET /v1/datasets`.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets", params(Listing), responses((status = 200, description = "The tenant's datasets", body = Page<Dataset>)))]
pub async fn list_datasets(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .datasets
        .list_datasets(&tenant, &query(q)?.page()?)
        .await?;
    Ok(listing(page.items, page.next_token))
}

/// `GET /v1/datasets/{id}`: the record with its profile.
#[utoipa::path(get, path = "/v1/datasets/{id}", tag = "datasets", params(("id" = String, Path, description = "Dataset id")), responses((status = 200, description = "The dataset with its profile", body = Dataset)))]
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
#[utoipa::path(delete, path = "/v1/datasets/{id}", tag = "datasets", params(("id" = String, Path, description = "Dataset id")), responses((status = 204, description = "Deleted, with its upload")))]
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events after this event id (`evt_...`), oldest first.
    #[serde(default)]
    after: Option<String>,
    /// Events per page, 1 to 1000 (default 100).
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/events?after=<event id>`: the tenant's audit log, oldest first.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery), responses((status = 200, description = "The tenant's events, oldest first", body = Page<Event>)))]
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
    Ok(listing(page.items, page.next_token))
}

/// `POST /v1/streams`: 201 and the new stream.
#[utoipa::path(post, path = "/v1/streams", tag = "streams", request_body = CreateStream, responses((status = 201, description = "The stream", body = StreamView, headers(("Location" = String, description = "`/v1/streams/{id}`")))))]
pub async fn create_stream(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<CreateStream>,
) -> Answer {
    let stream = streams::create(&services, &tenant, request).await?;
    let location = format!("/v1/streams/{}", stream.id);
    let mut response = (StatusCode::CREATED, Json(StreamView::of(&stream, None))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /v1/streams`.
#[utoipa::path(get, path = "/v1/streams", tag = "streams", params(Listing), responses((status = 200, description = "The tenant's streams", body = Page<StreamView>)))]
pub async fn list_streams(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let page = services
        .streams
        .list_streams(&tenant, &query(q)?.page()?)
        .await?;
    let items: Vec<StreamView> = page.items.iter().map(|s| StreamView::of(s, None)).collect();
    Ok(listing(items, page.next_token))
}

/// `GET /v1/streams/{id}`.
#[utoipa::path(get, path = "/v1/streams/{id}", tag = "streams", params(("id" = String, Path, description = "Stream id")), responses((status = 200, description = "The stream", body = StreamView)))]
pub async fn get_stream(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Answer {
    let id = parse_id(&id, "stream", StreamId::parse)?;
    let (stream, state) = streams::get(&services, &tenant, &id).await?;
    Ok(Json(StreamView::of(&stream, Some(&state))).into_response())
}

/// `GET /v1/streams/{id}/entities`: a stream split by entity's entities, in name order.
#[utoipa::path(get, path = "/v1/streams/{id}/entities", tag = "streams", params(("id" = String, Path, description = "Stream id"), Listing), responses((status = 200, description = "The stream's entities", body = Page<EntityView>)))]
pub async fn list_entities(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
    q: Result<Query<Listing>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let id = parse_id(&id, "stream", StreamId::parse)?;
    let page = streams::entities::list(&services, &tenant, &id, &query(q)?.page()?).await?;
    Ok(listing(page.items, page.next_token))
}

/// `GET /v1/streams/{id}/entities/{name}`: one entity, with its last points.
#[utoipa::path(get, path = "/v1/streams/{id}/entities/{name}", tag = "streams", params(("id" = String, Path, description = "Stream id"), ("name" = String, Path, description = "The entity's name")), responses((status = 200, description = "The entity", body = EntityView)))]
pub async fn get_entity(
    State(services): State<Services>,
    Tenant(tenant): Tenant,
    Path((id, name)): Path<(String, String)>,
) -> Answer {
    let id = parse_id(&id, "stream", StreamId::parse)?;
    let entity = streams::entities::get(&services, &tenant, &id, &name).await?;
    Ok(Json(entity).into_response())
}

/// `DELETE /v1/streams/{id}`: the record and its state.
#[utoipa::path(delete, path = "/v1/streams/{id}", tag = "streams", params(("id" = String, Path, description = "Stream id")), responses((status = 204, description = "Deleted, with its state")))]
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
#[utoipa::path(post, path = "/v1/streams/{id}/points", tag = "streams", params(("id" = String, Path, description = "Stream id")), request_body(description = "Points as JSON, or a CSV body with a `timestamp` column", content((PointsRequest = "application/json"), (String = "text/csv"))), responses((status = 200, description = "Each point's score, and the anomalies", body = Appended)))]
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
            let entity = stream.entity.map(|e| e.field);
            tokio::task::spawn_blocking(move || {
                streams::points_from_csv(&body, &columns, entity.as_deref())
            })
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
