//! The handlers end to end on the embedded stack: HTTP through the shared router, jobs
//! through the worker handler as the SQS trigger hands them over, uploads through the
//! ingest handler, events through the stream handler, WebSocket actions through the ws
//! handler. No network: the same code the Lambda binaries run, on local storage.

use aws_lambda_events::s3::S3Event;
use aws_lambda_events::sqs::SqsEvent;
use axum::http::StatusCode;
use nomaly_core::domain::payload::TaskProgress;
use nomaly_core::domain::{ApiKey, Event, EventType, TaskKind, TaskStatus, TenantId};
use nomaly_core::ids::TaskId;
use nomaly_core::ports::{BlobKey, JobQueue};
use nomaly_core::service::Settings;
use serde_json::{json, Value};

use crate::support::{env, env_with, rows, ws_event};

/// A `task.progress` payload for `task_id`.
fn progress_of(task_id: TaskId) -> TaskProgress {
    TaskProgress {
        task_id,
        kind: TaskKind::Train,
        progress: 0,
        attempt: None,
        chunks: None,
    }
}

#[tokio::test]
async fn health_is_open_and_everything_else_needs_a_key() {
    let e = env();
    let (s, _, body) = e.request("GET", "/healthz").send().await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    for (method, path) in [
        ("GET", "/v1/tasks"),
        ("POST", "/v1/detect"),
        ("GET", "/v1/models/mdl_x"),
        ("GET", "/v1/events"),
    ] {
        let (s, h, body) = e.request(method, path).send().await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(h["content-type"], "application/problem+json");
        assert_eq!(body["type"], "https://nomaly.dev/problems/unauthorized");
    }
    let key = e.key("acme").await;
    let (s, _, _) = e
        .request("GET", "/v1/tasks")
        .key(format!(
            "{}{}",
            &key[..key.len() - 1],
            if key.ends_with('0') { '1' } else { '0' }
        ))
        .send()
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "wrong secret");
    let (id, _) = ApiKey::split(&key).unwrap();
    e.services()
        .keys
        .revoke_key(&TenantId::parse("acme").unwrap(), &id)
        .await
        .unwrap();
    let (s, _, _) = e.request("GET", "/v1/tasks").key(&key).send().await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "revoked keys stop at once");
    let key = e.key("acme").await;
    let (s, _, body) = e.request("GET", "/v1/nowhere").key(&key).send().await;
    assert_eq!(
        (s, body["status"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    let (s, _, body) = e.request("PUT", "/v1/tasks").key(&key).send().await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}

#[tokio::test]
async fn inline_detection_answers_at_once_caches_and_publishes_anomalies() {
    let e = env();
    let key = e.key("acme").await;
    let request =
        json!({"algorithm": "zscore", "rows": rows(200), "contamination": 0.01, "explain": true});
    let (s, _, first) = e.post_detect(&key, request.clone()).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["rows"], 201);
    assert_eq!(first["labels"][200], 1, "the planted outlier is found");
    assert_eq!(first["cached"], false);
    assert_eq!(first["explanations"][200].as_array().unwrap().len(), 3);
    let (_, _, second) = e.post_detect(&key, request).await;
    assert_eq!(second["cached"], true);
    assert_eq!(second["scores"], first["scores"]);
    let anomalies: Vec<Event> = e
        .events("acme")
        .await
        .into_iter()
        .filter(|ev| ev.kind.as_str() == "anomaly.detected")
        .collect();
    assert_eq!(anomalies.len(), 2);
    assert!(anomalies[0].payload["anomaly_rows"]
        .as_array()
        .unwrap()
        .contains(&json!(200)));

    let csv = "a,b,label\n1,2,0\n1.1,2.1,0\n0.9,1.9,0\n1,2.05,0\n50,-40,1\n";
    let (s, _, body) = e
        .request(
            "POST",
            "/v1/detect?algorithm=zscore&exclude_columns=label&threshold=3",
        )
        .key(&key)
        .content_type("text/csv")
        .body(csv.as_bytes().to_vec())
        .send()
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["labels"], json!([0, 0, 0, 0, 1]));
}

