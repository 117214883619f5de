//! The API contract against live answers: the checker every HTTP answer of the suite goes
//! through (`support/contract.rs`) refuses what the document does not allow, and a walk
//! calls every documented operation of a running server at least once.

use nomaly_tests::contract::{contract, socket_contract, Contract};
use nomaly_tests::server::{Api, Server, Socket};
use nomaly_tests::{repo_root, scratch, test_data};
use serde_json::{json, Value};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn a_task() -> Value {
    json!({
        "attempts": 0, "chunks": null, "correlation_id": "req_1",
        "created_at": "2026-12-05T00:00:00Z", "error": null,
        "id": "tsk_01JEXAMPLE0000000000000000", "kind": "train", "progress": 0,
        "result": null, "status": "queued", "updated_at": "2026-12-05T00:00:00Z"
    })
}

fn check(
    c: &Contract,
    method: &str,
    path: &str,
    status: u16,
    media: &str,
    body: &Value,
) -> Result<(), String> {
    c.check(
        method,
        path,
        status,
        Some(media),
        body.to_string().as_bytes(),
    )
}

#[test]
fn the_checker_refuses_what_the_document_does_not_allow() {
    let c = contract();
    let task = a_task();
    let path = "/v1/tasks/tsk_01JEXAMPLE0000000000000000";
    check(c, "GET", path, 200, "application/json", &task).expect("a task as documented");
    let mut no_id = task.clone();
    no_id.as_object_mut().expect("object").remove("id");
    let why = check(c, "GET", path, 200, "application/json", &no_id).expect_err("no id");
    assert!(why.contains("id"), "{why}");
    let mut wrong = task.clone();
    wrong["status"] = json!("sleeping");
    assert!(check(c, "GET", path, 200, "application/json", &wrong).is_err());
    assert!(
        check(c, "GET", path, 200, "text/html", &task).is_err(),
        "media type"
    );
    assert!(
        check(c, "GET", path, 302, "application/json", &task).is_err(),
        "status"
    );
    let problem = json!({"type": "https://nomaly.dev/problems/not-found", "title": "No such resource", "status": 404, "detail": "x"});
    check(c, "GET", path, 404, "application/problem+json", &problem).expect("a problem");
    assert!(check(c, "GET", path, 404, "application/json", &task).is_err());
    assert!(
        check(c, "PATCH", path, 200, "application/json", &task).is_err(),
        "no such operation"
    );
    check(
        c,
        "GET",
        "/v1/nowhere",
        404,
        "application/problem+json",
        &problem,
    )
    .expect("unrouted");
    assert!(
        c.check(
            "DELETE",
            "/v1/models/mdl_01JEXAMPLE0000000000000000",
            204,
            None,
            b"{}"
        )
        .is_err(),
        "204 has no body"
    );
}

