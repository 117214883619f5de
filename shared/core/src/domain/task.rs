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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl TaskKind {
    /// The kind as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Train => "train",
            TaskKind::Detect => "detect",
            TaskKind::Profile => "profile",
            TaskKind::Report => "report",
        }
    }
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task::new(TenantId::parse("acme").unwrap(), TaskKind::Train, "req-1")
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
