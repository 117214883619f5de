//! The HTTPS client of webhooks. Each request resolves its host, checks every address
//! against the [`AddressPolicy`], and opens its own connection to the address it checked
//! (TLS names the host; nothing resolves it again), so a name that answers differently
//! the second time (DNS rebinding) cannot reach what the check refused. No redirect is
//! followed and no proxy used; a request has 5 seconds in all, and at most 1 KiB of the
//! answer is read.
//!
//! Built on hyper and tokio-rustls with the aws-lc-rs provider named explicitly, so no
//! process-wide TLS setting is needed or changed.

use super::address::{forbidden, AddressPolicy};
use crate::ports::{AlertSender, SendOutcome, WebhookRequest};
use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

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
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

/// Where one request goes: the URL, the address checked, and the host as TLS and the
/// `Host` header name it.
struct Target {
    url: url::Url,
    address: SocketAddr,
    host: String,
    tls: bool,
}

/// Why a URL cannot be sent to: for good, or for now (the name did not resolve).
enum Unusable {
    Refused(String),
    Unresolved(String),
}

/// The TLS client configuration: the system's roots, aws-lc-rs.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no trusted root certificates were found on this system".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS cannot be set up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

impl HttpSender {
    /// A sender under `policy`, resolving names with `resolver`.
    pub fn new(policy: AddressPolicy, resolver: Arc<dyn Resolve>) -> Self {
        let tls = tls_config();
        if let Err(why) = &tls {
            tracing::warn!(why, "https webhooks cannot be sent");
        }
        HttpSender {
            policy,
            resolver,
            tls,
        }
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
            url::Url::parse(url).map_err(|e| refused(format!("the URL is not valid: {e}")))?;
        let tls = match parsed.scheme() {
            "https" => true,
            "http" if self.policy.allow_loopback => false,
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
            if !tls && !a.ip().is_loopback() {
                return Err(refused(format!(
                    "plain http goes only to loopback; {} is not: use https",
                    a.ip()
                )));
            }
        }
        let host = name.unwrap_or_else(|| addresses[0].ip().to_string());
        Ok(Target {
            url: parsed,
            address: addresses[0],
            host,
            tls,
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
        let answer = match tokio::time::timeout(TIMEOUT, self.exchange(&target, request)).await {
            Ok(Ok(a)) => a,
            Ok(Err(error)) => {
                return SendOutcome::Retry {
                    status: None,
                    error,
                }
            }
            Err(_) => {
                return SendOutcome::Retry {
                    status: None,
                    error: format!("no answer within {} s", TIMEOUT.as_secs()),
                }
            }
        };
        let (status, said) = answer;
        if (200..300).contains(&status) {
            return SendOutcome::Delivered { status };
        }
        let said = String::from_utf8_lossy(&said).trim().to_string();
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

    /// Connects to the checked address (TLS for `https`) and makes the request: the
    /// status and up to [`MAX_ANSWER_BYTES`] of the body.
    async fn exchange(
        &self,
        target: &Target,
        request: &WebhookRequest,
    ) -> Result<(u16, Vec<u8>), String> {
        let tcp = tokio::net::TcpStream::connect(target.address)
            .await
            .map_err(|e| format!("could not connect to {}: {e}", target.address))?;
        if !target.tls {
            return post_over(tcp, target, request).await;
        }
        let config = self.tls.clone()?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("{} is not a name TLS can check: {e}", target.host))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("the TLS handshake with {} failed: {e}", target.host))?;
        post_over(stream, target, request).await
    }

    /// Whether `url` may be a webhook now (`Err` says why not).
    pub async fn check(&self, url: &str) -> Result<(), String> {
        match self.target(url).await {
            Ok(_) => Ok(()),
            Err(Unusable::Refused(why) | Unusable::Unresolved(why)) => Err(why),
        }
    }
}

/// One HTTP/1.1 POST on `io`.
async fn post_over<S>(
    io: S,
    target: &Target,
    request: &WebhookRequest,
) -> Result<(u16, Vec<u8>), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("the HTTP handshake failed: {}", chain(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut path = target.url.path().to_string();
    if let Some(q) = target.url.query() {
        path.push('?');
        path.push_str(q);
    }
    let host = match target.url.port() {
        Some(port) => format!("{}:{port}", target.url.host_str().unwrap_or(&target.host)),
        None => target.url.host_str().unwrap_or(&target.host).to_string(),
    };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("nomaly-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::CONNECTION, "close");
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let call = builder
        .body(Full::new(Bytes::from(request.body.clone())))
        .map_err(|e| format!("the request could not be made: {e}"))?;
    let answer = sender
        .send_request(call)
        .await
        .map_err(|e| format!("the request failed: {}", chain(&e)))?;
    let status = answer.status().as_u16();
    let mut body = answer.into_body();
    let mut said = Vec::new();
    while said.len() < MAX_ANSWER_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    said.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    said.truncate(MAX_ANSWER_BYTES);
    Ok((status, said))
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
