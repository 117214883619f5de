//! The `ws` function: the WebSocket API's `$connect`, `$disconnect` and `$default`
//! routes. `$connect` answers 401 to a missing or bad key, and 429 with `Retry-After`
//! past the tenant's rate limit or its cap on open connections, which refuses the
//! connection; the key is never logged.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use lambda_http::http::HeaderValue;
use nomaly_core::service::{websocket, Services};

fn status(code: u16, body: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(code);
    response.body = Some(Body::Text(body.to_string()));
    response
}

/// Handles one WebSocket event.
pub async fn handle(
    services: &Services,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let ctx = &event.request_context;
    let Some(connection) = ctx.connection_id.as_deref() else {
        return status(400, "no connection id");
    };
    match ctx.route_key.as_deref().unwrap_or("$default") {
        "$connect" => {
            let key = event.query_string_parameters.first("api_key");
            match websocket::connect(services, connection, key).await {
                Ok(_) => status(200, "connected"),
                Err(p) => {
                    tracing::info!(connection, problem = %p.slug, "connection refused");
                    let mut refused = status(p.status, &p.detail);
                    if let Some(secs) = p.retry_after {
                        refused
                            .headers
                            .insert("retry-after", HeaderValue::from(secs));
                    }
                    refused
                }
            }
        }
        "$disconnect" => match websocket::disconnect(services, connection).await {
            Ok(()) => status(200, "disconnected"),
            Err(p) => status(p.status, &p.detail),
        },
        _ => {
            let body = event.body.as_deref().unwrap_or("");
            websocket::message_received(services, connection, body.as_bytes()).await;
            status(200, "")
        }
    }
}
