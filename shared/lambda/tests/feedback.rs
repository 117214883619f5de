//! Feedback on a stream's results through the router: a false positive named by its
//! event raises the stream's threshold above the point's score (so the stream flags less
//! next), a miss named by a range lowers it, a true positive changes nothing; verdicts
//! are stored and listed per tenant, and bad or foreign ones are refused. A verdict on a
//! dataset's row is a label the next training on the dataset fits its threshold to.

use crate::support::{env, Env};
use axum::http::StatusCode;
use nomaly_contract::webhook_receiver::episode_series;
use serde_json::{json, Value};

async fn stream_with_anomalies(e: &Env, key: &str) -> (String, Vec<Value>) {
    let (s, _, made) = e
        .post_streams(key, json!({"name": "cpu", "detector": "seasonal"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let id = made["stream_id"].as_str().expect("id").to_string();
    for chunk in episode_series(1260).chunks(20) {
        let (s, _, body) = e.post_points(key, &id, json!({ "points": chunk })).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let events: Vec<Value> = e
        .events("acme")
        .await
        .into_iter()
        .filter(|ev| ev.kind.as_str() == "anomaly.detected")
        .map(|ev| serde_json::to_value(&ev).expect("json"))
        .collect();
    (id, events)
}

#[tokio::test]
async fn a_false_positive_raises_the_threshold_and_a_miss_lowers_it() {
    let e = env();
    let key = e.key("acme").await;
    let (stream, events) = stream_with_anomalies(&e, &key).await;
    // The flagged point with the lowest score. (Here every spike saturates the
    // likelihood at 1: the threshold rises to its ceiling, 0.999, which stops points
    // just below 1, not a point that scores 1 again.)
    let (first, point) = events
        .iter()
        .flat_map(|ev| {
            ev["payload"]["anomaly_points"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |p| (ev, p))
        })
        .min_by(|a, b| {
            a.1["score"]
                .as_f64()
                .partial_cmp(&b.1["score"].as_f64())
                .expect("scores")
        })
        .expect("an anomaly");
    let point = &point;
    let score = point["score"].as_f64().expect("score");
    let expected = nomaly_detect::stream::feedback::after_false_positive(0.5, score);
    let (s, _, answer) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"stream_id": stream, "label": "false_positive",
                   "event_id": first["event_id"], "index": point["index"], "note": "a deploy"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["changed"], true);
    let after = answer["feedback"]["threshold_after"]
        .as_f64()
        .expect("after");
    assert_eq!(answer["feedback"]["threshold_before"], 0.5);
    assert_eq!(after, expected, "{answer}");
    assert!(after > 0.5 && after <= 0.999, "{answer}");
    assert!(
        answer["feedback"]["effect"]
            .as_str()
            .is_some_and(|t| t.contains("raised")),
        "{answer}"
    );
    let (_, view) = e.get(&format!("/v1/streams/{stream}"), &key).await;
    assert_eq!(view["threshold"], after, "{view}");

    // The stream flags less next: the same spike again now scores below the threshold
    // if it scores no higher than the point judged.
    let t0 = episode_series(0)[1439]["timestamp"].as_i64().expect("t") + 300;
    let again = json!({"points": [{"timestamp": t0, "value": 50.0}]});
    let (s, _, body) = e.post_points(&key, &stream, again).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["threshold"], after, "{body}");

    // A miss over a range of the last points lowers it below their best score.
    let recent = view["recent"].as_array().cloned().unwrap_or_default();
    let (from, to) = (
        recent.first().and_then(|p| p["t"].as_i64()),
        recent.last().and_then(|p| p["t"].as_i64()),
    );
    let (from, to) = (from.expect("recent points"), to.expect("recent points"));
    let (s, _, missed) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"stream_id": stream, "label": "missed", "from": from, "to": to}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{missed}");
    let best = missed["feedback"]["score"].as_f64().expect("best");
    let lowered = missed["feedback"]["threshold_after"]
        .as_f64()
        .expect("after");
    if best < after {
        assert_eq!(missed["changed"], true, "{missed}");
        assert!(lowered < best && lowered >= 0.05, "{missed}");
    } else {
        assert_eq!(missed["changed"], false, "it was flagged: {missed}");
    }

    // A true positive changes nothing.
    let (s, _, confirmed) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"stream_id": stream, "label": "true_positive",
                   "event_id": first["event_id"], "index": point["index"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{confirmed}");
    assert_eq!(confirmed["changed"], false);

    let (s, listed) = e.get("/v1/feedback", &key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );
    assert_eq!(listed["items"][0]["label"], "true_positive", "newest first");
    let other = e.key("globex").await;
    let (_, theirs) = e.get("/v1/feedback", &other).await;
    assert_eq!(theirs["items"], json!([]));
}

#[tokio::test]
async fn bad_and_foreign_feedback_is_refused_and_changes_nothing() {
    let e = env();
    let key = e.key("acme").await;
    let (stream, events) = stream_with_anomalies(&e, &key).await;
    let event = events[0]["event_id"].clone();
    let other = e.key("globex").await;
    let (s, _, _) = e
        .post_json(
            "/v1/feedback",
            &other,
            json!({"stream_id": stream, "label": "false_positive", "event_id": event, "index": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's stream");
    let (s, _, split) = e
        .post_streams(&key, json!({"name": "hosts", "entity": "host"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for (body, status, says) in [
        (
            json!({"stream_id": stream, "label": "false_positive", "event_id": event}),
            422,
            "index",
        ),
        (
            json!({"stream_id": stream, "label": "false_positive", "event_id": event, "index": 99999}),
            422,
            "no anomaly with index",
        ),
        (json!({"stream_id": stream, "label": "missed"}), 422, "from"),
        (
            json!({"stream_id": stream, "label": "missed", "from": 10, "to": 5}),
            422,
            "after",
        ),
        (
            json!({"stream_id": stream, "label": "missed", "from": 1, "to": 5}),
            422,
            "no point",
        ),
        (
            json!({"stream_id": stream, "label": "false_positive"}),
            422,
            "name the point",
        ),
        (
            json!({"stream_id": stream, "label": "nonsense", "from": 1, "to": 2}),
            400,
            "nonsense",
        ),
        (
            json!({"stream_id": split["stream_id"], "label": "missed", "from": 1, "to": 2}),
            422,
            "name the entity",
        ),
        (
            json!({"stream_id": stream, "entity": "web-1", "label": "missed", "from": 1, "to": 2}),
            422,
            "not split by entity",
        ),
    ] {
        let (s, _, answer) = e.post_json("/v1/feedback", &key, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body}: {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| d.contains(says)),
            "{body}: {answer}"
        );
    }
    let (_, view) = e.get(&format!("/v1/streams/{stream}"), &key).await;
    assert_eq!(
        view["threshold"], 0.5,
        "nothing refused moved the threshold"
    );
    let (_, listed) = e.get("/v1/feedback", &key).await;
    assert_eq!(listed["items"], json!([]));
}

/// A profiled dataset of 200 rows, with one row (`OUTLIER`) far from the others.
async fn dataset_with_an_outlier(e: &Env, key: &str) -> String {
    let mut csv = String::from("a,b\n");
    for i in 0..200 {
        let (a, b) = if i == OUTLIER {
            (40.0, -35.0)
        } else {
            ((i % 17) as f64 * 0.3, ((i * 7) % 13) as f64 * 0.2)
        };
        csv.push_str(&format!("{a},{b}\n"));
    }
    e.upload_dataset(key, "rows.csv", &csv).await
}

const OUTLIER: usize = 42;

/// Trains zscore (contamination 0.1) on the dataset; the model record.
async fn train_on(e: &Env, key: &str, dataset: &str) -> Value {
    let (s, _, body) = e
        .post_models(
            key,
            json!({"algorithm": "zscore", "dataset_id": dataset, "contamination": 0.1}),
        )
        .await;
    assert_eq!(s.as_u16(), 202, "{body}");
    assert_eq!(e.drain().await, 1);
    let id = body["model_id"].as_str().expect("model id");
    let (s, model) = e.get(&format!("/v1/models/{id}"), key).await;
    assert_eq!(s, StatusCode::OK, "{model}");
    model
}

#[tokio::test]
async fn verdicts_on_rows_are_labels_for_the_next_training() {
    let e = env();
    let key = e.key("acme").await;
    let dataset = dataset_with_an_outlier(&e, &key).await;
    let first = train_on(&e, &key, &dataset).await;
    let prior = first["training"]["threshold"].as_f64().expect("threshold");
    // (about 10 %: ties among the scores can leave fewer above the percentile)
    let flagged = first["training"]["anomalies"].as_u64().expect("anomalies");
    assert!((10..=20).contains(&flagged), "{first}");
    assert!(first["training"].get("labels").is_none(), "{first}");

    // The outlier is flagged; a person says it is normal.
    let (s, _, answer) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"dataset_id": dataset, "row": OUTLIER, "model_id": first["id"],
                   "label": "false_positive"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["changed"], false, "{answer}");
    assert_eq!(answer["feedback"]["row"], OUTLIER);
    assert_eq!(answer["feedback"]["threshold_before"], prior);
    assert!(
        answer["feedback"]["effect"]
            .as_str()
            .is_some_and(|t| t.contains("next model trained") && t.contains("1 labelled rows")),
        "{answer}"
    );

    // The next model on the dataset no longer flags it, nor anything scoring below it.
    let second = train_on(&e, &key, &dataset).await;
    let labels = &second["training"]["labels"];
    assert_eq!(labels["labelled"], 1, "{second}");
    assert_eq!(labels["errors_before"], 1, "{second}");
    assert_eq!(labels["errors"], 0, "{second}");
    let raised = second["training"]["threshold"].as_f64().expect("threshold");
    assert!(raised > prior, "{second}");
    assert_eq!(
        second["training"]["anomalies"], 0,
        "the outlier scored highest: {second}"
    );
    let (s, _, scored) = e
        .post_detect(
            &key,
            json!({"model_id": second["id"], "rows": [[40.0, -35.0], [0.3, 0.2]]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{scored}");
    assert_eq!(scored["anomalies"], 0, "{scored}");

    // The latest verdict on a row counts: confirming it brings the flag back.
    let (s, _, _) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"dataset_id": dataset, "row": OUTLIER, "label": "true_positive"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let third = train_on(&e, &key, &dataset).await;
    assert_eq!(third["training"]["labels"]["errors_before"], 0, "{third}");
    assert_eq!(third["training"]["threshold"], prior, "{third}");

    // A fixed threshold asked for is kept: labels correct a contamination only.
    let (s, _, body) = e
        .post_models(
            &key,
            json!({"algorithm": "zscore", "dataset_id": dataset, "threshold": 0.5}),
        )
        .await;
    assert_eq!(s.as_u16(), 202, "{body}");
    assert_eq!(e.drain().await, 1);
    let id = body["model_id"].as_str().expect("model id");
    let (_, fixed) = e.get(&format!("/v1/models/{id}"), &key).await;
    assert_eq!(fixed["training"]["threshold"], 0.5, "{fixed}");
    assert!(fixed["training"].get("labels").is_none(), "{fixed}");

    // Refused, with the reason.
    let other = e.key("globex").await;
    let (s, _, _) = e
        .post_json(
            "/v1/feedback",
            &other,
            json!({"dataset_id": dataset, "row": 1, "label": "false_positive"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's dataset");
    for (body, says) in [
        (
            json!({"dataset_id": dataset, "row": 200, "label": "missed"}),
            "200 data rows",
        ),
        (json!({"dataset_id": dataset, "label": "missed"}), "`row`"),
        (
            json!({"dataset_id": dataset, "row": 1, "label": "missed", "from": 1, "to": 2}),
            "stream's points",
        ),
        (
            json!({"dataset_id": dataset, "stream_id": "stm_01JD0000000000000000000000", "row": 1, "label": "missed"}),
            "not both",
        ),
        (json!({"row": 1, "label": "missed"}), "dataset_id"),
    ] {
        let (s, _, answer) = e.post_json("/v1/feedback", &key, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(answer.to_string().contains(says), "{body}: {answer}");
    }
    let (s, _, answer) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"dataset_id": dataset, "row": 1, "label": "missed", "model_id": "mdl_01JD0000000000000000000000"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test]
async fn on_a_stream_split_by_entity_a_verdict_moves_that_entity_only() {
    let e = env();
    let key = e.key("acme").await;
    let (s, _, made) = e
        .post_streams(
            &key,
            json!({"name": "fleet", "entity": "host", "detector": "rolling_mean",
                   "params": {"window": 20}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let id = made["stream_id"].as_str().expect("id").to_string();
    let start = 1_790_000_000i64;
    let points = |from: i64, to: i64, spike_at: i64| {
        let mut points = Vec::new();
        for i in from..to {
            for host in ["web-1", "web-2"] {
                let wobble = ((i * 7) % 5) as f64 * 0.2;
                let spike = if i == spike_at { 40.0 } else { 0.0 };
                points.push(json!({"timestamp": start + 60 * i, "value": 10.0 + wobble + spike, "host": host}));
            }
        }
        json!({ "points": points })
    };
    let (s, _, answer) = e.post_points(&key, &id, points(0, 60, 50)).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    let web2 = latest_event_of(&e, "web-2").await;
    let point = &web2["payload"]["anomaly_points"][0];
    let (s, _, answer) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"stream_id": id, "label": "false_positive",
                   "event_id": web2["event_id"], "index": point["index"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["feedback"]["entity"], "web-2",
        "the event named it: {answer}"
    );
    assert_eq!(answer["changed"], true, "{answer}");
    let raised = answer["feedback"]["threshold_after"]
        .as_f64()
        .expect("after");
    assert!(raised > 0.5, "{answer}");

    // web-2 has its own threshold now; web-1 and the stream keep 0.5.
    let (_, two) = e
        .get(&format!("/v1/streams/{id}/entities/web-2"), &key)
        .await;
    assert_eq!(two["threshold"], raised, "{two}");
    let (_, one) = e
        .get(&format!("/v1/streams/{id}/entities/web-1"), &key)
        .await;
    assert!(one.get("threshold").is_none(), "{one}");
    let (_, view) = e.get(&format!("/v1/streams/{id}"), &key).await;
    assert_eq!(view["threshold"], 0.5, "{view}");

    // The next anomalies are held to each entity's own threshold.
    let (s, _, answer) = e.post_points(&key, &id, points(60, 90, 80)).await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    assert_eq!(
        latest_event_of(&e, "web-1").await["payload"]["threshold"],
        0.5
    );
    let flagged_two = answer["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .filter(|a| a["entity"] == "web-2")
        .all(|a| a["score"].as_f64().is_some_and(|s| s >= raised));
    assert!(
        flagged_two,
        "web-2 flags only at its own threshold: {answer}"
    );

    // A range names its entity; a miss lowers that entity's threshold only.
    let recent = one["recent"].as_array().cloned().unwrap_or_default();
    let quiet = recent
        .iter()
        .filter(|p| p["s"].as_f64().is_some_and(|s| s < 0.4))
        .map(|p| p["t"].as_i64().expect("t"))
        .next()
        .expect("a quiet point of web-1");
    let (s, _, missed) = e
        .post_json(
            "/v1/feedback",
            &key,
            json!({"stream_id": id, "entity": "web-1", "label": "missed", "from": quiet, "to": quiet}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{missed}");
    assert_eq!(missed["changed"], true, "{missed}");
    let lowered = missed["feedback"]["threshold_after"]
        .as_f64()
        .expect("after");
    assert!(lowered < 0.5, "{missed}");
    let (_, one) = e
        .get(&format!("/v1/streams/{id}/entities/web-1"), &key)
        .await;
    assert_eq!(one["threshold"], lowered, "{one}");
    let (_, two) = e
        .get(&format!("/v1/streams/{id}/entities/web-2"), &key)
        .await;
    assert_eq!(two["threshold"], raised, "{two}");

    // The entity must exist, and agree with the event.
    for (body, status) in [
        (
            json!({"stream_id": id, "entity": "web-9", "label": "missed", "from": quiet, "to": quiet}),
            404,
        ),
        (
            json!({"stream_id": id, "entity": "web-1", "label": "false_positive",
                "event_id": web2["event_id"], "index": point["index"]}),
            422,
        ),
    ] {
        let (s, _, answer) = e.post_json("/v1/feedback", &key, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body}: {answer}");
    }
}

/// The latest `anomaly.detected` event of a host.
async fn latest_event_of(e: &Env, host: &str) -> Value {
    e.events("acme")
        .await
        .into_iter()
        .rev()
        .map(|ev| serde_json::to_value(&ev).expect("json"))
        .find(|ev| ev["type"] == "anomaly.detected" && ev["payload"]["entity"] == host)
        .expect("an anomaly event of the host")
}
