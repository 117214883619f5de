//! The jobs queue on SQS, with its dead-letter queue (redrive policy on the queue).
//!
//! Every message carries its tenant as its `MessageGroupId`. On a standard queue that
//! makes it an SQS fair queue: when one tenant's messages pile up, SQS hands the other
//! tenants' messages to consumers first, so one tenant's backlog does not hold up the
//! rest. (On a standard queue the group orders nothing and limits no throughput.)

use crate::error::sdk;
use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use nomaly_core::ports::{Delivery, Job, JobQueue, StoreError, StoreResult};

/// A queue and its dead-letter queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    dead_letter_url: String,
}

impl SqsQueue {
    /// The queue at `url`, dead-lettering to `dead_letter_url`.
    pub fn new(client: aws_sdk_sqs::Client, url: &str, dead_letter_url: &str) -> Self {
        SqsQueue {
            client,
            url: url.to_string(),
            dead_letter_url: dead_letter_url.to_string(),
        }
    }
}

/// SQS's longest `DelaySeconds`.
const MAX_DELAY_SECS: u32 = 900;

fn decode(body: Option<&str>) -> StoreResult<Job> {
    serde_json::from_str(body.unwrap_or_default())
        .map_err(|e| StoreError::backend("decode a job", e))
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, jobs: &[Job]) -> StoreResult<()> {
        self.send_after(jobs, 0).await
    }

    async fn send_after(&self, jobs: &[Job], delay_secs: u32) -> StoreResult<()> {
        let delay = delay_secs.min(MAX_DELAY_SECS) as i32;
        for batch in jobs.chunks(10) {
            let mut entries = Vec::with_capacity(batch.len());
            for (i, job) in batch.iter().enumerate() {
                let body = serde_json::to_string(job)
                    .map_err(|e| StoreError::backend("encode a job", e))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .message_group_id(job.tenant.as_str())
                        .set_delay_seconds((delay > 0).then_some(delay))
                        .build()
                        .map_err(sdk("build an SQS batch entry"))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk("send SQS messages"))?;
            if let Some(failed) = out.failed().first() {
                return Err(StoreError::backend(
                    "send SQS messages",
                    crate::error::SdkFailure(format!(
                        "{} of {} refused: {} {}",
                        out.failed().len(),
                        batch.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    )),
                ));
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, visibility_secs: u32) -> StoreResult<Vec<Delivery>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(visibility_secs.min(43_200) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(sdk("receive SQS messages"))?;
        out.messages()
            .iter()
            .map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Ok(Delivery {
                    job: decode(m.body())?,
                    receipt: m.receipt_handle().unwrap_or_default().to_string(),
                    receive_count,
                })
            })
            .collect()
    }

    async fn delete(&self, receipt: &str) -> StoreResult<()> {
        match self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A receipt from an earlier delivery deletes nothing, as the port says.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_receipt_handle_is_invalid()) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk("delete an SQS message")(e)),
        }
    }

    async fn change_visibility(&self, receipt: &str, secs: u32) -> StoreResult<()> {
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs.min(43_200) as i32)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_receipt_handle_is_invalid() || s.is_message_not_inflight()
                }) =>
            {
                Err(StoreError::NotFound(format!("delivery {receipt}")))
            }
            Err(e) => Err(sdk("change an SQS message's visibility")(e)),
        }
    }

    async fn dead_letters(&self, max: usize) -> StoreResult<Vec<Job>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.dead_letter_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(sdk("read the dead-letter queue"))?;
        out.messages().iter().map(|m| decode(m.body())).collect()
    }
}
