//! X-Ray subsegments for the SDK calls an invocation makes. With active tracing, Lambda
//! gives each invocation a trace header (`_X_AMZN_TRACE_ID`, which lambda_runtime sets
//! per event) and a daemon to send segment documents to (`AWS_XRAY_DAEMON_ADDRESS`, UDP).
//! Each DynamoDB, S3, SQS and API Gateway call becomes a subsegment of the function's
//! segment, so the trace shows where an invocation's time went. Without those variables
//! (locally, in tests) nothing is sent.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The parts of an `X-Amzn-Trace-Id` header a subsegment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    /// `Root=`: the trace.
    pub root: String,
    /// `Parent=`: the segment the subsegment belongs to.
    pub parent: String,
    /// `Sampled=1`.
    pub sampled: bool,
}

impl TraceHeader {
    /// Parses `Root=1-...;Parent=...;Sampled=1` (any order, other fields ignored).
    pub fn parse(header: &str) -> Option<Self> {
        let (mut root, mut parent, mut sampled) = (None, None, false);
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", v)) => root = Some(v.to_string()),
                Some(("Parent", v)) => parent = Some(v.to_string()),
                Some(("Sampled", v)) => sampled = v == "1",
                _ => {}
            }
        }
        Some(TraceHeader {
            root: root?,
            parent: parent?,
            sampled,
        })
    }
}

/// The daemon's UDP address from `AWS_XRAY_DAEMON_ADDRESS`: `host:port`, or
/// `udp:host:port tcp:host:port`.
pub fn daemon_address(value: &str) -> Option<SocketAddr> {
    let udp = value
        .split_whitespace()
        .find_map(|p| p.strip_prefix("udp:"))
        .unwrap_or_else(|| value.trim());
    udp.to_socket_addrs().ok()?.next()
}

/// One finished call.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The service, as the SDK names it (`dynamodb`, `s3`, `sqs`, ...).
    pub service: &'a str,
    /// The operation (`PutItem`, ...).
    pub operation: &'a str,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// The last HTTP status, if a response came.
    pub status: Option<u16>,
    /// Whether it failed.
    pub failed: bool,
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The name X-Ray's service map shows for an SDK service.
fn display_name(service: &str) -> &str {
    match service.to_ascii_lowercase().as_str() {
        "dynamodb" => "DynamoDB",
        "s3" => "S3",
        "sqs" => "SQS",
        "apigatewaymanagementapi" | "apigatewaymanagement" => "ApiGatewayManagementApi",
        _ => service,
    }
}

/// The segment document of `call` as a subsegment of `header`'s segment, with `id`.
pub fn document(header: &TraceHeader, call: &Call<'_>, id: &str) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "name": display_name(call.service),
        "id": id,
        "trace_id": header.root,
        "parent_id": header.parent,
        "type": "subsegment",
        "namespace": "aws",
        "start_time": seconds(call.start),
        "end_time": seconds(call.end),
        "aws": {"operation": call.operation},
    });
    if let Some(status) = call.status {
        doc["http"] = serde_json::json!({"response": {"status": status}});
    }
    match call.status {
        Some(400..=499) => doc["error"] = true.into(),
        Some(500..=599) => doc["fault"] = true.into(),
        _ if call.failed => doc["fault"] = true.into(),
        _ => {}
    }
    doc
}

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    hex::encode(bytes)
}

/// Sends `call` to the X-Ray daemon as a subsegment of the current invocation's trace,
/// when there is a sampled trace and a daemon. Best effort: a lost datagram loses one
/// subsegment, never the call.
pub fn record(call: &Call<'_>) {
    let (Ok(header), Ok(address)) = (
        std::env::var("_X_AMZN_TRACE_ID"),
        std::env::var("AWS_XRAY_DAEMON_ADDRESS"),
    ) else {
        return;
    };
    let (Some(header), Some(address)) = (TraceHeader::parse(&header), daemon_address(&address))
    else {
        return;
    };
    if !header.sampled {
        return;
    }
    static SOCKET: OnceLock<Option<UdpSocket>> = OnceLock::new();
    let Some(socket) = SOCKET.get_or_init(|| UdpSocket::bind("0.0.0.0:0").ok()) else {
        return;
    };
    let datagram = format!(
        "{{\"format\": \"json\", \"version\": 1}}\n{}",
        document(&header, call, &new_id())
    );
    if let Err(e) = socket.send_to(datagram.as_bytes(), address) {
        tracing::debug!(error = %e, "x-ray subsegment not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn trace_headers_parse_in_any_order() {
        let h = TraceHeader::parse(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .expect("parses");
        assert_eq!(h.root, "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(h.parent, "53995c3f42cd8ad8");
        assert!(h.sampled);
        let h = TraceHeader::parse("Sampled=0;Lineage=a:1;Parent=b;Root=r").expect("parses");
        assert!(!h.sampled && h.parent == "b" && h.root == "r");
        assert_eq!(TraceHeader::parse("Root=r;Sampled=1"), None, "no parent");
    }

    #[test]
    fn daemon_addresses_come_in_two_forms() {
        assert_eq!(
            daemon_address("169.254.79.129:2000"),
            Some("169.254.79.129:2000".parse().expect("addr"))
        );
        assert_eq!(
            daemon_address("tcp:127.0.0.1:2000 udp:127.0.0.1:2001"),
            Some("127.0.0.1:2001".parse().expect("addr"))
        );
        assert_eq!(daemon_address("nonsense"), None);
    }

    #[test]
    fn a_call_becomes_a_subsegment_of_the_invocation() {
        let header =
            TraceHeader::parse("Root=1-a-b;Parent=0123456789abcdef;Sampled=1").expect("header");
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let call = Call {
            service: "dynamodb",
            operation: "PutItem",
            start,
            end: start + Duration::from_millis(12),
            status: Some(400),
            failed: true,
        };
        let doc = document(&header, &call, "00000000000000aa");
        assert_eq!(doc["name"], "DynamoDB");
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["trace_id"], "1-a-b");
        assert_eq!(doc["parent_id"], "0123456789abcdef");
        assert_eq!(doc["aws"]["operation"], "PutItem");
        assert_eq!(doc["http"]["response"]["status"], 400);
        assert_eq!(doc["error"], true);
        assert!(doc.get("fault").is_none());
        let (s, e) = (
            doc["start_time"].as_f64().expect("start"),
            doc["end_time"].as_f64().expect("end"),
        );
        assert!((s - 1_700_000_000.25).abs() < 1e-6 && ((e - s) - 0.012).abs() < 1e-6);
        let lost = Call {
            status: None,
            ..call
        };
        assert_eq!(document(&header, &lost, "b")["fault"], true);
    }
}
