//! The view models: what a page shows, already mapped from the api's JSON by the web service.

/// The signed-in user looking at a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub name: String,
}

/// Whether a video's file has arrived yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoState {
    Pending,
    Ready,
}

/// One video as a card or as the subject of the watch page.
#[derive(Debug, Clone)]
pub struct VideoCard {
    pub id: String,
    pub name: String,
    pub author: String,
    /// Human date, e.g. `Nov 26, 2026 06:48 UTC`.
    pub date: String,
    /// RFC 3339, for `<time datetime>`.
    pub datetime: String,
    pub state: VideoState,
    pub size: Option<u64>,
}

/// One comment under a video.
#[derive(Debug, Clone)]
pub struct CommentView {
    pub id: String,
    pub author: String,
    pub content: String,
    pub date: String,
    pub datetime: String,
    /// The viewer wrote it or owns the video.
    pub can_delete: bool,
}

/// A page of videos and the link to the next one.
#[derive(Debug, Clone, Default)]
pub struct VideoList {
    pub videos: Vec<VideoCard>,
    /// The href of the next (older) page, when there is one.
    pub next_href: Option<String>,
}

/// `/`: the public feed.
#[derive(Debug, Clone)]
pub struct HomePage {
    pub viewer: Option<Viewer>,
    pub feed: VideoList,
}

/// `/userhome`: the signed-in user's own videos and the upload form.
#[derive(Debug, Clone)]
pub struct UserHomePage {
    pub viewer: Viewer,
    pub videos: VideoList,
    /// Largest accepted file in bytes: shown next to the file input, and checked by the page
    /// before it sends anything (the stream service stays the real guard).
    pub max_upload_bytes: u64,
    /// Whether the page sends the file straight to the object store (`--blob-store s3`: a
    /// ticket, the store's form post, then `complete`) rather than through `/upload/:vid`.
    pub direct_upload: bool,
}

/// `/watch/:vid`: the player, the comments and the comment form.
#[derive(Debug, Clone)]
pub struct WatchPage {
    pub viewer: Option<Viewer>,
    pub video: VideoCard,
    /// The video's `src`: the web service's proxy path.
    pub src: String,
    pub comments: Vec<CommentView>,
    pub more_comments_href: Option<String>,
    pub is_owner: bool,
}

/// `/u/:username`: one user's ready videos.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub viewer: Option<Viewer>,
    pub user: String,
    pub videos: VideoList,
}

/// A friendly error page.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub viewer: Option<Viewer>,
    pub status: u16,
    pub title: String,
    pub message: String,
}

/// The watch page's address for a video. The author travels along for people reading the link;
/// the page itself finds the video by id.
pub fn watch_href(id: &str, author: &str) -> String {
    format!("/watch/{id}?by={}", encode_component(author))
}

/// A user's public page.
pub fn user_href(name: &str) -> String {
    format!("/u/{}", encode_component(name))
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for one path segment or
/// query value; user names may be any Unicode letters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A size in human units, e.g. `1.4 MB`; binary multiples, as file managers show them, so
/// that the 1 GiB default reads "1.0 GB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision loss is irrelevant for a one-decimal display.
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_unicode_and_reserved() {
        assert_eq!(encode_component("小明"), "%E5%B0%8F%E6%98%8E");
        assert_eq!(encode_component("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(encode_component("alice_01.x-y"), "alice_01.x-y");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1_468_006), "1.4 MB");
        assert_eq!(human_size(1 << 30), "1.0 GB");
    }
}
