//! The durable job queue (`jobs`): one row per kind and video, what the scheduler's runner
//! drains. Claiming is in `claims.rs`; what each kind does to the database when it succeeds is
//! with its subject (`deletions.rs`, `media.rs`).

use std::time::Duration;

use actix::prelude::*;
use time::OffsetDateTime;

use super::{Db, Row, VideoStore, from_ms, now_ms, to_ms, uuid_col};
use crate::error::StoreError;
use crate::model::{IncarnationId, JobKind, JobRecord, VideoId};
use crate::params;

pub(super) const RECORD_COLS: &str = "kind, video_id, attempts, next_attempt_at, last_error, failed, queued_at, claimed_by, \
     waiting_for";

pub(super) fn record_row(r: &Row<'_>) -> Result<JobRecord, StoreError> {
    let kind: String = r.get(0)?;
    let kind = kind.parse().map_err(|e| StoreError::Internal(format!("jobs.kind: {e}")))?;
    let claimed_by = match r.get::<Option<String>>(7)? {
        Some(_) => Some(IncarnationId(uuid_col(r, 7)?)),
        None => None,
    };
    Ok(JobRecord {
        kind,
        video_id: VideoId(uuid_col(r, 1)?),
        attempts: r.get::<i64>(2)?.try_into().unwrap_or(u32::MAX),
        next_attempt_at: from_ms(r.get(3)?),
        last_error: r.get(4)?,
        failed: r.get(5)?,
        queued_at: from_ms(r.get(6)?),
        claimed_by,
        waiting_for: r.get(8)?,
    })
}

/// Queues a job inside an open transaction; queuing one that is queued already is a no-op.
pub(super) fn enqueue(db: &mut Db<'_>, kind: JobKind, video: VideoId) -> Result<(), StoreError> {
    let now = now_ms();
    db.execute(
        "INSERT INTO jobs (kind, video_id, next_attempt_at, queued_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (kind, video_id) DO NOTHING",
        params![kind.as_str(), video.to_string(), now],
    )?;
    Ok(())
}

/// Removes a finished job inside an open transaction.
pub(super) fn finish(db: &mut Db<'_>, kind: JobKind, video: VideoId) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM jobs WHERE kind = ?1 AND video_id = ?2",
        params![kind.as_str(), video.to_string()],
    )?;
    Ok(())
}

/// The queue, or the jobs of one kind, next attempt first: for the internal listing.
#[derive(Debug, Default, Message)]
#[rtype(result = "Result<Vec<JobRecord>, StoreError>")]
pub struct ListJobs {
    pub kind: Option<JobKind>,
}

/// A job failed: records why and when to try again (or that it gave up), and ends the claim.
/// Only while the job is still held by `claim` (the claim it ran under): a claimer presumed
/// dead whose job was claimed again meanwhile changes nothing.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct FailJob {
    pub kind: JobKind,
    pub video: VideoId,
    pub claim: Option<IncarnationId>,
    pub error: String,
    pub next_attempt_at: OffsetDateTime,
    pub give_up: bool,
}

/// A job could not run for want of a program (`tool`): it waits, its attempts uncounted, until
/// `retry_at` or until a scheduler that has the program calls [`ReleaseWaiting`]. Ends the
/// claim, on the same terms as [`FailJob`].
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct WaitForTool {
    pub kind: JobKind,
    pub video: VideoId,
    pub claim: Option<IncarnationId>,
    pub tool: String,
    pub retry_at: OffsetDateTime,
}

/// The programs `kind` needs are here now: its waiting jobs become due at `now`. Returns how
/// many.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct ReleaseWaiting {
    pub kind: JobKind,
    pub now: OffsetDateTime,
}

/// How the jobs of one kind stand, for the metrics.
#[derive(Debug, Message)]
#[rtype(result = "Result<QueueStats, StoreError>")]
pub struct JobQueueStats {
    pub kind: JobKind,
}

