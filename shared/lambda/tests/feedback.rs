//! Feedback on a stream's results through the router: a false positive named by its
//! event raises the stream's threshold above the point's score (so the stream flags less
//! next), a miss named by a range lowers it, a true positive changes nothing; verdicts
//! are stored and listed per tenant, and bad or foreign ones are refused.

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
            "split by entity",
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
