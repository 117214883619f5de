//! A deployment's resources, named by environment variables (the SAM template sets them
//! on every function; `nomaly serve --aws` and the tests set them by hand), and the
//! [`Services`] built on them.

use crate::{ApiGatewayPush, AwsAlertSender, Clients, DynamoStore, S3Blobs, SqsQueue};
use nomaly_core::service::{BadSetting, Queues, Services, Settings};
use std::sync::Arc;

/// State table name.
pub const TABLE: &str = "NOMALY_TABLE";
/// Events table name.
pub const EVENTS_TABLE: &str = "NOMALY_EVENTS_TABLE";
/// Bucket name.
pub const BUCKET: &str = "NOMALY_BUCKET";
/// Jobs queue URL.
pub const JOBS_QUEUE_URL: &str = "NOMALY_JOBS_QUEUE_URL";
/// Dead-letter queue URL.
pub const JOBS_DLQ_URL: &str = "NOMALY_JOBS_DLQ_URL";
/// Batch chunks queue URL.
pub const CHUNKS_QUEUE_URL: &str = "NOMALY_CHUNKS_QUEUE_URL";
/// Its dead-letter queue URL.
pub const CHUNKS_DLQ_URL: &str = "NOMALY_CHUNKS_DLQ_URL";
/// Alert deliveries queue URL.
pub const ALERTS_QUEUE_URL: &str = "NOMALY_ALERTS_QUEUE_URL";
/// Its dead-letter queue URL.
pub const ALERTS_DLQ_URL: &str = "NOMALY_ALERTS_DLQ_URL";
/// The EventBridge bus alerts may go to (optional: without it, EventBridge destinations
/// are refused).
pub const ALERT_BUS: &str = "NOMALY_ALERT_BUS";
/// WebSocket management endpoint (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
pub const WS_ENDPOINT: &str = "NOMALY_WS_ENDPOINT";

/// Every variable [`Deployment::from_env`] requires.
pub const REQUIRED: [&str; 10] = [
    TABLE,
    EVENTS_TABLE,
    BUCKET,
    JOBS_QUEUE_URL,
    JOBS_DLQ_URL,
    CHUNKS_QUEUE_URL,
    CHUNKS_DLQ_URL,
    ALERTS_QUEUE_URL,
    ALERTS_DLQ_URL,
    WS_ENDPOINT,
];

/// What is wrong with the environment.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// A required variable is not set.
    #[error("environment variable {0} is not set (the SAM template sets it on every function)")]
    Missing(&'static str),
    /// A tunable is not a number.
    #[error(transparent)]
    Setting(#[from] BadSetting),
}

/// Where a deployment's resources are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// State table.
    pub table: String,
    /// Events table.
    pub events_table: String,
    /// Bucket.
    pub bucket: String,
    /// Jobs queue URL.
    pub queue_url: String,
    /// Dead-letter queue URL.
    pub dead_letter_url: String,
    /// Chunks queue URL.
    pub chunks_queue_url: String,
    /// Its dead-letter queue URL.
    pub chunks_dead_letter_url: String,
    /// Alert deliveries queue URL.
    pub alerts_queue_url: String,
    /// Its dead-letter queue URL.
    pub alerts_dead_letter_url: String,
    /// The EventBridge bus alerts may go to.
    pub alert_bus: Option<String>,
    /// WebSocket management endpoint.
    pub ws_endpoint: String,
}

fn required(name: &'static str) -> Result<String, DeploymentError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(DeploymentError::Missing(name))
}

impl Deployment {
    /// Reads every variable of [`REQUIRED`].
    pub fn from_env() -> Result<Self, DeploymentError> {
        Ok(Deployment {
            table: required(TABLE)?,
            events_table: required(EVENTS_TABLE)?,
            bucket: required(BUCKET)?,
            queue_url: required(JOBS_QUEUE_URL)?,
            dead_letter_url: required(JOBS_DLQ_URL)?,
            chunks_queue_url: required(CHUNKS_QUEUE_URL)?,
            chunks_dead_letter_url: required(CHUNKS_DLQ_URL)?,
            alerts_queue_url: required(ALERTS_QUEUE_URL)?,
            alerts_dead_letter_url: required(ALERTS_DLQ_URL)?,
            alert_bus: std::env::var(ALERT_BUS)
                .ok()
                .filter(|b| !b.trim().is_empty()),
            ws_endpoint: required(WS_ENDPOINT)?,
        })
    }

    /// The services on this deployment's resources, with `clients` built once by the
    /// caller.
    pub fn services(&self, clients: &Clients, settings: Settings) -> Services {
        let blobs = Arc::new(S3Blobs::new(clients.s3.clone(), &self.bucket));
        Services::assemble(
            Arc::new(DynamoStore::new(
                clients.dynamodb.clone(),
                &self.table,
                &self.events_table,
            )),
            blobs.clone(),
            blobs,
            Queues {
                jobs: Arc::new(SqsQueue::new(
                    clients.sqs.clone(),
                    &self.queue_url,
                    &self.dead_letter_url,
                )),
                chunks: Arc::new(SqsQueue::new(
                    clients.sqs.clone(),
                    &self.chunks_queue_url,
                    &self.chunks_dead_letter_url,
                )),
                alerts: Arc::new(SqsQueue::new(
                    clients.sqs.clone(),
                    &self.alerts_queue_url,
                    &self.alerts_dead_letter_url,
                )),
            },
            Arc::new(ApiGatewayPush::new(&clients.config, &self.ws_endpoint)),
            Arc::new(AwsAlertSender::new(
                clients.events.clone(),
                self.alert_bus.clone(),
            )),
            settings,
        )
    }
}

/// Builds the clients and the services from the environment: what every function does
/// once, at init.
pub async fn services_from_env() -> Result<Services, DeploymentError> {
    let deployment = Deployment::from_env()?;
    let settings = Settings::from_env()?;
    let clients = Clients::from_env(false).await;
    Ok(deployment.services(&clients, settings))
}
