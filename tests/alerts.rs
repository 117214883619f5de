//! Alerts end to end on the real `nomaly serve`: a stream's anomalies, matched by a rule,
//! reach a webhook receiver in this test signed, after the receiver's failures, through
//! the server's own alerts queue; a dead receiver is dead-lettered in the log; without
//! `--allow-loopback-webhooks` a loopback webhook is refused. On moto (`--aws`) the same
//! goes through DynamoDB and SQS, and an `eventbridge` rule puts the alert on a custom bus
//! whose EventBridge rule delivers it to an SQS queue (moto 5 runs `PutEvents` rules and
//! SQS targets).

use nomaly_contract::webhook_receiver::{episode_series, Receiver};
use nomaly_tests::aws::{aws_key, stack_env, MotoStack};
use nomaly_tests::scratch;
use nomaly_tests::server::{Api, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn stream_with_spikes(api: &Api) -> String {
    let (s, made) = api
        .call(
            "POST",
            "/v1/streams",
            Some(json!({"name": "cpu", "detector": "seasonal"})),
        )
        .await;
    assert_eq!(s, 201, "{made}");
    made["stream_id"].as_str().expect("id").to_string()
}

async fn send_spikes(api: &Api, stream: &str) {
    for chunk in episode_series(1260).chunks(20) {
        let (s, body) = api
            .call(
                "POST",
                &format!("/v1/streams/{stream}/points"),
                Some(json!({ "points": chunk })),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
}

async fn make_rule(api: &Api, body: Value) -> (String, String) {
    let (s, rule) = api.call("POST", "/v1/alerts", Some(body)).await;
    assert_eq!(s, 201, "{rule}");
    (
        rule["id"].as_str().expect("id").to_string(),
        rule["secret"].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits until the rule's newest delivery is final; returns it.
async fn settled(api: &Api, rule: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, log) = api
            .call("GET", &format!("/v1/alerts/{rule}/deliveries"), None)
            .await;
        assert_eq!(s, 200, "{log}");
        if let Some(d) = log["items"].as_array().and_then(|i| i.first()) {
            if d["status"] == "delivered" || d["status"] == "dead_lettered" {
                return d.clone();
            }
        }
        assert!(Instant::now() < until, "the delivery never settled: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const RETRIES: [(&str, &str); 2] = [
    ("NOMALY_ALERT_RETRY_BASE_SECS", "1"),
    ("NOMALY_ALERT_MAX_ATTEMPTS", "3"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_server_alerts_a_webhook_signed_after_its_failures() {
    let dir = scratch("alerts-local");
    let server = Server::start(&dir.join("data"), &["--allow-loopback-webhooks"], &RETRIES);
    let key = server.key("acme");
    let api = Api::new(&server, &key);
    let receiver = Receiver::start(&[500, 500]).await;
    let stream = stream_with_spikes(&api).await;
    let (rule, secret) = make_rule(
        &api,
        json!({
            "name": "cpu",
            "match": {"events": ["anomaly.detected"], "stream_id": stream},
            "destination": {"webhook": {"url": receiver.url}},
            "cooldown": 3600,
            "group_by": ["stream"]
        }),
    )
    .await;
    send_spikes(&api, &stream).await;
    let d = settled(&api, &rule).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["attempts"], 3, "500 twice, then 200: {d}");
    let got = receiver.requests();
    assert_eq!(got.len(), 3, "three attempts of one alert");
    let alert = got[2].verified(&secret);
    assert_eq!(alert["id"], d["id"]);
    assert_eq!(alert["event"]["payload"]["stream_id"], stream.as_str());
    assert!(got
        .iter()
        .all(|g| g.headers["nomaly-delivery-id"] == d["id"].as_str().expect("id")));
    // The episode's later anomalies are counted into the one alert: no second request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.requests().len(), 3);
    let (_, log) = api
        .call("GET", &format!("/v1/alerts/{rule}/deliveries"), None)
        .await;
    assert_eq!(log["items"].as_array().map(Vec::len), Some(1), "{log}");
    assert!(log["items"][0]["count"].as_u64() >= Some(2), "{log}");

    // A dead receiver: three attempts, then dead-lettered in the log.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (rule, _) = make_rule(
        &api,
        json!({
            "name": "nowhere",
            "match": {"events": ["task.failed"]},
            "destination": {"webhook": {"url": format!("http://{dead}/hook")}}
        }),
    )
    .await;
    let (s, _) = api
        .call("POST", &format!("/v1/alerts/{rule}/test"), Some(json!({})))
        .await;
    assert_eq!(s, 202);
    let d = settled(&api, &rule).await;
    assert_eq!(d["status"], "dead_lettered", "{d}");
    assert_eq!(d["attempts"], 3);
    server.kill();

    // Without the flag, loopback is refused like any private address.
    let strict = Server::start(&dir.join("strict"), &[], &[]);
    let key = strict.key("acme");
    let api = Api::new(&strict, &key);
    let (s, refused) = api
        .call(
            "POST",
            "/v1/alerts",
            Some(json!({
                "name": "x",
                "match": {"events": ["anomaly.detected"]},
                "destination": {"webhook": {"url": receiver.url}}
            })),
        )
        .await;
    assert_eq!(s, 422, "{refused}");
    strict.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_moto_alerts_go_through_dynamodb_sqs_and_an_eventbridge_bus() {
    let MotoStack {
        prefix,
        clients,
        names,
        queues,
        ..
    } = MotoStack::provision("nm-alerts").await;

    // The bus, an EventBridge rule on it for nomaly's events, and an SQS queue as its
    // target: what a deployment would hang SNS or Slack off instead.
    let bus = prefix.clone();
    clients
        .events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("create the bus");
    let target = clients
        .sqs
        .create_queue()
        .queue_name(format!("{prefix}-target"))
        .send()
        .await
        .expect("target queue")
        .queue_url
        .expect("url");
    let target_arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&target)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue arn")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("an arn");
    clients
        .events
        .put_rule()
        .name("nomaly-alerts")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source": ["nomaly"], "detail-type": ["nomaly.alert"]}"#)
        .send()
        .await
        .expect("put a rule");
    clients
        .events
        .put_targets()
        .rule("nomaly-alerts")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(&target_arn)
                .build()
                .expect("a target"),
        )
        .send()
        .await
        .expect("put the target");

    let dir = scratch("alerts-aws");
    let mut envs = stack_env(&names, &queues);
    envs.push(("NOMALY_ALERT_BUS", bus.as_str()));
    envs.extend(RETRIES);
    let server = Server::start(
        &dir.join("data"),
        &["--aws", "--allow-loopback-webhooks"],
        &envs,
    );
    let key = aws_key("acme", &names.table);
    let api = Api::new(&server, &key);

    let receiver = Receiver::start(&[503]).await;
    let stream = stream_with_spikes(&api).await;
    let (hook_rule, secret) = make_rule(
        &api,
        json!({
            "name": "cpu to a webhook",
            "match": {"events": ["anomaly.detected"], "stream_id": stream},
            "destination": {"webhook": {"url": receiver.url}},
            "cooldown": 3600
        }),
    )
    .await;
    let (bus_rule, _) = make_rule(
        &api,
        json!({
            "name": "cpu to the bus",
            "match": {"events": ["anomaly.detected"], "stream_id": stream},
            "destination": {"eventbridge": {"bus": bus}},
            "cooldown": 3600
        }),
    )
    .await;
    let (s, other_bus) = api
        .call(
            "POST",
            "/v1/alerts",
            Some(json!({
                "name": "x",
                "match": {"events": ["anomaly.detected"]},
                "destination": {"eventbridge": {"bus": "someone-elses"}}
            })),
        )
        .await;
    assert_eq!(s, 422, "only the deployment's own bus: {other_bus}");

    send_spikes(&api, &stream).await;
    let d = settled(&api, &hook_rule).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(d["attempts"], 2, "503 once, then 200: {d}");
    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    got[1].verified(&secret);

    let d = settled(&api, &bus_rule).await;
    assert_eq!(d["status"], "delivered", "{d}");
    let until = Instant::now() + Duration::from_secs(30);
    let message = loop {
        let out = clients
            .sqs
            .receive_message()
            .queue_url(&target)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        if let Some(m) = out.messages.and_then(|m| m.into_iter().next()) {
            break m;
        }
        assert!(
            Instant::now() < until,
            "the bus's rule never delivered to its queue"
        );
    };
    let event: Value =
        serde_json::from_str(message.body.as_deref().expect("a body")).expect("json");
    assert_eq!(event["source"], "nomaly", "{event}");
    assert_eq!(event["detail-type"], "nomaly.alert", "{event}");
    assert_eq!(event["detail"]["id"], d["id"], "{event}");
    assert_eq!(
        event["detail"]["event"]["payload"]["stream_id"],
        stream.as_str()
    );
    server.kill();
}
