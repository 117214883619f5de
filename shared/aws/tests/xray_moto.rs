//! X-Ray subsegments for SDK calls, against moto server (as `tests/run.sh` starts it) and
//! a UDP socket standing in for the X-Ray daemon (moto has none): each DynamoDB, S3 and
//! SQS call of the real clients arrives as a subsegment of the invocation's trace. A
//! test binary of its own, because it sets the process's trace variables as Lambda does.

use nomaly_aws::provision::{self, Names};
use nomaly_aws::{Clients, S3Blobs};
use nomaly_core::domain::TenantId;
use nomaly_core::ports::{BlobKey, BlobStore, UrlSigner};
use std::net::UdpSocket;
use std::time::Duration;

#[tokio::test]
async fn every_sdk_call_is_a_subsegment_of_the_invocation_trace() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "AWS_ENDPOINT_URL must point at moto server on loopback, got {endpoint:?}"
    );
    let daemon = UdpSocket::bind("127.0.0.1:0").expect("udp");
    daemon
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let root = "1-67a1b2c3-0123456789abcdef01234567";
    std::env::set_var(
        "_X_AMZN_TRACE_ID",
        format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=1"),
    );
    std::env::set_var(
        "AWS_XRAY_DAEMON_ADDRESS",
        daemon.local_addr().expect("addr").to_string(),
    );
    let clients = Clients::from_env(true).await;
    let suffix = nomaly_core::ids::JobId::new().as_str()[20..].to_ascii_lowercase();
    let names = Names::with_prefix(&format!("nm-xray-{suffix}"));
    provision::ensure(&clients, &names, 3)
        .await
        .expect("provision on moto");
    let blobs = S3Blobs::new(clients.s3.clone(), &names.bucket);
    let tenant = TenantId::parse("acme").expect("tenant");
    let key = BlobKey::for_tenant(&tenant, &["x", "a.json"]).expect("key");
    // Presigned URLs run the interceptors but call nothing: no subsegment.
    blobs.presign_upload(&key, 2, 60).await.expect("presign");
    blobs
        .presign_download(&key, "application/json", 60)
        .await
        .expect("presign");
    blobs.put_blob(&key, b"{}".to_vec()).await.expect("put");
    let missing = BlobKey::for_tenant(&tenant, &["x", "none.json"]).expect("key");
    assert_eq!(blobs.get_blob(&missing).await.expect("get"), None);

    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = daemon.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let (header, body) = text
            .split_once('\n')
            .expect("header line, then the document");
        assert_eq!(header, r#"{"format": "json", "version": 1}"#);
        let doc: serde_json::Value = serde_json::from_str(body).expect("json document");
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["trace_id"], root);
        assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(doc["id"].as_str().map(str::len), Some(16));
        assert!(doc["end_time"].as_f64() >= doc["start_time"].as_f64());
        seen.push(doc);
        if seen
            .iter()
            .any(|d| d["aws"]["operation"] == "GetObject" && d["http"]["response"]["status"] == 404)
        {
            break;
        }
    }
    let ops: Vec<String> = seen
        .iter()
        .map(|d| {
            format!(
                "{}.{}",
                d["name"].as_str().unwrap_or("?"),
                d["aws"]["operation"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!("subsegments: {ops:?}");
    for wanted in [
        "DynamoDB.CreateTable",
        "SQS.CreateQueue",
        "S3.CreateBucket",
        "S3.PutObject",
    ] {
        assert!(
            ops.iter().any(|o| o == wanted),
            "{wanted} missing from {ops:?}"
        );
    }
    let put = seen
        .iter()
        .find(|d| d["aws"]["operation"] == "PutObject")
        .expect("put");
    assert_eq!(put["http"]["response"]["status"], 200);
    assert_eq!(
        ops.iter().filter(|o| *o == "S3.PutObject").count(),
        1,
        "one PutObject made, none for the presigned URLs: {ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|o| *o == "S3.GetObject").count(),
        1,
        "{ops:?}"
    );
    assert!(put.get("error").is_none() && put.get("fault").is_none());
    let miss = seen
        .iter()
        .find(|d| d["aws"]["operation"] == "GetObject")
        .expect("the missing object's GetObject");
    assert_eq!(miss["error"], true, "a 404 is a client error");

    // Not sampled: nothing is sent.
    std::env::set_var(
        "_X_AMZN_TRACE_ID",
        format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=0"),
    );
    blobs.put_blob(&key, b"{}".to_vec()).await.expect("put");
    daemon
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    assert!(
        daemon.recv(&mut buf).is_err(),
        "an unsampled trace sends nothing"
    );
}
