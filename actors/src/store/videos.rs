//! Videos: create, read with the owner-sees-pending rule, list, mark ready, delete.

use actix::prelude::*;

use super::{Db, Row, VideoStore, from_ms, now_ms, to_ms, uuid_col};
use crate::error::StoreError;
use crate::model::{
    BlobLocation, Cursor, JobKind, Listing, Page, User, UserId, UserName, Video, VideoFile, VideoId,
};
use crate::params;

/// Columns read by [`video_row`], in order; `v` is videos, `u` its author.
pub(super) const VIDEO_COLS: &str =
    "v.id, v.author_id, u.user_name, v.name, v.created_at, v.state, v.size,
    v.content_type, v.sha256, v.uploaded_at, v.seq, v.blob_location, v.probed_at, v.duration_ms,
    v.width, v.height, v.video_codec, v.audio_codec, v.poster_size, v.poster_type, v.poster_etag";

/// Who may see a video: ready ones are public, pending ones only to their owner.
const VISIBLE: &str = "(v.state = 'ready' OR (v.state = 'pending' AND v.author_id = ?2))";

pub(super) fn video_row(r: &Row<'_>) -> Result<(Video, i64), StoreError> {
    let state: String = r.get(5)?;
    let file = if state == "ready" {
        Some(VideoFile {
            size: r.get::<i64>(6)?.try_into().unwrap_or(0),
            content_type: r.get(7)?,
            sha256: r.get(8)?,
            uploaded_at: from_ms(r.get(9)?),
            location: BlobLocation::from_column(r.get::<Option<String>>(11)?.as_deref()),
        })
    } else {
        None
    };
    let video = Video {
        id: VideoId(uuid_col(r, 0)?),
        author_id: UserId(r.get(1)?),
        author: r.get(2)?,
        name: r.get(3)?,
        created_at: from_ms(r.get(4)?),
        media: if file.is_some() { super::media::media_cols(r, 12)? } else { None },
        file,
    };
    Ok((video, r.get(10)?))
}

fn viewer_param(viewer: Option<UserId>) -> i64 {
    // No user has id -1, so an anonymous viewer sees ready videos only.
    viewer.map_or(-1, |u| u.0)
}

/// Creates a pending video owned by `author`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Video, StoreError>")]
pub struct CreateVideo {
    pub author: User,
    pub name: String,
}

/// One video as `viewer` may see it; `author`, when given, must be its author's name.
#[derive(Debug, Message)]
#[rtype(result = "Result<Video, StoreError>")]
pub struct GetVideo {
    pub id: VideoId,
    pub author: Option<UserName>,
    pub viewer: Option<UserId>,
}

/// A ready video, for playback.
#[derive(Debug, Message)]
#[rtype(result = "Result<Video, StoreError>")]
pub struct GetPlayable {
    pub id: VideoId,
}

/// A page of videos newest first: one author's (`NotFound` when no such user) or the feed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Listing<Video>, StoreError>")]
pub struct ListVideos {
    pub author: Option<UserName>,
    pub viewer: Option<UserId>,
    pub page: Page,
}

/// Records a completed upload: the video becomes ready. `Conflict` when it already is.
#[derive(Debug, Message)]
#[rtype(result = "Result<Video, StoreError>")]
pub struct MarkReady {
    pub id: VideoId,
    pub owner: UserId,
    pub file: VideoFile,
}

/// Hides a video at once and queues the removal of its file, comments and row, in one
/// transaction. `NotFound` unless it exists, is not deleted and belongs to `owner`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteVideo {
    pub id: VideoId,
    pub owner: UserId,
}

/// Every video id that has a row (any state), for reconciling files on disk with rows.
#[derive(Debug, Message)]
#[rtype(result = "Result<std::collections::HashSet<VideoId>, StoreError>")]
pub struct KnownVideoIds;

impl Handler<CreateVideo> for VideoStore {
    type Result = Result<Video, StoreError>;

    fn handle(&mut self, msg: CreateVideo, _: &mut Self::Context) -> Self::Result {
        let id = VideoId::new();
        let created = now_ms();
        self.conn()?.db().execute(
            "INSERT INTO videos (id, author_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id.to_string(), msg.author.id.0, msg.name, created],
        )?;
        Ok(Video {
            id,
            author_id: msg.author.id,
            author: msg.author.name,
            name: msg.name,
            created_at: from_ms(created),
            file: None,
            media: None,
        })
    }
}

impl Handler<GetVideo> for VideoStore {
    type Result = Result<Video, StoreError>;

    fn handle(&mut self, msg: GetVideo, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        let db = &mut conn.db();
        let sql = format!(
            "SELECT {VIDEO_COLS} FROM videos v JOIN users u ON u.id = v.author_id
             WHERE v.id = ?1 AND {VISIBLE}"
        );
        let (video, _) = db
            .query_opt(&sql, params![msg.id.to_string(), viewer_param(msg.viewer)], video_row)?
            .ok_or(StoreError::NotFound)?;
        match msg.author {
            Some(author)
                if super::users::user_id_by_name(db, &author)? != Some(video.author_id.0) =>
            {
                Err(StoreError::NotFound)
            }
            _ => Ok(video),
        }
    }
}

impl Handler<GetPlayable> for VideoStore {
    type Result = Result<Video, StoreError>;

    fn handle(&mut self, msg: GetPlayable, _: &mut Self::Context) -> Self::Result {
        let sql = format!(
            "SELECT {VIDEO_COLS} FROM videos v JOIN users u ON u.id = v.author_id
             WHERE v.id = ?1 AND v.state = 'ready'"
        );
        self.conn()?
            .db()
            .query_opt(&sql, params![msg.id.to_string()], video_row)?
            .map(|(v, _)| v)
            .ok_or(StoreError::NotFound)
    }
}