/// Path, content type, body, expected status, expected problem slug.
type BadCase = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test]
async fn bad_requests_get_problems_not_crashes() {
    let e = env();
    let key = e.key("acme").await;
    let cases: Vec<BadCase> = vec![
        (
            "/v1/detect",
            Some("application/json"),
            b"{not json".to_vec(),
            400,
            "malformed-request",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            br#"{"rows": [[1, "x"]], "algorithm": "iforest"}"#.to_vec(),
            400,
            "invalid-parameter",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            br#"{"rows": [], "algorithm": "iforest"}"#.to_vec(),
            422,
            "invalid-data",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            br#"{"rows": [[1,2],[3]], "algorithm": "iforest"}"#.to_vec(),
            422,
            "invalid-data",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            br#"{"rows": [[1]], "algorithm": "magic"}"#.to_vec(),
            400,
            "invalid-parameter",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            br#"{"rows": [[1]]}"#.to_vec(),
            400,
            "invalid-parameter",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            br#"{"rows": [[1]], "algorithm": "iforest", "surprise": 1}"#.to_vec(),
            400,
            "invalid-parameter",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            br#"{"rows": [[1e999]], "algorithm": "iforest"}"#.to_vec(),
            400,
            "malformed-request",
        ),
        (
            "/v1/detect",
            Some("application/xml"),
            b"<rows/>".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "/v1/detect",
            None,
            b"1,2".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "/v1/detect?algorithm=iforest",
            Some("text/csv"),
            b"a,b\n1,zz\n".to_vec(),
            422,
            "invalid-data",
        ),
        (
            "/v1/detect",
            Some("application/json"),
            b"\xff\xfe".to_vec(),
            400,
            "malformed-request",
        ),
        (
            "/v1/models",
            Some("application/json"),
            br#"{"algorithm": "iforest"}"#.to_vec(),
            400,
            "invalid-parameter",
        ),
        (
            "/v1/datasets",
            Some("application/json"),
            br#"{"name": "x", "size": 0}"#.to_vec(),
            400,
            "invalid-parameter",
        ),
    ];
    for (path, ct, body, status, slug) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (s, h, problem) = e
            .request("POST", path)
            .key(&key)
            .maybe_content_type(ct)
            .body(body)
            .send()
            .await;
        assert_eq!(s.as_u16(), status, "{path} {shown}: {problem}");
        assert_eq!(
            h["content-type"], "application/problem+json",
            "{path} {shown}"
        );
        assert_eq!(
            problem["type"],
            format!("https://nomaly.dev/problems/{slug}"),
            "{path} {shown}: {problem}"
        );
    }
    let huge = vec![b'1'; 6 * 1024 * 1024 + 1];
    let (s, _, problem) = e
        .request("POST", "/v1/detect?algorithm=iforest")
        .key(&key)
        .content_type("text/csv")
        .body(huge)
        .send()
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let (s, _, _) = e.request("GET", "/v1/tasks?limit=0").key(&key).send().await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = e
        .request("GET", "/v1/tasks?next_token=zz")
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn training_runs_in_the_worker_with_progress_and_the_model_scores_like_the_library() {
    let e = env();
    let key = e.key("acme").await;
    let data = rows(3000);
    let (s, h, body) = e
        .post_models(
            &key,
            json!({"algorithm": "iforest", "rows": data, "params": {"n_estimators": 50}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let task_id = body["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(h["location"], format!("/v1/tasks/{task_id}"));
    assert_eq!(body["task"]["status"], "queued");
    assert_eq!(e.drain().await, 1);
    let (_, _, task) = e
        .request("GET", &format!("/v1/tasks/{task_id}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["progress"], 100);
    let model_id = task["result"].as_str().unwrap().to_string();
    assert_eq!(model_id, body["model_id"].as_str().unwrap());
    let kinds: Vec<String> = e
        .events("acme")
        .await
        .iter()
        .filter(|ev| ev.payload["task_id"] == json!(task_id))
        .map(|ev| ev.kind.as_str().to_string())
        .collect();
    assert!(
        kinds.iter().filter(|k| *k == "task.progress").count() >= 1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "task.completed").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("task.completed"));

    let (s, _, scored) = e
        .post_detect(&key, json!({"model_id": model_id, "rows": data}))
        .await;
    assert_eq!(s, StatusCode::OK, "{scored}");
    let artifact = BlobKey::parse(&format!("tenants/acme/models/{model_id}.json")).unwrap();
    let model = nomaly_detect::Model::from_json(
        &e.services()
            .blobs
            .get_blob(&artifact)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let flat: Vec<f64> = data.iter().flatten().copied().collect();
    let x = ndarray::Array2::from_shape_vec((data.len(), 3), flat).unwrap();
    let expected = model.score(x.view()).unwrap();
    let got: Vec<f64> = scored["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got, expected, "the API scores exactly as the library");

    let (s, _, list) = e.request("GET", "/v1/models").key(&key).send().await;
    assert_eq!(
        (s, list["items"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (s, _, _) = e
        .request("DELETE", &format!("/v1/models/{model_id}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        e.services()
            .blobs
            .get_blob(&artifact)
            .await
            .unwrap()
            .is_none(),
        "the artifact goes too"
    );
    let (s, _, _) = e
        .post_detect(&key, json!({"model_id": model_id, "rows": data}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_work_reports_progress_by_tenths() {
    let e = env_with(Settings {
        detect_budget_ms: 0,
        ..Settings::default()
    });
    let key = e.key("acme").await;
    let (_, _, body) = e
        .post_models(
            &key,
            json!({"algorithm": "iforest", "rows": rows(200), "params": {"n_estimators": 300}}),
        )
        .await;
    e.drain().await;
    let model = body["model_id"].as_str().unwrap();
    // 400k rows scored in 98 blocks: each tenth takes far longer than a progress write.
    let big: Vec<Vec<f64>> = (0..400_000)
        .map(|i| vec![(i % 101) as f64, (i % 37) as f64, (i % 7) as f64])
        .collect();
    let (s, _, body) = e
        .post_detect(&key, json!({"model_id": model, "rows": big}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let task = body["task"]["id"].clone();
    e.drain().await;
    let progress: Vec<u64> = e
        .events("acme")
        .await
        .iter()
        .filter(|ev| ev.kind.as_str() == "task.progress" && ev.payload["task_id"] == task)
        .map(|ev| ev.payload["progress"].as_u64().unwrap())
        .collect();
    assert!(progress.len() >= 6, "progress events: {progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "rising: {progress:?}"
    );
    let (_, _, done) = e
        .request("GET", &format!("/v1/tasks/{}", task.as_str().unwrap()))
        .key(&key)
        .send()
        .await;
    assert_eq!(done["status"], "completed");
}

#[tokio::test]
async fn detection_over_budget_becomes_a_task_with_a_result() {
    let e = env_with(Settings {
        detect_budget_ms: 0,
        ..Settings::default()
    });
    let key = e.key("acme").await;
    let (s, h, body) = e
        .post_detect(&key, json!({"algorithm": "ecod", "rows": rows(500)}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let task_id = body["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(h["location"], format!("/v1/tasks/{task_id}"));
    let (s, _, _) = e
        .request("GET", &format!("/v1/tasks/{task_id}/result"))
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "not finished yet");
    e.drain().await;
    let (s, _, result) = e
        .request("GET", &format!("/v1/tasks/{task_id}/result"))
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::OK, "{result}");
    assert_eq!(result["rows"], 501);
    assert_eq!(result["labels"][500], 1);
    let completed: Vec<Event> = e
        .events("acme")
        .await
        .into_iter()
        .filter(|ev| ev.kind.as_str() == "task.completed")
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].payload["anomalies"], result["anomalies"]);
}

#[tokio::test]
async fn tenants_see_only_their_own() {
    let e = env();
    let (a, b) = (e.key("tenant-a").await, e.key("tenant-b").await);
    let (_, _, body) = e
        .post_models(&a, json!({"algorithm": "zscore", "rows": rows(50)}))
        .await;
    let task = body["task"]["id"].as_str().unwrap().to_string();
    e.drain().await;
    let model = body["model_id"].as_str().unwrap().to_string();
    for path in [
        format!("/v1/tasks/{task}"),
        format!("/v1/models/{model}"),
        format!("/v1/tasks/{task}/result"),
    ] {
        let (s, _, _) = e.request("GET", &path).key(&b).send().await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _, _) = e
        .post_detect(&b, json!({"model_id": model, "rows": [[1, 2, 3]]}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = e
        .request("DELETE", &format!("/v1/models/{model}"))
        .key(&b)
        .send()
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, _, list) = e.request("GET", "/v1/tasks").key(&b).send().await;
    assert_eq!(list["items"], json!([]));
    let (_, _, events) = e.request("GET", "/v1/events").key(&b).send().await;
    assert_eq!(events["items"], json!([]));
    let (s, _, _) = e
        .request("GET", &format!("/v1/models/{model}"))
        .key(&a)
        .send()
        .await;
    assert_eq!(s, StatusCode::OK, "the owner still sees it");
}

#[tokio::test]
async fn idempotency_keys_return_the_first_response() {
    let e = env();
    let key = e.key("acme").await;
    let body = serde_json::to_vec(&json!({"algorithm": "zscore", "rows": rows(20)})).unwrap();
    let post = |b: Vec<u8>, k: &'static str| {
        let key = key.clone();
        let e = &e;
        async move {
            e.request("POST", "/v1/models")
                .key(&key)
                .content_type("application/json")
                .body(b)
                .headers(&[("idempotency-key", k)])
                .send()
                .await
        }
    };
    let (s1, h1, first) = post(body.clone(), "retry-1").await;
    let (s2, h2, second) = post(body.clone(), "retry-1").await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(
        first["task"]["id"], second["task"]["id"],
        "one task for both"
    );
    assert_eq!(h1["location"], h2["location"]);
    assert_eq!(h2["idempotent-replayed"], "true");
    let (_, _, list) = e.request("GET", "/v1/tasks").key(&key).send().await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let other = serde_json::to_vec(&json!({"algorithm": "ecod", "rows": rows(20)})).unwrap();
    let (s, _, problem) = post(other, "retry-1").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (s, _, _) = post(body, "retry-2").await;
    assert_eq!(s, StatusCode::ACCEPTED, "a new key is a new request");
}

#[tokio::test]
async fn listings_page_and_cancel_stops_a_task() {
    let e = env();
    let key = e.key("acme").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, _, body) = e
            .post_models(&key, json!({"algorithm": "zscore", "rows": rows(10)}))
            .await;
        ids.push(body["task"]["id"].as_str().unwrap().to_string());
    }
    let (_, _, page1) = e.request("GET", "/v1/tasks?limit=2").key(&key).send().await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let token = page1["next_token"].as_str().unwrap();
    let (_, _, page2) = e
        .request("GET", &format!("/v1/tasks?limit=2&next_token={token}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["items"][0]["id"], json!(ids[0]), "newest first");
    let (s, _, cancelled) = e
        .request("POST", &format!("/v1/tasks/{}/cancel", ids[1]))
        .key(&key)
        .send()
        .await;
    assert_eq!(
        (s, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (s, _, _) = e
        .request("POST", &format!("/v1/tasks/{}/cancel", ids[1]))
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        e.count_events("acme", "task.cancelled").await,
        1,
        "one event, written with the status; none for the refused second cancel"
    );
    e.drain().await;
    let t = TenantId::parse("acme").unwrap();
    let status = |id: &str| {
        let id = TaskId::parse(id).unwrap();
        let t = t.clone();
        let s = e.services().tasks.clone();
        async move { s.get_task(&t, &id).await.unwrap().unwrap().status }
    };
    assert_eq!(
        status(&ids[1]).await,
        TaskStatus::Cancelled,
        "the worker leaves a cancelled task alone"
    );
    assert_eq!(status(&ids[0]).await, TaskStatus::Completed);
    let (_, _, events) = e
        .request("GET", "/v1/events?limit=1")
        .key(&key)
        .send()
        .await;
    let first = events["items"][0]["event_id"].as_str().unwrap().to_string();
    let (_, _, rest) = e
        .request("GET", &format!("/v1/events?after={first}"))
        .key(&key)
        .send()
        .await;
    assert!(rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|ev| ev["event_id"].as_str().unwrap() > first.as_str()));
}

#[tokio::test]
async fn uploads_are_profiled_and_train_when_asked() {
    let e = env();
    let key = e.key("acme").await;
    let csv = {
        let mut s = String::from("a,b,name\n");
        for i in 0..300 {
            s.push_str(&format!("{},{},row{}\n", i % 10, (i * 7) % 11, i));
        }
        s
    };
    let (s, _, grant) = e
        .post_datasets(
            &key,
            json!({"name": "sensors.csv", "size": csv.len(), "train": {"algorithm": "hbos"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{grant}");
    let dataset_id = grant["dataset"]["id"].as_str().unwrap().to_string();
    assert_eq!(grant["dataset"]["status"], "awaiting_upload");
    assert!(grant["upload"]["url"]
        .as_str()
        .unwrap()
        .contains(&format!("tenants/acme/uploads/{dataset_id}.upload")));
    let object = format!("tenants/acme/uploads/{dataset_id}.upload");
    e.services()
        .blobs
        .put_blob(&BlobKey::parse(&object).unwrap(), csv.as_bytes().to_vec())
        .await
        .unwrap();
    let s3: S3Event = serde_json::from_value(json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-27T05:00:00.000Z", "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "uploads", "bucket": {"name": "b", "arn": "arn:aws:s3:::b"},
               "object": {"key": object, "size": csv.len()}}
    }]}))
    .unwrap();
    assert_eq!(
        nomaly_lambda::ingest::handle(e.services(), s3)
            .await
            .unwrap(),
        1
    );
    let (_, _, dataset) = e
        .request("GET", &format!("/v1/datasets/{dataset_id}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(dataset["status"], "profiled", "{dataset}");
    assert_eq!(dataset["profile"]["rows"], 300);
    assert_eq!(dataset["profile"]["usable_columns"], json!(["a", "b"]));
    assert!(
        e.drain().await == 0,
        "nothing trains before the events function runs the chain"
    );
    e.stream("acme", None).await;
    e.stream("acme", None).await; // the stream may deliver twice: still one training
    assert_eq!(e.drain().await, 1);
    let (_, _, models) = e.request("GET", "/v1/models").key(&key).send().await;
    assert_eq!(models["items"].as_array().unwrap().len(), 1);
    assert_eq!(models["items"][0]["feature_names"], json!(["a", "b"]));

    let (_, _, big) = e
        .post_datasets(&key, json!({"name": "liar.csv", "size": 10}))
        .await;
    let big_id = big["dataset"]["id"].as_str().unwrap();
    let object = format!("tenants/acme/uploads/{big_id}.upload");
    e.services()
        .blobs
        .put_blob(&BlobKey::parse(&object).unwrap(), vec![b'1'; 11])
        .await
        .unwrap();
    nomaly_core::service::ingest::object_created(e.services(), &object, 11)
        .await
        .unwrap();
    let (_, _, rejected) = e
        .request("GET", &format!("/v1/datasets/{big_id}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(rejected["status"], "rejected");
    assert!(
        e.services()
            .blobs
            .get_blob(&BlobKey::parse(&object).unwrap())
            .await
            .unwrap()
            .is_none(),
        "the oversized object is deleted"
    );
}

#[tokio::test]
async fn websocket_connects_replays_pushes_and_scores() {
    let e = env();
    let key = e.key("acme").await;
    let other = e.key("other").await;
    let refused = e
        .ws_answer(ws_event(
            "$connect",
            "c0",
            json!({"api_key": "nmk_nope"}),
            None,
        ))
        .await;
    assert_eq!(refused["statusCode"], 401);
    let refused = e
        .ws_answer(ws_event("$connect", "c0", json!({}), None))
        .await;
    assert_eq!(refused["statusCode"], 401);
    let mut inbox = e.stack.notifier.open("c1");
    let mut other_inbox = e.stack.notifier.open("c2");
    let ok = e
        .ws_answer(ws_event("$connect", "c1", json!({"api_key": key}), None))
        .await;
    assert_eq!(ok["statusCode"], 200);
    e.ws_answer(ws_event("$connect", "c2", json!({"api_key": other}), None))
        .await;
    e.ws_answer(ws_event(
        "$default",
        "c2",
        json!({}),
        Some(r#"{"action":"subscribe","channel":"tenant"}"#),
    ))
    .await;
    let _ = other_inbox.recv().await;

    let marker = e
        .services()
        .events
        .publish(
            &TenantId::parse("acme").unwrap(),
            "c",
            &progress_of(TaskId::new()),
        )
        .await
        .unwrap();
    let (_, _, body) = e
        .post_models(&key, json!({"algorithm": "zscore", "rows": rows(30)}))
        .await;
    let task = body["task"]["id"].as_str().unwrap().to_string();
    e.drain().await;
    // Subscribing after the work finished still delivers it: replay after the marker.
    let sub = format!(
        r#"{{"action":"subscribe","channel":"task:{task}","after":"{}"}}"#,
        marker.event_id
    );
    e.ws_answer(ws_event("$default", "c1", json!({}), Some(&sub)))
        .await;
    let mut got = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), inbox.recv()).await
    {
        got.push(serde_json::from_slice::<Value>(&m).unwrap());
    }
    let types: Vec<&str> = got.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types.last(), Some(&"subscribed"), "{types:?}");
    assert_eq!(
        types.iter().filter(|t| **t == "task.completed").count(),
        1,
        "{types:?}"
    );
    assert!(
        !types.contains(&"task.progress")
            || got
                .iter()
                .all(|m| m["type"] != "task.progress" || m["payload"]["task_id"] == json!(task))
    );

    // Live: the stream handler pushes new events to the subscribed connection only.
    let before = e.events("acme").await.last().unwrap().event_id.to_string();
    let (_, _, body) = e
        .post_models(&key, json!({"algorithm": "zscore", "rows": rows(30)}))
        .await;
    let task2 = body["task"]["id"].as_str().unwrap().to_string();
    let sub2 = format!(r#"{{"action":"subscribe","channel":"task:{task2}"}}"#);
    e.ws_answer(ws_event("$default", "c1", json!({}), Some(&sub2)))
        .await;
    e.drain().await;
    e.stream("acme", Some(&before)).await;
    let mut live = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), inbox.recv()).await
    {
        live.push(serde_json::from_slice::<Value>(&m).unwrap());
    }
    assert!(
        live.iter()
            .any(|m| m["type"] == "task.completed" && m["payload"]["task_id"] == json!(task2)),
        "{live:?}"
    );
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), other_inbox.recv())
            .await
            .is_err(),
        "another tenant hears nothing"
    );

    // Score on the socket.
    let model = body["model_id"].as_str().unwrap();
    let score = format!(
        r#"{{"action":"score","model_id":"{model}","rows":[[0.1,0.2,1],[40,-30,90]],"request_id":"r1"}}"#
    );
    e.ws_answer(ws_event("$default", "c1", json!({}), Some(&score)))
        .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
    assert_eq!(
        (reply["type"].as_str(), reply["request_id"].as_str()),
        (Some("scores"), Some("r1")),
        "{reply}"
    );
    assert_eq!(reply["labels"], json!([0, 1]));
    e.ws_answer(ws_event(
        "$default",
        "c1",
        json!({}),
        Some("{\"action\":\"dance\"}"),
    ))
    .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["error"]["status"], 400);

    // A gone connection is forgotten when an event finds it.
    drop(inbox);
    let before = e.events("acme").await.last().unwrap().event_id.to_string();
    e.services()
        .events
        .publish(
            &TenantId::parse("acme").unwrap(),
            "c",
            &progress_of(TaskId::parse(&task2).unwrap()),
        )
        .await
        .unwrap();
    e.stream("acme", Some(&before)).await;
    assert!(e
        .services()
        .connections
        .get_connection("c1")
        .await
        .unwrap()
        .is_none());
    let bye = e
        .ws_answer(ws_event("$disconnect", "c2", json!({}), None))
        .await;
    assert_eq!(bye["statusCode"], 200);
    assert!(e
        .services()
        .connections
        .get_connection("c2")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_bad_message_fails_only_itself() {
    let e = env();
    let key = e.key("acme").await;
    e.post_models(&key, json!({"algorithm": "zscore", "rows": rows(20)}))
        .await;
    let good = e.stack.queue.receive(1, 30).await.unwrap().remove(0);
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-good", "receiptHandle": good.receipt, "body": serde_json::to_string(&good.job).unwrap(), "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}},
        {"messageId": "m-bad", "receiptHandle": "r", "body": "{\"not\": \"a job\"}", "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}}
    ]}))
    .unwrap();
    let response = nomaly_lambda::worker::handle(e.services(), event.clone()).await;
    let response = serde_json::to_value(response).unwrap();
    assert_eq!(
        response["batchItemFailures"],
        json!([{"itemIdentifier": "m-bad"}])
    );
    let again = nomaly_lambda::worker::handle(e.services(), event).await;
    let again = serde_json::to_value(again).unwrap();
    assert_eq!(
        again["batchItemFailures"],
        json!([{"itemIdentifier": "m-bad"}]),
        "a redelivered finished job is acknowledged"
    );
    let t = TenantId::parse("acme").unwrap();
    let tasks = e
        .services()
        .tasks
        .list_tasks(&t, &Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(tasks[0].status, TaskStatus::Completed);
    let completions = e
        .events("acme")
        .await
        .iter()
        .filter(|ev| ev.kind.as_str() == "task.completed")
        .count();
    assert_eq!(completions, 1, "one completion for two deliveries");
}

#[tokio::test]
async fn the_scheduler_requeues_lost_work_and_fails_it_when_attempts_run_out() {
    let e = env_with(Settings {
        task_lease_secs: 1,
        max_attempts: 2,
        ..Settings::default()
    });
    let key = e.key("acme").await;
    let id = e.train(&key, 20).await;
    let t = TenantId::parse("acme").unwrap();
    e.lose_worker(&t, &id).await;
    let report = nomaly_lambda::scheduler::handle(e.services())
        .await
        .unwrap();
    assert_eq!(report["requeued"], 1, "{report}");
    assert_eq!(e.drain().await, 1);
    assert_eq!(
        e.services()
            .tasks
            .get_task(&t, &id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TaskStatus::Completed
    );

    let id = e.train(&key, 20).await;
    for _ in 0..2 {
        e.lose_worker(&t, &id).await;
        nomaly_lambda::scheduler::handle(e.services())
            .await
            .unwrap();
    }
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed, "{task:?}");
    assert!(task.error.unwrap().contains("stopped responding"));
    assert_eq!(e.count_events("acme", "task.failed").await, 1);
}

#[tokio::test]
async fn a_task_past_its_attempts_fails_instead_of_running_again() {
    let e = env_with(Settings {
        max_attempts: 1,
        ..Settings::default()
    });
    let key = e.key("acme").await;
    let id = e.train(&key, 20).await;
    let t = TenantId::parse("acme").unwrap();
    // One attempt already spent: a worker started it, then handed it back.
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    let started = task.transition(TaskStatus::Running).unwrap();
    e.services().tasks.update_task(&started).await.unwrap();
    let requeued = started.transition(TaskStatus::Queued).unwrap();
    e.services().tasks.update_task(&requeued).await.unwrap();
    assert_eq!(e.drain().await, 1, "the message is acknowledged");
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed, "{task:?}");
    assert!(task.error.unwrap().contains("gave up after 1 attempts"));
    assert_eq!(e.count_events("acme", "task.failed").await, 1);
}

/// Tenant `acme`'s training, heavy enough to outlast a short deadline (1,000 trees
/// scoring 60,000 rows: about 2 s on two cores), delivered once as its `receive_count`-th
/// delivery (the queue's own count when `None`) with 300 ms to run. Returns the stack,
/// the task, the delivery and what became of it.
async fn stopped_at_deadline(
    receive_count: Option<u32>,
) -> (
    crate::support::Env,
    nomaly_core::domain::Task,
    nomaly_core::ports::Delivery,
    nomaly_core::service::tasks::Handled,
) {
    let e = env();
    let key = e.key("acme").await;
    let (s, _, body) = e
        .post_models(
            &key,
            json!({"algorithm": "iforest", "params": {"n_estimators": 1000}, "rows": rows(60_000)}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let id = TaskId::parse(body["task"]["id"].as_str().unwrap()).unwrap();
    let mut delivery = e.stack.queue.receive(1, 30).await.unwrap().remove(0);
    if let Some(n) = receive_count {
        delivery.receive_count = n;
    }
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    let handled = nomaly_core::service::worker::Lane::Jobs
        .handle_within(e.services(), &delivery, Some(deadline))
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "it stopped at the deadline"
    );
    let t = TenantId::parse("acme").unwrap();
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    (e, task, delivery, handled)
}

/// A job still running at its delivery's deadline (on AWS, the function's timeout less a
/// margin) is stopped and handed back: the task is `queued` again for the next delivery
/// instead of `running` until its lease ends, the delivery is left to the queue, and the
/// next delivery, with time enough, completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_is_handed_back_for_the_next_delivery() {
    use nomaly_core::service::tasks::Handled;
    let overran = || nomaly_core::metrics::global().get(nomaly_core::metrics::Counter::JobsOverran);
    let before = overran();
    let (e, task, delivery, handled) = stopped_at_deadline(None).await;
    assert!(
        matches!(&handled, Handled::Retry(why) if why.contains("deadline")),
        "{handled:?}"
    );
    assert!(overran() > before, "the overrun is counted");
    assert_eq!(task.status, TaskStatus::Queued, "handed back: {task:?}");
    assert_eq!(task.attempts, 1, "the stopped delivery had started it");
    // The next delivery, with no deadline, trains the model.
    e.stack
        .queue
        .change_visibility(&delivery.receipt, 0)
        .await
        .unwrap();
    assert_eq!(e.drain().await, 1);
    let task = e
        .services()
        .tasks
        .get_task(&task.tenant, &task.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    assert_eq!(task.attempts, 2);
}

/// On the last delivery the queue makes, a job stopped at its deadline fails its task,
/// saying why, with one `task.failed`: nothing is left `running` for the scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_on_its_last_delivery_fails_saying_why() {
    let last = Settings::default().max_receives;
    let (e, task, _, handled) = stopped_at_deadline(Some(last)).await;
    assert!(
        matches!(handled, nomaly_core::service::tasks::Handled::Retry(_)),
        "{handled:?}"
    );
    assert_eq!(task.status, TaskStatus::Failed, "{task:?}");
    let error = task.error.unwrap_or_default();
    assert!(error.contains("ran past the worker's deadline"), "{error}");
    assert_eq!(e.count_events("acme", "task.failed").await, 1);
}

/// A message the worker function reaches after its invocation's deadline has passed is
/// not started: it is sent again as a new message (spending none of its receives) and
/// acknowledged, its task untouched; the new message runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_function_sends_again_what_its_deadline_leaves_unstarted() {
    let e = env();
    let key = e.key("acme").await;
    let id = e.train(&key, 20).await;
    let delivery = e.stack.queue.receive(1, 30).await.unwrap().remove(0);
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": "m1",
        "receiptHandle": delivery.receipt,
        "body": serde_json::to_string(&delivery.job).unwrap(),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs"
    }]}))
    .unwrap();
    let past = tokio::time::Instant::now();
    let response = nomaly_lambda::worker::handle_lane_within(
        e.services(),
        nomaly_core::service::worker::Lane::Jobs,
        event,
        Some(past),
    )
    .await;
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": []}),
        "acknowledged: it was sent again"
    );
    // Lambda deletes an acknowledged message.
    e.stack.queue.delete(&delivery.receipt).await.unwrap();
    let t = TenantId::parse("acme").unwrap();
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    assert_eq!(
        (task.status, task.attempts),
        (TaskStatus::Queued, 0),
        "not started"
    );
    let again = e.stack.queue.receive(1, 30).await.unwrap();
    assert_eq!(again.len(), 1, "sent again");
    assert_eq!(again[0].job.job_id, delivery.job.job_id);
    assert_eq!(again[0].receive_count, 1, "as a new message");
    e.stack
        .queue
        .change_visibility(&again[0].receipt, 0)
        .await
        .unwrap();
    assert_eq!(e.drain().await, 1);
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
}

/// The local server's restart: the jobs of the dead process are released at once, and a
/// task it left running is taken over without waiting out the lease, because the new
/// process knows no worker from before its start is alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_takes_over_tasks_left_running_at_once() {
    let mut e = env();
    let key = e.key("acme").await;
    let id = e.train(&key, 20).await;
    let t = TenantId::parse("acme").unwrap();
    // The dead process had received the job and started the task.
    let _in_flight = e.stack.queue.receive(1, 5400).await.unwrap();
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    e.services()
        .tasks
        .update_task(&task.transition(TaskStatus::Running).unwrap())
        .await
        .unwrap();
    assert_eq!(e.drain().await, 0, "the job is in flight");
    // Without knowing better, a fresh lease means another worker holds it.
    assert_eq!(e.stack.queue.release_in_flight().await.unwrap(), 1);
    let held = e.stack.queue.receive(1, 30).await.unwrap().remove(0);
    assert!(matches!(
        nomaly_core::service::worker::handle(e.services(), &held).await,
        nomaly_core::service::tasks::Handled::Retry(_)
    ));
    // The new process (started at least a millisecond after the task's last change):
    // nothing from before its start is alive.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    e.services.settings.orphaned_before = Some(nomaly_core::time::Timestamp::now());
    assert_eq!(e.stack.queue.release_in_flight().await.unwrap(), 1);
    assert_eq!(e.drain().await, 1);
    let task = e.services().tasks.get_task(&t, &id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    assert_eq!(task.attempts, 2);
}

#[tokio::test]
async fn each_tenant_is_held_to_its_request_rate() {
    let e = env_with(Settings {
        rate_limit: 5,
        rate_window_secs: 3600,
        ..Settings::default()
    });
    let (key, other) = (e.key("acme").await, e.key("other").await);
    // A connection opened while the allowance lasts (its `$connect` counts).
    let mut inbox = e.stack.notifier.open("c1");
    let connected = e.ws("$connect", "c1", json!({"api_key": key}), None).await;
    assert_eq!(connected["statusCode"], 200, "{connected}");
    // Fixed windows: two of them can meet inside this loop at most, so 11 calls see a 429.
    let mut limited = None;
    for _ in 0..11 {
        let (s, h, body) = e.request("GET", "/v1/tasks").key(&key).send().await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((h, body));
            break;
        }
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (h, body) = limited.expect("a 429 within 11 requests at 5 per window");
    assert_eq!(body["type"], "https://nomaly.dev/problems/rate-limited");
    assert_eq!(h["content-type"], "application/problem+json");
    let wait: u32 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    // The limit is per tenant, and covers `$connect` and WebSocket actions too.
    let (s, _, _) = e.request("GET", "/v1/tasks").key(&other).send().await;
    assert_eq!(s, StatusCode::OK, "another tenant is not limited");
    let refused = e.ws("$connect", "c2", json!({"api_key": key}), None).await;
    assert_eq!(refused["statusCode"], 429, "{refused}");
    let wait: u32 = refused["headers"]["retry-after"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    assert!(
        e.services()
            .connections
            .get_connection("c2")
            .await
            .unwrap()
            .is_none(),
        "a refused connection is not recorded"
    );
    let accepted = e
        .ws("$connect", "c3", json!({"api_key": other}), None)
        .await;
    assert_eq!(accepted["statusCode"], 200, "{accepted}");
    e.ws("$default", "c1", json!({}), Some(r#"{"action":"ping"}"#))
        .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["error"]["status"], 429, "{reply}");
    // Health is never limited.
    let (s, _, _) = e.request("GET", "/healthz").send().await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn connections_per_tenant_and_subscriptions_per_connection_are_capped() {
    use nomaly_core::domain::Connection;
    use nomaly_core::limits::{MAX_CONNECTIONS_PER_TENANT, MAX_SUBSCRIPTIONS_PER_CONNECTION};
    use nomaly_core::time::Timestamp;
    let e = env_with(Settings {
        rate_limit: 0,
        ..Settings::default()
    });
    let (key, other) = (e.key("acme").await, e.key("other").await);
    let acme = TenantId::parse("acme").unwrap();
    // The tenant's open connections, one short of the cap; an expired record does not count.
    for i in 0..MAX_CONNECTIONS_PER_TENANT {
        let expires_at = if i == 0 {
            Timestamp::now().plus_seconds(-60)
        } else {
            Timestamp::now().plus_seconds(3600)
        };
        let connection = Connection {
            id: format!("held{i}"),
            tenant: acme.clone(),
            key_id: None,
            subscriptions: Vec::new(),
            expires_at,
        };
        e.services()
            .connections
            .put_connection(&connection)
            .await
            .unwrap();
    }
    let mut inbox = e.stack.notifier.open("last");
    let last = e
        .ws("$connect", "last", json!({"api_key": key}), None)
        .await;
    assert_eq!(last["statusCode"], 200, "the cap's last connection: {last}");
    let refused = e
        .ws("$connect", "over", json!({"api_key": key}), None)
        .await;
    assert_eq!(refused["statusCode"], 429, "{refused}");
    assert!(
        refused["headers"]["retry-after"].as_str().is_some(),
        "{refused}"
    );
    assert!(
        refused["body"]
            .as_str()
            .unwrap_or("")
            .contains("Open WebSocket connections per tenant"),
        "the refusal names its limit: {refused}"
    );
    assert!(e
        .services()
        .connections
        .get_connection("over")
        .await
        .unwrap()
        .is_none());
    // Another tenant still connects.
    let theirs = e
        .ws("$connect", "theirs", json!({"api_key": other}), None)
        .await;
    assert_eq!(theirs["statusCode"], 200, "{theirs}");
    // A freed slot can be taken again.
    e.ws("$disconnect", "held1", json!({}), None).await;
    let again = e
        .ws("$connect", "again", json!({"api_key": key}), None)
        .await;
    assert_eq!(again["statusCode"], 200, "{again}");

    // Subscriptions: up to the cap, then a WebSocket error naming the limit.
    let subscribe =
        |channel: String| json!({"action": "subscribe", "channel": channel}).to_string();
    for _ in 0..MAX_SUBSCRIPTIONS_PER_CONNECTION {
        let body = subscribe(format!("task:{}", TaskId::new()));
        e.ws("$default", "last", json!({}), Some(&body)).await;
        let reply: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
        assert_eq!(reply["type"], "subscribed", "{reply}");
    }
    let body = subscribe(format!("task:{}", TaskId::new()));
    e.ws("$default", "last", json!({}), Some(&body)).await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["error"]["status"], 413, "{reply}");
    assert!(
        reply["error"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Subscriptions per WebSocket connection"),
        "{reply}"
    );
    let stored = e
        .services()
        .connections
        .get_connection("last")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.subscriptions.len(), MAX_SUBSCRIPTIONS_PER_CONNECTION);
    // Subscribing again to a channel it has is no new subscription; unsubscribing frees one.
    let first = stored.subscriptions[0].to_string();
    e.ws(
        "$default",
        "last",
        json!({}),
        Some(&subscribe(first.clone())),
    )
    .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
    assert_eq!(reply["type"], "subscribed", "{reply}");
    let unsubscribe = json!({"action": "unsubscribe", "channel": first}).to_string();
    e.ws("$default", "last", json!({}), Some(&unsubscribe))
        .await;
    let _ = inbox.recv().await.unwrap();
    e.ws(
        "$default",
        "last",
        json!({}),
        Some(&subscribe("tenant".to_string())),
    )
    .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.unwrap()).unwrap();
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

/// A push notifier that takes 20 ms a push and records how many ran at once; ids
/// starting with `gone` are gone.
#[derive(Default)]
struct SlowPushes {
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    pushed: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl nomaly_core::ports::PushNotifier for SlowPushes {
    async fn push(
        &self,
        connection_id: &str,
        _message: &[u8],
    ) -> Result<(), nomaly_core::ports::PushError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        if connection_id.starts_with("gone") {
            return Err(nomaly_core::ports::PushError::Gone(
                connection_id.to_string(),
            ));
        }
        self.pushed.fetch_add(1, SeqCst);
        Ok(())
    }
    async fn disconnect(&self, _connection_id: &str) -> Result<(), nomaly_core::ports::PushError> {
        Ok(())
    }
}

#[tokio::test]
async fn fan_out_pushes_concurrently_within_its_bound() {
    use nomaly_core::domain::{Channel, Connection};
    use nomaly_core::limits::FANOUT_CONCURRENCY;
    use nomaly_core::time::Timestamp;
    use std::sync::atomic::Ordering::SeqCst;
    let mut e = env();
    let probe = std::sync::Arc::new(SlowPushes::default());
    e.services.notifier = probe.clone();
    let acme = TenantId::parse("acme").unwrap();
    let (listening, gone) = (200, 10);
    for i in 0..listening + gone + 5 {
        let id = if i < listening {
            format!("live{i}")
        } else if i < listening + gone {
            format!("gone{i}")
        } else {
            format!("deaf{i}")
        };
        let subscriptions = if id.starts_with("deaf") {
            Vec::new()
        } else {
            vec![Channel::Tenant]
        };
        let connection = Connection {
            id,
            tenant: acme.clone(),
            key_id: None,
            subscriptions,
            expires_at: Timestamp::now().plus_seconds(3600),
        };
        e.services
            .connections
            .put_connection(&connection)
            .await
            .unwrap();
    }
    let event = Event::new(
        acme.clone(),
        EventType::TaskProgress,
        "corr",
        json!({"progress": 0.5}),
    );
    let started = std::time::Instant::now();
    let pushed = nomaly_core::service::fanout::push(&e.services, &event)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        (pushed.delivered, pushed.gone, pushed.failed),
        (listening, gone, 0)
    );
    assert_eq!(probe.pushed.load(SeqCst), listening);
    assert_eq!(
        probe.most.load(SeqCst),
        FANOUT_CONCURRENCY,
        "pushes run concurrently, never more than the bound at once"
    );
    // One by one, 210 pushes of 20 ms take 4.2 s.
    assert!(
        took < std::time::Duration::from_secs(2),
        "fan-out took {took:?}"
    );
    let left = e
        .services
        .connections
        .tenant_connections(&acme)
        .await
        .unwrap();
    assert!(
        left.iter().all(|c| !c.id.starts_with("gone")),
        "gone connections are forgotten"
    );
    assert_eq!(left.len(), listening + 5);
}

#[tokio::test]
async fn a_revoked_key_stops_its_websocket_at_once() {
    let e = env();
    let key = e.key("acme").await;
    let spare = e.key("acme").await;
    let mut revoked_inbox = e.listen("c1", &key).await;
    let mut spare_inbox = e.listen("c2", &spare).await;
    let tenant = TenantId::parse("acme").unwrap();
    let (id, _) = ApiKey::split(&key).unwrap();
    e.services().keys.revoke_key(&tenant, &id).await.unwrap();

    // The next event reaches the connection of the live key only; the other is closed.
    e.services()
        .events
        .publish(&tenant, "c", &progress_of(TaskId::new()))
        .await
        .unwrap();
    e.stream("acme", None).await;
    let got: Value = serde_json::from_slice(&spare_inbox.recv().await.unwrap()).unwrap();
    assert_eq!(got["type"], "task.progress");
    assert_eq!(revoked_inbox.recv().await, None, "closed without the event");
    assert!(e.stack.notifier.opened_at("c1").is_none());
    assert!(e
        .services()
        .connections
        .get_connection("c1")
        .await
        .unwrap()
        .is_none());

    // A socket whose key is revoked between events is refused on its next message.
    let mut late = e.stack.notifier.open("c3");
    e.ws("$connect", "c3", json!({"api_key": spare}), None)
        .await;
    let (spare_id, _) = ApiKey::split(&spare).unwrap();
    e.services()
        .keys
        .revoke_key(&tenant, &spare_id)
        .await
        .unwrap();
    e.ws("$default", "c3", json!({}), Some(r#"{"action":"ping"}"#))
        .await;
    let reply: Value = serde_json::from_slice(&late.recv().await.unwrap()).unwrap();
    assert_eq!(reply["error"]["status"], 401, "{reply}");
    assert_eq!(late.recv().await, None, "then closed");
    assert!(e
        .services()
        .connections
        .get_connection("c3")
        .await
        .unwrap()
        .is_none());
}

/// The scores of an answer.
fn scores_of(body: &Value) -> Vec<f64> {
    body["scores"]
        .as_array()
        .unwrap_or_else(|| panic!("no scores in {body}"))
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

#[tokio::test]
async fn stored_models_take_columns_by_name_on_every_path() {
    let e = env();
    let key = e.key("acme").await;
    // A z-score model on cpu, mem, disk: three columns of very different scales, so a
    // column taken for another changes every score.
    let train: Vec<Vec<f64>> = (0..60)
        .map(|i| {
            let f = i as f64;
            vec![
                50.0 + (f * 7.0) % 10.0,
                2000.0 + (f * 13.0) % 100.0,
                0.5 + (f * 3.0) % 5.0 * 0.01,
            ]
        })
        .collect();
    let (s, _, body) = e
        .post_models(
            &key,
            json!({"algorithm": "zscore", "rows": train, "columns": ["cpu", "mem", "disk"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let model = body["model_id"].as_str().expect("model id").to_string();
    assert_eq!(e.drain().await, 1);

    let rows = [[55.0, 2050.0, 0.52], [90.0, 2000.0, 0.9]];
    let detect = |body: Value| {
        let e = &e;
        let key = key.clone();
        async move {
            let (s, _, answer) = e.post_detect(&key, body).await;
            (s, answer)
        }
    };
    // In the model's order, named and unnamed.
    let (s, reference) =
        detect(json!({"model_id": model, "rows": rows, "columns": ["cpu", "mem", "disk"]})).await;
    assert_eq!(s, StatusCode::OK, "{reference}");
    let expected = scores_of(&reference);
    let (_, unnamed) = detect(json!({"model_id": model, "rows": rows})).await;
    assert_eq!(scores_of(&unnamed), expected);

    // Reordered with names, as JSON and as a CSV header with an id column besides.
    let reordered: Vec<[f64; 3]> = rows.iter().map(|r| [r[2], r[0], r[1]]).collect();
    let (s, by_name) =
        detect(json!({"model_id": model, "rows": reordered, "columns": ["disk", "cpu", "mem"]}))
            .await;
    assert_eq!(s, StatusCode::OK, "{by_name}");
    assert_eq!(scores_of(&by_name), expected, "columns are taken by name");
    let csv = format!(
        "id,disk,cpu,mem\n7,{},{},{}\n8,{},{},{}\n",
        rows[0][2], rows[0][0], rows[0][1], rows[1][2], rows[1][0], rows[1][1]
    );
    let (s, _, by_header) = e
        .request("POST", &format!("/v1/detect?model_id={model}"))
        .key(&key)
        .content_type("text/csv")
        .body(csv.into_bytes())
        .send()
        .await;
    assert_eq!(s, StatusCode::OK, "{by_header}");
    assert_eq!(scores_of(&by_header), expected);
    assert_eq!(by_header["ignored_columns"], json!(["id"]));

    // A column the model never saw in place of one it takes: 422 naming it, nothing stored.
    let events_before = e.events("acme").await.len();
    let (s, refused) =
        detect(json!({"model_id": model, "rows": reordered, "columns": ["net", "cpu", "mem"]}))
            .await;
    assert_eq!(s.as_u16(), 422, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap_or("").contains("`disk`"),
        "{refused}"
    );
    let (s, refused) = detect(json!({"model_id": model, "rows": [[1.0, 2.0]]})).await;
    assert_eq!(s.as_u16(), 422, "unnamed rows of another width: {refused}");
    assert_eq!(
        e.events("acme").await.len(),
        events_before,
        "a refusal stores nothing"
    );

    // The WebSocket `score` takes names the same way.
    let mut inbox = e.listen("c1", &key).await;
    let message = json!({"action": "score", "model_id": model, "rows": reordered, "columns": ["disk", "cpu", "mem"], "request_id": "r1"});
    e.ws("$default", "c1", json!({}), Some(&message.to_string()))
        .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.expect("reply")).expect("json");
    assert_eq!(reply["type"], "scores", "{reply}");
    assert_eq!(scores_of(&reply), expected);
    let message = json!({"action": "score", "model_id": model, "rows": reordered, "columns": ["net", "cpu", "mem"]});
    e.ws("$default", "c1", json!({}), Some(&message.to_string()))
        .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.expect("reply")).expect("json");
    assert_eq!(reply["error"]["status"], 422, "{reply}");

    // Reports too: a missing column is refused before any task exists.
    let (_, tasks_before) = e.get("/v1/tasks", &key).await;
    let (s, _, refused) = e
        .post_reports(
            &key,
            &model,
            json!({"rows": reordered, "columns": ["net", "cpu", "mem"]}),
        )
        .await;
    assert_eq!(s.as_u16(), 422, "{refused}");
    let (_, tasks_after) = e.get("/v1/tasks", &key).await;
    assert_eq!(
        tasks_before["items"], tasks_after["items"],
        "no task was made"
    );
    let (s, _, report) = e
        .post_reports(
            &key,
            &model,
            json!({"rows": reordered, "columns": ["disk", "cpu", "mem"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{report}");
    assert_eq!(e.drain().await, 1);
    let task = report["task"]["id"].as_str().expect("task");
    let (_, view) = e.get(&format!("/v1/tasks/{task}"), &key).await;
    assert_eq!(view["status"], "completed", "{view}");
}

/// A tenant with as many tasks running as it may gets no more started: its next job is
/// queued again for later (and its task stays `queued`), while another tenant's job runs
/// at once; once its running tasks finish, the held job runs.
#[tokio::test]
async fn a_tenant_at_its_running_cap_waits_while_others_run() {
    use nomaly_core::domain::{Task, TaskKind};
    let cap = nomaly_core::limits::MAX_RUNNING_JOBS_PER_TENANT;
    let e = env_with(Settings {
        deferred_job_delay_secs: 1,
        ..Default::default()
    });
    let (busy_key, other_key) = (e.key("busy").await, e.key("other").await);
    let busy = TenantId::parse("busy").unwrap();
    let tasks = &e.services().tasks;
    let mut running = Vec::new();
    for _ in 0..cap {
        let task = Task::new(busy.clone(), TaskKind::Train, "heavy");
        tasks.create_task(&task).await.unwrap();
        let started = task.transition(TaskStatus::Running).unwrap();
        tasks.update_task(&started).await.unwrap();
        running.push(started);
    }
    let deferred_before =
        nomaly_core::metrics::global().get(nomaly_core::metrics::Counter::JobsDeferred);
    let held = e.train(&busy_key, 20).await;
    let theirs = e.train(&other_key, 20).await;
    e.drain().await;
    let status = |tenant: &'static str, id: TaskId| {
        let services = e.services().clone();
        async move {
            services
                .tasks
                .get_task(&TenantId::parse(tenant).unwrap(), &id)
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    assert_eq!(
        status("other", theirs.clone()).await,
        TaskStatus::Completed,
        "another tenant's job runs at once"
    );
    assert_eq!(
        status("busy", held.clone()).await,
        TaskStatus::Queued,
        "a job past its tenant's {cap} running tasks does not start"
    );
    assert!(
        nomaly_core::metrics::global().get(nomaly_core::metrics::Counter::JobsDeferred)
            > deferred_before,
        "the deferral is counted"
    );
    // The job was acknowledged and sent again: nothing is visible until its delay passes.
    assert!(e.stack.queue.receive(10, 30).await.unwrap().is_empty());
    // Still at the cap when it comes back: held again.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    e.drain().await;
    assert_eq!(status("busy", held.clone()).await, TaskStatus::Queued);
    // One of the running tasks finishes: the held job starts on its next delivery.
    let done = running[0].transition(TaskStatus::Completed).unwrap();
    tasks.update_task(&done).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    e.drain().await;
    assert_eq!(status("busy", held).await, TaskStatus::Completed);
}