/// The operations called through [`Api`] in `walk`, as `METHOD template`.
fn documented() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/openapi.json")).expect("document");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            out.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let dir = scratch("contract-walk");
    let server = Server::start(
        &dir.join("data"),
        &["--allow-loopback-webhooks"],
        &[("NOMALY_RATE_LIMIT", "0")],
    );
    let key = server.key("acme");
    let api = Api::new(&server, &key);
    let before = contract().checked();
    let mut called = Vec::new();
    let mut call = |method: &str, template: &str| called.push(format!("{method} {template}"));

    let (s, health) = api.call("GET", "/healthz", None).await;
    assert_eq!(s, 200, "{health}");
    call("GET", "/healthz");
    let (s, served) = api.raw("GET", "/openapi.json", None).await;
    assert_eq!(s, 200);
    let committed = std::fs::read(repo_root().join("docs/openapi.json")).expect("document");
    assert!(
        served == committed,
        "the served document is the committed one"
    );
    call("GET", "/openapi.json");

    let rows: Vec<Vec<f64>> = (0..60)
        .map(|i| vec![(i % 7) as f64, (i % 5) as f64 * 0.5])
        .chain([vec![40.0, -30.0]])
        .collect();
    let (s, scored) = api
        .call(
            "POST",
            "/v1/detect",
            Some(json!({"rows": rows, "algorithm": "ecod", "explain": true})),
        )
        .await;
    assert_eq!(s, 200, "{scored}");
    let (s, scored) = api
        .post_csv("/v1/detect?algorithm=hbos", "a,b\n1,2\n2,3\n3,1\n40,-30\n")
        .await;
    assert_eq!(s, 200, "{scored}");
    call("POST", "/v1/detect");

    let (task, accepted) = api
        .accepted(
            "/v1/models",
            json!({"algorithm": "iforest", "rows": rows, "columns": ["a", "b"]}),
        )
        .await;
    call("POST", "/v1/models");
    let model = accepted["model_id"].as_str().expect("model id").to_string();
    assert_eq!(api.wait_task(&task, LONG).await["status"], "completed");
    let (s, _) = api.call("GET", &format!("/v1/tasks/{task}"), None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/tasks/{id}");
    let (s, _) = api.call("GET", "/v1/tasks?limit=2", None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/tasks");
    let (s, finished) = api
        .call("POST", &format!("/v1/tasks/{task}/cancel"), None)
        .await;
    assert_eq!(s, 409, "a finished task: {finished}");
    call("POST", "/v1/tasks/{id}/cancel");
    let (s, _) = api.call("GET", "/v1/models", None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/models");
    let (s, _) = api.call("GET", &format!("/v1/models/{model}"), None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/models/{id}");
    let (s, _) = api
        .raw("GET", &format!("/v1/models/{model}/artifact"), None)
        .await;
    assert_eq!(s, 200);
    call("GET", "/v1/models/{id}/artifact");

    let (report, _) = api
        .accepted(
            &format!("/v1/models/{model}/reports"),
            json!({"rows": rows, "columns": ["a", "b"]}),
        )
        .await;
    call("POST", "/v1/models/{id}/reports");
    assert_eq!(api.wait_task(&report, LONG).await["status"], "completed");
    let (s, page) = api
        .call("GET", &format!("/v1/tasks/{report}/report"), None)
        .await;
    assert_eq!(s, 200, "{page}");
    call("GET", "/v1/tasks/{id}/report");

    let cardio = std::fs::read(test_data("tabular").join("cardio.csv")).expect("cardio");
    let (dataset, _) = api.upload("cardio.csv", cardio).await;
    call("POST", "/v1/datasets");
    let (s, _) = api.call("GET", "/v1/datasets", None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/datasets");
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let (s, d) = api
            .call("GET", &format!("/v1/datasets/{dataset}"), None)
            .await;
        assert_eq!(s, 200, "{d}");
        if d["status"] == "profiled" {
            break;
        }
        assert_ne!(d["status"], "rejected", "{d}");
        assert!(std::time::Instant::now() < deadline, "not profiled: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    call("GET", "/v1/datasets/{id}");
    let (s, trained) = api
        .call(
            "POST",
            "/v1/models",
            Some(json!({"algorithm": "hbos", "dataset_id": dataset, "exclude_columns": ["label"]})),
        )
        .await;
    assert_eq!(s, 202, "{trained}");
    let cardio_model = trained["model_id"].as_str().expect("model").to_string();
    let trained_task = trained["task"]["id"].as_str().expect("task").to_string();
    assert_eq!(
        api.wait_task(&trained_task, LONG).await["status"],
        "completed"
    );
    let (batch, _) = api
        .accepted(
            "/v1/batch",
            json!({"source": {"dataset_id": dataset}, "model_id": cardio_model, "output": "walk"}),
        )
        .await;
    call("POST", "/v1/batch");
    assert_eq!(api.wait_task(&batch, LONG).await["status"], "completed");
    let (s, manifest) = api
        .call("GET", &format!("/v1/tasks/{batch}/result"), None)
        .await;
    assert_eq!(s, 200, "{manifest}");
    call("GET", "/v1/tasks/{id}/result");

    let points: Vec<Value> = (0..50)
        .map(|i| json!({"timestamp": 1_700_000_000 + i * 60, "value": (i % 10) as f64}))
        .collect();
    let (backtest, _) = api
        .accepted(
            "/v1/backtests",
            json!({"points": points, "detector": "rolling_mean"}),
        )
        .await;
    call("POST", "/v1/backtests");
    assert_eq!(api.wait_task(&backtest, LONG).await["status"], "completed");
    let (s, _) = api
        .call("GET", &format!("/v1/tasks/{backtest}/result"), None)
        .await;
    assert_eq!(s, 200);

    let (s, stream) = api
        .call(
            "POST",
            "/v1/streams",
            Some(json!({"name": "walk", "detector": "rolling_median"})),
        )
        .await;
    assert_eq!(s, 201, "{stream}");
    call("POST", "/v1/streams");
    let id = stream["stream_id"].as_str().expect("stream id").to_string();
    let (s, appended) = api
        .call(
            "POST",
            &format!("/v1/streams/{id}/points"),
            Some(json!({"points": points})),
        )
        .await;
    assert_eq!(s, 200, "{appended}");
    let (s, appended) = api
        .post_csv(
            &format!("/v1/streams/{id}/points"),
            "timestamp,value\n1800000000,1\n1800000060,500\n",
        )
        .await;
    assert_eq!(s, 200, "{appended}");
    call("POST", "/v1/streams/{id}/points");
    let (s, _) = api.call("GET", "/v1/streams", None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/streams");
    let (s, _) = api.call("GET", &format!("/v1/streams/{id}"), None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/streams/{id}");
    let (s, verdict) = api
        .call(
            "POST",
            "/v1/feedback",
            Some(
                json!({"stream_id": id, "label": "true_positive", "from": 0, "to": 2_000_000_000}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{verdict}");
    assert_eq!(verdict["changed"], false, "{verdict}");
    // and a verdict on a dataset's row: a label for the next training
    let (s, label) = api
        .call(
            "POST",
            "/v1/feedback",
            Some(
                json!({"dataset_id": dataset, "row": 3, "model_id": cardio_model, "label": "false_positive"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{label}");
    assert_eq!(label["feedback"]["row"], 3, "{label}");
    call("POST", "/v1/feedback");
    let (s, verdicts) = api.call("GET", "/v1/feedback", None).await;
    assert_eq!(s, 200, "{verdicts}");
    call("GET", "/v1/feedback");

    // A stream split by entity, and its entities.
    let (s, split) = api
        .call(
            "POST",
            "/v1/streams",
            Some(json!({"name": "walk-hosts", "detector": "rolling_median", "entity": "host"})),
        )
        .await;
    assert_eq!(s, 201, "{split}");
    let split = split["stream_id"].as_str().expect("stream id").to_string();
    let host_points: Vec<Value> = (0..40)
        .map(|i| {
            json!({"timestamp": 1_700_000_000 + (i / 2) * 60, "value": (i % 7) as f64,
                   "host": if i % 2 == 0 { "web-1" } else { "web-2" }})
        })
        .collect();
    let (s, appended) = api
        .call(
            "POST",
            &format!("/v1/streams/{split}/points"),
            Some(json!({"points": host_points})),
        )
        .await;
    assert_eq!(s, 200, "{appended}");
    let (s, entities) = api
        .call(
            "GET",
            &format!("/v1/streams/{split}/entities?limit=1"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{entities}");
    assert_eq!(
        entities["items"].as_array().map(Vec::len),
        Some(1),
        "{entities}"
    );
    call("GET", "/v1/streams/{id}/entities");
    let (s, entity) = api
        .call("GET", &format!("/v1/streams/{split}/entities/web-2"), None)
        .await;
    assert_eq!(s, 200, "{entity}");
    assert_eq!(entity["points"], 20, "{entity}");
    call("GET", "/v1/streams/{id}/entities/{name}");
    let (s, _) = api
        .raw("DELETE", &format!("/v1/streams/{split}"), None)
        .await;
    assert_eq!(s, 204);

    // Alert rules: made, listed, read, changed, test-fired to a receiver here, their log
    // read, deleted.
    let receiver = nomaly_contract::webhook_receiver::Receiver::start(&[]).await;
    let rule_body = json!({
        "name": "walk",
        "match": {"events": ["anomaly.detected", "task.failed"], "min_score": 0.9},
        "destination": {"webhook": {"url": receiver.url}},
        "group_by": ["stream", "entity"]
    });
    let (s, rule) = api
        .call("POST", "/v1/alerts", Some(rule_body.clone()))
        .await;
    assert_eq!(s, 201, "{rule}");
    call("POST", "/v1/alerts");
    let rule = rule["id"].as_str().expect("rule id").to_string();
    let (s, _) = api.call("GET", "/v1/alerts", None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/alerts");
    let (s, _) = api.call("GET", &format!("/v1/alerts/{rule}"), None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/alerts/{id}");
    let mut changed = rule_body.clone();
    changed["cooldown"] = json!(60);
    let (s, _) = api
        .call("PUT", &format!("/v1/alerts/{rule}"), Some(changed))
        .await;
    assert_eq!(s, 200);
    call("PUT", "/v1/alerts/{id}");
    let (s, test) = api
        .call("POST", &format!("/v1/alerts/{rule}/test"), Some(json!({})))
        .await;
    assert_eq!(s, 202, "{test}");
    call("POST", "/v1/alerts/{id}/test");
    let delivery = test["id"].as_str().expect("delivery id").to_string();
    let until = std::time::Instant::now() + LONG;
    loop {
        let (s, one) = api
            .call(
                "GET",
                &format!("/v1/alerts/{rule}/deliveries/{delivery}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{one}");
        if one["status"] == "delivered" {
            break;
        }
        assert!(std::time::Instant::now() < until, "{one}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    call("GET", "/v1/alerts/{id}/deliveries/{delivery_id}");
    assert_eq!(receiver.requests().len(), 1);
    let (s, _) = api
        .call("GET", &format!("/v1/alerts/{rule}/deliveries"), None)
        .await;
    assert_eq!(s, 200);
    call("GET", "/v1/alerts/{id}/deliveries");
    let (s, _) = api.raw("DELETE", &format!("/v1/alerts/{rule}"), None).await;
    assert_eq!(s, 204);
    call("DELETE", "/v1/alerts/{id}");

    let (s, _) = api.call("GET", "/v1/events?limit=1000", None).await;
    assert_eq!(s, 200);
    call("GET", "/v1/events");

    // The WebSocket API: every message received is checked against docs/asyncapi.json.
    let socket_before = socket_contract().checked();
    let mut ws = Socket::connect(&server, &key).await;
    ws.subscribe("tenant").await;
    for (action, wanted) in [
        (json!({"action": "ping"}), json!("pong")),
        (
            json!({"action": "score", "model_id": model, "rows": [[1.0, 2.0], [40.0, -30.0]], "columns": ["a", "b"], "request_id": "r1"}),
            json!("scores"),
        ),
        (
            json!({"action": "score", "stream_id": id, "points": [{"timestamp": 1_900_000_000, "value": 3.0}], "request_id": "r2"}),
            json!("scores"),
        ),
        (json!({"action": "dance"}), json!("error")),
        (
            json!({"action": "unsubscribe", "channel": "tenant"}),
            json!("unsubscribed"),
        ),
    ] {
        ws.send(action.clone()).await;
        let reply = ws.until(LONG, |m| m["type"] == wanted).await;
        if wanted == "scores" {
            assert_eq!(reply["request_id"], action["request_id"], "{reply}");
        }
    }
    assert!(socket_contract().checked() - socket_before >= 6);

    // Errors answer as documented too.
    let (s, _) = api.call("GET", "/v1/nowhere", None).await;
    assert_eq!(s, 404);
    let (s, _) = api.call("PATCH", "/v1/models", None).await;
    assert_eq!(s, 405);
    let (s, _) = api
        .call("POST", "/v1/detect", Some(json!({"rows": []})))
        .await;
    assert!((400..500).contains(&s));

    for (method, path) in [
        ("DELETE", format!("/v1/streams/{id}")),
        ("DELETE", format!("/v1/models/{model}")),
        ("DELETE", format!("/v1/datasets/{dataset}")),
    ] {
        let (s, _) = api.raw(method, &path, None).await;
        assert_eq!(s, 204, "{method} {path}");
    }
    call("DELETE", "/v1/streams/{id}");
    call("DELETE", "/v1/models/{id}");
    call("DELETE", "/v1/datasets/{id}");

    let mut missed: Vec<String> = documented()
        .into_iter()
        .filter(|op| !called.contains(op))
        .collect();
    missed.sort();
    assert!(
        missed.is_empty(),
        "documented operations the walk did not call: {missed:?}"
    );
    // Every answer above went through the checker (the ones with a body were validated).
    assert!(
        contract().checked() - before >= 30,
        "checked {}",
        contract().checked() - before
    );
    server.kill();
}

#[test]
fn the_socket_checker_refuses_messages_the_document_does_not_describe() {
    let c = socket_contract();
    c.check(&json!({"type": "pong"})).expect("pong");
    c.check(&json!({"type": "subscribed", "channel": "tenant", "replayed": 0}))
        .expect("subscribed");
    let pushed = |payload: Value| {
        json!({
            "type": "task.completed", "event_id": "evt_01JEXAMPLE0000000000000000",
            "at": "2026-12-05T00:00:00Z", "correlation_id": "req_1", "payload": payload
        })
    };
    let done = json!({
        "task_id": "tsk_01M930KGMT45C3JACJ4JSFTY9Z", "kind": "profile",
        "dataset_id": "dst_01M930KGNPJT0M4F4K10RT7G1A", "status": "profiled"
    });
    c.check(&pushed(done.clone())).expect("an event");
    assert!(
        c.check(&pushed(
            json!({"task_id": "tsk_01M930KGMT45C3JACJ4JSFTY9Z"})
        ))
        .is_err(),
        "a payload of no event's shape"
    );
    let mut unfinished = done;
    unfinished["kind"] = json!("train");
    assert!(
        c.check(&pushed(unfinished)).is_err(),
        "a completed training without its model"
    );
    assert!(
        c.check(&json!({"type": "subscribed"})).is_err(),
        "no channel"
    );
    assert!(c.check(&json!({"type": "pang"})).is_err());
    assert!(c
        .check(&json!({"type": "task.exploded", "event_id": "evt_1", "at": "x", "correlation_id": "c", "payload": {}}))
        .is_err(), "an event type the service has not");
}
