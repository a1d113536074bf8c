//! The durable deletion queue (`video_del_rec`): what the scheduler drains.

use actix::prelude::*;
use rusqlite::{Row, params};
use time::OffsetDateTime;

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

/// Up to `limit` records due at `now`, oldest due first; failed records are never due.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<DeletionRecord>, StoreError>")]
pub struct DueDeletions {
    pub now: OffsetDateTime,
    pub limit: u32,
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

/// Pending videos created before `older_than`: uploads that never came.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<VideoId>, StoreError>")]
pub struct StalePendingVideos {
    pub older_than: OffsetDateTime,
    pub limit: u32,
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

impl Handler<DueDeletions> for VideoStore {
    type Result = Result<Vec<DeletionRecord>, StoreError>;

    fn handle(&mut self, msg: DueDeletions, _: &mut Self::Context) -> Self::Result {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLS} FROM video_del_rec
             WHERE failed = 0 AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![to_ms(msg.now), msg.limit], record_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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

impl Handler<CompleteDeletion> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: CompleteDeletion, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        let id = msg.video.to_string();
        write_tx(&mut conn, |tx| {
            tx.execute(
                "DELETE FROM comments WHERE video_seq IN
                   (SELECT seq FROM videos WHERE id = ?1 AND state = 'deleted')",
                [&id],
            )?;
            tx.execute("DELETE FROM videos WHERE id = ?1 AND state = 'deleted'", [&id])?;
            tx.execute("DELETE FROM video_del_rec WHERE video_id = ?1", [&id])?;
            Ok(())
        })
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

impl Handler<StalePendingVideos> for VideoStore {
    type Result = Result<Vec<VideoId>, StoreError>;

    fn handle(&mut self, msg: StalePendingVideos, _: &mut Self::Context) -> Self::Result {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM videos WHERE state = 'pending' AND created_at < ?1
             ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![to_ms(msg.older_than), msg.limit], |r| uuid_col(r, 0))?;
        Ok(rows.map(|r| r.map(VideoId)).collect::<rusqlite::Result<_>>()?)
    }
}
