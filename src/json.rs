//! The JSON shapes of API.md's video and comment objects.

use actors::model::{Comment, Listing, Video, VideoStatus};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// RFC 3339 in UTC, e.g. `2026-11-26T06:48:52.123Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Formatting a UTC OffsetDateTime as RFC 3339 fails only for years outside 0..=9999.
    t.format(&Rfc3339).unwrap_or_default()
}

/// A human date, e.g. `Nov 26, 2026 06:48 UTC`.
pub fn display_time(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[month repr:short] [day padding:none], [year] [hour]:[minute] UTC");
    t.format(&fmt).unwrap_or_default()
}

#[derive(Debug, Serialize)]
pub struct VideoJson {
    pub id: String,
    pub author_id: i64,
    pub author: String,
    pub name: String,
    pub status: VideoStatus,
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub display_ctime: String,
    pub create_time: String,
    /// What the scheduler's probe found (README, "Video object"): all `null` until then.
    pub duration_ms: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// The poster image, a path on the site's origin (the web and stream services both serve
    /// it); `null` until probed, and for a file without a picture.
    pub poster_url: Option<String>,
}

impl From<Video> for VideoJson {
    fn from(v: Video) -> Self {
        let status = v.status();
        let (size, content_type) = match v.file {
            Some(f) => (Some(f.size), Some(f.content_type)),
            None => (None, None),
        };
        let media = v.media.unwrap_or_default();
        let poster_url = media.poster.as_ref().map(|_| format!("/videos/{}/poster", v.id));
        VideoJson {
            id: v.id.to_string(),
            author_id: v.author_id.0,
            author: v.author,
            name: v.name,
            status,
            size,
            content_type,
            display_ctime: display_time(v.created_at),
            create_time: rfc3339(v.created_at),
            duration_ms: media.duration_ms,
            width: media.width,
            height: media.height,
            video_codec: media.video_codec,
            audio_codec: media.audio_codec,
            poster_url,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CommentJson {
    pub id: String,
    pub video_id: String,
    pub author_id: i64,
    pub author: String,
    pub content: String,
    pub time: String,
}

impl From<Comment> for CommentJson {
    fn from(c: Comment) -> Self {
        CommentJson {
            id: c.id.to_string(),
            video_id: c.video_id.to_string(),
            author_id: c.author_id.0,
            author: c.author,
            content: c.content,
            time: rfc3339(c.created_at),
        }
    }
}

/// `{"videos": [...], "next": ...}`.
#[derive(Debug, Serialize)]
pub struct VideoList {
    pub videos: Vec<VideoJson>,
    pub next: Option<String>,
}

impl From<Listing<Video>> for VideoList {
    fn from(l: Listing<Video>) -> Self {
        VideoList {
            videos: l.items.into_iter().map(VideoJson::from).collect(),
            next: l.next.map(|c| c.encode()),
        }
    }
}

/// `{"comments": [...], "next": ...}`.
#[derive(Debug, Serialize)]
pub struct CommentList {
    pub comments: Vec<CommentJson>,
    pub next: Option<String>,
}

impl From<Listing<Comment>> for CommentList {
    fn from(l: Listing<Comment>) -> Self {
        CommentList {
            comments: l.items.into_iter().map(CommentJson::from).collect(),
            next: l.next.map(|c| c.encode()),
        }
    }
}
