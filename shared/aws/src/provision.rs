//! Creating the tables, bucket and queues where nothing else does: against moto server
//! in the tests and for `nomaly serve --aws` on a local endpoint. On AWS the SAM template
//! creates them. Every step tolerates a resource that exists already.

use crate::error::sdk;
use crate::Clients;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use nomaly_core::ports::StoreResult;

/// The names of one deployment's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// State table.
    pub table: String,
    /// Events table.
    pub events_table: String,
    /// Bucket.
    pub bucket: String,
    /// Jobs queue.
    pub queue: String,
    /// Its dead-letter queue.
    pub dead_letter_queue: String,
    /// Batch chunks queue.
    pub chunks_queue: String,
    /// Its dead-letter queue.
    pub chunks_dead_letter_queue: String,
    /// Alert deliveries queue.
    pub alerts_queue: String,
    /// Its dead-letter queue.
    pub alerts_dead_letter_queue: String,
}

impl Names {
    /// Names with a common prefix, e.g. `nomaly-test-ab12`.
    pub fn with_prefix(prefix: &str) -> Self {
        Names {
            table: format!("{prefix}-state"),
            events_table: format!("{prefix}-events"),
            bucket: format!("{prefix}-blobs"),
            queue: format!("{prefix}-jobs"),
            dead_letter_queue: format!("{prefix}-jobs-dlq"),
            chunks_queue: format!("{prefix}-chunks"),
            chunks_dead_letter_queue: format!("{prefix}-chunks-dlq"),
            alerts_queue: format!("{prefix}-alerts"),
            alerts_dead_letter_queue: format!("{prefix}-alerts-dlq"),
        }
    }
}

/// Where the provisioned queues are.
#[derive(Debug, Clone)]
pub struct Provisioned {
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
}

fn key(name: &str, kind: KeyType) -> StoreResult<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(sdk("describe a key"))
}

fn string_attr(name: &str) -> StoreResult<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(sdk("describe an attribute"))
}

/// Creates both tables (with the `gsi1` index, TTL on `ttl`, and the events stream), the
/// bucket, and the jobs and chunks queues, each with a dead-letter queue after
/// `max_receives` receives.
pub async fn ensure(
    clients: &Clients,
    names: &Names,
    max_receives: u32,
) -> StoreResult<Provisioned> {
    let db = &clients.dynamodb;
    let existing = db.list_tables().send().await.map_err(sdk("list tables"))?;
    if !existing.table_names().contains(&names.table) {
        db.create_table()
            .table_name(&names.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attr("pk")?)
            .attribute_definitions(string_attr("sk")?)
            .attribute_definitions(string_attr("gsi1pk")?)
            .attribute_definitions(string_attr("gsi1sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("gsi1")
                    .key_schema(key("gsi1pk", KeyType::Hash)?)
                    .key_schema(key("gsi1sk", KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(sdk("describe the index"))?,
            )
            .send()
            .await
            .map_err(sdk("create the state table"))?;
        db.update_time_to_live()
            .table_name(&names.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .map_err(sdk("describe TTL"))?,
            )
            .send()
            .await
            .map_err(sdk("turn on TTL"))?;
    }
    if !existing.table_names().contains(&names.events_table) {
        db.create_table()
            .table_name(&names.events_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attr("pk")?)
            .attribute_definitions(string_attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .map_err(sdk("describe the stream"))?,
            )
            .send()
            .await
            .map_err(sdk("create the events table"))?;
    }
    let s3 = &clients.s3;
    if s3.head_bucket().bucket(&names.bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&names.bucket)
            .send()
            .await
            .map_err(sdk("create the bucket"))?;
    }
    let (queue_url, dead_letter_url) = queue_with_dead_letters(
        clients,
        &names.queue,
        &names.dead_letter_queue,
        max_receives,
    )
    .await?;
    let (chunks_queue_url, chunks_dead_letter_url) = queue_with_dead_letters(
        clients,
        &names.chunks_queue,
        &names.chunks_dead_letter_queue,
        max_receives,
    )
    .await?;
    let (alerts_queue_url, alerts_dead_letter_url) = queue_with_dead_letters(
        clients,
        &names.alerts_queue,
        &names.alerts_dead_letter_queue,
        max_receives,
    )
    .await?;
    Ok(Provisioned {
        queue_url,
        dead_letter_url,
        chunks_queue_url,
        chunks_dead_letter_url,
        alerts_queue_url,
        alerts_dead_letter_url,
    })
}

/// A queue that dead-letters to another after `max_receives` receives: both URLs.
async fn queue_with_dead_letters(
    clients: &Clients,
    name: &str,
    dead_letter_name: &str,
    max_receives: u32,
) -> StoreResult<(String, String)> {
    let sqs = &clients.sqs;
    let dlq = sqs
        .create_queue()
        .queue_name(dead_letter_name)
        .send()
        .await
        .map_err(sdk("create a dead-letter queue"))?;
    let dead_letter_url = dlq.queue_url().unwrap_or_default().to_string();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(sdk("read a dead-letter queue's ARN"))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.to_string()});
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(sdk("create a queue"))?;
    Ok((
        queue.queue_url().unwrap_or_default().to_string(),
        dead_letter_url,
    ))
}