/// The queue's size for one kind: jobs still to run, jobs given up on, jobs waiting for a
/// program, and the oldest queue time of those still to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub waiting: u64,
    pub failed: u64,
    pub needs_tool: u64,
    pub oldest_queued_at: Option<OffsetDateTime>,
}

impl Handler<ListJobs> for VideoStore {
    type Result = Result<Vec<JobRecord>, StoreError>;

    fn handle(&mut self, msg: ListJobs, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        match msg.kind {
            Some(kind) => conn.db().query(
                &format!(
                    "SELECT {RECORD_COLS} FROM jobs WHERE kind = ?1
                     ORDER BY next_attempt_at, video_id"
                ),
                params![kind.as_str()],
                record_row,
            ),
            None => conn.db().query(
                &format!("SELECT {RECORD_COLS} FROM jobs ORDER BY next_attempt_at, video_id"),
                &[],
                record_row,
            ),
        }
    }
}

impl Handler<FailJob> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: FailJob, _: &mut Self::Context) -> Self::Result {
        let claim = msg.claim.map(|c| c.to_string());
        let recorded = self.conn()?.db().execute(
            "UPDATE jobs SET attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4,
                failed = ?5, claimed_by = NULL, waiting_for = NULL
             WHERE kind = ?1 AND video_id = ?2 AND claimed_by IS NOT DISTINCT FROM ?6",
            params![
                msg.kind.as_str(),
                msg.video.to_string(),
                msg.error,
                to_ms(msg.next_attempt_at),
                msg.give_up,
                claim
            ],
        )?;
        if recorded == 0 {
            log::warn!(
                "the failure of {} {} is not recorded: its job was taken over or is gone",
                msg.kind,
                msg.video
            );
        }
        Ok(())
    }
}

impl Handler<WaitForTool> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: WaitForTool, _: &mut Self::Context) -> Self::Result {
        let claim = msg.claim.map(|c| c.to_string());
        let error = format!("waiting for {}: not found on this scheduler", msg.tool);
        self.conn()?.db().execute(
            "UPDATE jobs SET waiting_for = ?3, last_error = ?4, next_attempt_at = ?5,
                claimed_by = NULL
             WHERE kind = ?1 AND video_id = ?2 AND claimed_by IS NOT DISTINCT FROM ?6",
            params![
                msg.kind.as_str(),
                msg.video.to_string(),
                msg.tool,
                error,
                to_ms(msg.retry_at),
                claim
            ],
        )?;
        Ok(())
    }
}

impl Handler<ReleaseWaiting> for VideoStore {
    type Result = Result<u64, StoreError>;

    fn handle(&mut self, msg: ReleaseWaiting, _: &mut Self::Context) -> Self::Result {
        let n = self.conn()?.db().execute(
            "UPDATE jobs SET waiting_for = NULL, last_error = NULL, next_attempt_at = ?2
             WHERE kind = ?1 AND waiting_for IS NOT NULL AND claimed_by IS NULL",
            params![msg.kind.as_str(), to_ms(msg.now)],
        )?;
        Ok(n)
    }
}

impl Handler<JobQueueStats> for VideoStore {
    type Result = Result<QueueStats, StoreError>;

    fn handle(&mut self, msg: JobQueueStats, _: &mut Self::Context) -> Self::Result {
        let (waiting, failed, needs_tool, oldest): (i64, i64, i64, Option<i64>) =
            self.conn()?.db().query_one(
                "SELECT COUNT(*) FILTER (WHERE failed = 0), COUNT(*) FILTER (WHERE failed != 0),
                        COUNT(*) FILTER (WHERE waiting_for IS NOT NULL),
                        MIN(queued_at) FILTER (WHERE failed = 0)
                 FROM jobs WHERE kind = ?1",
                params![msg.kind.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
        Ok(QueueStats {
            waiting: waiting.try_into().unwrap_or(0),
            failed: failed.try_into().unwrap_or(0),
            needs_tool: needs_tool.try_into().unwrap_or(0),
            oldest_queued_at: oldest.map(from_ms),
        })
    }
}

/// Milliseconds of `d`, saturating.
pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
