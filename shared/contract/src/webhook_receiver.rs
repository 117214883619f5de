//! What the alert tests share: a webhook receiver (a real HTTP/1.1 server on loopback
//! that records each request and answers the statuses of a script in turn, then 200, so
//! a test can make a receiver fail twice, or never answer 2xx), and a series whose
//! anomalies make an episode.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    /// Header names in lower case, and values.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Got {
    /// The body as JSON, after checking its `Nomaly-Signature` with `secret` as a
    /// receiver does (now, within the replay window). Panics if it does not check.
    pub fn verified(&self, secret: &str) -> serde_json::Value {
        use nomaly_core::webhook;
        let header = self
            .headers
            .get("nomaly-signature")
            .expect("a signature header");
        let now = nomaly_core::time::Timestamp::now().seconds();
        webhook::verify(
            secret,
            header,
            &self.body,
            now,
            webhook::signature::REPLAY_WINDOW_SECS,
        )
        .expect("the signature checks with the rule's secret");
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver on loopback: answers the statuses of its script in turn, then 200.
pub struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    /// Starts a receiver answering `script`'s statuses in turn, then 200.
    pub async fn start(script: &[u16]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let (got2, script2) = (got.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (got, script) = (got2.clone(), script2.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    got.lock().unwrap_or_else(|p| p.into_inner()).push(request);
                    let status = script
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop_front()
                        .unwrap_or(200);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
        }
    }

    /// The requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Got> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Got { headers, body })
}

/// Five days of a daily cycle at five-minute steps (`{"timestamp", "value"}` points),
/// with an episode from point `first`: four spikes 40 points (200 minutes) apart, each
/// twice the last. (A stream flags a run of anomalous points once, so an episode of
/// several flags is a string of spikes.)
pub fn episode_series(first: usize) -> Vec<serde_json::Value> {
    (0..1440usize)
        .map(|i| {
            let t = 1_396_310_400 + 300 * i as i64;
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let wobble = ((i * 7919) % 13) as f64 * 0.05;
            let k = i.wrapping_sub(first);
            let spike = if k < 160 && k.is_multiple_of(40) {
                60.0 * f64::from(1u32 << (k / 40))
            } else {
                0.0
            };
            serde_json::json!({"timestamp": t, "value": 50.0 + 20.0 * phase.sin() + wobble + spike})
        })
        .collect()
}
