//! The state a stream can start from: the detector as a backtest left it after its last
//! point, which the backtest stores and `POST /v1/streams` with `from_backtest` reads.
//! It lives with streams so that backtest depends on streams and never the other way.

use crate::domain::{TaskKind, TaskStatus, TenantId};
use crate::ids::TaskId;
use crate::ports::BlobKey;
use crate::service::uses::{UsesBlobs, UsesTasks};
use crate::service::Problem;
use nomaly_detect::stream::StreamSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The detector as a backtest left it: what `from_backtest` starts a stream with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndState {
    /// The detector spec.
    pub spec: StreamSpec,
    /// Its value columns.
    pub columns: Vec<String>,
    /// The threshold the backtest judged.
    pub threshold: f64,
    /// Points learned.
    pub points: u64,
    /// The last point's time.
    pub last_timestamp: Option<i64>,
    /// The detector's state.
    pub detector: Value,
}
/// Where a backtest task's end state is stored.
pub fn end_key(tenant: &TenantId, task: &TaskId) -> BlobKey {
    BlobKey::for_tenant(tenant, &["backtests", &format!("{task}.end.json")])
        .expect("task ids and tenant ids are valid key segments")
}
/// The end state of the tenant's completed backtest `task`.
pub async fn end_state(
    services: &(impl UsesTasks + UsesBlobs),
    tenant: &TenantId,
    task: &TaskId,
) -> Result<EndState, Problem> {
    let record = services
        .tasks()
        .get_task(tenant, task)
        .await?
        .ok_or_else(|| Problem::not_found(format!("backtest {task} not found")))?;
    if record.kind != TaskKind::Backtest {
        return Err(Problem::invalid_parameter(format!(
            "task {task} is a {} task, not a backtest",
            record.kind.as_str()
        )));
    }
    if record.status != TaskStatus::Completed {
        return Err(Problem::conflict(format!(
            "backtest {task} is {}",
            record.status.as_str()
        )));
    }
    let bytes = services
        .blobs()
        .get_blob(&end_key(tenant, task))
        .await?
        .ok_or_else(|| Problem::not_found(format!("backtest {task}'s end state is gone")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::internal(format!("backtest {task}'s end state does not read: {e}")))
}
