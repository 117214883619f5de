//! The HTTPS client of webhooks. Each request resolves its host, checks every address
//! against the [`AddressPolicy`], and connects to the address it checked (the
//! client's resolution is pinned to it), so a name that answers differently the second
//! time (DNS rebinding) cannot reach what the check refused. Redirects are not followed,
//! proxies are not used, a request has 5 seconds, and at most 1 KiB of the answer is read.

use super::address::{forbidden, AddressPolicy};
use crate::ports::{AlertSender, SendOutcome, WebhookRequest};
use async_trait::async_trait;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long one webhook request may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The longest URL a rule may hold.
pub const MAX_URL_BYTES: usize = 2048;

/// The most of a receiver's answer read (for the delivery log's `last_error`).
const MAX_ANSWER_BYTES: usize = 1024;

/// Turns a host name into addresses.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The addresses of `host` (a name, not an IP literal) with `port`.
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// Sends webhooks over HTTPS; has no EventBridge (see `nomaly_aws` for the sender that
/// does).
#[derive(Clone)]
pub struct HttpSender {
    policy: AddressPolicy,
    resolver: Arc<dyn Resolve>,
}

/// Where one request goes: the URL, and (for a name) the address it is pinned to.
struct Target {
    url: reqwest::Url,
    pinned: Option<(String, SocketAddr)>,
}

/// Why a URL cannot be sent to: for good, or for now (the name did not resolve).
enum Unusable {
    Refused(String),
    Unresolved(String),
}

impl HttpSender {
    /// A sender under `policy`, resolving names with `resolver`.
    pub fn new(policy: AddressPolicy, resolver: Arc<dyn Resolve>) -> Self {
        // reqwest's rustls needs a process-wide provider; aws-lc-rs is the one the AWS
        // SDK already links. Installing it twice is harmless.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        HttpSender { policy, resolver }
    }

    /// A sender with the system resolver.
    pub fn system(policy: AddressPolicy) -> Self {
        Self::new(policy, Arc::new(SystemResolver))
    }

