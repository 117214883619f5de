//! nomaly's ports on AWS:
//!
//! - [`DynamoStore`]: one state table (single-table design, tenant-scoped keys, a GSI for
//!   per-tenant listings of keys and connections, TTL on connections, cache and
//!   idempotency items) and an append-only events table whose stream feeds the `events`
//!   function; task updates are conditional writes on a version.
//! - [`S3Blobs`]: blobs under tenant-scoped keys.
//! - [`SqsQueue`]: the jobs queue and its dead-letter queue.
//! - [`AwsAlertSender`]: alerts to webhooks and to the deployment's EventBridge bus.
//! - [`ApiGatewayPush`]: pushes through the API Gateway management API, 410 Gone mapped
//!   to [`nomaly_core::ports::PushError::Gone`].
//!
//! Clients are built once per process by [`Clients::from_env`], which honours
//! `AWS_ENDPOINT_URL` (moto server in the tests).

mod alerts;
mod calls;
pub mod deployment;
mod dynamo;
mod error;
pub mod provision;
mod push;
mod s3;
mod sqs;
pub mod xray;

pub use alerts::{AwsAlertSender, EVENT_SOURCE};
pub use calls::{sdk_calls, AwsCalls};
pub use dynamo::DynamoStore;
pub use push::{management_endpoint, ApiGatewayPush};
pub use s3::S3Blobs;
pub use sqs::SqsQueue;

/// The SDK clients, built once per process.
#[derive(Clone, Debug)]
pub struct Clients {
    /// The loaded configuration (region, credentials, endpoint).
    pub config: aws_config::SdkConfig,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge (alerts to a bus).
    pub events: aws_sdk_eventbridge::Client,
}

impl Clients {
    /// Loads the configuration from the environment (`AWS_REGION`, credentials,
    /// `AWS_ENDPOINT_URL`, ...). S3 uses path-style addressing when `s3_path_style` is set
    /// (local endpoints such as moto need it) or `NOMALY_S3_PATH_STYLE=1`.
    pub async fn from_env(s3_path_style: bool) -> Self {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let path_style =
            s3_path_style || std::env::var("NOMALY_S3_PATH_STYLE").is_ok_and(|v| v == "1");
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(path_style)
            .interceptor(AwsCalls)
            .build();
        let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(AwsCalls)
            .build();
        let sqs_config = aws_sdk_sqs::config::Builder::from(&config)
            .interceptor(AwsCalls)
            .build();
        let events_config = aws_sdk_eventbridge::config::Builder::from(&config)
            .interceptor(AwsCalls)
            .build();
        Clients {
            events: aws_sdk_eventbridge::Client::from_conf(events_config),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb_config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::from_conf(sqs_config),
            config,
        }
    }
}
