//! `notify`: SQS batches of alert deliveries. Each is sent signed to its webhook (or put
//! on the deployment's EventBridge bus) and logged; a failed attempt queues the next one
//! after a backoff, and the last one dead-letters the delivery.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::worker::run(nomaly_lambda::worker::Lane::Alerts).await
}
