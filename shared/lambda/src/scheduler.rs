//! The `scheduler` function: one sweep per EventBridge schedule tick.

use nomaly_core::service::{scheduler, Services};
use serde_json::Value;

/// Runs a sweep; returns what it did.
pub async fn handle(services: &Services) -> Result<Value, crate::Error> {
    let report = scheduler::sweep(services)
        .await
        .map_err(|p| p.to_string())?;
    Ok(serde_json::to_value(report)?)
}
