//! Alerts end to end on the embedded stack: a rule made through the router, a stream's
//! anomaly episode turned into one signed webhook per cooldown by the events handler and
//! the notify handler, retries on 500s, a dead receiver dead-lettered in the log, and
//! refused destinations (the metadata service, by address and by a name resolving to it).
//!
//! The receiver is a real HTTP server on loopback (the stack's sender is given the local
//! server's `--allow-loopback-webhooks` policy); a name that resolves to the metadata
//! address is made with a fixed resolver, as no DNS server is at hand here.

use crate::support::{env_with, Env};
use async_trait::async_trait;
use axum::http::StatusCode;
use nomaly_contract::webhook_receiver::{episode_series, Receiver};
use nomaly_core::service::worker::Lane;
use nomaly_core::service::Settings;
use nomaly_core::webhook::{AddressPolicy, HttpSender, Resolve, SystemResolver};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// An embedded stack whose alerts may go to loopback, with 3 attempts and no backoff.
fn alerts_env() -> Env {
    let mut e = env_with(Settings {
        alert_max_attempts: 3,
        alert_retry_base_secs: 0,
        ..Settings::default()
    });
    let sender = HttpSender::new(
        AddressPolicy {
            allow_loopback: true,
        },
        Arc::new(SystemResolver),
    );
    e.services.sender = Arc::new(sender);
    e
}

/// Sends every queued alert through the notify handler (retries included).
async fn notify_all(e: &Env) -> usize {
    let mut handled = 0;
    for _ in 0..50 {
        let (n, failed) = e.batch_on(Lane::Alerts, 10).await;
        assert!(
            failed.is_empty(),
            "no alert message fails outright: {failed:?}"
        );
        if n == 0 {
            return handled;
        }
        handled += n;
    }
    panic!("the alerts queue did not drain");
}

async fn make_rule(e: &Env, key: &str, body: Value) -> Value {
    let (s, headers, rule) = e.post_json("/v1/alerts", key, body).await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    assert_eq!(
        headers["location"],
        format!("/v1/alerts/{}", rule["id"].as_str().expect("id")).as_str()
    );
    rule
}

