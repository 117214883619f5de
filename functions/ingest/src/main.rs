//! `ingest`: S3 ObjectCreated notifications for dataset uploads.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::run(|services, event| async move {
        let taken = nomaly_lambda::ingest::handle(&services, event).await?;
        Ok(serde_json::json!({ "taken_in": taken }))
    })
    .await
}
