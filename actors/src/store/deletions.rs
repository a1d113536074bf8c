//! The durable deletion queue (`video_del_rec`): what the scheduler drains.

use actix::prelude::*;
use rusqlite::{Row, params};
use time::OffsetDateTime;

use super::batch::{Batch, Batchable, run_batch};
use super::{VideoStore, from_ms, now_ms, to_ms, uuid_col, write_tx};
use crate::error::StoreError;
use crate::model::{DeletionRecord, VideoId};

const RECORD_COLS: &str = "video_id, attempts, next_attempt_at, last_error, failed, queued_at";

fn record_row(r: &Row<'_>) -> rusqlite::Result<DeletionRecord> {
    Ok(DeletionRecord {
        video_id: VideoId(uuid_col(r, 0)?),
        attempts: r.get(1)?,
        next_attempt_at: from_ms(r.get(2)?),
        last_error: r.get(3)?,
        failed: r.get(4)?,
        queued_at: from_ms(r.get(5)?),
    })
}

/// Queues a removal inside an open transaction; queuing twice is a no-op.
pub(super) fn enqueue(tx: &rusqlite::Transaction<'_>, video: VideoId) -> Result<(), StoreError> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO video_del_rec (video_id, next_attempt_at, queued_at) VALUES (?1, ?2, ?2)
         ON CONFLICT (video_id) DO NOTHING",
        params![video.to_string(), now],
    )?;
    Ok(())
}

/// Hides a video (if it still exists) and queues its removal; idempotent.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct EnqueueDeletion {
    pub video: VideoId,
}

/// The whole queue, for the internal listing and metrics.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<DeletionRecord>, StoreError>")]
pub struct ListDeletions;

/// The file is gone: removes the video's comments, its row and its record in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct CompleteDeletion {
    pub video: VideoId,
}

/// A removal failed: records why and when to try again (or that it gave up).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct FailDeletion {
    pub video: VideoId,
    pub error: String,
    pub next_attempt_at: OffsetDateTime,
    pub give_up: bool,
}

/// Claims up to `limit` records due at `now`, oldest due first, by moving their
/// `next_attempt_at` to `now + lease` in the same transaction. A record claimed by one pass is
/// therefore not due for any other pass (in this process or another on the same data dir)
/// until the lease runs out, which only happens when its executor died or hung.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<DeletionRecord>, StoreError>")]
pub struct ClaimDeletions {
    pub now: OffsetDateTime,
    pub limit: u32,
    pub lease: std::time::Duration,
}

/// Hides every `pending` video created before `older_than` (an upload that never came) and
/// queues its removal, in one transaction so that an upload finishing at the same moment is
/// never hidden: only rows still pending are touched. Returns the ids queued.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<VideoId>, StoreError>")]
pub struct QueueStalePending {
    pub older_than: OffsetDateTime,
    pub limit: u32,
}

/// How the queue stands, for the metrics.
#[derive(Debug, Message)]
#[rtype(result = "Result<QueueStats, StoreError>")]
pub struct DeletionQueueStats;

/// The queue's size: records still to run, records given up on, and the oldest queue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub waiting: u64,
    pub failed: u64,
    pub oldest_queued_at: Option<OffsetDateTime>,
}

impl Handler<EnqueueDeletion> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: EnqueueDeletion, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        write_tx(&mut conn, |tx| {
            tx.execute(
                "UPDATE videos SET state = 'deleted' WHERE id = ?1",
                [msg.video.to_string()],
            )?;
            enqueue(tx, msg.video)
        })?;
        self.feed.invalidate();
        Ok(())
    }
}

impl Handler<ListDeletions> for VideoStore {
    type Result = Result<Vec<DeletionRecord>, StoreError>;

    fn handle(&mut self, _: ListDeletions, _: &mut Self::Context) -> Self::Result {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLS} FROM video_del_rec ORDER BY next_attempt_at"
        ))?;
        let rows = stmt.query_map([], record_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Removes a deleted video's comments, its row and its record, inside an open transaction.
fn complete_deletion(tx: &rusqlite::Connection, msg: CompleteDeletion) -> Result<(), StoreError> {
    let id = msg.video.to_string();
    tx.prepare_cached(
        "DELETE FROM comments WHERE video_seq IN
           (SELECT seq FROM videos WHERE id = ?1 AND state = 'deleted')",
    )?
    .execute([&id])?;
    tx.prepare_cached("DELETE FROM videos WHERE id = ?1 AND state = 'deleted'")?.execute([&id])?;
    tx.prepare_cached("DELETE FROM video_del_rec WHERE video_id = ?1")?.execute([&id])?;
    Ok(())
}

impl Handler<CompleteDeletion> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: CompleteDeletion, _: &mut Self::Context) -> Self::Result {
        write_tx(&mut self.conn()?, |tx| complete_deletion(tx, msg))
    }
}

