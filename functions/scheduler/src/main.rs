//! `scheduler`: on an EventBridge schedule, re-queue lost tasks and sweep expired records.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::run(|services, _: serde_json::Value| async move {
        nomaly_lambda::scheduler::handle(&services).await
    })
    .await
}