    async fn target(&self, url: &str) -> Result<Target, Unusable> {
        let refused = |why: String| Unusable::Refused(why);
        if url.len() > MAX_URL_BYTES {
            return Err(refused(format!(
                "the URL is longer than {MAX_URL_BYTES} bytes"
            )));
        }
        let parsed =
            reqwest::Url::parse(url).map_err(|e| refused(format!("the URL is not valid: {e}")))?;
        let plain_http = match parsed.scheme() {
            "https" => false,
            "http" if self.policy.allow_loopback => true,
            "http" => {
                return Err(refused(
                    "the URL must be https (plain http only to loopback, on a local server started with --allow-loopback-webhooks)".into(),
                ))
            }
            other => return Err(refused(format!("the URL's scheme is {other}; it must be https"))),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused(
                "the URL may not carry a user name or password".into(),
            ));
        }
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| refused("the URL has no port".into()))?;
        let (addresses, name) = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => (vec![SocketAddr::new(IpAddr::V4(ip), port)], None),
            Some(url::Host::Ipv6(ip)) => (vec![SocketAddr::new(IpAddr::V6(ip), port)], None),
            Some(url::Host::Domain(name)) => {
                let found =
                    self.resolver.lookup(name, port).await.map_err(|e| {
                        Unusable::Unresolved(format!("{name} did not resolve: {e}"))
                    })?;
                if found.is_empty() {
                    return Err(Unusable::Unresolved(format!("{name} has no address")));
                }
                (found, Some(name.to_string()))
            }
            None => return Err(refused("the URL has no host".into())),
        };
        for a in &addresses {
            if let Some(why) = forbidden(a.ip(), self.policy) {
                let host = name
                    .as_deref()
                    .map(|n| format!("{n} resolves to "))
                    .unwrap_or_default();
                return Err(refused(format!(
                    "{host}{}, {why}: webhooks may not go there",
                    a.ip()
                )));
            }
            if plain_http && !a.ip().is_loopback() {
                return Err(refused(format!(
                    "plain http goes only to loopback; {} is not: use https",
                    a.ip()
                )));
            }
        }
        Ok(Target {
            url: parsed,
            pinned: name.map(|n| (n, addresses[0])),
        })
    }

    /// POSTs `request`, returning what became of it.
    pub async fn send(&self, request: &WebhookRequest) -> SendOutcome {
        let target = match self.target(&request.url).await {
            Ok(t) => t,
            Err(Unusable::Refused(error)) => {
                return SendOutcome::Refused {
                    status: None,
                    error,
                }
            }
            Err(Unusable::Unresolved(error)) => {
                return SendOutcome::Retry {
                    status: None,
                    error,
                }
            }
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("nomaly-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some((name, address)) = &target.pinned {
            builder = builder.resolve(name, *address);
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                return SendOutcome::Retry {
                    status: None,
                    error: format!("the HTTP client could not be built: {e}"),
                }
            }
        };
        let mut call = client
            .post(target.url)
            .header("Content-Type", "application/json")
            .body(request.body.clone());
        for (name, value) in &request.headers {
            call = call.header(name, value);
        }
        let mut answer = match call.send().await {
            Ok(a) => a,
            Err(e) if e.is_timeout() => {
                return SendOutcome::Retry {
                    status: None,
                    error: format!("no answer within {} s", TIMEOUT.as_secs()),
                }
            }
            Err(e) => {
                return SendOutcome::Retry {
                    status: None,
                    error: format!("the request failed: {}", chain(&e)),
                }
            }
        };
        let status = answer.status().as_u16();
        if answer.status().is_success() {
            return SendOutcome::Delivered { status };
        }
        let mut text = Vec::new();
        while text.len() < MAX_ANSWER_BYTES {
            match tokio::time::timeout(TIMEOUT, answer.chunk()).await {
                Ok(Ok(Some(chunk))) => text.extend_from_slice(&chunk),
                _ => break,
            }
        }
        text.truncate(MAX_ANSWER_BYTES);
        let said = String::from_utf8_lossy(&text).trim().to_string();
        let error = if said.is_empty() {
            format!("the receiver answered {status}")
        } else {
            format!("the receiver answered {status}: {said}")
        };
        if status >= 500 || status == 408 || status == 429 {
            SendOutcome::Retry {
                status: Some(status),
                error,
            }
        } else {
            SendOutcome::Refused {
                status: Some(status),
                error,
            }
        }
    }

    /// Whether `url` may be a webhook now (`Err` says why not).
    pub async fn check(&self, url: &str) -> Result<(), String> {
        match self.target(url).await {
            Ok(_) => Ok(()),
            Err(Unusable::Refused(why) | Unusable::Unresolved(why)) => Err(why),
        }
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl AlertSender for HttpSender {
    async fn check_url(&self, url: &str) -> Result<(), String> {
        self.check(url).await
    }

    async fn post(&self, request: &WebhookRequest) -> SendOutcome {
        self.send(request).await
    }

    fn bus(&self) -> Option<&str> {
        None
    }

    async fn put_event(&self, _bus: &str, _detail_type: &str, _detail: &str) -> SendOutcome {
        SendOutcome::Refused {
            status: None,
            error: "EventBridge destinations need the AWS deployment".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every name with fixed addresses.
    struct Fixed(Vec<IpAddr>);

    #[async_trait]
    impl Resolve for Fixed {
        async fn lookup(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
            Ok(self.0.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
        }
    }

    fn sender(ips: &[&str], allow_loopback: bool) -> HttpSender {
        HttpSender::new(
            AddressPolicy { allow_loopback },
            Arc::new(Fixed(ips.iter().map(|i| i.parse().expect("ip")).collect())),
        )
    }

    #[tokio::test]
    async fn urls_are_checked_on_what_they_resolve_to() {
        let public = sender(&["93.184.216.34"], false);
        assert_eq!(public.check("https://hooks.example.com/x").await, Ok(()));
        let why = public
            .check("http://hooks.example.com/x")
            .await
            .expect_err("http");
        assert!(why.contains("must be https"), "{why}");
        let why = public
            .check("https://169.254.169.254/latest")
            .await
            .expect_err("metadata");
        assert!(why.contains("link-local"), "{why}");
        let why = public
            .check("https://[fd00:ec2::254]/")
            .await
            .expect_err("metadata v6");
        assert!(why.contains("unique local"), "{why}");
        let why = public
            .check("https://u:p@hooks.example.com/")
            .await
            .expect_err("creds");
        assert!(why.contains("user name"), "{why}");
        let why = public
            .check("ftp://hooks.example.com/")
            .await
            .expect_err("scheme");
        assert!(why.contains("scheme"), "{why}");

        // A name that resolves to the metadata service, even beside a public address.
        let rebinding = sender(&["93.184.216.34", "169.254.169.254"], false);
        let why = rebinding
            .check("https://metadata.example.com/")
            .await
            .expect_err("refused");
        assert!(
            why.contains("metadata.example.com resolves to 169.254.169.254"),
            "{why}"
        );

        let local = sender(&["127.0.0.1"], true);
        assert_eq!(local.check("http://localhost:8080/hook").await, Ok(()));
        let aws = sender(&["127.0.0.1"], false);
        assert!(aws.check("https://localhost/hook").await.is_err());
        let private_http = sender(&["10.0.0.5"], true);
        assert!(private_http.check("http://intranet/hook").await.is_err());
    }

    #[tokio::test]
    async fn a_refused_address_is_never_connected_to() {
        let rebinding = sender(&["169.254.169.254"], false);
        let outcome = rebinding
            .send(&WebhookRequest {
                url: "https://metadata.example.com/".into(),
                headers: vec![],
                body: b"{}".to_vec(),
            })
            .await;
        assert!(
            matches!(&outcome, SendOutcome::Refused { status: None, error } if error.contains("169.254.169.254")),
            "{outcome:?}"
        );
    }
}
