//! A job queue with SQS's semantics in SQLite: at-least-once delivery, a visibility
//! timeout per receive, a receive count, and dead-lettering past a maximum of receives.
//!
//! Tenants are served in turn, as SQS fair queues serve message groups: each receive
//! takes the oldest visible job of the tenant served least recently (a tenant never
//! served first), so one tenant's backlog of thousands of jobs delays another tenant's
//! next job by at most one job per waiting tenant, not by the whole backlog. Within a
//! tenant, jobs come oldest first.

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

    /// Makes every job received but not yet deleted visible again at once; returns how
    /// many. Only for a process that owns the data folder alone and has just started:
    /// whoever received those jobs is dead, so waiting out their visibility gains nothing.
    pub async fn release_in_flight(&self) -> StoreResult<usize> {
        let queue = self.name.clone();
        let now = Timestamp::now().millis();
        self.db
            .run("release jobs in flight", move |c| {
                c.execute(
                    "UPDATE jobs SET visible_ms = ?1, receipt = NULL \
                     WHERE queue = ?2 AND dead = 0 AND receipt IS NOT NULL AND visible_ms > ?1",
                    params![now, queue],
                )
                .map_err(sql("release jobs in flight"))
            })
            .await
    }
}

/// A visible job: its seq, body, receive count so far and tenant.
type Row = (i64, String, u32, String);

/// The next job to hand out: among the tenants with a visible job not in `taken`, the one
/// served least recently (never served counts as earliest; ties go to the older job),
/// and that tenant's oldest visible job.
fn next_in_turn(
    tx: &rusqlite::Transaction<'_>,
    queue: &str,
    now_ms: i64,
    taken: &[i64],
) -> rusqlite::Result<Option<Row>> {
    // The seqs are integers this call read from the table, so they are written inline.
    let skip = if taken.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = taken.iter().map(i64::to_string).collect();
        format!("AND seq NOT IN ({})", list.join(","))
    };
    let query = format!(
        "SELECT j.seq, j.body, j.receive_count, j.tenant FROM \
           (SELECT tenant, MIN(seq) AS first FROM jobs \
            WHERE queue = ?1 AND dead = 0 AND visible_ms <= ?2 {skip} GROUP BY tenant) g \
         JOIN jobs j ON j.seq = g.first \
         LEFT JOIN job_turns t ON t.queue = ?1 AND t.tenant = g.tenant \
         ORDER BY COALESCE(t.served, 0), g.first LIMIT 1"
    );
    tx.query_row(&query, params![queue, now_ms], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .map(Some)
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    })
}

/// Records that `tenant` was just served: it goes to the back of the turn order.
fn served(tx: &rusqlite::Transaction<'_>, queue: &str, tenant: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO job_turns (queue, tenant, served) \
         VALUES (?1, ?2, (SELECT COALESCE(MAX(served), 0) + 1 FROM job_turns WHERE queue = ?1)) \
         ON CONFLICT (queue, tenant) DO UPDATE SET served = excluded.served",
        params![queue, tenant],
    )
    .map(|_| ())
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn send(&self, jobs: &[Job]) -> StoreResult<()> {
        self.send_after(jobs, 0).await
    }

    async fn send_after(&self, jobs: &[Job], delay_secs: u32) -> StoreResult<()> {
        let bodies = jobs
            .iter()
            .map(|j| serde_json::to_string(j).map_err(json("encode a job")))
            .collect::<StoreResult<Vec<_>>>()?;
        let tenants: Vec<String> = jobs.iter().map(|j| j.tenant.to_string()).collect();
        // As SQS, at most 15 minutes.
        let visible = Timestamp::now()
            .plus_seconds(i64::from(delay_secs.min(900)))
            .millis();
        let queue = self.name.clone();
        self.db
            .run("send jobs", move |c| {
                let tx = c.transaction().map_err(sql("send jobs"))?;
                for (body, tenant) in bodies.into_iter().zip(tenants) {
                    tx.execute(
                        "INSERT INTO jobs (queue, body, visible_ms, tenant) VALUES (?1, ?2, ?3, ?4)",
                        params![queue, body, visible, tenant],
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
                // The seqs taken in this call: a job received with a visibility of 0 is
                // not received again within it.
                let mut taken: Vec<i64> = Vec::new();
                loop {
                    let row = next_in_turn(&tx, &queue, now.millis(), &taken)
                        .map_err(sql("receive jobs"))?;
                    let Some((seq, body, count, tenant)) = row else { break };
                    taken.push(seq);
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
                    served(&tx, &queue, &tenant).map_err(sql("receive jobs"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use nomaly_core::domain::TenantId;
    use nomaly_core::ids::JobId;

    #[tokio::test]
    async fn released_jobs_come_back_at_once_and_finished_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("nomaly-queue-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let q = SqliteQueue::new(Database::open(&dir).expect("db"), "jobs", 3);
        let job = |n: u32| Job {
            job_id: JobId::new(),
            tenant: TenantId::parse("acme").expect("tenant"),
            kind: "train".into(),
            correlation_id: format!("c{n}"),
            body: serde_json::json!({ "n": n }),
        };
        q.send(&[job(1), job(2), job(3)]).await.expect("send");
        let taken = q.receive(2, 900).await.expect("receive");
        assert_eq!(taken.len(), 2);
        q.delete(&taken[1].receipt).await.expect("delete");
        assert_eq!(q.receive(10, 900).await.expect("receive").len(), 1, "job 3");
        // Jobs 1 and 3 are in flight, job 2 is gone.
        assert_eq!(q.release_in_flight().await.expect("release"), 2);
        let again = q.receive(10, 900).await.expect("receive");
        let mut ns: Vec<u64> = again
            .iter()
            .filter_map(|d| d.job.body["n"].as_u64())
            .collect();
        ns.sort();
        assert_eq!(ns, vec![1, 3]);
        assert!(again.iter().all(|d| d.receive_count == 2));
        // The old receipt no longer deletes anything.
        q.delete(&taken[0].receipt)
            .await
            .expect("stale delete is a no-op");
        assert_eq!(q.release_in_flight().await.expect("release"), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
