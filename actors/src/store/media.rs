//! What probing a video found (`videos.probed_at` … `poster_etag`): read with every video,
//! written once by a finished `probe_video` job.

use actix::prelude::*;

use super::{Db, Row, VideoStore, from_ms, now_ms};
use crate::error::StoreError;
use crate::model::{BlobLocation, JobKind, MediaInfo, Poster, VideoId};
use crate::params;

/// Reads the media columns starting at `first` (`probed_at`, `duration_ms`, `width`, `height`,
/// `video_codec`, `audio_codec`, `poster_size`, `poster_type`, `poster_etag`, in that order);
/// `None` when the video has not been probed.
pub(super) fn media_cols(r: &Row<'_>, first: usize) -> Result<Option<MediaInfo>, StoreError> {
    let Some(probed_at) = r.get::<Option<i64>>(first)? else { return Ok(None) };
    let unsigned = |i: usize| -> Result<Option<u64>, StoreError> {
        Ok(r.get::<Option<i64>>(first + i)?.and_then(|v| u64::try_from(v).ok()))
    };
    let pixels = |i: usize| -> Result<Option<u32>, StoreError> {
        Ok(unsigned(i)?.and_then(|v| u32::try_from(v).ok()))
    };
    let poster = match (unsigned(6)?, r.get::<Option<String>>(first + 7)?) {
        (Some(size), Some(content_type)) => Some(Poster {
            size,
            content_type,
            etag: r.get::<Option<String>>(first + 8)?.unwrap_or_default(),
            made_at: from_ms(probed_at),
        }),
        _ => None,
    };
    Ok(Some(MediaInfo {
        duration_ms: unsigned(1)?,
        width: pixels(2)?,
        height: pixels(3)?,
        video_codec: r.get(first + 4)?,
        audio_codec: r.get(first + 5)?,
        poster,
    }))
}

/// What a probe needs to know of a video: where its bytes are and what container it is in.
/// `None` when the video is not ready any more (deleted, or gone): the job has nothing to do.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<ProbeSubject>, StoreError>")]
pub struct ProbeTarget {
    pub video: VideoId,
}

/// See [`ProbeTarget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSubject {
    pub location: BlobLocation,
    pub content_type: String,
}

/// A probe finished: records what it found on the video and removes its job, in one
/// transaction, if the video is still ready. `false` when it is not (it was deleted while the
/// probe ran): then nothing is recorded and the caller removes the poster it stored.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct RecordProbe {
    pub video: VideoId,
    pub media: MediaInfo,
}

/// The video is not ready any more, or cannot be probed: its probe job ends without a record.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DropProbe {
    pub video: VideoId,
}

impl Handler<ProbeTarget> for VideoStore {
    type Result = Result<Option<ProbeSubject>, StoreError>;

    fn handle(&mut self, msg: ProbeTarget, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().query_opt(
            "SELECT blob_location, content_type FROM videos WHERE id = ?1 AND state = 'ready'",
            params![msg.video.to_string()],
            |r| {
                Ok(ProbeSubject {
                    location: BlobLocation::from_column(r.get::<Option<String>>(0)?.as_deref()),
                    content_type: r.get::<Option<String>>(1)?.unwrap_or_default(),
                })
            },
        )
    }
}

fn int<T: TryInto<i64>>(v: Option<T>) -> Option<i64> {
    v.and_then(|v| v.try_into().ok())
}

fn record(db: &mut Db<'_>, msg: &RecordProbe) -> Result<bool, StoreError> {
    let m = &msg.media;
    let poster = m.poster.as_ref();
    let recorded = db.execute(
        "UPDATE videos SET probed_at = ?2, duration_ms = ?3, width = ?4, height = ?5,
            video_codec = ?6, audio_codec = ?7, poster_size = ?8, poster_type = ?9,
            poster_etag = ?10
         WHERE id = ?1 AND state = 'ready'",
        params![
            msg.video.to_string(),
            poster.map_or_else(now_ms, |p| super::to_ms(p.made_at)),
            int(m.duration_ms),
            int(m.width),
            int(m.height),
            m.video_codec.as_deref(),
            m.audio_codec.as_deref(),
            int(poster.map(|p| p.size)),
            poster.map(|p| p.content_type.as_str()),
            poster.map(|p| p.etag.as_str())
        ],
    )?;
    super::jobs::finish(db, JobKind::ProbeVideo, msg.video)?;
    if recorded == 1 {
        // Cards and the feed show the poster and the duration.
        super::feed::feed_changed(db)?;
    }
    Ok(recorded == 1)
}

impl Handler<RecordProbe> for VideoStore {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, msg: RecordProbe, _: &mut Self::Context) -> Self::Result {
        let recorded = self.conn()?.write(|db| record(db, &msg))?;
        if recorded {
            self.feed.invalidate();
        }
        Ok(recorded)
    }
}

impl Handler<DropProbe> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: DropProbe, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| super::jobs::finish(db, JobKind::ProbeVideo, msg.video))
    }
}
