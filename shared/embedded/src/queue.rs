//! A job queue with SQS's semantics in SQLite: at-least-once delivery, a visibility
//! timeout per receive, a receive count, and dead-lettering past a maximum of receives.

use crate::db::{json, sql, token, Database};
use async_trait::async_trait;
use nomaly_core::ports::{Delivery, Job, JobQueue, StoreError, StoreResult};
use nomaly_core::time::Timestamp;
use rusqlite::params;

/// One named queue in the database, with its own dead-letter side.
#[derive(Clone)]
pub struct SqliteQueue {
    db: Database,
    name: String,
    max_receives: u32,
}

impl SqliteQueue {
    /// The queue `name`; a job received more than `max_receives` times is dead-lettered
    /// (SQS's `maxReceiveCount`).
    pub fn new(db: Database, name: &str, max_receives: u32) -> Self {
        SqliteQueue {
            db,
            name: name.to_string(),
            max_receives: max_receives.max(1),
        }
    }
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn send(&self, jobs: &[Job]) -> StoreResult<()> {
        let bodies = jobs
            .iter()
            .map(|j| serde_json::to_string(j).map_err(json("encode a job")))
            .collect::<StoreResult<Vec<_>>>()?;
        let (queue, now) = (self.name.clone(), Timestamp::now().millis());
        self.db
            .run("send jobs", move |c| {
                let tx = c.transaction().map_err(sql("send jobs"))?;
                for body in bodies {
                    tx.execute(
                        "INSERT INTO jobs (queue, body, visible_ms) VALUES (?1, ?2, ?3)",
                        params![queue, body, now],
                    )
                    .map_err(sql("send jobs"))?;
                }
                tx.commit().map_err(sql("send jobs"))
            })
            .await
    }

    async fn receive(&self, max: usize, visibility_secs: u32) -> StoreResult<Vec<Delivery>> {
        let (queue, max_receives) = (self.name.clone(), self.max_receives);
        let now = Timestamp::now();
        let until = now.plus_seconds(i64::from(visibility_secs)).millis();
        let max = max.clamp(1, 10);
        self.db
            .run("receive jobs", move |c| {
                let tx = c.transaction().map_err(sql("receive jobs"))?;
                let mut out = Vec::new();
                // Scan forward from the last job looked at, so a job received with a
                // visibility of 0 is not received again within this call.
                let mut last_seq = -1i64;
                loop {
                    let row: Option<(i64, String, u32)> = tx
                        .query_row(
                            "SELECT seq, body, receive_count FROM jobs WHERE queue = ?1 AND dead = 0 AND visible_ms <= ?2
                             AND seq > ?3 ORDER BY seq LIMIT 1",
                            params![queue, now.millis(), last_seq],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .map(Some)
                        .or_else(|e| match e {
                            rusqlite::Error::QueryReturnedNoRows => Ok(None),
                            e => Err(e),
                        })
                        .map_err(sql("receive jobs"))?;
                    let Some((seq, body, count)) = row else { break };
                    last_seq = seq;
                    let count = count + 1;
                    if count > max_receives {
                        tx.execute("UPDATE jobs SET dead = 1, receipt = NULL WHERE seq = ?1", params![seq])
                            .map_err(sql("dead-letter a job"))?;
                        continue;
                    }
                    let receipt = token();
                    tx.execute(
                        "UPDATE jobs SET receive_count = ?1, visible_ms = ?2, receipt = ?3 WHERE seq = ?4",
                        params![count, until, receipt, seq],
                    )
                    .map_err(sql("receive jobs"))?;
                    let job: Job = serde_json::from_str(&body).map_err(json("decode a job"))?;
                    out.push(Delivery {
                        job,
                        receipt,
                        receive_count: count,
                    });
                    if out.len() == max {
                        break;
                    }
                }
                tx.commit().map_err(sql("receive jobs"))?;
                Ok(out)
            })
            .await
    }

    async fn delete(&self, receipt: &str) -> StoreResult<()> {
        let (queue, receipt) = (self.name.clone(), receipt.to_string());
        self.db
            .run("delete a job", move |c| {
                // As in SQS, a receipt from an earlier delivery deletes nothing.
                c.execute(
                    "DELETE FROM jobs WHERE queue = ?1 AND receipt = ?2",
                    params![queue, receipt],
                )
                .map_err(sql("delete a job"))?;
                Ok(())
            })
            .await
    }

    async fn change_visibility(&self, receipt: &str, secs: u32) -> StoreResult<()> {
        let (queue, receipt) = (self.name.clone(), receipt.to_string());
        let until = Timestamp::now().plus_seconds(i64::from(secs)).millis();
        self.db
            .run("change a job's visibility", move |c| {
                let n = c
                    .execute(
                        "UPDATE jobs SET visible_ms = ?1 WHERE queue = ?2 AND receipt = ?3 AND dead = 0",
                        params![until, queue, receipt],
                    )
                    .map_err(sql("change a job's visibility"))?;
                if n == 0 {
                    Err(StoreError::NotFound(format!("delivery {receipt}")))
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn dead_letters(&self, max: usize) -> StoreResult<Vec<Job>> {
        let queue = self.name.clone();
        let bodies: Vec<String> = self
            .db
            .run("read dead letters", move |c| {
                let mut stmt = c
                    .prepare(
                        "SELECT body FROM jobs WHERE queue = ?1 AND dead = 1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(sql("read dead letters"))?;
                let rows = stmt
                    .query_map(params![queue, max as i64], |r| r.get(0))
                    .map_err(sql("read dead letters"))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(sql("read dead letters"))?;
                Ok(rows)
            })
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json("decode a job")))
            .collect()
    }
}
