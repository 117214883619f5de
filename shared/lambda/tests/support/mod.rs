//! What the in-process suites share: an embedded stack in a scratch folder, and helpers
//! that drive it the way the Lambda triggers do (HTTP through the router, SQS batches
//! through the worker handler, stream records through the events handler).

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::sqs::SqsEvent;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nomaly_core::domain::{ApiKey, Event, TaskStatus, TenantId};
use nomaly_core::ids::TaskId;
use nomaly_core::ports::JobQueue;
use nomaly_core::service::worker::Lane;
use nomaly_core::service::{Services, Settings};
use nomaly_embedded::Stack;
use serde_json::{json, Value};
use tower::ServiceExt;

/// An embedded stack in a scratch folder, removed on drop. `services` starts as the
/// stack's own; a test may swap a port for a faulty wrapper.
pub struct Env {
    pub stack: Stack,
    pub services: Services,
    pub dir: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn env_with(settings: Settings) -> Env {
    let dir = std::env::temp_dir().join(format!("nomaly-flows-{}", TaskId::new()));
    let stack = Stack::open(&dir, "http://127.0.0.1:9", settings).expect("open the stack");
    let services = stack.services.clone();
    Env {
        stack,
        services,
        dir,
    }
}

pub fn env() -> Env {
    env_with(Settings::default())
}

/// An answer of the HTTP API: status, headers and JSON body (`null` when there is none).
pub type Answer = (StatusCode, axum::http::HeaderMap, Value);

impl Env {
    pub fn services(&self) -> &Services {
        &self.services
    }

    pub async fn key(&self, tenant: &str) -> String {
        let issued = ApiKey::issue(TenantId::parse(tenant).unwrap());
        self.services().keys.put_key(&issued.record).await.unwrap();
        issued.plaintext
    }

    /// A request to the HTTP API through the router, built step by step:
    /// `e.request("POST", "/v1/detect").key(&key).content_type("text/csv").body(csv).send()`.
    pub fn request<'a>(&'a self, method: &'a str, path: &'a str) -> Call<'a> {
        Call {
            env: self,
            method,
            path,
            key: None,
            content_type: None,
            body: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// `GET path` with `key`: the status and the JSON body.
    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.request("GET", path).key(key).send().await;
        (status, body)
    }

