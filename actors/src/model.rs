//! Model types shared by actors and services: ids as newtypes, validated names, rows.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::text;

mod names;
pub use names::{NewUserName, UserName};

/// Why a client-supplied value was refused; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Parses the one accepted spelling of a UUID: lowercase and hyphenated, 36 characters.
/// Any other spelling is refused so that one resource never has two names.
fn parse_canonical_uuid(s: &str, what: &str) -> Result<Uuid, Invalid> {
    let invalid = || Invalid(format!("{what} must be a lowercase hyphenated UUID"));
    if s.len() != 36 {
        return Err(invalid());
    }
    let id = Uuid::try_parse(s).map_err(|_| invalid())?;
    if id.hyphenated().to_string() != s {
        return Err(invalid());
    }
    Ok(id)
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Invalid> {
                parse_canonical_uuid(s, $what).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// A video's public id.
    VideoId,
    "video id"
);
uuid_id!(
    /// A comment's public id.
    CommentId,
    "comment id"
);
uuid_id!(
    /// One run of a scheduler: new at every start, named by the claims it makes.
    IncarnationId,
    "incarnation id"
);

/// A user's numeric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

/// A plain-text password on its way to the hasher; never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Password {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        if !(6..=128).contains(&s.chars().count()) {
            return Err(Invalid("pwd must be 6 to 128 characters".into()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// An argon2id password hash as a PHC string (`$argon2id$v=19$m=…`): all that is kept of a
/// password. Not a secret like the password, but not shown either.
#[derive(Clone, PartialEq, Eq)]
pub struct PwdHash(String);

impl PwdHash {
    /// Wraps a PHC string as the hasher made it or the database holds it.
    pub fn from_phc(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PwdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PwdHash(..)")
    }
}

/// A video's display name: 1–200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoName(String);

impl VideoName {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl FromStr for VideoName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if !(1..=200).contains(&s.chars().count()) {
            return Err(Invalid("name must be 1 to 200 characters".into()));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid("name must not contain control characters".into()));
        }
        if !text::has_visible(s) {
            return Err(Invalid("name must contain a visible character".into()));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A comment's text: 1–2000 characters after trimming. Line breaks and tabs are kept; other
/// control characters are refused because no reader can see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentText(String);

impl CommentText {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl FromStr for CommentText {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if !(1..=2000).contains(&s.chars().count()) {
            return Err(Invalid("content must be 1 to 2000 characters".into()));
        }
        if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(Invalid("content must not contain control characters".into()));
        }
        if !text::has_visible(s) {
            return Err(Invalid("content must contain a visible character".into()));
        }
        Ok(Self(s.to_owned()))
    }
}

/// A position in a newest-first list: the internal sequence number of the last item shown.
/// Clients see it only as an opaque string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub i64);

impl Cursor {
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("s{}", self.0))
    }
}

impl FromStr for Cursor {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid("cursor is not valid".into());
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&raw).map_err(|_| invalid())?;
        let seq = text.strip_prefix('s').ok_or_else(invalid)?.parse().map_err(|_| invalid())?;
        Ok(Cursor(seq))
    }
}

/// Which slice of a newest-first list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1–100 items.
    pub limit: u32,
    /// Items strictly older than this cursor; `None` starts at the newest.
    pub after: Option<Cursor>,
}

impl Page {
    pub const DEFAULT_LIMIT: u32 = 20;
    pub const MAX_LIMIT: u32 = 100;

    /// Validates `?limit=` and `?cursor=` as a client sent them.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, Invalid> {
        let limit = match limit {
            None => Self::DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=Self::MAX_LIMIT).contains(n))
                .ok_or_else(|| Invalid("limit must be an integer from 1 to 100".into()))?,
        };
        let after = cursor.map(str::parse).transpose()?;
        Ok(Self { limit, after })
    }
}

impl Default for Page {
    fn default() -> Self {
        Self { limit: Self::DEFAULT_LIMIT, after: None }
    }
}

/// One page of a list and where the next one starts.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// The name as registered (NFC), for display.
    pub name: String,
    /// The key the name is unique under (see [`UserName::key`]).
    pub name_key: String,
}

/// A video's lifecycle as clients see it; deleted videos are never returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    Pending,
    Ready,
}

/// What is known about an uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFile {
    pub size: u64,
    pub content_type: String,
    /// The strong ETag value without quotes: the file's SHA-256 in hex when it came through
    /// the server (which hashes it on the way); the object store's ETag of the object when it
    /// was uploaded straight to the store (`upload::direct`), which the node never reads whole.
    pub sha256: String,
    pub uploaded_at: OffsetDateTime,
    /// Where the bytes are.
    pub location: BlobLocation,
}

/// Where a ready video's bytes live. A site that started with files and moved to the object
/// store has both for a while (`relocate`); each video is served from where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobLocation {
    /// `<data-dir>/videos` of the node.
    File,
    /// The object store's bucket.
    ObjectStore,
}