impl Handler<ListVideos> for VideoStore {
    type Result = Result<Listing<Video>, StoreError>;

    fn handle(&mut self, msg: ListVideos, _: &mut Self::Context) -> Self::Result {
        // One fixed statement per case, and the LIMIT written into the SQL: SQLite marks a
        // statement whose plan depends on a bound value (`?n IS NULL OR …`, `LIMIT ?n`) for
        // re-preparation on every run, which cost more than the query itself.
        let after = msg.page.after.map_or(i64::MAX, |c| c.0);
        let limit = msg.page.limit + 1;
        let mut conn = self.conn()?;
        let db = &mut conn.db();
        let generation = match msg.author {
            None => {
                let version = self.feed.version(db)?;
                if let Some(hit) = self.feed.get(msg.page, version) {
                    return Ok(hit);
                }
                self.feed.generation(version)
            }
            Some(_) => 0,
        };
        let rows = match &msg.author {
            None => db.query(
                &format!(
                    "SELECT {VIDEO_COLS} FROM videos v JOIN users u ON u.id = v.author_id
                     WHERE v.state = 'ready' AND v.seq < ?1 ORDER BY v.seq DESC LIMIT {limit}"
                ),
                params![after],
                video_row,
            )?,
            Some(name) => {
                let author =
                    super::users::user_id_by_name(db, name)?.ok_or(StoreError::NotFound)?;
                let states = if msg.viewer.is_some_and(|v| v.0 == author) {
                    "('ready', 'pending')"
                } else {
                    "('ready')"
                };
                db.query(
                    &format!(
                        "SELECT {VIDEO_COLS} FROM videos v JOIN users u ON u.id = v.author_id
                         WHERE v.author_id = ?1 AND v.state IN {states} AND v.seq < ?2
                         ORDER BY v.seq DESC LIMIT {limit}"
                    ),
                    params![author, after],
                    video_row,
                )?
            }
        };
        let listing = paginate(rows, msg.page.limit);
        if msg.author.is_none() {
            self.feed.put(msg.page, &listing, generation);
        }
        Ok(listing)
    }
}

/// Cuts a `limit + 1` read down to `limit` items and a cursor when there is more.
pub(super) fn paginate<T>(mut rows: Vec<(T, i64)>, limit: u32) -> Listing<T> {
    let limit = limit as usize;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(_, seq)| Cursor(*seq))
    } else {
        None
    };
    Listing { items: rows.into_iter().map(|(item, _)| item).collect(), next }
}

impl Handler<MarkReady> for VideoStore {
    type Result = Result<Video, StoreError>;

    fn handle(&mut self, msg: MarkReady, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| mark_ready(db, &msg)).inspect(|_| self.feed.invalidate())
    }
}

/// [`MarkReady`] inside the caller's transaction (a direct upload records more beside it).
pub(super) fn mark_ready(db: &mut Db<'_>, msg: &MarkReady) -> Result<Video, StoreError> {
    let sql = format!("SELECT state, author_id FROM videos WHERE id = ?1{}", db.for_update());
    let state: Option<(String, i64)> =
        db.query_opt(&sql, params![msg.id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    match state {
        None => return Err(StoreError::NotFound),
        Some((s, _)) if s == "deleted" => return Err(StoreError::NotFound),
        Some((_, author)) if author != msg.owner.0 => return Err(StoreError::Forbidden),
        Some((s, _)) if s == "ready" => {
            return Err(StoreError::Conflict("video file already uploaded"));
        }
        Some(_) => {}
    }
    let size = i64::try_from(msg.file.size)
        .map_err(|_| StoreError::Internal("file size out of range".into()))?;
    db.execute(
        "UPDATE videos SET state = 'ready', size = ?2, content_type = ?3, sha256 = ?4,
                uploaded_at = ?5, blob_location = ?6 WHERE id = ?1",
        params![
            msg.id.to_string(),
            size,
            msg.file.content_type,
            msg.file.sha256,
            to_ms(msg.file.uploaded_at),
            msg.file.location.as_str()
        ],
    )?;
    // In the same transaction: whichever way the file came, the video is probed.
    super::jobs::enqueue(db, JobKind::ProbeVideo, msg.id)?;
    super::feed::feed_changed(db)?;
    let sql = format!(
        "SELECT {VIDEO_COLS} FROM videos v JOIN users u ON u.id = v.author_id
             WHERE v.id = ?1"
    );
    Ok(db.query_one(&sql, params![msg.id.to_string()], video_row)?.0)
}

impl Handler<DeleteVideo> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: DeleteVideo, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| {
            let changed = db.execute(
                "UPDATE videos SET state = 'deleted'
                 WHERE id = ?1 AND author_id = ?2 AND state != 'deleted'",
                params![msg.id.to_string(), msg.owner.0],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            super::feed::feed_changed(db)?;
            super::deletions::enqueue(db, msg.id)?;
            Ok(())
        })?;
        // After the commit: a reader racing this write may cache the old page, but only
        // until this invalidation, which follows the commit.
        self.feed.invalidate();
        Ok(())
    }
}

impl Handler<KnownVideoIds> for VideoStore {
    type Result = Result<std::collections::HashSet<VideoId>, StoreError>;

    fn handle(&mut self, _: KnownVideoIds, _: &mut Self::Context) -> Self::Result {
        let ids = self
            .conn()?
            .db()
            .query("SELECT id FROM videos", &[], |r| uuid_col(r, 0).map(VideoId))?;
        Ok(ids.into_iter().collect())
    }
}