    /// `POST path` of a JSON `body` with `key`: for tables of cases across endpoints;
    /// the named helpers below say which endpoint they call.
    pub async fn post_json(&self, path: &str, key: &str, body: Value) -> Answer {
        self.request("POST", path)
            .key(key)
            .content_type("application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
    }

    /// `POST /v1/models`: train a model.
    pub async fn post_models(&self, key: &str, body: Value) -> Answer {
        self.post_json("/v1/models", key, body).await
    }

    /// `POST /v1/detect`: score rows.
    pub async fn post_detect(&self, key: &str, body: Value) -> Answer {
        self.post_json("/v1/detect", key, body).await
    }

    /// `POST /v1/datasets`: register an upload.
    pub async fn post_datasets(&self, key: &str, body: Value) -> Answer {
        self.post_json("/v1/datasets", key, body).await
    }

    /// Registers `csv` as a dataset of `acme` with `key`, stores it as its upload and
    /// profiles it; returns the dataset id.
    pub async fn upload_dataset(&self, key: &str, name: &str, csv: &str) -> String {
        let (s, _, grant) = self
            .post_datasets(key, json!({"name": name, "size": csv.len()}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{grant}");
        let dataset = grant["dataset"]["id"]
            .as_str()
            .expect("dataset")
            .to_string();
        let object = format!("tenants/acme/uploads/{dataset}.upload");
        self.services()
            .blobs
            .put_blob(
                &nomaly_core::ports::BlobKey::parse(&object).expect("key"),
                csv.as_bytes().to_vec(),
            )
            .await
            .expect("upload");
        nomaly_core::service::ingest::object_created(self.services(), &object, csv.len() as u64)
            .await
            .expect("profiled");
        dataset
    }

    /// `POST /v1/batch`: score a large object in chunks.
    pub async fn post_batch(&self, key: &str, body: Value) -> Answer {
        self.post_json("/v1/batch", key, body).await
    }

    /// `POST /v1/streams`: create a stream.
    pub async fn post_streams(&self, key: &str, body: Value) -> Answer {
        self.post_json("/v1/streams", key, body).await
    }

    /// `POST /v1/streams/{id}/points`: append points to a stream.
    pub async fn post_points(&self, key: &str, stream: &str, body: Value) -> Answer {
        self.post_json(&format!("/v1/streams/{stream}/points"), key, body)
            .await
    }

    /// `POST /v1/backtests`: run a stream detector over a history.
    pub async fn post_backtests(&self, key: &str, body: Value) -> Answer {
        self.post_json("/v1/backtests", key, body).await
    }

    /// `POST /v1/models/{id}/reports`: render a report on a model's scores.
    pub async fn post_reports(&self, key: &str, model: &str, body: Value) -> Answer {
        self.post_json(&format!("/v1/models/{model}/reports"), key, body)
            .await
    }

    /// Submits a z-score training on `n` rows of [`rows`] with `key`; it must answer 202.
    /// Returns the task's id.
    pub async fn train(&self, key: &str, n: usize) -> TaskId {
        let (s, _, body) = self
            .post_models(key, json!({"algorithm": "zscore", "rows": rows(n)}))
            .await;
        assert_eq!(s.as_u16(), 202, "{body}");
        TaskId::parse(body["task"]["id"].as_str().unwrap()).unwrap()
    }

    /// Hands up to `max` queued jobs to the worker function as one SQS batch, deletes
    /// the ones it handled and makes the failed ones visible again at once (instead of
    /// after the back-off the worker set), so a test can redeliver them. Returns how many
    /// were delivered and the message ids reported failed.
    pub async fn batch(&self, max: usize) -> (usize, Vec<String>) {
        self.batch_on(Lane::Jobs, max).await
    }

    /// As [`Env::batch`], from `lane`'s queue to its function.
    pub async fn batch_on(&self, lane: Lane, max: usize) -> (usize, Vec<String>) {
        let queue = match lane {
            Lane::Jobs => &self.stack.queue,
            Lane::Chunks => &self.stack.chunks,
            Lane::Alerts => &self.stack.alerts,
        };
        let deliveries = queue.receive(max, 30).await.unwrap();
        let records: Vec<Value> = deliveries
            .iter()
            .map(|d| {
                json!({
                    "messageId": d.receipt,
                    "receiptHandle": d.receipt,
                    "body": serde_json::to_string(&d.job).unwrap(),
                    "attributes": {"ApproximateReceiveCount": d.receive_count.to_string()},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs"
                })
            })
            .collect();
        if records.is_empty() {
            return (0, Vec::new());
        }
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = nomaly_lambda::worker::handle_lane(self.services(), lane, event).await;
        let response = serde_json::to_value(response).unwrap();
        let failed: Vec<String> = response["batchItemFailures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
            .collect();
        for d in &deliveries {
            if failed.contains(&d.receipt) {
                queue.change_visibility(&d.receipt, 0).await.unwrap();
            } else {
                queue.delete(&d.receipt).await.unwrap();
            }
        }
        (deliveries.len(), failed)
    }

    /// Runs every queued job through the worker handler, as SQS batches of up to 10;
    /// returns how many were handled.
    pub async fn drain(&self) -> usize {
        let mut handled = 0;
        for _ in 0..50 {
            let (n, failed) = self.batch(10).await;
            if n == 0 {
                return handled;
            }
            handled += n - failed.len();
        }
        handled
    }

    /// Sends a WebSocket message (or `$connect` with `query`) from `connection` through
    /// the ws function; returns its answer.
    pub async fn ws(
        &self,
        route: &str,
        connection: &str,
        query: Value,
        body: Option<&str>,
    ) -> Value {
        self.ws_answer(ws_event(route, connection, query, body))
            .await
    }

    /// The ws function's answer to `event`, as the JSON API Gateway receives.
    pub async fn ws_answer(&self, event: ApiGatewayWebsocketProxyRequest) -> Value {
        let answer = nomaly_lambda::ws::handle(self.services(), event).await;
        serde_json::to_value(answer).expect("the ws function's answer is JSON")
    }

    /// Opens `connection` with `key` (its pushes arrive on the returned inbox) and
    /// subscribes it to the tenant channel, consuming the acknowledgement.
    pub async fn listen(
        &self,
        connection: &str,
        key: &str,
    ) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
        let mut inbox = self.stack.notifier.open(connection);
        let connected = self
            .ws("$connect", connection, json!({"api_key": key}), None)
            .await;
        assert_eq!(connected["statusCode"], 200, "{connected}");
        self.ws(
            "$default",
            connection,
            json!({}),
            Some(r#"{"action":"subscribe","channel":"tenant"}"#),
        )
        .await;
        let ack: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
        assert_eq!(ack["type"], "subscribed", "{ack}");
        inbox
    }

    /// Runs every stored event of `tenant` through the stream handler, as DynamoDB
    /// stream INSERT records.
    pub async fn stream(&self, tenant: &str, after: Option<&str>) -> Vec<Event> {
        let t = TenantId::parse(tenant).unwrap();
        let after = after.map(|a| nomaly_core::ids::EventId::parse(a).unwrap());
        let page = self
            .services()
            .events
            .events_after(&t, after.as_ref(), 1000)
            .await
            .unwrap();
        let records: Vec<Value> = page
            .items
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({
                    "eventName": "INSERT",
                    "dynamodb": {
                        "NewImage": {"pk": {"S": tenant}, "sk": {"S": e.event_id.to_string()}, "body": {"S": serde_json::to_string(e).unwrap()}},
                        "SequenceNumber": format!("{}", 100 + i)
                    }
                })
            })
            .collect();
        let event = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = nomaly_lambda::events::handle(self.services(), event).await;
        assert_eq!(
            serde_json::to_value(response).unwrap(),
            json!({"batchItemFailures": []})
        );
        page.items
    }

    /// A worker takes the task's job and dies: the message is gone, the task stays
    /// running, and (with a 1 s lease) it goes stale.
    pub async fn lose_worker(&self, tenant: &TenantId, id: &TaskId) {
        let lost = self.stack.queue.receive(1, 300).await.unwrap().remove(0);
        self.stack.queue.delete(&lost.receipt).await.unwrap();
        let task = self
            .services()
            .tasks
            .get_task(tenant, id)
            .await
            .unwrap()
            .unwrap();
        self.services()
            .tasks
            .update_task(&task.transition(TaskStatus::Running).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }

    pub async fn events(&self, tenant: &str) -> Vec<Event> {
        let t = TenantId::parse(tenant).unwrap();
        self.services()
            .events
            .events_after(&t, None, 1000)
            .await
            .unwrap()
            .items
    }

    /// How many of `tenant`'s events are of `kind`.
    pub async fn count_events(&self, tenant: &str, kind: &str) -> usize {
        let events = self.events(tenant).await;
        events.iter().filter(|ev| ev.kind.as_str() == kind).count()
    }
}

pub fn rows(n: usize) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = (0..n)
        .map(|i| vec![(i % 17) as f64 * 0.1, (i % 13) as f64 * 0.2, (i % 7) as f64])
        .collect();
    out.push(vec![40.0, -30.0, 90.0]);
    out
}

pub fn ws_event(
    route: &str,
    connection: &str,
    query: Value,
    body: Option<&str>,
) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(json!({
        "requestContext": {"routeKey": route, "connectionId": connection, "eventType": "MESSAGE", "connectedAt": 0, "requestTimeEpoch": 0},
        "queryStringParameters": query,
        "body": body,
        "isBase64Encoded": false
    }))
    .unwrap()
}

/// One HTTP request being built: see [`Env::request`].
pub struct Call<'a> {
    env: &'a Env,
    method: &'a str,
    path: &'a str,
    key: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Call<'_> {
    /// Sends `Authorization: Bearer <key>`.
    pub fn key(mut self, key: impl AsRef<str>) -> Self {
        self.key = Some(key.as_ref().to_string());
        self
    }

    /// Sends `Content-Type: <media type>`.
    pub fn content_type(mut self, media_type: &str) -> Self {
        self.content_type = Some(media_type.to_string());
        self
    }

    /// Sends `Content-Type` when given (the bad-input tables try requests without one).
    pub fn maybe_content_type(mut self, media_type: Option<&str>) -> Self {
        self.content_type = media_type.map(str::to_string);
        self
    }

    /// The request's body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// More headers.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> Self {
        self.headers
            .extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Sends it through the router; the status, the headers and the body as JSON (a
    /// body that is not JSON comes as a JSON string).
    pub async fn send(self) -> Answer {
        let mut req = Request::builder().method(self.method).uri(self.path);
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if let Some(ct) = &self.content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let router = nomaly_core::http::router(self.env.services().clone());
        let response = router
            .oneshot(req.body(Body::from(self.body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        (parts.status, parts.headers, value)
    }
}
