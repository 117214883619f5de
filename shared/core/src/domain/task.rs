//! Tasks: background work with a status that only moves forward.
//!
//! ```text
//! queued -> running -> completed | failed | cancelled
//!    |         |  \-> queued (re-queued after a lost worker, one more attempt)
//!    \-> cancelled | failed
//! ```
//! Every change goes through [`Task::transition`], which refuses moves the machine does
//! not allow and bumps `version`; stores write a change only if the stored version is the
//! one it was made from (compare-and-set), so a re-delivered job can never move a
//! finished task backwards or finish it twice.

use crate::domain::TenantId;
use crate::ids::TaskId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Train a model.
    Train,
    /// Score rows too many to score inline.
    Detect,
    /// Profile an uploaded dataset.
    Profile,
    /// Render a report.
    Report,
    /// Score a large object in chunks, in parallel.
    Batch,
    /// Run a stream detector over a history.
    Backtest,
}

impl TaskKind {
    /// Every kind.
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Train,
        TaskKind::Detect,
        TaskKind::Profile,
        TaskKind::Report,
        TaskKind::Batch,
        TaskKind::Backtest,
    ];

    /// The kind written `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The kind as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Train => "train",
            TaskKind::Detect => "detect",
            TaskKind::Profile => "profile",
            TaskKind::Report => "report",
            TaskKind::Batch => "batch",
            TaskKind::Backtest => "backtest",
        }
    }
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker has it.
    Running,
    /// Done; `result` says where the output is.
    Completed,
    /// Gave up; `error` says why.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl TaskStatus {
    /// Completed, failed and cancelled tasks never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// Whether the machine allows `self -> next` (running -> running is a progress update).
    pub fn can_become(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Queued, Running | Cancelled | Failed)
                | (Running, Running | Completed | Failed | Cancelled | Queued)
        )
    }

    /// The status as written in storage and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// Its tenant.
    pub tenant: TenantId,
    /// What it does.
    pub kind: TaskKind,
    /// Where it is.
    pub status: TaskStatus,
    /// 0 to 100.
    pub progress: u8,
    /// How many times a worker has started it.
    pub attempts: u32,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Why it failed.
    pub error: Option<String>,
    /// Where its output is (a model id, a blob key).
    pub result: Option<String>,
    /// Ties its events to the request that made it.
    pub correlation_id: String,
    /// The job envelope that runs it (as sent on the queue, large bodies by reference),
    /// so the scheduler can send it again if its worker is lost.
    #[serde(default)]
    pub job: Option<serde_json::Value>,
    /// A batch task's chunks, once planned: which are done and what they found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchProgress>,
    /// Bumped by every change; the compare-and-set token.
    pub version: u64,
}

/// A move the task machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {id} cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The task.
    pub id: TaskId,
    /// Its status.
    pub from: &'static str,
    /// The status asked for.
    pub to: &'static str,
}

impl Task {
    /// A new queued task.
    pub fn new(tenant: TenantId, kind: TaskKind, correlation_id: impl Into<String>) -> Self {
        let now = Timestamp::now();
        Task {
            id: TaskId::new(),
            tenant,
            kind,
            status: TaskStatus::Queued,
            progress: 0,
            attempts: 0,
            created_at: now,
            updated_at: now,
            error: None,
            result: None,
            correlation_id: correlation_id.into(),
            job: None,
            batch: None,
            version: 1,
        }
    }

    /// The task after moving to `next`: `version` bumped, `updated_at` now, `attempts`
    /// counted when a worker starts it, progress 100 on completion. Refuses moves the
    /// machine does not allow.
    pub fn transition(&self, next: TaskStatus) -> Result<Task, TransitionError> {
        if !self.status.can_become(next) {
            return Err(TransitionError {
                id: self.id.clone(),
                from: self.status.as_str(),
                to: next.as_str(),
            });
        }
        let mut t = self.clone();
        if next == TaskStatus::Running && self.status == TaskStatus::Queued {
            t.attempts += 1;
        }
        if next == TaskStatus::Completed {
            t.progress = 100;
        }
        t.status = next;
        t.version += 1;
        t.updated_at = Timestamp::now();
        Ok(t)
    }

    /// A running task whose worker was lost, taken over by a new one: still running,
    /// one more attempt counted.
    pub fn take_over(&self) -> Result<Task, TransitionError> {
        if self.status != TaskStatus::Running {
            return Err(TransitionError {
                id: self.id.clone(),
                from: self.status.as_str(),
                to: "running (taken over)",
            });
        }
        let mut t = self.transition(TaskStatus::Running)?;
        t.attempts += 1;
        Ok(t)
    }

    /// A running task with new progress (never lower than before, at most 100).
    pub fn with_progress(&self, progress: u8) -> Result<Task, TransitionError> {
        let mut t = self.transition(TaskStatus::Running)?;
        t.progress = progress.clamp(self.progress, 100);
        Ok(t)
    }
}

