//! Libraries whose logs below `info` carry what passes through them.
//!
//! At `trace`, lambda_runtime logs every raw event it receives (API keys in headers and
//! query strings, request bodies, uploaded rows), and the HTTP and AWS SDK crates log
//! requests and responses (signed headers, DynamoDB items). Every entry point caps these
//! targets at `info` whatever level `RUST_LOG` asks for, so no level writes a raw event.

/// Target prefixes (a target matches when it starts with one) capped at `info`.
pub const CAPPED_AT_INFO: &[&str] = &[
    "lambda_runtime",
    "lambda_http",
    "aws_lambda_events",
    "aws_smithy",
    "aws_sigv4",
    "aws_sdk_",
    "aws_config",
    "aws_runtime",
    "aws_credential_types",
    "hyper",
    "h2",
    "http_body",
    "tower",
    "axum",
    "tungstenite",
    "tokio_tungstenite",
    "rustls",
    "reqwest",
];
