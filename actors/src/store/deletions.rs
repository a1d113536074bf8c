//! Deleting videos through the job queue: hiding and queuing (`remove_video` jobs), and what a
//! finished removal takes out of the database.

use actix::prelude::*;
use time::OffsetDateTime;

use super::batch::{Batch, Batchable, run_batch};
use super::{Db, VideoStore, to_ms, uuid_col};
use crate::error::StoreError;
use crate::model::{JobKind, VideoId};
use crate::params;

/// Queues a removal inside an open transaction; queuing twice is a no-op.
pub(super) fn enqueue(db: &mut Db<'_>, video: VideoId) -> Result<(), StoreError> {
    super::jobs::enqueue(db, JobKind::RemoveVideo, video)
}

/// Hides a video (if it still exists) and queues its removal; idempotent.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct EnqueueDeletion {
    pub video: VideoId,
}

/// The file is gone: removes the video's comments, its row and its record in one transaction.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct CompleteDeletion {
    pub video: VideoId,
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

/// Removes a deleted video's comments, its row and its record, inside an open transaction.
fn complete_deletion(db: &mut Db<'_>, msg: CompleteDeletion) -> Result<(), StoreError> {
    let id = msg.video.to_string();
    db.execute(
        "DELETE FROM comments WHERE video_seq IN
           (SELECT seq FROM videos WHERE id = ?1 AND state = 'deleted')",
        params![id],
    )?;
    db.execute("DELETE FROM videos WHERE id = ?1 AND state = 'deleted'", params![id])?;
    // Every job of the video goes with it: a probe still queued has nothing left to probe
    // (one running finds the row gone and removes the poster it made).
    db.execute("DELETE FROM jobs WHERE video_id = ?1", params![id])?;
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

/// What the database still holds of a video, whatever its state: whether its row and a job
/// of it exist, and how many comments it has. Lets a caller (and the tests) check
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
                    EXISTS (SELECT 1 FROM jobs WHERE video_id = ?1)",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(Remnants { row, comments: comments.try_into().unwrap_or(0), record })
    }
}
