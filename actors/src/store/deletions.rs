//! The durable deletion queue (`video_del_rec`): what the scheduler drains.

use actix::prelude::*;
use time::OffsetDateTime;

use super::batch::{Batch, Batchable, run_batch};
use super::{Db, Row, VideoStore, from_ms, now_ms, to_ms, uuid_col};
use crate::error::StoreError;
use crate::model::{DeletionRecord, IncarnationId, VideoId};
use crate::params;

pub(super) const RECORD_COLS: &str =
    "video_id, attempts, next_attempt_at, last_error, failed, queued_at, claimed_by";

pub(super) fn record_row(r: &Row<'_>) -> Result<DeletionRecord, StoreError> {
    let claimed_by = match r.get::<Option<String>>(6)? {
        Some(_) => Some(IncarnationId(uuid_col(r, 6)?)),
        None => None,
    };
    Ok(DeletionRecord {
        video_id: VideoId(uuid_col(r, 0)?),
        attempts: r.get::<i64>(1)?.try_into().unwrap_or(u32::MAX),
        next_attempt_at: from_ms(r.get(2)?),
        last_error: r.get(3)?,
        failed: r.get(4)?,
        queued_at: from_ms(r.get(5)?),
        claimed_by,
    })
}

/// Queues a removal inside an open transaction; queuing twice is a no-op.
pub(super) fn enqueue(db: &mut Db<'_>, video: VideoId) -> Result<(), StoreError> {
    let now = now_ms();
    db.execute(
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
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct CompleteDeletion {
    pub video: VideoId,
}

/// A removal failed: records why and when to try again (or that it gave up), and ends the
/// claim. Only while the record is still held by `claim` (the claim it ran under): a claimer
/// presumed dead whose record was claimed again meanwhile changes nothing.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct FailDeletion {
    pub video: VideoId,
    pub claim: Option<IncarnationId>,
    pub error: String,
    pub next_attempt_at: OffsetDateTime,
    pub give_up: bool,
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
        self.conn()?.write(|db| {
            let hidden = db.execute(
                "UPDATE videos SET state = 'deleted' WHERE id = ?1",
                params![msg.video.to_string()],
            )?;
            if hidden > 0 {
                super::feed::feed_changed(db)?;
            }
            enqueue(db, msg.video)
        })?;
        self.feed.invalidate();
        Ok(())
    }
}

impl Handler<ListDeletions> for VideoStore {
    type Result = Result<Vec<DeletionRecord>, StoreError>;

    fn handle(&mut self, _: ListDeletions, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().query(
            &format!("SELECT {RECORD_COLS} FROM video_del_rec ORDER BY next_attempt_at"),
            &[],
            record_row,
        )
    }
}

/// Removes a deleted video's comments, its row and its record, inside an open transaction.
fn complete_deletion(db: &mut Db<'_>, msg: CompleteDeletion) -> Result<(), StoreError> {
    let id = msg.video.to_string();
    db.execute(
        "DELETE FROM comments WHERE video_seq IN
           (SELECT seq FROM videos WHERE id = ?1 AND state = 'deleted')",
        params![id],
    )?;
    db.execute("DELETE FROM videos WHERE id = ?1 AND state = 'deleted'", params![id])?;
    db.execute("DELETE FROM video_del_rec WHERE video_id = ?1", params![id])?;
    Ok(())
}

impl Handler<CompleteDeletion> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: CompleteDeletion, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| complete_deletion(db, msg))
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
        let claim = msg.claim.map(|c| c.to_string());
        let recorded = self.conn()?.db().execute(
            "UPDATE video_del_rec SET attempts = attempts + 1, last_error = ?2,
                next_attempt_at = ?3, failed = ?4, claimed_by = NULL
             WHERE video_id = ?1 AND claimed_by IS NOT DISTINCT FROM ?5",
            params![
                msg.video.to_string(),
                msg.error,
                to_ms(msg.next_attempt_at),
                msg.give_up,
                claim
            ],
        )?;
        if recorded == 0 {
            log::warn!("the failure of {} is not recorded: its claim was taken over", msg.video);
        }
        Ok(())
    }
}

impl Handler<QueueStalePending> for VideoStore {
    type Result = Result<Vec<VideoId>, StoreError>;

    fn handle(&mut self, msg: QueueStalePending, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| {
            let found = db.query(
                "SELECT id FROM videos WHERE state = 'pending' AND created_at < ?1
                 ORDER BY seq LIMIT ?2",
                params![to_ms(msg.older_than), msg.limit],
                |r| uuid_col(r, 0).map(VideoId),
            )?;
            // Only what is still pending now: on PostgreSQL an upload may have made one ready
            // since the read above.
            let mut ids = Vec::with_capacity(found.len());
            for id in found {
                let hidden = db.execute(
                    "UPDATE videos SET state = 'deleted' WHERE id = ?1 AND state = 'pending'",
                    params![id.to_string()],
                )?;
                if hidden == 1 {
                    enqueue(db, id)?;
                    ids.push(id);
                }
            }
            Ok(ids)
        })
    }
}

impl Handler<DeletionQueueStats> for VideoStore {
    type Result = Result<QueueStats, StoreError>;

    fn handle(&mut self, _: DeletionQueueStats, _: &mut Self::Context) -> Self::Result {
        let (waiting, failed, oldest): (i64, i64, Option<i64>) = self.conn()?.db().query_one(
            "SELECT COUNT(*) FILTER (WHERE failed = 0), COUNT(*) FILTER (WHERE failed != 0),
                    MIN(queued_at) FILTER (WHERE failed = 0)
             FROM video_del_rec",
            &[],
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
        let id = msg.video.to_string();
        let (row, comments, record): (bool, i64, bool) = self.conn()?.db().query_one(
            "SELECT EXISTS (SELECT 1 FROM videos WHERE id = ?1),
                    (SELECT COUNT(*) FROM comments c JOIN videos v ON v.seq = c.video_seq
                      WHERE v.id = ?1),
                    EXISTS (SELECT 1 FROM video_del_rec WHERE video_id = ?1)",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(Remnants { row, comments: comments.try_into().unwrap_or(0), record })
    }
}
