//! Push through the API Gateway management API.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use nomaly_core::ports::{PushError, PushNotifier};

/// Posts to WebSocket connections of one API stage. The endpoint is
/// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` on AWS; the stage part
/// is empty for moto and the local server.
#[derive(Clone, Debug)]
pub struct ApiGatewayPush {
    client: aws_sdk_apigatewaymanagement::Client,
}

/// The management endpoint of a WebSocket API: `https://{domain}/{stage}` on AWS, where
/// `domain` is `{api-id}.execute-api.{region}.amazonaws.com`; with an empty stage (moto,
/// the local server) just `{domain}`. A domain given with a scheme keeps it.
pub fn management_endpoint(domain: &str, stage: &str) -> String {
    let base = if domain.starts_with("http://") || domain.starts_with("https://") {
        domain.trim_end_matches('/').to_string()
    } else {
        format!("https://{}", domain.trim_end_matches('/'))
    };
    let stage = stage.trim_matches('/');
    if stage.is_empty() {
        base
    } else {
        format!("{base}/{stage}")
    }
}

impl ApiGatewayPush {
    /// A notifier for `endpoint` (the API's URL including the stage, if any).
    pub fn new(config: &aws_config::SdkConfig, endpoint: &str) -> Self {
        Self::build(config, endpoint, None)
    }

    /// A notifier for the local server's management API (`nomaly serve`), which takes
    /// `Authorization: Bearer <token>` instead of a SigV4 signature: the bearer replaces
    /// the signature on every request.
    pub fn with_bearer(config: &aws_config::SdkConfig, endpoint: &str, token: &str) -> Self {
        Self::build(config, endpoint, Some(Bearer(format!("Bearer {token}"))))
    }

    fn build(config: &aws_config::SdkConfig, endpoint: &str, bearer: Option<Bearer>) -> Self {
        let mut conf = aws_sdk_apigatewaymanagement::config::Builder::from(config)
            .endpoint_url(endpoint.trim_end_matches('/'))
            .interceptor(crate::AwsCalls);
        if let Some(bearer) = bearer {
            conf = conf.interceptor(bearer);
        }
        ApiGatewayPush {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(conf.build()),
        }
    }
}

/// Sets `Authorization` to a bearer token once the request is signed.
#[derive(Clone)]
struct Bearer(String);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(..)")
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Bearer {
    fn name(&self) -> &'static str {
        "Bearer"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("authorization", self.0.clone());
        Ok(())
    }
}

#[async_trait]
impl PushNotifier for ApiGatewayPush {
    async fn push(&self, connection_id: &str, message: &[u8]) -> Result<(), PushError> {
        match self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(message))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => {
                Err(PushError::Gone(connection_id.to_string()))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 410) => {
                Err(PushError::Gone(connection_id.to_string()))
            }
            Err(e) => Err(PushError::Failed {
                connection: connection_id.to_string(),
                source: Box::new(crate::error::SdkFailure(e.to_string())),
            }),
        }
    }

    /// `DELETE @connections/{id}`; a connection already gone (410) is not an error.
    async fn disconnect(&self, connection_id: &str) -> Result<(), PushError> {
        match self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 410) => Ok(()),
            Err(e) => Err(PushError::Failed {
                connection: connection_id.to_string(),
                source: Box::new(crate::error::SdkFailure(e.to_string())),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::management_endpoint;

    #[test]
    fn endpoints_carry_the_stage_only_when_there_is_one() {
        assert_eq!(
            management_endpoint("abc.execute-api.eu-west-1.amazonaws.com", "prod"),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
        );
        assert_eq!(
            management_endpoint("http://127.0.0.1:5000/", ""),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            management_endpoint("http://127.0.0.1:5000", "/dev/"),
            "http://127.0.0.1:5000/dev"
        );
    }
}
