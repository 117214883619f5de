//! `events`: the events table's stream (INSERT records): push to subscribers, run chains.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::run(|services, event| async move {
        Ok(nomaly_lambda::events::handle(&services, event).await)
    })
    .await
}
