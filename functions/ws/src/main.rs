//! `ws`: the WebSocket API's `$connect`, `$disconnect` and `$default` routes.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    nomaly_lambda::run(|services, event| async move {
        Ok(nomaly_lambda::ws::handle(&services, event).await)
    })
    .await
}
