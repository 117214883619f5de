//! The contract suite on the AWS adapters, against moto server. `tests/run.sh` starts
//! moto and sets `AWS_ENDPOINT_URL`; without it these tests fail (they never skip).
//! What moto cannot show (410 Gone) is tested against a small fake gateway, named so.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use nomaly_aws::provision::{self, Names, Provisioned};
use nomaly_aws::{sdk_calls, ApiGatewayPush, AwsCalls, Clients, DynamoStore, S3Blobs, SqsQueue};
use nomaly_contract as contract;
use nomaly_core::domain::{EntityWritten, Stream, StreamEntity};
use nomaly_core::ports::{PushError, PushNotifier, StreamStore, UrlSigner};
use nomaly_core::time::Timestamp;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_RECEIVES: u32 = 3;

async fn setup(test: &str) -> (Clients, Names, Provisioned) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "AWS_ENDPOINT_URL must point at moto server on loopback (tests/run.sh starts it), got {endpoint:?}"
    );
    let clients = Clients::from_env(true).await;
    let suffix = nomaly_core::ids::JobId::new().as_str()[20..].to_ascii_lowercase();
    let names = Names::with_prefix(&format!("nm-{test}-{suffix}"));
    let provisioned = provision::ensure(&clients, &names, MAX_RECEIVES)
        .await
        .expect("provision tables, bucket and queues on moto");
    (clients, names, provisioned)
}

async fn store(test: &str) -> DynamoStore {
    let (clients, names, _) = setup(test).await;
    DynamoStore::new(clients.dynamodb.clone(), &names.table, &names.events_table)
}

async fn queue(test: &str) -> (SqsQueue, S3Blobs) {
    let (clients, names, p) = setup(test).await;
    (
        SqsQueue::new(clients.sqs.clone(), &p.queue_url, &p.dead_letter_url),
        S3Blobs::new(clients.s3.clone(), &names.bucket),
    )
}

