//! Upload tickets (direct uploads to the object store): when the latest ticket of a video was
//! issued and until when the store accepts it, and which object a check made the video ready
//! from. Reconciliation reads them to find uploads whose `complete` never came.

use actix::prelude::*;
use time::OffsetDateTime;

use super::videos::{VIDEO_COLS, mark_ready, video_row};
use super::{VideoStore, from_ms, to_ms, uuid_col};
use crate::error::StoreError;
use crate::model::{UserId, Video, VideoFile, VideoId};
use crate::params;
use crate::store::MarkReady;

/// A video's ticket as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    pub video: VideoId,
    /// When the latest ticket was issued.
    pub issued_at: OffsetDateTime,
    /// When the store stops accepting every ticket issued so far.
    pub expires_at: OffsetDateTime,
    /// The object's ETag (without quotes) when a check of it made the video ready; `None` while
    /// pending, or when the video became ready some other way.
    pub verified_etag: Option<String>,
}

/// A video's row as it stands, whoever owns it and whatever its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoRow {
    /// No row: never created, or deleted and purged.
    Missing,
    /// Deleted: hidden everywhere, its removal queued.
    Deleted,
    /// Pending (no file) or ready.
    Live(Box<Video>),
}

/// Records that a ticket for `video` was issued at `issued_at` and is accepted by the store
/// until `expires_at`; written before the ticket is handed out.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordTicket {
    pub video: VideoId,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Tickets whose latest issue is before `issued_before`, oldest first, at most `limit`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<TicketRecord>, StoreError>")]
pub struct DueTickets {
    pub issued_before: OffsetDateTime,
    pub limit: u32,
}

/// Forgets `video`'s ticket, unless a newer one was issued since `issued_at`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct ForgetTicket {
    pub video: VideoId,
    pub issued_at: OffsetDateTime,
}

/// `id`'s row as it stands (for checks that must tell deleted from someone else's).
#[derive(Debug, Message)]
#[rtype(result = "Result<VideoRow, StoreError>")]
pub struct LookupVideo {
    pub id: VideoId,
}

/// Makes a direct upload's video ready, as [`MarkReady`] does, and notes on its ticket the
/// ETag of the object that was checked (`file.sha256`): until the ticket expires its form can
/// replace the object, so reconciliation compares once more after that.
#[derive(Debug, Message)]
#[rtype(result = "Result<Video, StoreError>")]
pub struct MarkDirectReady {
    pub id: VideoId,
    pub owner: UserId,
    pub file: VideoFile,
}

impl Handler<RecordTicket> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: RecordTicket, _: &mut Self::Context) -> Self::Result {
        // The latest issue decides when reconciliation looks; the latest expiry (the TTL may
        // have changed between two tickets) decides when the key stops being writable.
        self.conn()?.db().execute(
            "INSERT INTO upload_tickets (video_id, issued_at, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (video_id) DO UPDATE SET issued_at = excluded.issued_at,
                expires_at = CASE WHEN upload_tickets.expires_at > excluded.expires_at
                                  THEN upload_tickets.expires_at ELSE excluded.expires_at END,
                verified_etag = NULL",
            params![msg.video.to_string(), to_ms(msg.issued_at), to_ms(msg.expires_at)],
        )?;
        Ok(())
    }
}

impl Handler<DueTickets> for VideoStore {
    type Result = Result<Vec<TicketRecord>, StoreError>;

    fn handle(&mut self, msg: DueTickets, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().query(
            "SELECT video_id, issued_at, expires_at, verified_etag FROM upload_tickets
             WHERE issued_at < ?1 ORDER BY issued_at LIMIT ?2",
            params![to_ms(msg.issued_before), msg.limit],
            |r| {
                Ok(TicketRecord {
                    video: VideoId(uuid_col(r, 0)?),
                    issued_at: from_ms(r.get(1)?),
                    expires_at: from_ms(r.get(2)?),
                    verified_etag: r.get(3)?,
                })
            },
        )
    }
}

impl Handler<ForgetTicket> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: ForgetTicket, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().execute(
            "DELETE FROM upload_tickets WHERE video_id = ?1 AND issued_at = ?2",
            params![msg.video.to_string(), to_ms(msg.issued_at)],
        )?;
        Ok(())
    }
}

impl Handler<LookupVideo> for VideoStore {
    type Result = Result<VideoRow, StoreError>;

    fn handle(&mut self, msg: LookupVideo, _: &mut Self::Context) -> Self::Result {
        let sql = format!(
            "SELECT {VIDEO_COLS} FROM videos v JOIN users u ON u.id = v.author_id WHERE v.id = ?1"
        );
        // One statement, so the state and the rest are of the same moment.
        let row = self.conn()?.db().query_opt(&sql, params![msg.id.to_string()], |r| {
            let deleted = r.get::<String>(5)? == "deleted";
            Ok((deleted, video_row(r)?.0))
        })?;
        Ok(match row {
            None => VideoRow::Missing,
            Some((true, _)) => VideoRow::Deleted,
            Some((false, video)) => VideoRow::Live(Box::new(video)),
        })
    }
}

impl Handler<MarkDirectReady> for VideoStore {
    type Result = Result<Video, StoreError>;

    fn handle(&mut self, msg: MarkDirectReady, _: &mut Self::Context) -> Self::Result {
        let MarkDirectReady { id, owner, file } = msg;
        let etag = file.sha256.clone();
        let ready = self.conn()?.write(|db| {
            let video = mark_ready(db, &MarkReady { id, owner, file })?;
            // No ticket row: every ticket has expired and been forgotten, so nothing can
            // replace the object any more and there is nothing to compare later.
            db.execute(
                "UPDATE upload_tickets SET verified_etag = ?2 WHERE video_id = ?1",
                params![id.to_string(), etag],
            )?;
            Ok(video)
        })?;
        self.feed.invalidate();
        Ok(ready)
    }
}
