//! `nomaly watch`: a WebSocket client for the terminal. Connects with a key, subscribes to
//! a channel and prints every message as one JSON line, until a message of a given type
//! arrives (or forever).

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use std::io::Write;
use tokio_tungstenite::tungstenite::Message;

/// Arguments of `nomaly watch`.
#[derive(clap::Args)]
pub struct Args {
    /// The server (`http://...` or `ws://...`; `/ws` is added when there is no path).
    #[arg(long, env = "NOMALY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key.
    #[arg(long, env = "NOMALY_API_KEY")]
    key: String,
    /// Channel: `tenant` (everything of the key's tenant), `task:<id>` or `model:<id>`.
    #[arg(long, default_value = "tenant")]
    channel: String,
    /// Stop after the first message of this type (e.g. `task.completed`).
    #[arg(long)]
    until: Option<String>,
}

fn socket_url(url: &str, key: &str) -> Result<String> {
    let url = url.trim_end_matches('/');
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        ("ws://", r)
    } else if let Some(r) = url.strip_prefix("https://") {
        ("wss://", r)
    } else if let Some(r) = url.strip_prefix("ws://") {
        ("ws://", r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        ("wss://", r)
    } else {
        bail!("--url must start with http://, https://, ws:// or wss://, got {url}");
    };
    let path = if rest.contains('/') { "" } else { "/ws" };
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("the key has characters no API key has");
    }
    Ok(format!("{scheme}{rest}{path}?api_key={key}"))
}

pub fn run(args: Args) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch(args))
}

async fn watch(args: Args) -> Result<()> {
    let url = socket_url(&args.url, args.key.trim())?;
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| {
            format!(
                "connecting to {} (is the server up, and the key valid?)",
                args.url
            )
        })?;
    let subscribe = serde_json::json!({"action": "subscribe", "channel": args.channel});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .context("subscribing")?;
    let mut out = std::io::stdout().lock();
    while let Some(message) = socket.next().await {
        let text = match message.context("reading from the socket")? {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        writeln!(out, "{text}").context("writing to standard output")?;
        out.flush().context("writing to standard output")?;
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(String::from));
        if kind.as_deref() == Some("error") {
            bail!("the server refused an action: {text}");
        }
        if args.until.is_some() && kind == args.until {
            let _ = socket.close(None).await;
            return Ok(());
        }
    }
    if let Some(until) = &args.until {
        bail!("the connection closed before a {until} message arrived");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::socket_url;

    #[test]
    fn socket_urls_from_server_urls() {
        let key = "nmk_key_1_abc";
        assert_eq!(
            socket_url("http://127.0.0.1:8080/", key).ok().as_deref(),
            Some("ws://127.0.0.1:8080/ws?api_key=nmk_key_1_abc")
        );
        assert_eq!(
            socket_url("wss://abc.execute-api.eu-west-1.amazonaws.com/live", key)
                .ok()
                .as_deref(),
            Some("wss://abc.execute-api.eu-west-1.amazonaws.com/live?api_key=nmk_key_1_abc")
        );
        assert!(socket_url("ftp://x", key).is_err());
        assert!(socket_url("http://x", "a&b=c").is_err());
    }
}
