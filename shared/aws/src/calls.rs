//! One interceptor on every SDK client: each call (DynamoDB, S3, SQS, API Gateway) is
//! timed, logged at debug level with its service, operation, status and milliseconds,
//! and recorded as an X-Ray subsegment (see [`crate::xray`]); each attempt sent is
//! counted (see [`sdk_calls`]).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

/// Attempts sent by every client with [`AwsCalls`] in this process.
static SDK_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many requests the SDK clients of this process (those built with [`AwsCalls`], as
/// [`crate::Clients::from_env`] builds them) have sent so far: one per attempt, so an SDK
/// retry counts again; presigned URLs, which send nothing, do not count. What a
/// benchmark compares with the embedded store's calls.
pub fn sdk_calls() -> u64 {
    SDK_CALLS.load(Ordering::Relaxed)
}

/// Times and records every call of the client it is added to.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsCalls;

#[derive(Debug, Clone)]
struct Started(SystemTime, Instant);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

impl Intercept for AwsCalls {
    fn name(&self) -> &'static str {
        "nomaly-aws-calls"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(Started(SystemTime::now(), Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Presigning stops before sending, with neither a response nor an outcome.
        if context.response().is_some() || context.output_or_error().is_some() {
            SDK_CALLS.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Started(start, clock)) = cfg.load::<Started>().cloned() else {
            return Ok(());
        };
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("aws".into(), "unknown".into()));
        let status = context.response().map(|r| r.status().as_u16());
        if status.is_none() && context.output_or_error().is_none() {
            // Presigning runs the interceptors but sends nothing: no call was made.
            return Ok(());
        }
        let failed = matches!(context.output_or_error(), Some(Err(_)) | None);
        let ms = clock.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(
            service = %service,
            operation = %operation,
            status = status.unwrap_or(0),
            ms,
            failed,
            "aws call"
        );
        crate::xray::record(&crate::xray::Call {
            service: &service,
            operation: &operation,
            start,
            end: start + clock.elapsed(),
            status,
            failed,
        });
        Ok(())
    }
}