#[tokio::test]
async fn task_store_compare_and_set() {
    contract::task_store_compare_and_set(&store("cas").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_workers_finish_a_task_once() {
    contract::racing_workers_finish_a_task_once(&store("race").await).await;
}

#[tokio::test]
async fn listings_page_past_one_page() {
    let s = store("pages").await;
    contract::listings_page_past_one_page(&s, &s).await;
}

#[tokio::test]
async fn tenants_are_kept_apart() {
    let s = store("tenants").await;
    contract::tenants_are_kept_apart(&s, &s, &s, &s).await;
}

#[tokio::test]
async fn events_replay_after() {
    contract::events_replay_after(&store("events").await).await;
}

#[tokio::test]
async fn queue_redelivers_after_visibility_timeout() {
    contract::queue_redelivers_after_visibility_timeout(&queue("redeliver").await.0).await;
}

#[tokio::test]
async fn queue_delays_a_job_sent_for_later() {
    contract::queue_delays_a_job_sent_for_later(&queue("delay").await.0).await;
}

#[tokio::test]
async fn running_tasks_are_counted_per_tenant() {
    contract::running_tasks_are_counted_per_tenant(&store("running").await).await;
}

#[tokio::test]
async fn queue_dead_letters_after_max_receives() {
    contract::queue_dead_letters_after_max_receives(&queue("dlq").await.0, MAX_RECEIVES).await;
}

#[tokio::test]
async fn claim_check_carries_large_bodies() {
    let (q, blobs) = queue("claim").await;
    contract::claim_check_carries_large_bodies(&q, &blobs).await;
}

#[tokio::test]
async fn blobs_round_trip() {
    contract::blobs_round_trip(&queue("blobs").await.1).await;
}

#[tokio::test]
async fn keys_revoke_at_once() {
    contract::keys_revoke_at_once(&store("keys").await).await;
}

#[tokio::test]
async fn alert_rules_and_deliveries() {
    contract::alert_rules_and_deliveries(&store("alerts").await).await;
}

#[tokio::test]
async fn feedback_is_kept_per_tenant() {
    contract::feedback_is_kept_per_tenant(&store("feedback").await).await;
}

#[tokio::test]
async fn connections_register_and_expire() {
    contract::connections_register_and_expire(&store("conns").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_returns_the_first_response() {
    contract::idempotency_returns_the_first_response(&store("idem").await).await;
}

#[tokio::test]
async fn cache_round_trips() {
    contract::cache_round_trips(&store("cache").await).await;
}

#[tokio::test]
async fn push_reaches_a_connection_on_moto() {
    let (clients, _, _) = setup("push").await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("endpoint");
    let push = ApiGatewayPush::new(&clients.config, &endpoint);
    push.push("conn-1", b"{\"type\":\"task.progress\"}")
        .await
        .expect("moto accepts posts to any connection");
}

/// A fake API Gateway management endpoint: 410 Gone for connection `gone`, 200 for the
/// rest. moto treats every connection as live, so Gone is shown here.
async fn fake_gateway() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head and the declared body.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let response = if text.starts_with("POST /@connections/gone ") {
                    "HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nx-amzn-ErrorType: GoneException\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn push_maps_410_to_gone_against_a_fake_gateway() {
    let (clients, _, _) = setup("gone").await;
    let push = ApiGatewayPush::new(&clients.config, &fake_gateway().await);
    push.push("live", b"hello")
        .await
        .expect("a live connection takes the message");
    match push.push("gone", b"hello").await {
        Err(PushError::Gone(id)) => assert_eq!(id, "gone"),
        other => panic!("expected Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn presigned_uploads_sign_the_size_and_expire() {
    let (_, blobs) = queue("presign").await;
    let tenant = contract::tenant();
    let key = nomaly_core::ports::BlobKey::for_tenant(&tenant, &["uploads", "d.csv"]).expect("key");
    let upload = blobs
        .presign_upload(&key, 1234, 900)
        .await
        .expect("presign");
    assert!(
        upload
            .url
            .contains(&format!("/tenants/{tenant}/uploads/d.csv")),
        "{}",
        upload.url
    );
    assert!(upload.url.contains("X-Amz-Expires=900"), "{}", upload.url);
    let signed = upload
        .url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .expect("signed headers listed");
    assert!(
        signed.split("%3B").any(|h| h == "content-length"),
        "content-length is signed: {signed}"
    );
    assert!(upload
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-length") && v == "1234"));
    assert_eq!(upload.method, "PUT");
    assert!(
        signed.split("%3B").any(|h| h == "if-none-match"),
        "if-none-match is signed: {signed}"
    );
    // The URL stores the object once: the second PUT finds it there (412).
    let body = vec![b'x'; 1234];
    assert_eq!(put(&upload, &body).await, 200, "the first upload is stored");
    assert_eq!(
        put(&upload, &body).await,
        412,
        "a second PUT cannot replace it"
    );
    let long = blobs
        .presign_upload(&key, 1, 10 * 24 * 3600)
        .await
        .expect("presign");
    assert!(
        long.url.contains("X-Amz-Expires=604800"),
        "clamped to 7 days: {}",
        long.url
    );
}

/// PUTs `body` to a presigned upload with the headers it lists, over plain HTTP/1.1 to
/// moto; returns the status.
async fn put(upload: &nomaly_core::ports::PresignedUpload, body: &[u8]) -> u16 {
    let rest = upload
        .url
        .strip_prefix("http://")
        .expect("moto is plain http");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to moto");
    let mut request = format!("PUT {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in &upload.headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    stream.write_all(body).await.expect("send the body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// moto never deletes items by TTL, so this shows the adapter's own expiry check on
/// reads; DynamoDB's deletion itself cannot be shown here.
#[tokio::test]
async fn expired_entries_are_not_returned_by_read_check_moto_never_deletes_by_ttl() {
    let s = store("ttl").await;
    contract::expired_entries_are_not_returned(&s, &s).await;
}

#[tokio::test]
async fn stale_running_tasks_are_found() {
    contract::stale_running_tasks_are_found(&store("stale").await).await;
}

#[tokio::test]
async fn sweeping_deletes_expired_records() {
    let s = store("sweep").await;
    contract::sweeping_deletes_expired_records(&s, &s, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_instances() {
    // Two stores on two SDK clients, as two Lambda instances would be.
    let (clients, names, _) = setup("rate").await;
    let a = DynamoStore::new(clients.dynamodb.clone(), &names.table, &names.events_table);
    let other = Clients::from_env(true).await;
    let b = DynamoStore::new(other.dynamodb.clone(), &names.table, &names.events_table);
    // moto's DynamoDB does not apply a conditional update atomically when requests race
    // (seen: 10 admitted of 24 at a limit of 7 on a loaded machine), so here the calls
    // alternate between the two instances; the racing form runs on SQLite.
    contract::rate_limits_hold_across_instances(&a, &b, contract::Calls::Alternating).await;
}

#[tokio::test]
async fn finishing_a_task_stores_both_or_neither() {
    let s = store("finish").await;
    contract::finishing_a_task_stores_both_or_neither(&s, &s).await;
}

#[tokio::test]
async fn stream_store_compare_and_set() {
    contract::stream_store_compare_and_set(&store("streams").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_store_batches_and_compare_and_set() {
    contract::entity_store_batches_and_compare_and_set(&store("entities").await).await;
}

/// Names the operation of every request a client sends (each attempt), for one test.
#[derive(Debug, Clone, Default)]
struct Requests(Arc<Mutex<Vec<String>>>);

impl Requests {
    /// The operations sent since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("requests"))
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "test-requests"
    }

    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown".to_string(), |m| m.name().to_string());
        self.0.lock().expect("requests").push(operation);
        Ok(())
    }
}

/// `count` entities of `stream` at version 1, each with `state_bytes` of state.
fn new_entities(stream: &Stream, count: usize, state_bytes: usize) -> Vec<(StreamEntity, Vec<u8>)> {
    let now = Timestamp::now();
    (0..count)
        .map(|i| {
            let entity = StreamEntity {
                tenant: stream.tenant.clone(),
                stream_id: stream.id.clone(),
                name: format!("e-{i:04}"),
                points: 1,
                anomalies: 0,
                last_timestamp: Some(1_700_000_000),
                last_anomaly: None,
                interval: None,
                threshold: None,
                recent: Vec::new(),
                version: 1,
                write_id: String::new(),
                created_at: now,
                updated_at: now,
            };
            (entity, vec![i as u8; state_bytes])
        })
        .collect()
}

/// Batches on DynamoDB, counted on the client: 250 entities are written in 3
/// `TransactWriteItems` (99 a transaction) and read in 3 `BatchGetItem`s (100 keys a
/// call, the count's among them); states near the item cap split transactions by bytes
/// (3.5 MB each). The process-wide [`nomaly_aws::sdk_calls`] counts them too.
#[tokio::test]
async fn entity_batches_take_few_sdk_calls() {
    let (clients, names, _) = setup("ecalls").await;
    let requests = Requests::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&clients.config)
        .interceptor(AwsCalls)
        .interceptor(requests.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let store = DynamoStore::new(client, &names.table, &names.events_table);
    let tenant = contract::tenant();
    let stream = Stream::new(
        tenant.clone(),
        "calls".into(),
        serde_json::json!({}),
        vec!["v".into()],
        0.9,
    );
    let entities = new_entities(&stream, 250, 1000);
    let names: Vec<String> = entities.iter().map(|(e, _)| e.name.clone()).collect();
    let before = sdk_calls();

    let written = store
        .put_entities(&tenant, &stream.id, &entities, 1000)
        .await
        .expect("put 250 entities");
    assert!(written.iter().all(|w| *w == EntityWritten::Stored));
    let put_calls = requests.take();
    let read = store
        .get_entities(&tenant, &stream.id, &names)
        .await
        .expect("get 250 entities");
    assert_eq!((read.entities.len(), read.count), (250, 250));
    let get_calls = requests.take();
    eprintln!("put of 250: {put_calls:?}; get of 250: {get_calls:?}");
    assert_eq!(
        put_calls,
        vec!["TransactWriteItems"; 3],
        "a put of 250 entities"
    );
    assert_eq!(get_calls, vec!["BatchGetItem"; 3], "a get of 250 entities");
    assert!(
        sdk_calls() - before >= 6,
        "the process-wide counter counts them"
    );

    // At the cap: the cancelled transaction returns the count, and the writes that fit
    // go in the next one (no read of the count between).
    let more: Vec<_> = new_entities(&stream, 255, 10).split_off(250);
    let written = store
        .put_entities(&tenant, &stream.id, &more, 252)
        .await
        .expect("put at the cap");
    assert_eq!(
        written
            .iter()
            .filter(|w| **w == EntityWritten::Stored)
            .count(),
        2
    );
    assert_eq!(
        requests.take(),
        vec!["TransactWriteItems"; 2],
        "one cancelled transaction, then the writes with room"
    );

    let big = Stream::new(
        tenant.clone(),
        "big".into(),
        serde_json::json!({}),
        vec!["v".into()],
        0.9,
    );
    let entities = new_entities(&big, 20, 300_000);
    let written = store
        .put_entities(&tenant, &big.id, &entities, 1000)
        .await
        .expect("put 20 large entities");
    assert!(written.iter().all(|w| *w == EntityWritten::Stored));
    assert_eq!(
        requests.take(),
        vec!["TransactWriteItems"; 2],
        "6 MB of state takes two transactions of at most 3.5 MB"
    );
}

type Counted = std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>;

/// The services on moto, with state larger than `inline_state_bytes` kept in S3, and a
/// count of the bucket's objects under a prefix.
async fn services(
    test: &str,
    inline_state_bytes: usize,
) -> (
    nomaly_core::service::Services,
    impl Fn(String) -> Counted + Sync,
) {
    let (clients, names, p) = setup(test).await;
    let deployment = nomaly_aws::deployment::Deployment {
        table: names.table.clone(),
        events_table: names.events_table.clone(),
        bucket: names.bucket.clone(),
        queue_url: p.queue_url.clone(),
        dead_letter_url: p.dead_letter_url.clone(),
        chunks_queue_url: p.chunks_queue_url.clone(),
        chunks_dead_letter_url: p.chunks_dead_letter_url.clone(),
        alerts_queue_url: p.alerts_queue_url.clone(),
        alerts_dead_letter_url: p.alerts_dead_letter_url.clone(),
        alert_bus: None,
        ws_endpoint: "http://127.0.0.1:9/unused".into(),
    };
    let settings = nomaly_core::service::Settings {
        stream_inline_state_bytes: inline_state_bytes,
        ..Default::default()
    };
    let (s3, bucket) = (clients.s3.clone(), names.bucket.clone());
    let count = move |prefix: String| -> Counted {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        Box::pin(async move {
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("list objects")
                .key_count()
                .unwrap_or(0) as usize
        })
    };
    (deployment.services(&clients, settings), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_writers_lose_nothing_inline() {
    let (s, count) = services("srace", 300_000).await;
    contract::concurrent_stream_writers_lose_nothing(&s, 2, 15, &count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_writers_lose_nothing_with_state_in_s3() {
    let (s, count) = services("sraceblob", 1024).await;
    contract::concurrent_stream_writers_lose_nothing(&s, 2, 15, &count).await;
}

#[tokio::test]
async fn blobs_read_by_range() {
    contract::blobs_read_by_range(&queue("ranges").await.1).await;
}

/// Every job carries its tenant as its `MessageGroupId` on the standard queue (SQS fair
/// queues). moto accepts and returns the group on a standard queue, but does not reorder
/// deliveries by it: the fairness itself is SQS's, and is not shown here.
#[tokio::test]
async fn jobs_carry_their_tenant_as_message_group() {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    use nomaly_core::domain::TenantId;
    use nomaly_core::ports::{Job, JobQueue};
    let (clients, _, p) = setup("groups").await;
    let q = SqsQueue::new(clients.sqs.clone(), &p.queue_url, &p.dead_letter_url);
    let job = |tenant: &str| Job {
        job_id: nomaly_core::ids::JobId::new(),
        tenant: TenantId::parse(tenant).expect("tenant"),
        kind: "train".into(),
        correlation_id: "c".into(),
        body: serde_json::json!({}),
    };
    let sent = [job("acme"), job("globex"), job("acme")];
    q.send(&sent).await.expect("send");
    let mut groups = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let out = clients
            .sqs
            .receive_message()
            .queue_url(&p.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            let job: Job = serde_json::from_str(m.body().expect("body")).expect("a job");
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned();
            groups.insert(job.job_id.to_string(), (job.tenant.to_string(), group));
        }
        if groups.len() == sent.len() {
            break;
        }
    }
    assert_eq!(groups.len(), sent.len(), "every job received: {groups:?}");
    for (id, (tenant, group)) in &groups {
        assert_eq!(
            group.as_deref(),
            Some(tenant.as_str()),
            "job {id}'s message group is its tenant"
        );
    }
    // Old messages, sent without a group, are still received and read.
    clients
        .sqs
        .send_message()
        .queue_url(&p.queue_url)
        .message_body(serde_json::to_string(&job("initech")).expect("encode"))
        .send()
        .await
        .expect("send without a group");
    let mut found = false;
    for _ in 0..20 {
        let got = q.receive(10, 60).await.expect("receive");
        if got.iter().any(|d| d.job.tenant.as_str() == "initech") {
            found = true;
            break;
        }
    }
    assert!(found, "a message without a group is received");
}
