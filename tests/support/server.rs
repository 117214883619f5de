//! A real `nomaly serve` on a free loopback port with its own data folder, and the
//! clients the end-to-end tests drive it with: HTTP (reqwest) and WebSocket
//! (tokio-tungstenite).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A running server process; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its data folder.
    pub data_dir: PathBuf,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
}

impl Server {
    /// Starts `nomaly serve` on `data_dir` with extra arguments and environment, and
    /// waits for it to listen.
    pub fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::launch(Command::new(crate::binary("nomaly")), data_dir, args, envs)
    }

    /// As [`Server::start`], with the process's address space capped at `cap_kib` KiB
    /// (`ulimit -v`): an allocation past it fails instead of swapping the machine.
    pub fn start_capped(
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        cap_kib: u64,
    ) -> Server {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("ulimit -v {cap_kib} && exec \"$0\" \"$@\"")])
            .arg(crate::binary("nomaly"));
        Server::launch(cmd, data_dir, args, envs)
    }

    fn launch(mut cmd: Command, data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        std::fs::create_dir_all(data_dir).expect("data folder");
        let log = unique(data_dir.with_extension("log"));
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = cmd.spawn().expect("nomaly serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read the first line");
        let url = first
            .trim()
            .strip_prefix("nomaly listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {first:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGINT (Ctrl-C), then waits for the exit; returns whether it exited cleanly.
    pub fn interrupt(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`: the peak).
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A key for `tenant`, made with `nomaly keys create` on the server's data folder
    /// while it runs.
    pub fn key(&self, tenant: &str) -> String {
        crate::create_key(&[
            "keys",
            "create",
            "--tenant",
            tenant,
            "--data-dir",
            self.data_dir.to_str().expect("utf-8 path"),
        ])
    }

    /// The WebSocket URL with a key.
    pub fn ws_url(&self, key: &str) -> String {
        format!(
            "{}/ws?api_key={key}",
            self.url.replacen("http://", "ws://", 1)
        )
    }
}

fn unique(path: PathBuf) -> PathBuf {
    let mut n = 0;
    loop {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API client for one key.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    /// A client of `server` with `key`.
    pub fn new(server: &Server, key: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: server.url.clone(),
            key: key.to_string(),
        }
    }

    /// Sends a request; returns the status and the body as JSON (`Null` when empty or
    /// not JSON).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, bytes) = self.raw(method, path, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends a request; returns the status and the body bytes.
    pub async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Vec<u8>) {
        match body {
            Some(b) => {
                let bytes = serde_json::to_vec(&b).expect("a JSON body");
                self.send(method, path, Some("application/json"), bytes)
                    .await
            }
            None => self.send(method, path, None, Vec::new()).await,
        }
    }

    /// POSTs a CSV body; returns the status and the body as JSON (`Null` when not JSON).
    pub async fn post_csv(&self, path: &str, csv: impl Into<Vec<u8>>) -> (u16, Value) {
        let (status, bytes) = self.send("POST", path, Some("text/csv"), csv.into()).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends `body` as `content_type`, and checks the answer against the API's contract
    /// (`docs/openapi.json`): an answer the document does not allow fails the test.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(verb, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(c) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, c).body(body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let answered_as = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.expect("body").to_vec();
        if let Err(why) =
            crate::contract::contract().check(method, path, status, answered_as.as_deref(), &bytes)
        {
            panic!("the answer breaks the API contract (docs/openapi.json): {why}");
        }
        (status, bytes)
    }

    /// POSTs `body` to `path`, which must answer 202 with a task; returns the task id
    /// and the whole answer.
    pub async fn accepted(&self, path: &str, body: Value) -> (String, Value) {
        let (status, answer) = self.call("POST", path, Some(body)).await;
        assert_eq!(status, 202, "{answer}");
        let task = answer["task"]["id"]
            .as_str()
            .expect("a task id")
            .to_string();
        (task, answer)
    }

    /// Polls a task until it is finished; returns it.
    pub async fn wait_task(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (s, task) = self.call("GET", &format!("/v1/tasks/{id}"), None).await;
            assert_eq!(s, 200, "{task}");
            if matches!(
                task["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} not finished: {task}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers a dataset, uploads `bytes` to the URL it grants, and returns the
    /// dataset id and the URL.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> (String, String) {
        let (s, grant) = self
            .call(
                "POST",
                "/v1/datasets",
                Some(json!({"name": name, "size": bytes.len()})),
            )
            .await;
        assert_eq!(s, 201, "{grant}");
        let url = grant["upload"]["url"].as_str().expect("upload url");
        assert_eq!(self.put(url, bytes).await, 200, "upload accepted");
        let id = grant["dataset"]["id"].as_str().expect("dataset id");
        (id.to_string(), url.to_string())
    }

    /// PUTs `bytes` to a URL with no key (an upload URL); returns the status.
    pub async fn put(&self, url: &str, bytes: Vec<u8>) -> u16 {
        self.http
            .put(url)
            .body(bytes)
            .send()
            .await
            .expect("upload sent")
            .status()
            .as_u16()
    }
}

/// A WebSocket client.
pub struct Socket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Every message received so far.
    pub seen: Vec<Value>,
}

impl Socket {
    /// Connects with a key.
    pub async fn connect(server: &Server, key: &str) -> Socket {
        let (stream, _) = tokio_tungstenite::connect_async(server.ws_url(key))
            .await
            .expect("WebSocket connects");
        Socket {
            stream,
            seen: Vec::new(),
        }
    }

    /// Sends an action.
    pub async fn send(&mut self, action: Value) {
        self.stream
            .send(Message::Text(action.to_string().into()))
            .await
            .expect("message sent");
    }

    /// Subscribes to a channel and waits for the acknowledgement.
    pub async fn subscribe(&mut self, channel: &str) {
        self.send(json!({"action": "subscribe", "channel": channel}))
            .await;
        self.until(Duration::from_secs(10), |m| m["type"] == "subscribed")
            .await;
    }

    /// The next message within `within`, if any.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(within, self.stream.next())
                .await
                .ok()??;
            match msg.expect("socket read") {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("messages are JSON");
                    if let Err(why) = crate::contract::socket_contract().check(&v) {
                        panic!("{why}");
                    }
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a message matches; panics after `within`.
    pub async fn until(&mut self, within: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(m) if wanted(&m) => return m,
                Some(_) => continue,
                None => panic!("no matching message within {within:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Whatever arrives within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(m) = self.next(within).await {
            out.push(m);
        }
        out
    }
}