impl BlobLocation {
    /// The column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobLocation::File => "file",
            BlobLocation::ObjectStore => "s3",
        }
    }

    /// From the column; rows from before locations were recorded are files.
    pub fn from_column(value: Option<&str>) -> Self {
        match value {
            Some("s3") => BlobLocation::ObjectStore,
            _ => BlobLocation::File,
        }
    }
}

/// A video as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    pub id: VideoId,
    pub author_id: UserId,
    pub author: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    /// `None` while pending.
    pub file: Option<VideoFile>,
    /// What the `ProbeVideo` job found in the file; `None` until it has run.
    pub media: Option<MediaInfo>,
}

/// What ffprobe and ffmpeg found in a ready video's file. Every field is optional: a file
/// with sound only has no size, a stream without a duration has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaInfo {
    pub duration_ms: Option<u64>,
    /// The displayed size: rotation (a phone's portrait video) already applied.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// ffprobe's codec names, e.g. `h264`, `vp9`, `aac`, `opus`.
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// The poster frame, when the file has a picture to take one from.
    pub poster: Option<Poster>,
}

/// A video's poster image, stored beside its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poster {
    pub size: u64,
    pub content_type: String,
    /// The strong ETag value without quotes (a hash of the image).
    pub etag: String,
    pub made_at: OffsetDateTime,
}

impl Video {
    pub fn status(&self) -> VideoStatus {
        if self.file.is_some() { VideoStatus::Ready } else { VideoStatus::Pending }
    }
}

/// A comment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: CommentId,
    pub video_id: VideoId,
    pub author_id: UserId,
    pub author: String,
    pub content: String,
    pub created_at: OffsetDateTime,
}

/// What a job of the durable queue does to its video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    /// Removes a deleted video's file, poster, comments and row.
    RemoveVideo,
    /// Reads a ready video's duration, size and codecs, and takes its poster frame.
    ProbeVideo,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::RemoveVideo, JobKind::ProbeVideo];

    /// The column's value, and the name in the internal API and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::RemoveVideo => "remove_video",
            JobKind::ProbeVideo => "probe_video",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Invalid("a job kind is remove_video or probe_video".into()))
    }
}

/// One job of the durable queue: a kind and the video it is about (one job of each kind per
/// video at most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub kind: JobKind,
    pub video_id: VideoId,
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    /// Gave up after too many attempts; kept visible rather than retried forever.
    pub failed: bool,
    pub queued_at: OffsetDateTime,
    /// The scheduler incarnation running it now, if any (see `store::ClaimJobs`).
    pub claimed_by: Option<IncarnationId>,
    /// A program the job needs and the scheduler that last ran it could not find (`ffmpeg`):
    /// the job waits, without counting attempts, until a scheduler finds it.
    pub waiting_for: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_accept_only_the_canonical_spelling() {
        let id = VideoId::new().to_string();
        assert!(id.parse::<VideoId>().is_ok());
        assert!(id.to_uppercase().parse::<VideoId>().is_err());
        assert!(id.replace('-', "").parse::<VideoId>().is_err());
        assert!(format!("{{{id}}}").parse::<VideoId>().is_err());
        assert!("..".parse::<VideoId>().is_err());
        assert!("a".repeat(300).parse::<VideoId>().is_err());
    }

    #[test]
    fn texts_need_a_visible_character() {
        let blanks = [
            "\u{200B}\u{200B}",
            "\u{FEFF}",
            "\u{2800}\u{2800}\u{2800}",
            "\u{115F}\u{1160}\u{3164}\u{FFA0}",
            "\u{202E}\u{2066}\u{2069}\u{200F}",
            " \u{200D} \u{2060} ",
            "\u{E0041}\u{E0042}",
        ];
        for blank in blanks {
            assert!(blank.parse::<VideoName>().is_err(), "{blank:?}");
            assert!(blank.parse::<CommentText>().is_err(), "{blank:?}");
        }
        for ok in ["a\u{200B}", "😀", "\u{202E}abc", "."] {
            assert!(ok.parse::<VideoName>().is_ok(), "{ok:?}");
            assert!(ok.parse::<CommentText>().is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!("  hi  ".parse::<VideoName>().unwrap().into_inner(), "hi");
        assert!("   ".parse::<VideoName>().is_err());
        assert!("a\u{7}b".parse::<VideoName>().is_err());
        assert!("é".repeat(200).parse::<VideoName>().is_ok());
        assert!("é".repeat(201).parse::<VideoName>().is_err());
        assert!("line\nbreak".parse::<CommentText>().is_ok());
        assert!("x".repeat(2001).parse::<CommentText>().is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor(42);
        assert_eq!(c.encode().parse::<Cursor>().unwrap(), c);
        assert!("not-a-cursor!".parse::<Cursor>().is_err());
        assert!(Page::parse(Some("0"), None).is_err());
        assert!(Page::parse(Some("101"), None).is_err());
        assert_eq!(Page::parse(None, None).unwrap().limit, 20);
    }
}