/// A batch task's chunks: how many there are, which are done (a bit each, so a
/// redelivered chunk is never counted twice) and the rows and anomalies of those done.
/// Every change is written with the task's compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProgress {
    /// Chunks in the plan.
    pub total: u32,
    /// Chunks done.
    pub done: u32,
    /// Bit `i` set when chunk `i` is done, as hex (chunk 0 is the low bit of the first
    /// byte).
    pub done_bits: String,
    /// Rows scored by the chunks done.
    pub rows: u64,
    /// Rows labelled anomalous by the chunks done.
    pub anomalies: u64,
}

impl BatchProgress {
    /// `total` chunks, none done.
    pub fn new(total: u32) -> Self {
        BatchProgress {
            total,
            done: 0,
            done_bits: "00".repeat((total as usize).div_ceil(8)),
            rows: 0,
            anomalies: 0,
        }
    }

    fn byte(&self, index: u32) -> Option<u8> {
        let at = (index / 8) as usize * 2;
        self.done_bits
            .get(at..at + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    }

    /// Whether chunk `index` is done (a chunk outside the plan never is).
    pub fn is_done(&self, index: u32) -> bool {
        index < self.total
            && self
                .byte(index)
                .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }

    /// Whether every chunk is done.
    pub fn is_complete(&self) -> bool {
        self.done >= self.total
    }

    /// Percent done, 0 to 100.
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 100;
        }
        (u64::from(self.done) * 100 / u64::from(self.total)) as u8
    }

    /// Counts chunk `index` done with what it found; `false` (and no change) if it was
    /// done already or is not in the plan.
    pub fn mark_done(&mut self, index: u32, rows: u64, anomalies: u64) -> bool {
        if index >= self.total || self.is_done(index) {
            return false;
        }
        let Some(byte) = self.byte(index) else {
            return false;
        };
        let at = (index / 8) as usize * 2;
        self.done_bits
            .replace_range(at..at + 2, &format!("{:02x}", byte | (1 << (index % 8))));
        self.done += 1;
        self.rows += rows;
        self.anomalies += anomalies;
        true
    }

    /// The chunks not done yet, in order.
    pub fn pending(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.total).filter(|&i| !self.is_done(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task::new(TenantId::parse("acme").unwrap(), TaskKind::Train, "req-1")
    }

    #[test]
    fn every_kind_parses_from_its_json_name() {
        for kind in TaskKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(TaskKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(TaskKind::parse("chunk"), None);
    }

    #[test]
    fn the_happy_path_counts_attempts_and_versions() {
        let t = task();
        let r = t.transition(TaskStatus::Running).unwrap();
        assert_eq!((r.attempts, r.version), (1, 2));
        let p = r.with_progress(40).unwrap();
        assert_eq!((p.progress, p.version), (40, 3));
        assert_eq!(
            p.with_progress(10).unwrap().progress,
            40,
            "progress never goes back"
        );
        let c = p.transition(TaskStatus::Completed).unwrap();
        assert_eq!(
            (c.progress, c.version, c.status),
            (100, 4, TaskStatus::Completed)
        );
    }

    #[test]
    fn batch_progress_counts_each_chunk_once() {
        let mut b = BatchProgress::new(11);
        assert_eq!(b.done_bits, "0000");
        assert!(b.mark_done(0, 10, 1));
        assert!(b.mark_done(9, 5, 0));
        assert!(
            !b.mark_done(9, 5, 0),
            "a redelivered chunk is not counted again"
        );
        assert!(!b.mark_done(11, 1, 1), "outside the plan");
        assert_eq!((b.done, b.rows, b.anomalies), (2, 15, 1));
        assert_eq!(b.done_bits, "0102");
        assert!(b.is_done(9) && !b.is_done(8) && !b.is_done(11));
        assert_eq!(b.percent(), 18);
        let pending: Vec<u32> = b.pending().collect();
        assert_eq!(pending, vec![1, 2, 3, 4, 5, 6, 7, 8, 10]);
        for i in pending {
            assert!(b.mark_done(i, 1, 0));
        }
        assert!(b.is_complete());
        assert_eq!((b.percent(), b.rows), (100, 24));
        let back: BatchProgress =
            serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn finished_tasks_never_move() {
        let done = task()
            .transition(TaskStatus::Running)
            .unwrap()
            .transition(TaskStatus::Completed)
            .unwrap();
        for next in [
            TaskStatus::Queued,
            TaskStatus::Running,
            TaskStatus::Completed,
            TaskStatus::Failed,
            TaskStatus::Cancelled,
        ] {
            let err = done.transition(next).unwrap_err();
            assert_eq!(err.from, "completed");
        }
        assert!(done.with_progress(50).is_err());
        assert!(
            task().transition(TaskStatus::Completed).is_err(),
            "queued cannot complete"
        );
    }
}