impl Batchable for CompleteDeletion {
    type Output = ();
}

impl Handler<Batch<CompleteDeletion>> for VideoStore {
    type Result = Result<Vec<Result<(), StoreError>>, StoreError>;

    fn handle(&mut self, msg: Batch<CompleteDeletion>, _: &mut Self::Context) -> Self::Result {
        run_batch(&mut self.conn()?, msg.items, complete_deletion)
    }
}

impl Handler<FailDeletion> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: FailDeletion, _: &mut Self::Context) -> Self::Result {
        let conn = self.conn()?;
        conn.execute(
            "UPDATE video_del_rec SET attempts = attempts + 1, last_error = ?2,
                next_attempt_at = ?3, failed = ?4 WHERE video_id = ?1",
            params![msg.video.to_string(), msg.error, to_ms(msg.next_attempt_at), msg.give_up],
        )?;
        Ok(())
    }
}

impl Handler<ClaimDeletions> for VideoStore {
    type Result = Result<Vec<DeletionRecord>, StoreError>;

    fn handle(&mut self, msg: ClaimDeletions, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        let lease_ms = i64::try_from(msg.lease.as_millis()).unwrap_or(i64::MAX);
        let until = to_ms(msg.now).saturating_add(lease_ms);
        write_tx(&mut conn, |tx| {
            let records = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {RECORD_COLS} FROM video_del_rec
                     WHERE failed = 0 AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![to_ms(msg.now), msg.limit], record_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut claim = tx.prepare_cached(
                "UPDATE video_del_rec SET next_attempt_at = ?2 WHERE video_id = ?1",
            )?;
            for r in &records {
                claim.execute(params![r.video_id.to_string(), until])?;
            }
            Ok(records)
        })
    }
}

impl Handler<QueueStalePending> for VideoStore {
    type Result = Result<Vec<VideoId>, StoreError>;

    fn handle(&mut self, msg: QueueStalePending, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        write_tx(&mut conn, |tx| {
            let ids = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id FROM videos WHERE state = 'pending' AND created_at < ?1
                     ORDER BY seq LIMIT ?2",
                )?;
                let rows =
                    stmt.query_map(params![to_ms(msg.older_than), msg.limit], |r| uuid_col(r, 0))?;
                rows.map(|r| r.map(VideoId)).collect::<rusqlite::Result<Vec<_>>>()?
            };
            for id in &ids {
                tx.execute(
                    "UPDATE videos SET state = 'deleted' WHERE id = ?1 AND state = 'pending'",
                    [id.to_string()],
                )?;
                enqueue(tx, *id)?;
            }
            Ok(ids)
        })
    }
}

impl Handler<DeletionQueueStats> for VideoStore {
    type Result = Result<QueueStats, StoreError>;

    fn handle(&mut self, _: DeletionQueueStats, _: &mut Self::Context) -> Self::Result {
        let conn = self.conn()?;
        let (waiting, failed, oldest): (i64, i64, Option<i64>) = conn.query_row(
            "SELECT COALESCE(SUM(failed = 0), 0), COALESCE(SUM(failed != 0), 0),
                    MIN(CASE WHEN failed = 0 THEN queued_at END)
             FROM video_del_rec",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(QueueStats {
            waiting: waiting.try_into().unwrap_or(0),
            failed: failed.try_into().unwrap_or(0),
            oldest_queued_at: oldest.map(from_ms),
        })
    }
}

/// What the database still holds of a video, whatever its state: whether its row and its
/// deletion record exist, and how many comments it has. Lets a caller (and the tests) check
/// that a removal left nothing behind.
#[derive(Debug, Message)]
#[rtype(result = "Result<Remnants, StoreError>")]
pub struct VideoRemnants {
    pub video: VideoId,
}

/// See [`VideoRemnants`]; the default is "nothing left".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remnants {
    pub row: bool,
    pub comments: u64,
    pub record: bool,
}

impl Handler<VideoRemnants> for VideoStore {
    type Result = Result<Remnants, StoreError>;

    fn handle(&mut self, msg: VideoRemnants, _: &mut Self::Context) -> Self::Result {
        let conn = self.conn()?;
        let id = msg.video.to_string();
        let (row, comments, record): (bool, i64, bool) = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM videos WHERE id = ?1),
                    (SELECT COUNT(*) FROM comments c JOIN videos v ON v.seq = c.video_seq
                      WHERE v.id = ?1),
                    EXISTS (SELECT 1 FROM video_del_rec WHERE video_id = ?1)",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(Remnants { row, comments: comments.try_into().unwrap_or(0), record })
    }
}
