//! SDK errors carried into `StoreError` with the SDK's full context.

use nomaly_core::ports::StoreError;

/// An SDK failure, its full message kept (service error code, message, request id).
#[derive(Debug)]
pub(crate) struct SdkFailure(pub String);

impl std::fmt::Display for SdkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SdkFailure {}

/// Maps any SDK error to a backend error naming the operation.
pub(crate) fn sdk<E: std::error::Error>(operation: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::backend(operation, SdkFailure(aws_smithy_context(&e)))
}

fn aws_smithy_context<E: std::error::Error>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
