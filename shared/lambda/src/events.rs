//! The `events` function: INSERT records of the events table's stream. Each event is
//! pushed to its subscribers and its chains are run; on a failure the batch reports that
//! record (and, streams being ordered, Lambda retries from it).

use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use nomaly_core::domain::Event;
use nomaly_core::service::{fanout, Services};
use serde::Deserialize;
use serde_json::Value;

/// The parts of a DynamoDB stream record this function reads.
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    /// The records.
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

/// One stream record.
#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    /// `INSERT`, `MODIFY` or `REMOVE`.
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    /// The change.
    pub dynamodb: Change,
}

/// A record's change.
#[derive(Debug, Deserialize)]
pub struct Change {
    /// The new item, in DynamoDB's JSON (`{"body": {"S": "..."}}`).
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<Value>,
    /// The stream position (the batch-failure identifier).
    #[serde(rename = "SequenceNumber", default)]
    pub sequence_number: Option<String>,
}

/// The event stored in a new image's `body` attribute.
pub fn event_of(image: &Value) -> Result<Event, String> {
    let body = image
        .get("body")
        .and_then(|b| b.get("S"))
        .and_then(|s| s.as_str())
        .ok_or("the image has no `body` string")?;
    serde_json::from_str(body).map_err(|e| format!("the body is not an event: {e}"))
}

/// Handles a batch; the answer names the first failed record (`ReportBatchItemFailures`),
/// so the stream retries from there.
pub async fn handle(services: &Services, event: StreamEvent) -> DynamoDbEventResponse {
    for record in &event.records {
        if record.event_name != "INSERT" {
            continue;
        }
        let Some(image) = &record.dynamodb.new_image else {
            continue;
        };
        let event = match event_of(image) {
            Ok(e) => e,
            Err(why) => {
                tracing::error!(why, "skipping an unreadable event record");
                continue;
            }
        };
        match fanout::handle(services, &event).await {
            Ok(pushed) => tracing::info!(
                event_id = %event.event_id,
                kind = event.kind.as_str(),
                tenant = %event.tenant,
                delivered = pushed.delivered,
                gone = pushed.gone,
                failed = pushed.failed,
                "event handled"
            ),
            Err(p) => {
                tracing::error!(event_id = %event.event_id, problem = %p, "event not handled; will retry");
                let id = record.dynamodb.sequence_number.clone().unwrap_or_default();
                let mut response = DynamoDbEventResponse::default();
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(id);
                response.batch_item_failures.push(failure);
                return response;
            }
        }
    }
    DynamoDbEventResponse::default()
}
