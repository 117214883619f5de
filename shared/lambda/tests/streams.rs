//! Streams through the Lambda handlers on the embedded stack: `/v1/streams` through the
//! router, points as JSON, CSV and WebSocket `score` messages, `anomaly.detected` pushed
//! by the events handler to the stream's channel only, refusals that store nothing,
//! large state kept in the blob store behind the record's pointer, and faults: a write
//! whose answer was lost, values that would overflow, a detector too heavy, an event log
//! that is down.

use axum::http::StatusCode;
use nomaly_core::domain::{Event, EventType, Stream, StreamState, TenantId};
use nomaly_core::ids::StreamId;
use nomaly_core::ports::{EventLog, Page, PageRequest, StoreError, StoreResult, StreamStore};
use nomaly_core::service::Settings;
use serde_json::{json, Value};

use crate::support::{env, env_with, Env};

/// Five days of a daily cycle at five-minute steps (288 a day) from 2014-04-01, with a
/// spike at point 1300.
fn series() -> Vec<(i64, f64)> {
    (0..1440)
        .map(|i| {
            let t = 1_396_310_400 + 300 * i as i64;
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let wobble = ((i * 7919) % 13) as f64 * 0.05;
            let v = 50.0 + 20.0 * phase.sin() + wobble + if i == 1300 { 60.0 } else { 0.0 };
            (t, v)
        })
        .collect()
}

async fn create(e: &Env, key: &str, body: Value) -> String {
    let (s, headers, created) = e.post_streams(key, body).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["stream_id"]
        .as_str()
        .expect("stream id")
        .to_string();
    assert_eq!(headers["location"], format!("/v1/streams/{id}").as_str());
    assert_eq!(created["channel"], format!("stream:{id}"));
    id
}