async fn deliveries(e: &Env, key: &str, rule: &str) -> Vec<Value> {
    let (s, log) = e.get(&format!("/v1/alerts/{rule}/deliveries"), key).await;
    assert_eq!(s, StatusCode::OK, "{log}");
    log["items"].as_array().expect("items").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_episode_is_one_signed_alert_per_cooldown() {
    let e = alerts_env();
    let key = e.key("acme").await;
    let receiver = Receiver::start(&[]).await;
    let (s, _, stream) = e
        .post_streams(&key, json!({"name": "cpu", "detector": "seasonal"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{stream}");
    let stream_id = stream["stream_id"].as_str().expect("id").to_string();
    let rule = make_rule(
        &e,
        &key,
        json!({
            "name": "cpu spikes",
            "match": {"events": ["anomaly.detected"], "stream_id": stream_id},
            "destination": {"webhook": {"url": receiver.url}},
            "cooldown": 3600,
            "group_by": ["stream"]
        }),
    )
    .await;
    let secret = rule["secret"]
        .as_str()
        .expect("the secret, shown once")
        .to_string();
    assert!(secret.starts_with("whsec_"));
    let rule_id = rule["id"].as_str().expect("id").to_string();
    let (_, shown) = e.get(&format!("/v1/alerts/{rule_id}"), &key).await;
    assert!(
        shown.get("secret").is_none(),
        "the secret is not shown again: {shown}"
    );

    // The episode arrives over many requests: several anomaly events.
    let points = episode_series(1260);
    for chunk in points.chunks(20) {
        let (s, _, body) = e
            .post_points(&key, &stream_id, json!({ "points": chunk }))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let events = e.stream("acme", None).await;
    let anomaly_events: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind.as_str() == "anomaly.detected")
        .collect();
    assert!(
        anomaly_events.len() >= 2,
        "the episode spans more than one event ({} of them)",
        anomaly_events.len()
    );
    let anomalies: u64 = anomaly_events
        .iter()
        .map(|ev| ev.payload["anomalies"].as_u64().unwrap_or(1).max(1))
        .sum();
    notify_all(&e).await;

    let got = receiver.requests();
    assert_eq!(got.len(), 1, "one alert for the episode, not one per event");
    let alert = got[0].verified(&secret);
    assert_eq!(alert["type"], "alert");
    assert_eq!(alert["rule"]["id"], rule_id.as_str());
    assert_eq!(alert["event"]["type"], "anomaly.detected");
    assert_eq!(alert["event"]["payload"]["stream_id"], stream_id.as_str());
    assert_eq!(alert["group"], format!("stream={stream_id}"));
    assert_eq!(
        got[0].headers["nomaly-delivery-id"],
        alert["id"].as_str().expect("id")
    );
    assert_eq!(got[0].headers["nomaly-attempt"], "1");
    assert_eq!(got[0].headers["content-type"], "application/json");

    // The log: delivered at the first attempt, standing for every anomaly of the episode.
    let log = deliveries(&e, &key, &rule_id).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["last_status"], 200);
    assert_eq!(
        log[0]["count"], anomalies,
        "the episode's anomalies, counted in"
    );
    assert!(log[0]["latency_ms"].as_u64().is_some());

    // The same rule with a 1 s cooldown: a later episode is a new alert.
    let update = json!({
        "name": "cpu spikes, quick",
        "match": {"events": ["anomaly.detected"], "stream_id": stream_id},
        "destination": {"webhook": {"url": receiver.url}},
        "cooldown": 1,
        "group_by": ["stream"]
    });
    let (s, _, changed) = e
        .request("PUT", &format!("/v1/alerts/{rule_id}"))
        .key(&key)
        .content_type("application/json")
        .body(update.to_string())
        .send()
        .await;
    assert_eq!(s, StatusCode::OK, "{changed}");
    assert_eq!(changed["cooldown"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(3700)).await;
    let last = events.last().map(|ev| ev.event_id.to_string());
    let later: Vec<Value> = (0..4)
        .map(|i| {
            let t = 1_396_310_400 + 300 * (1440 + i) as i64;
            json!({"timestamp": t, "value": 400.0})
        })
        .collect();
    let (s, _, body) = e
        .post_points(&key, &stream_id, json!({ "points": later }))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        body["anomalies"].as_array().is_some_and(|a| !a.is_empty()),
        "{body}"
    );
    e.stream("acme", last.as_deref()).await;
    notify_all(&e).await;
    let got = receiver.requests();
    assert_eq!(
        got.len(),
        2,
        "after the cooldown, the next episode is a new alert"
    );
    let second = got[1].verified(&secret);
    assert_ne!(second["id"], alert["id"], "a new alert has a new id");
    assert_eq!(deliveries(&e, &key, &rule_id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_answered_500_twice_arrives_on_the_third_attempt() {
    let e = alerts_env();
    let key = e.key("acme").await;
    let receiver = Receiver::start(&[500, 503]).await;
    let rule = make_rule(
        &e,
        &key,
        json!({
            "name": "failures",
            "match": {"events": ["task.failed"]},
            "destination": {"webhook": {"url": receiver.url}}
        }),
    )
    .await;
    let rule_id = rule["id"].as_str().expect("id");
    let (s, _, queued) = e
        .post_json(&format!("/v1/alerts/{rule_id}/test"), &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["status"], "pending");
    assert_eq!(queued["test"], true);
    assert_eq!(notify_all(&e).await, 3, "three attempts, one message each");

    let got = receiver.requests();
    assert_eq!(got.len(), 3);
    let attempts: Vec<&str> = got
        .iter()
        .map(|g| g.headers["nomaly-attempt"].as_str())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.headers["nomaly-delivery-id"].as_str())
        .collect();
    assert!(
        ids.iter().all(|i| *i == queued["id"].as_str().expect("id")),
        "one idempotency id: {ids:?}"
    );
    let body = got[2].verified(rule["secret"].as_str().expect("secret"));
    assert_eq!(body["test"], true);
    assert_eq!(body["attempt"], 3);

    let (s, one) = e
        .get(
            &format!(
                "/v1/alerts/{rule_id}/deliveries/{}",
                queued["id"].as_str().expect("id")
            ),
            &key,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["status"], "delivered");
    assert_eq!(one["attempts"], 3);
    assert_eq!(one["last_status"], 200);
    assert_eq!(one["last_error"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_is_dead_lettered_in_the_log() {
    let e = alerts_env();
    let key = e.key("acme").await;
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let rule = make_rule(
        &e,
        &key,
        json!({
            "name": "to nowhere",
            "match": {"events": ["anomaly.detected"]},
            "destination": {"webhook": {"url": format!("http://{dead}/hook")}}
        }),
    )
    .await;
    let rule_id = rule["id"].as_str().expect("id");
    let (s, _, _) = e
        .post_json(&format!("/v1/alerts/{rule_id}/test"), &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(notify_all(&e).await, 3);
    let log = deliveries(&e, &key, rule_id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "dead_lettered", "{}", log[0]);
    assert_eq!(log[0]["attempts"], 3);
    let error = log[0]["last_error"].as_str().expect("an error");
    assert!(error.contains("gave up after 3 attempts"), "{error}");

    // A 4xx is not retried: dead-lettered at once.
    let refusing = Receiver::start(&[410]).await;
    let rule = make_rule(
        &e,
        &key,
        json!({
            "name": "gone",
            "match": {"events": ["anomaly.detected"]},
            "destination": {"webhook": {"url": refusing.url}}
        }),
    )
    .await;
    let rule_id = rule["id"].as_str().expect("id");
    e.post_json(&format!("/v1/alerts/{rule_id}/test"), &key, json!({}))
        .await;
    assert_eq!(notify_all(&e).await, 1);
    let log = deliveries(&e, &key, rule_id).await;
    assert_eq!(log[0]["status"], "dead_lettered");
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["last_status"], 410);
}

/// Answers every name with one address.
struct Fixed(std::net::IpAddr);

#[async_trait]
impl Resolve for Fixed {
    async fn lookup(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(self.0, port)])
    }
}

#[tokio::test]
async fn the_metadata_service_and_private_addresses_are_refused() {
    // The stack's own sender: the policy of AWS (no loopback).
    let mut e = env_with(Settings::default());
    let key = e.key("acme").await;
    let rule = |url: &str| {
        json!({
            "name": "x",
            "match": {"events": ["anomaly.detected"]},
            "destination": {"webhook": {"url": url}}
        })
    };
    for (url, why) in [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fd00:ec2::254]/", "unique local"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://172.20.0.1/hook", "private"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("http://93.184.216.34/hook", "must be https"),
        ("ftp://93.184.216.34/hook", "scheme"),
        ("https://user:pw@93.184.216.34/hook", "user name"),
    ] {
        let (s, _, body) = e.post_json("/v1/alerts", &key, rule(url)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(why), "{url}: {detail}");
    }
    // A name that resolves to the metadata address.
    e.services.sender = Arc::new(HttpSender::new(
        AddressPolicy::default(),
        Arc::new(Fixed("169.254.169.254".parse().expect("ip"))),
    ));
    let (s, _, body) = e
        .post_json(
            "/v1/alerts",
            &key,
            rule("https://metadata.attacker.example/hook"),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("metadata.attacker.example resolves to 169.254.169.254")),
        "{body}"
    );
    // Nothing was stored.
    let (_, listed) = e.get("/v1/alerts", &key).await;
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn rules_are_checked_and_kept_per_tenant() {
    let e = alerts_env();
    let key = e.key("acme").await;
    let other = e.key("globex").await;
    let receiver = Receiver::start(&[]).await;
    let good = json!({
        "name": "ok",
        "match": {"events": ["anomaly.detected"]},
        "destination": {"webhook": {"url": receiver.url}}
    });
    for (body, status, says) in [
        (json!({"name": "x"}), 400, "match"),
        (
            json!({"name": "x", "match": {"events": []}, "destination": {"webhook": {"url": receiver.url}}}),
            422,
            "at least one event type",
        ),
        (
            json!({"name": "x", "match": {"events": ["anomaly.detected"]}, "destination": {"webhook": {"url": receiver.url}}, "cooldown": 999999999}),
            422,
            "cooldown",
        ),
        (
            json!({"name": "x", "match": {"events": ["no.such"]}, "destination": {"webhook": {"url": receiver.url}}}),
            400,
            "no.such",
        ),
        (
            json!({"name": "x", "match": {"events": ["anomaly.detected"]}, "destination": {"eventbridge": {"bus": "b"}}}),
            422,
            "EventBridge destinations need the AWS deployment",
        ),
        (
            json!({"name": "", "match": {"events": ["anomaly.detected"]}, "destination": {"webhook": {"url": receiver.url}}}),
            422,
            "name",
        ),
        (
            json!({"name": "x", "match": {"events": ["anomaly.detected"], "min_score": -1}, "destination": {"webhook": {"url": receiver.url}}}),
            422,
            "min_score",
        ),
    ] {
        let (s, _, answer) = e.post_json("/v1/alerts", &key, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{body}: {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| d.contains(says)),
            "{body}: {answer}"
        );
    }
    let rule = make_rule(&e, &key, good).await;
    let id = rule["id"].as_str().expect("id");
    for path in [
        format!("/v1/alerts/{id}"),
        format!("/v1/alerts/{id}/deliveries"),
    ] {
        let (s, _) = e.get(&path, &other).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path} is not another tenant's");
    }
    let (s, _, _) = e
        .post_json(&format!("/v1/alerts/{id}/test"), &other, json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = e
        .request("DELETE", &format!("/v1/alerts/{id}"))
        .key(&other)
        .send()
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, theirs) = e.get("/v1/alerts", &other).await;
    assert_eq!(theirs["items"], json!([]));
    let (s, _) = e.get("/v1/alerts/alr_nonsense", &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = e
        .request("DELETE", &format!("/v1/alerts/{id}"))
        .key(&key)
        .send()
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = e.get(&format!("/v1/alerts/{id}"), &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