async fn append_json(e: &Env, key: &str, id: &str, points: &[(i64, f64)]) -> Value {
    let points: Vec<Value> = points
        .iter()
        .map(|(t, v)| json!({"timestamp": t, "value": v}))
        .collect();
    let (s, _, body) = e.post_points(key, id, json!({ "points": points })).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

fn scores(body: &Value) -> Vec<f64> {
    body["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

#[tokio::test]
async fn a_seasonal_stream_finds_the_spike_alike_over_json_csv_and_the_socket() {
    let e = env();
    let key = e.key("acme").await;
    let data = series();
    let by_json = create(&e, &key, json!({"name": "cpu", "detector": "seasonal"})).await;
    let by_csv = create(&e, &key, json!({"name": "cpu (csv)", "columns": ["cpu"]})).await;
    let by_ws = create(&e, &key, json!({"name": "cpu (ws)"})).await;

    // A listener on the JSON stream's channel, and one on the CSV stream's.
    let mut inbox = e.stack.notifier.open("c1");
    e.ws("$connect", "c1", json!({"api_key": key}), None).await;
    let sub = format!(r#"{{"action":"subscribe","channel":"stream:{by_json}"}}"#);
    e.ws("$default", "c1", json!({}), Some(&sub)).await;
    let ack: Value = serde_json::from_slice(&inbox.recv().await.expect("ack")).expect("json");
    assert_eq!(ack["type"], "subscribed", "{ack}");
    let mut other_inbox = e.stack.notifier.open("c2");
    e.ws("$connect", "c2", json!({"api_key": key}), None).await;
    let sub = format!(r#"{{"action":"subscribe","channel":"stream:{by_csv}"}}"#);
    e.ws("$default", "c2", json!({}), Some(&sub)).await;
    let _ = other_inbox.recv().await;
    let before = e
        .events("acme")
        .await
        .last()
        .map(|ev| ev.event_id.to_string());

    // JSON in three requests, the first two with RFC 3339 and NAB-style timestamps.
    let mut json_scores = Vec::new();
    let mut anomalies = Vec::new();
    for (n, chunk) in data.chunks(480).enumerate() {
        let body = append_json(&e, &key, &by_json, chunk).await;
        assert_eq!(body["appended"], 480);
        assert_eq!(body["version"], 2 + n as u64);
        for a in body["anomalies"].as_array().expect("anomalies") {
            let index = n * 480 + a["index"].as_u64().expect("index") as usize;
            if index == 1300 {
                // The answer says what the cycle made of that moment: the spike less 60.
                let expected = a["expected"]["value"].as_f64().expect("expected value");
                assert!((expected - (data[1300].1 - 60.0)).abs() < 2.0, "{a}");
                assert!(a["raw_score"].as_f64().expect("raw") > 10.0, "{a}");
                assert_eq!(a["direction"]["value"], "above", "{a}");
            }
            anomalies.push(index);
        }
        json_scores.extend(scores(&body));
    }
    assert!(
        anomalies.contains(&1300),
        "the spike is found: {anomalies:?}"
    );
    assert!(
        anomalies.len() <= 3,
        "a clean daily cycle raises few alarms: {anomalies:?}"
    );

    // The same points as one CSV body give the same scores, bit for bit.
    let mut csv = String::from("timestamp,cpu\n");
    for (i, (t, v)) in data.iter().enumerate() {
        let when = if i % 2 == 0 {
            nomaly_core::time::Timestamp::from_millis(t * 1000).rfc3339()
        } else {
            t.to_string()
        };
        csv.push_str(&format!("{when},{v}\n"));
    }
    let (s, _, body) = e
        .request("POST", &format!("/v1/streams/{by_csv}/points"))
        .key(&key)
        .content_type("text/csv")
        .body(csv.into_bytes())
        .send()
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let csv_scores = scores(&body);
    assert_eq!(csv_scores.len(), json_scores.len());
    assert!(
        csv_scores
            .iter()
            .zip(&json_scores)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "CSV and JSON points score the same"
    );

    // And over the socket, 1000 points per message at most.
    let mut ws_scores = Vec::new();
    let (mut inbox3, mut sent) = (e.stack.notifier.open("c3"), 0);
    e.ws("$connect", "c3", json!({"api_key": key}), None).await;
    for chunk in data.chunks(720) {
        let points: Vec<Value> = chunk
            .iter()
            .map(|(t, v)| json!({"timestamp": t, "value": v}))
            .collect();
        sent += 1;
        let msg = json!({"action": "score", "stream_id": by_ws, "points": points, "request_id": format!("r{sent}")});
        e.ws("$default", "c3", json!({}), Some(&msg.to_string()))
            .await;
        let reply: Value =
            serde_json::from_slice(&inbox3.recv().await.expect("a reply")).expect("json");
        assert_eq!(reply["type"], "scores", "{reply}");
        assert_eq!(reply["request_id"], format!("r{sent}"));
        assert_eq!(reply["stream_id"], by_ws.as_str());
        ws_scores.extend(scores(&reply));
    }
    assert!(
        ws_scores
            .iter()
            .zip(&json_scores)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "socket points score the same"
    );

    let (s, view) = e.get(&format!("/v1/streams/{by_json}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(view["points"], 1440);
    assert_eq!(view["anomalies"], anomalies.len());
    assert_eq!(view["last_timestamp"], data[1439].0);
    assert_eq!(view["state_stored"], "inline");
    assert_eq!(view["detector"]["detector"], "seasonal");

    // The events handler pushes the JSON stream's anomalies to its channel only.
    e.stream("acme", before.as_deref()).await;
    let mut pushed = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), inbox.recv()).await
    {
        pushed.push(serde_json::from_slice::<Value>(&m).expect("json"));
    }
    assert!(!pushed.is_empty(), "the subscriber heard the anomalies");
    assert!(pushed
        .iter()
        .all(|m| m["type"] == "anomaly.detected" && m["payload"]["stream_id"] == by_json.as_str()));
    let spike = pushed
        .iter()
        .flat_map(|m| {
            m["payload"]["anomaly_points"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|p| p["timestamp"] == data[1300].0)
        .expect("the spike's event");
    assert_eq!(spike["values"], json!([data[1300].1]));
    let expected = spike["expected"]["value"]
        .as_f64()
        .expect("expected in the event");
    assert!((expected - (data[1300].1 - 60.0)).abs() < 2.0, "{spike}");
    let csv_pushes = std::iter::from_fn(|| other_inbox.try_recv().ok())
        .map(|m| serde_json::from_slice::<Value>(&m).expect("json"))
        .collect::<Vec<_>>();
    assert!(
        csv_pushes
            .iter()
            .all(|m| m["payload"]["stream_id"] == by_csv.as_str()),
        "the CSV stream's listener hears only its own stream: {csv_pushes:?}"
    );
    let stored = e
        .events("acme")
        .await
        .into_iter()
        .filter(|ev| ev.kind == EventType::AnomalyDetected)
        .count();
    assert!(stored >= 3, "one event per stream's anomalous request");

    let (s, list) = e.get("/v1/streams", &key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        list["items"][0]["stream_id"],
        by_ws.as_str(),
        "newest first"
    );
}

#[tokio::test]
async fn bad_points_and_other_tenants_are_refused_and_nothing_is_stored() {
    let e = env();
    let key = e.key("acme").await;
    let other = e.key("globex").await;
    let id = create(
        &e,
        &key,
        json!({"name": "pair", "detector": "rolling_median", "columns": ["a", "b"], "late": "reject"}),
    )
    .await;
    let first = e
        .post_points(
            &key,
            &id,
            json!({"points": [{"timestamp": "2026-01-01T00:00:10Z", "values": [1, 2]}]}),
        )
        .await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    let points = format!("/v1/streams/{id}/points");
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({"timestamp": i, "values": [1, 2]}))
        .collect();
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("earlier than the last point", &points, Some("application/json"),
         json!({"points": [{"timestamp": "2026-01-01T00:00:11Z", "values": [1, 2]}, {"timestamp": "2026-01-01T00:00:09Z", "values": [1, 2]}]}).to_string().into_bytes(),
         StatusCode::UNPROCESSABLE_ENTITY, "point 1"),
        ("wrong width", &points, Some("application/json"),
         json!({"points": [{"timestamp": 20, "value": 1}]}).to_string().into_bytes(),
         StatusCode::UNPROCESSABLE_ENTITY, "point 0"),
        ("no timestamp", &points, Some("application/json"),
         json!({"points": [{"values": [1, 2]}]}).to_string().into_bytes(),
         StatusCode::BAD_REQUEST, "timestamp"),
        ("unreadable timestamp", &points, Some("application/json"),
         json!({"points": [{"timestamp": "tomorrow", "values": [1, 2]}]}).to_string().into_bytes(),
         StatusCode::UNPROCESSABLE_ENTITY, "`timestamp` must be"),
        ("no points", &points, Some("application/json"),
         json!({"points": []}).to_string().into_bytes(),
         StatusCode::UNPROCESSABLE_ENTITY, "no points"),
        ("too many points", &points, Some("application/json"),
         json!({ "points": many }).to_string().into_bytes(),
         StatusCode::PAYLOAD_TOO_LARGE, "at most 10000"),
        ("unknown field", &points, Some("application/json"),
         json!({"points": [{"timestamp": 1, "values": [1, 2], "label": 1}]}).to_string().into_bytes(),
         StatusCode::UNPROCESSABLE_ENTITY, "unknown field `label`: this stream is not split by entity"),
        ("two unknown fields", &points, Some("application/json"),
         json!({"points": [{"timestamp": 1, "values": [1, 2], "host": "a", "label": 1}]}).to_string().into_bytes(),
         StatusCode::UNPROCESSABLE_ENTITY, "unknown fields `host` and `label`"),
        ("not JSON", &points, Some("application/json"), b"{".to_vec(),
         StatusCode::BAD_REQUEST, "not valid JSON"),
        ("CSV without timestamps", &points, Some("text/csv"), b"a,b\n1,2\n".to_vec(),
         StatusCode::UNPROCESSABLE_ENTITY, "timestamp"),
        ("CSV with text", &points, Some("text/csv"), b"timestamp,a,b\n30,1,x\n".to_vec(),
         StatusCode::UNPROCESSABLE_ENTITY, "column `b`"),
        ("CSV missing a column", &points, Some("text/csv"), b"timestamp,a\n30,1\n".to_vec(),
         StatusCode::UNPROCESSABLE_ENTITY, "no `b` column"),
        ("plain text", &points, Some("text/plain"), b"1".to_vec(),
         StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json or text/csv"),
    ];
    for (what, path, ct, body, status, needle) in cases {
        let (s, _, answer) = e
            .request("POST", path)
            .key(&key)
            .maybe_content_type(ct)
            .body(body)
            .send()
            .await;
        assert_eq!(s, status, "{what}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap_or("").contains(needle),
            "{what}: {answer}"
        );
    }
    let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(
        (view["points"].as_u64(), view["version"].as_u64()),
        (Some(1), Some(2)),
        "refused requests stored nothing: {view}"
    );

    // Another tenant: 404 for every route, and its listing is empty.
    for (method, path) in [
        ("GET", format!("/v1/streams/{id}")),
        ("DELETE", format!("/v1/streams/{id}")),
        ("POST", points.clone()),
    ] {
        let (s, _, body) = e
            .request(method, &path)
            .key(&other)
            .content_type("application/json")
            .body(
                json!({"points": [{"timestamp": 99, "values": [1, 2]}]})
                    .to_string()
                    .into_bytes(),
            )
            .send()
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (_, list) = e.get("/v1/streams", &other).await;
    assert_eq!(list["items"], json!([]));
    // Nor can it subscribe its socket to the stream's events... it may subscribe, but
    // events are only ever pushed to connections of the event's tenant (Connection::wants).
    let (s, _, _) = e.request("GET", "/v1/streams").send().await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = e.get("/v1/streams/stm_nope", &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Creation refusals.
    for bad in [
        json!({"name": "x", "detector": "prophet"}),
        json!({"name": "x", "detector": "seasonal", "columns": ["a", "b"]}),
        json!({"name": "x", "detector": "half_space_trees", "params": {"n_trees": 0}}),
        json!({"name": "x", "threshold": "high"}),
        json!({"detector": "seasonal"}),
    ] {
        let (s, _, body) = e.post_streams(&key, bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // The socket refuses a score message naming both a model and a stream.
    let mut inbox = e.stack.notifier.open("c1");
    e.ws("$connect", "c1", json!({"api_key": key}), None).await;
    let msg =
        json!({"action": "score", "stream_id": id, "model_id": "mdl_x", "points": [], "rows": []});
    e.ws("$default", "c1", json!({}), Some(&msg.to_string()))
        .await;
    let reply: Value = serde_json::from_slice(&inbox.recv().await.expect("reply")).expect("json");
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["error"]["status"], 400);

    let (s, _, _) = e
        .request("DELETE", &format!("/v1/streams/{id}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_late_point_is_dropped_or_clamped_and_its_neighbours_are_stored() {
    let e = env();
    let key = e.key("acme").await;
    let at = |i: i64| 1_700_000_000 + 60 * i;
    let mut answers = Vec::new();
    for policy in [None, Some("drop"), Some("clamp")] {
        let mut body = json!({"name": "late", "detector": "rolling_mean"});
        if let Some(p) = policy {
            body["late"] = json!(p);
        }
        let id = create(&e, &key, body).await;
        append_json(&e, &key, &id, &[(at(0), 1.0), (at(1), 2.0)]).await;
        // One point before the stream's last, one inside the request out of order, and
        // the request's first point again.
        let sent = [
            (at(0), 5.0),
            (at(2), 3.0),
            (at(2), 3.0),
            (at(4), 4.0),
            (at(3), 6.0),
            (at(5), 7.0),
        ];
        let answer = append_json(&e, &key, &id, &sent).await;
        let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
        answers.push((policy, answer, view));
    }
    for (policy, answer, view) in &answers {
        let refused: Vec<(u64, &str, &str)> = answer["refused"]
            .as_array()
            .expect("refused")
            .iter()
            .map(|r| {
                (
                    r["index"].as_u64().unwrap_or(99),
                    r["reason"].as_str().unwrap_or(""),
                    r["action"].as_str().unwrap_or(""),
                )
            })
            .collect();
        let scored: Vec<bool> = answer["scores"]
            .as_array()
            .expect("scores")
            .iter()
            .map(Value::is_number)
            .collect();
        // What each policy should make of the six points: `drop` is the default.
        let clamp = *policy == Some("clamp");
        let late = if clamp { "clamped" } else { "dropped" };
        let expected_refused = [
            (0, "late", late),
            (2, "duplicate", "dropped"),
            (4, "late", late),
        ];
        let expected_scored = [clamp, true, false, true, clamp, true];
        let (dropped, clamped) = if clamp { (1, 2) } else { (3, 0) };
        assert_eq!(refused, expected_refused, "{policy:?}: {answer}");
        assert_eq!(scored, expected_scored, "{policy:?}: {answer}");
        assert_eq!(
            (answer["dropped"].as_u64(), answer["clamped"].as_u64()),
            (Some(dropped), Some(clamped)),
            "{answer}"
        );
        assert_eq!(answer["appended"], 6 - dropped, "{answer}");
        assert_eq!(
            view["points"],
            2 + 6 - dropped,
            "the others are stored: {view}"
        );
        assert_eq!(view["version"], 3, "one write: {view}");
        if clamp {
            assert_eq!(answer["refused"][0]["learned_at"], at(1), "{answer}");
        }
        assert_eq!(view["last_timestamp"], at(5), "{view}");
        assert_eq!(view["late"], policy.unwrap_or("drop"), "{view}");
    }

    // A request of nothing but points already learned stores nothing and says so.
    let id = create(
        &e,
        &key,
        json!({"name": "again", "detector": "rolling_mean"}),
    )
    .await;
    let first = append_json(&e, &key, &id, &[(at(0), 1.0), (at(1), 2.0)]).await;
    let again = append_json(&e, &key, &id, &[(at(0), 1.0), (at(1), 2.0)]).await;
    assert_eq!(again["version"], first["version"], "{again}");
    assert_eq!(
        (again["appended"].as_u64(), again["dropped"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(again["refused"][1]["reason"], "duplicate", "{again}");

    // An unknown policy is a clear 400 naming the policies there are.
    let (s, _, body) = e
        .post_streams(&key, json!({"name": "x", "late": "sometimes"}))
        .await;
    assert!(s.is_client_error(), "{s} {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("`reject`, `drop`, `clamp`"),
        "{body}"
    );
}

#[tokio::test]
async fn gaps_are_found_on_the_interval_and_filled_as_the_stream_says() {
    let e = env();
    let key = e.key("acme").await;
    let at = |i: i64| 1_700_000_000 + 300 * i;
    // Points 3 and 4 are missing, and point 7 after them.
    let sent: Vec<(i64, f64)> = [0, 1, 2, 5, 6, 8]
        .iter()
        .map(|i| (at(*i), *i as f64))
        .collect();
    for (gaps, filled) in [(None, 0), (Some("previous"), 3), (Some("linear"), 3)] {
        let mut body = json!({"name": "gappy", "detector": "rolling_mean"});
        if let Some(g) = gaps {
            body["gaps"] = json!(g);
        }
        let id = create(&e, &key, body).await;
        let answer = append_json(&e, &key, &id, &sent).await;
        assert_eq!(answer["interval"], 300, "inferred from the steps: {answer}");
        assert_eq!(
            (
                answer["gaps"]["found"].as_u64(),
                answer["gaps"]["missing"].as_u64(),
                answer["gaps"]["filled"].as_u64()
            ),
            (Some(2), Some(3), Some(filled)),
            "{gaps:?}: {answer}"
        );
        assert_eq!(
            scores(&answer).len(),
            sent.len(),
            "a score per point sent, none for a filled one"
        );
        let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
        assert_eq!(
            (view["interval"].as_i64(), view["points"].as_u64()),
            (Some(300), Some(6)),
            "{view}"
        );
        assert_eq!(view["gaps"], gaps.unwrap_or("skip"), "{view}");
    }
    // A given interval is kept; a nonsense one is refused.
    let id = create(
        &e,
        &key,
        json!({"name": "hourly", "interval": 3600, "gaps": "previous"}),
    )
    .await;
    let answer = append_json(&e, &key, &id, &[(at(0), 1.0), (at(12), 2.0), (at(24), 3.0)]).await;
    assert_eq!(
        (
            answer["interval"].as_i64(),
            answer["gaps"]["found"].as_u64()
        ),
        (Some(3600), Some(0)),
        "{answer}"
    );
    let (s, _, body) = e
        .post_streams(&key, json!({"name": "x", "interval": 0}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("`interval`"),
        "{body}"
    );
}

#[tokio::test]
async fn large_state_lives_in_the_blob_store_behind_the_record() {
    let e = env_with(Settings {
        stream_inline_state_bytes: 4096,
        ..Default::default()
    });
    let key = e.key("acme").await;
    let id = create(
        &e,
        &key,
        json!({"name": "machine", "detector": "half_space_trees", "columns": ["a", "b", "c"],
               "params": {"n_trees": 10, "height": 8, "window_size": 50}}),
    )
    .await;
    let points: Vec<Value> = (0..300)
        .map(|i| json!({"timestamp": i, "values": [(i % 10) as f64, (i % 7) as f64, if i == 250 { 90.0 } else { 1.0 }]}))
        .collect();
    let (s, _, body) = e.post_points(&key, &id, json!({ "points": points })).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(view["state_stored"], "blob", "{view}");
    let folder = e.dir.join("blobs/tenants/acme/streams").join(&id);
    let files = || std::fs::read_dir(&folder).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        files(),
        1,
        "one state object: the previous version's was deleted"
    );
    let size = std::fs::read_dir(&folder)
        .expect("the folder")
        .filter_map(Result::ok)
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum::<u64>();
    assert!(
        size > 4096,
        "the state is larger than the inline limit ({size} bytes)"
    );
    // Half-Space Trees' own (raw) score puts the point far outside above every other
    // point since its trees were built; 250 points of history are too few for the common
    // scale to call it one in 100,000.
    let raw: Vec<f64> = body["raw_scores"]
        .as_array()
        .expect("raw scores")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let top = (50..raw.len())
        .max_by(|&a, &b| raw[a].total_cmp(&raw[b]))
        .expect("points");
    assert_eq!(
        top, 250,
        "HST scores the point far outside highest: {raw:?}"
    );
    let (s, _, _) = e
        .request("DELETE", &format!("/v1/streams/{id}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(files(), 0, "deleting the stream deletes its state object");
}

/// A stream store whose `update_stream` stores the write and then answers as if it had
/// not: a conflict (what DynamoDB answers the SDK's retry of a write whose first answer
/// was lost) or a backend error (a timeout after the write landed).
struct LandsThenFails {
    inner: std::sync::Arc<dyn StreamStore>,
    conflict: bool,
    times: std::sync::Mutex<u32>,
}

#[async_trait::async_trait]
impl StreamStore for LandsThenFails {
    async fn create_stream(&self, s: &Stream, st: &StreamState) -> StoreResult<()> {
        self.inner.create_stream(s, st).await
    }
    async fn get_stream(
        &self,
        t: &TenantId,
        id: &StreamId,
    ) -> StoreResult<Option<(Stream, StreamState)>> {
        self.inner.get_stream(t, id).await
    }
    async fn list_streams(&self, t: &TenantId, p: &PageRequest) -> StoreResult<Page<Stream>> {
        self.inner.list_streams(t, p).await
    }
    async fn update_stream(&self, s: &Stream, st: &StreamState) -> StoreResult<()> {
        self.inner.update_stream(s, st).await?;
        let mut left = self.times.lock().expect("lock");
        if *left == 0 {
            return Ok(());
        }
        *left -= 1;
        Err(if self.conflict {
            StoreError::Conflict(s.id.to_string())
        } else {
            StoreError::backend("injected", std::io::Error::other("timed out (injected)"))
        })
    }
    async fn delete_stream(&self, t: &TenantId, id: &StreamId, v: u64) -> StoreResult<()> {
        self.inner.delete_stream(t, id, v).await
    }
    async fn get_entities(
        &self,
        t: &TenantId,
        id: &StreamId,
        names: &[String],
    ) -> StoreResult<nomaly_core::ports::EntitiesRead> {
        self.inner.get_entities(t, id, names).await
    }
    async fn put_entities(
        &self,
        t: &TenantId,
        id: &StreamId,
        writes: &[(nomaly_core::domain::StreamEntity, Vec<u8>)],
        max: u64,
    ) -> StoreResult<Vec<nomaly_core::domain::EntityWritten>> {
        self.inner.put_entities(t, id, writes, max).await
    }
    async fn idle_entities(
        &self,
        t: &TenantId,
        id: &StreamId,
        before: nomaly_core::time::Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<(String, u64)>> {
        self.inner.idle_entities(t, id, before, limit).await
    }
    async fn evict_entities(
        &self,
        t: &TenantId,
        id: &StreamId,
        which: &[(String, u64)],
    ) -> StoreResult<Vec<String>> {
        self.inner.evict_entities(t, id, which).await
    }
    async fn list_entities(
        &self,
        t: &TenantId,
        id: &StreamId,
        p: &PageRequest,
    ) -> StoreResult<Page<nomaly_core::domain::StreamEntity>> {
        self.inner.list_entities(t, id, p).await
    }
    async fn delete_entities(&self, t: &TenantId, id: &StreamId) -> StoreResult<()> {
        self.inner.delete_entities(t, id).await
    }
}

/// An event log that cannot store events.
struct NoEvents;

#[async_trait::async_trait]
impl EventLog for NoEvents {
    async fn append(&self, _: &Event) -> StoreResult<()> {
        Err(StoreError::backend(
            "injected",
            std::io::Error::other("events table down (injected)"),
        ))
    }
    async fn append_with_task(&self, _: &Event, _: &nomaly_core::domain::Task) -> StoreResult<()> {
        Err(StoreError::backend(
            "injected",
            std::io::Error::other("events table down (injected)"),
        ))
    }
    async fn events_after(
        &self,
        _: &TenantId,
        _: Option<&nomaly_core::ids::EventId>,
        _: usize,
    ) -> StoreResult<Page<Event>> {
        Ok(Page {
            items: vec![],
            next_token: None,
        })
    }
}

fn hst_points(from: i64, n: i64) -> Value {
    let points: Vec<Value> = (from..from + n)
        .map(|i| json!({"timestamp": i, "values": [(i % 10) as f64, (i % 7) as f64, 1.0]}))
        .collect();
    json!({ "points": points })
}

/// A Half-Space-Trees stream of 3 columns with `trees` trees, its state in the blob
/// store past `inline` bytes, that has learned `points` points: the env, the key and the
/// stream's id.
async fn blob_stream(inline: usize, trees: usize, points: i64) -> (Env, String, String) {
    let e = env_with(Settings {
        stream_inline_state_bytes: inline,
        ..Default::default()
    });
    let key = e.key("acme").await;
    let id = create(
        &e,
        &key,
        json!({"name": "m", "detector": "half_space_trees", "columns": ["a", "b", "c"],
               "params": {"n_trees": trees, "height": 8, "window_size": 50}}),
    )
    .await;
    let (s, _, _) = e.post_points(&key, &id, hst_points(0, points)).await;
    assert_eq!(s, StatusCode::OK);
    (e, key, id)
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_counts_once_and_keeps_its_state() {
    for conflict in [true, false] {
        let (mut e, key, id) = blob_stream(4096, 10, 100).await;
        e.services.streams = std::sync::Arc::new(LandsThenFails {
            inner: e.stack.services.streams.clone(),
            conflict,
            times: std::sync::Mutex::new(1),
        });
        let (s, _, body) = e.post_points(&key, &id, hst_points(100, 100)).await;
        assert_eq!(s, StatusCode::OK, "conflict {conflict}: {body}");
        assert_eq!(body["version"], 3, "one write, not two: {body}");
        assert_eq!(body["points"], 200);
        // The state the stored record points at is still there: the next append works.
        let (s, _, body) = e.post_points(&key, &id, hst_points(200, 100)).await;
        assert_eq!(s, StatusCode::OK, "conflict {conflict}: {body}");
        assert_eq!(body["points"], 300);
        let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
        assert_eq!(
            (view["version"].as_u64(), view["state_stored"].as_str()),
            (Some(4), Some("blob"))
        );
        let folder = e.dir.join("blobs/tenants/acme/streams").join(&id);
        assert_eq!(
            std::fs::read_dir(&folder).map(|d| d.count()).unwrap_or(0),
            1
        );
    }
}

#[tokio::test]
async fn overflowing_values_heavy_detectors_and_a_lost_event_are_handled() {
    let mut e = env();
    let key = e.key("acme").await;
    let id = create(
        &e,
        &key,
        json!({"name": "s", "detector": "rolling_mean", "params": {"window": 10}}),
    )
    .await;
    let ok: Vec<Value> = (0..20)
        .map(|i| json!({"timestamp": i, "value": (i % 3) as f64}))
        .collect();
    let (s, _, _) = e.post_points(&key, &id, json!({ "points": ok })).await;
    assert_eq!(s, StatusCode::OK);
    // Finite, but so large the detector's sums would overflow: refused, nothing stored.
    let huge = json!({"points": [{"timestamp": 30, "value": 1.7e308}]});
    let (s, _, body) = e.post_points(&key, &id, huge).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("1e100"),
        "{body}"
    );
    let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(view["points"], 20);
    let (s, _, body) = e
        .post_points(
            &key,
            &id,
            json!({"points": [{"timestamp": 31, "value": 1.0}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "the stream still works: {body}");

    // A detector whose state would be too large is refused at creation.
    let (s, _, body) = e
        .post_streams(&key,
              json!({"name": "big", "detector": "half_space_trees", "params": {"n_trees": 200, "height": 14}}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("numbers per stream"),
        "{body}"
    );
    // A slow one takes fewer points per request.
    let slow = create(
        &e,
        &key,
        json!({"name": "slow", "detector": "rolling_median", "params": {"window": 100000}}),
    )
    .await;
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({"timestamp": i, "value": 1.0}))
        .collect();
    let (s, _, body) = e.post_points(&key, &slow, json!({ "points": many })).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("at most 250 points"),
        "{body}"
    );

    // The events table is down: the points are stored and the anomaly is answered.
    e.services.events = std::sync::Arc::new(NoEvents);
    let (s, _, body) = e
        .post_points(
            &key,
            &id,
            json!({"points": [{"timestamp": 40, "value": 500.0}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["anomalies"][0]["index"], 0, "{body}");
    assert_eq!(body["event_id"], Value::Null);
    let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(view["points"], 22);
}

/// Blobs that answer a read of a missing object with an error, as S3 does (403) for a
/// role without `s3:ListBucket`; and, on the first read of a stream's state, let another
/// writer append to the stream first, which replaces (and deletes) the object being read.
struct ReplacedWhileRead {
    inner: std::sync::Arc<dyn nomaly_core::ports::BlobStore>,
    other: std::sync::OnceLock<(nomaly_core::service::Services, TenantId, StreamId)>,
    fired: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl nomaly_core::ports::BlobStore for ReplacedWhileRead {
    async fn put_blob(&self, k: &nomaly_core::ports::BlobKey, b: Vec<u8>) -> StoreResult<()> {
        self.inner.put_blob(k, b).await
    }
    async fn get_blob(&self, k: &nomaly_core::ports::BlobKey) -> StoreResult<Option<Vec<u8>>> {
        if let Some((services, tenant, id)) = self.other.get() {
            if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let point = nomaly_core::service::streams::Point::new(5000, vec![1.0, 2.0, 3.0]);
                nomaly_core::service::streams::append(services, tenant, "other", id, vec![point])
                    .await
                    .expect("the other writer appends");
            }
        }
        match self.inner.get_blob(k).await? {
            Some(b) => Ok(Some(b)),
            None => Err(StoreError::backend(
                "injected",
                std::io::Error::other("AccessDenied (injected)"),
            )),
        }
    }
    async fn delete_blob(&self, k: &nomaly_core::ports::BlobKey) -> StoreResult<()> {
        self.inner.delete_blob(k).await
    }
    async fn blob_size(&self, k: &nomaly_core::ports::BlobKey) -> StoreResult<Option<u64>> {
        self.inner.blob_size(k).await
    }
    async fn get_blob_range(
        &self,
        k: &nomaly_core::ports::BlobKey,
        start: u64,
        end: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_blob_range(k, start, end).await
    }
}

#[tokio::test]
async fn a_state_replaced_while_read_is_read_again_even_when_its_absence_is_an_error() {
    let (mut e, key, id) = blob_stream(1024, 5, 50).await;
    let blobs = std::sync::Arc::new(ReplacedWhileRead {
        inner: e.stack.services.blobs.clone(),
        other: std::sync::OnceLock::new(),
        fired: std::sync::atomic::AtomicBool::new(false),
    });
    let stream_id = StreamId::parse(&id).expect("id");
    let _ = blobs.other.set((
        e.stack.services.clone(),
        TenantId::parse("acme").expect("tenant"),
        stream_id,
    ));
    e.services.blobs = blobs.clone();
    // The object this append reads is replaced by another writer while it reads it.
    let (s, _, body) = e.post_points(&key, &id, hst_points(6000, 10)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(blobs.fired.load(std::sync::atomic::Ordering::SeqCst));
    let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(
        (view["points"].as_u64(), view["version"].as_u64()),
        (Some(61), Some(4)),
        "both writers' points are stored: {view}"
    );
}

/// Submits a backtest; it must answer 202. Returns the task id.
async fn backtest(e: &Env, key: &str, body: Value) -> String {
    let (s, headers, answer) = e.post_backtests(key, body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{answer}");
    let id = answer["task"]["id"].as_str().expect("task id").to_string();
    assert_eq!(answer["task"]["kind"], "backtest");
    assert_eq!(headers["location"], format!("/v1/tasks/{id}").as_str());
    id
}

fn json_points(points: &[(i64, f64)]) -> Vec<Value> {
    points
        .iter()
        .map(|(t, v)| json!({"timestamp": t, "value": v}))
        .collect()
}

#[tokio::test]
async fn a_backtest_scores_a_history_as_a_stream_does_and_a_stream_starts_where_it_ended() {
    let e = env();
    let key = e.key("acme").await;
    let data = series();
    // The reference: a live stream fed the whole series.
    let live = create(&e, &key, json!({"name": "cpu"})).await;
    let mut live_scores = Vec::new();
    for chunk in data.chunks(480) {
        live_scores.extend(scores(&append_json(&e, &key, &live, chunk).await));
    }

    // One labelled window around the spike at point 1300, given as times.
    let window = json!({"start": data[1295].0, "end": data[1310].0});
    let task = backtest(
        &e,
        &key,
        json!({"points": json_points(&data), "windows": [window]}),
    )
    .await;
    assert_eq!(e.drain().await, 1);
    let (s, view) = e.get(&format!("/v1/tasks/{task}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(view["status"], "completed", "{view}");
    let (s, result) = e.get(&format!("/v1/tasks/{task}/result"), &key).await;
    assert_eq!(s, StatusCode::OK, "{result}");
    assert_eq!(result["points"], 1440);
    // Point by point what the stream said.
    assert_eq!(scores(&result), live_scores);
    assert_eq!(result["raw_scores"].as_array().map(Vec::len), Some(1440));
    let threshold = result["threshold"].as_f64().expect("threshold");
    let flagged = live_scores.iter().filter(|&&s| s >= threshold).count();
    assert_eq!(result["anomaly_count"], flagged);
    let eval = &result["evaluation"];
    assert_eq!(eval["windows"], 1, "{eval}");
    assert_eq!(eval["windows_found"], 1, "{eval}");
    assert_eq!(eval["recall"], 1.0);
    assert_eq!(result["windows"], json!([[data[1295].0, data[1310].0]]));
    // Probation as NAB: 15 % of 1440 rows.
    assert_eq!(result["probation_points"], 216);
    let fp = eval["false_positives"].as_u64().expect("fp") as usize;
    let in_window = eval["flagged_in_windows"].as_u64().expect("tp") as usize;
    let after_probation = live_scores[216..]
        .iter()
        .filter(|&&s| s >= threshold)
        .count();
    assert_eq!(fp + in_window, after_probation);
    // The best threshold does at least as well on NAB's score as the default.
    let best = &result["best"];
    assert!(
        best["nab_score"].as_f64() >= eval["nab_score"].as_f64(),
        "{best} {eval}"
    );
    assert_eq!(best["windows_found"], 1);

    // Progress was published as it ran, and the completion carries the evaluation.
    let events = e.events("acme").await;
    let mine = |ev: &&Event| ev.payload["task_id"] == json!(task);
    assert!(events
        .iter()
        .filter(mine)
        .any(|ev| ev.kind == EventType::TaskProgress));
    let done = events
        .iter()
        .filter(mine)
        .find(|ev| ev.kind == EventType::TaskCompleted)
        .expect("task.completed");
    assert_eq!(done.payload["evaluation"]["windows_found"], 1);
    assert_eq!(
        done.payload["result_url"],
        format!("/v1/tasks/{task}/result")
    );

    // The same history uploaded as a dataset with a label column: the same verdict.
    let mut csv = String::from("timestamp,value,label\n");
    for (i, (t, v)) in data.iter().enumerate() {
        let label = u8::from((1295..=1310).contains(&i));
        csv.push_str(&format!("{t},{v},{label}\n"));
    }
    let dataset = e.upload_dataset(&key, "cpu.csv", &csv).await;
    let by_dataset = backtest(&e, &key, json!({"dataset_id": dataset})).await;
    assert_eq!(e.drain().await, 1);
    let (_, from_dataset) = e.get(&format!("/v1/tasks/{by_dataset}/result"), &key).await;
    assert_eq!(
        from_dataset["columns"],
        json!(["value"]),
        "the label is no value"
    );
    assert_eq!(scores(&from_dataset), live_scores);
    assert_eq!(from_dataset["evaluation"], result["evaluation"]);
    assert_eq!(from_dataset["best"], result["best"]);

    // A stream made from a backtest of the first 1200 points goes on as the live one did.
    let head = backtest(&e, &key, json!({"points": json_points(&data[..1200])})).await;
    assert_eq!(e.drain().await, 1);
    let (_, head_result) = e.get(&format!("/v1/tasks/{head}/result"), &key).await;
    assert_eq!(
        head_result["evaluation"],
        Value::Null,
        "no labels, no verdict"
    );
    let (s, _, started) = e
        .post_streams(
            &key,
            json!({"name": "cpu, warmed", "from_backtest": head, "threshold": 0.6}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    assert_eq!(started["points"], 1200);
    assert_eq!(started["last_timestamp"], data[1199].0);
    assert_eq!(started["threshold"], 0.6);
    let warmed = started["stream_id"].as_str().expect("id").to_string();
    let body = append_json(&e, &key, &warmed, &data[1200..]).await;
    assert_eq!(scores(&body), live_scores[1200..].to_vec());
    assert_eq!(body["points"], 1440);

    // A result past what a Lambda response carries comes as a download URL.
    let mut csv = String::from("timestamp,value\n");
    for i in 0..200_000u64 {
        csv.push_str(&format!(
            "{},{}\n",
            1_396_310_400 + 60 * i,
            (i * 7919) % 1000
        ));
    }
    let long = e.upload_dataset(&key, "long.csv", &csv).await;
    let task = backtest(
        &e,
        &key,
        json!({"dataset_id": long, "detector": "rolling_mean"}),
    )
    .await;
    e.drain().await;
    let (s, answer) = e.get(&format!("/v1/tasks/{task}/result"), &key).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert!(answer["url"].is_string(), "{answer}");
    assert!(answer["bytes"].as_u64() > Some(5 << 20), "{answer}");
}

#[tokio::test]
async fn backtests_refuse_what_they_cannot_run_and_keep_tenants_apart() {
    let e = env();
    let key = e.key("acme").await;
    let other = e.key("umbrella").await;
    let data = series();
    let few = json_points(&data[..10]);
    let refusals = [
        (json!({}), 400, "exactly one of"),
        (
            json!({"points": few, "dataset_id": "dst_01JDQ5Z8Y3N4W2V6T9R7P5M3K1"}),
            400,
            "exactly one of",
        ),
        (
            json!({"points": few, "label_column": "label"}),
            400,
            "`windows`",
        ),
        (json!({"points": few, "threshold": 5.6}), 400, "threshold"),
        (
            json!({"points": few, "detector": "prophet"}),
            400,
            "detector",
        ),
        (
            json!({"points": few, "windows": [{"start": "yesterday", "end": 5}]}),
            400,
            "window 0",
        ),
        (
            json!({"points": few, "windows": [], "label_column": "l"}),
            400,
            "not both",
        ),
        (
            json!({"points": [], "detector": "seasonal"}),
            422,
            "no points",
        ),
        (json!({"points": few, "colour": "red"}), 400, "colour"),
        (
            json!({"points": few, "detector": "random_cut_forest", "params": {"num_trees": 0}}),
            400,
            "num_trees",
        ),
        (
            json!({"points": few, "detector": "seasonal", "columns": ["a", "b"]}),
            400,
            "univariate",
        ),
    ];
    for (body, status, says) in refusals {
        let (s, _, problem) = e.post_backtests(&key, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body} -> {problem}");
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(says),
            "{body} -> {problem}"
        );
    }
    assert_eq!(e.drain().await, 0, "nothing was queued");

    // A window with no point in it fails the task, and says why.
    let empty = backtest(
        &e,
        &key,
        json!({"points": few, "windows": [{"start": 1, "end": 2}]}),
    )
    .await;
    e.drain().await;
    let (_, view) = e.get(&format!("/v1/tasks/{empty}"), &key).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert!(
        view["error"]
            .as_str()
            .unwrap_or("")
            .contains("holds no point"),
        "{view}"
    );

    // Another tenant's backtest is not found, from its result or as a stream's start.
    let mine = backtest(&e, &key, json!({"points": few})).await;
    e.drain().await;
    let (s, _) = e.get(&format!("/v1/tasks/{mine}/result"), &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, problem) = e
        .post_streams(&other, json!({"name": "stolen", "from_backtest": mine}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{problem}");
    // A failed backtest, or one given with a detector of its own, starts no stream.
    for (body, status) in [
        (json!({"name": "x", "from_backtest": empty}), 409),
        (
            json!({"name": "x", "from_backtest": mine, "detector": "rolling_mean"}),
            400,
        ),
        (
            json!({"name": "x", "from_backtest": mine, "threshold": 2}),
            400,
        ),
    ] {
        let (s, _, problem) = e.post_streams(&key, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body} -> {problem}");
    }
    let (_, streams) = e.get("/v1/streams", &key).await;
    assert_eq!(streams["items"], json!([]), "no stream was made");
}

#[tokio::test]
async fn a_random_cut_forest_stream_names_the_column_that_moved() {
    let e = env();
    let key = e.key("acme").await;
    let id = create(
        &e,
        &key,
        json!({"name": "host 7", "detector": "random_cut_forest", "columns": ["cpu", "mem"]}),
    )
    .await;
    // cpu follows the daily cycle; mem sits near 40 until it jumps at point 1300.
    let points: Vec<Value> = series()
        .iter()
        .enumerate()
        .map(|(i, (t, cpu))| {
            let mem = 40.0 + ((i * 31) % 7) as f64 * 0.1 + if i == 1300 { 30.0 } else { 0.0 };
            let cpu = if i == 1300 { cpu - 60.0 } else { *cpu };
            json!({"timestamp": t, "values": [cpu, mem]})
        })
        .collect();
    // A forest's work bounds a request at a few hundred two-column points.
    let (s, _, refused) = e.post_points(&key, &id, json!({ "points": points })).await;
    assert_eq!(s.as_u16(), 413, "{refused}");
    let mut anomalies = Vec::new();
    for (n, chunk) in points.chunks(240).enumerate() {
        let (s, _, body) = e.post_points(&key, &id, json!({ "points": chunk })).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        for a in body["anomalies"].as_array().expect("anomalies") {
            let mut a = a.clone();
            a["index"] = json!(n * 240 + a["index"].as_u64().expect("index") as usize);
            anomalies.push(a);
        }
    }
    let jump = anomalies
        .iter()
        .find(|a| a["index"] == 1300)
        .unwrap_or_else(|| panic!("the jump is found: {anomalies:?}"));
    let mem_share = jump["shares"]["mem"].as_f64().expect("mem's share");
    assert!(mem_share > 0.5, "{jump}");
    assert_eq!(jump["direction"]["mem"], "above", "{jump}");
    let expected_mem = jump["expected"]["mem"].as_f64().expect("expected mem");
    assert!((expected_mem - 40.3).abs() < 5.0, "{jump}");
    // In the binary form the forest's state (about 190 KB, 370 KB as JSON) fits the
    // record's default allowance of 300,000 bytes.
    let (_, stream) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(stream["state_stored"], "inline", "{stream}");
    assert_eq!(stream["points"], 1440);
}
