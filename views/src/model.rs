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
    /// The still the scheduler took from the video, once it has probed it.
    pub poster: Option<Poster>,
    /// Length in milliseconds, once probed.
    pub duration_ms: Option<u64>,
}

/// A video's poster image as a page shows it: where it is, and the size it will have, so that
/// the page keeps its room before it arrives and nothing moves when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poster {
    pub url: String,
    pub width: u32,
    pub height: u32,
}

/// The width every poster is made at.
pub const POSTER_WIDTH: u32 = 480;

impl Poster {
    /// The poster at `url` of a video displayed at `size` (width, height; rotation applied),
    /// which the api may not know: its height is then a 16:9 guess, the most common shape.
    pub fn new(url: String, size: Option<(u32, u32)>) -> Self {
        Poster { url, width: POSTER_WIDTH, height: poster_height(size) }
    }
}

/// The height of a [`POSTER_WIDTH`]-wide still of a video displayed at `size`: its aspect,
/// rounded to the nearest even number as the encoder rounds it. An absurd aspect (a video one
/// pixel wide) is held to 1:4 either way, so that one card cannot stretch a whole page.
pub fn poster_height(size: Option<(u32, u32)>) -> u32 {
    const GUESS: u32 = POSTER_WIDTH * 9 / 16;
    let Some((w, h)) = size.filter(|&(w, h)| w > 0 && h > 0) else { return GUESS };
    let (w, h) = (u64::from(w), u64::from(h));
    // round(480·h / w / 2) · 2, in integers.
    let even = (u64::from(POSTER_WIDTH) * h + w) / (2 * w) * 2;
    let (low, high) = (u64::from(POSTER_WIDTH / 4), u64::from(POSTER_WIDTH * 4));
    // At most 1920 by now, so it always fits.
    u32::try_from(even.clamp(low, high)).unwrap_or(GUESS)
}

/// Whole seconds of a length in milliseconds as a player shows them: to the nearest second,
/// and never "0:00" for a clip that has any length at all.
fn whole_seconds(ms: u64) -> u64 {
    if ms == 0 { 0 } else { (ms.saturating_add(500) / 1000).max(1) }
}

/// A length as video sites print it on a thumbnail: `0:02`, `1:00`, `10:00`, `1:02:03`.
pub fn duration_text(ms: u64) -> String {
    let s = whole_seconds(ms);
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

/// The same length as a screen reader should say it: `1 minute 2 seconds`.
pub fn duration_words(ms: u64) -> String {
    let s = whole_seconds(ms);
    let parts = [(s / 3600, "hour"), (s / 60 % 60, "minute"), (s % 60, "second")];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if words.is_empty() { "0 seconds".to_owned() } else { words.join(" ") }
}

/// The exact length as an HTML duration string for `<time datetime>`: `PT62S`, `PT2.5S`.
pub fn duration_datetime(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("PT{s}S")
    } else {
        let frac = format!("{frac:03}");
        format!("PT{s}.{}S", frac.trim_end_matches('0'))
    }
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
    fn durations_read_as_on_a_thumbnail() {
        for (ms, text) in [
            (2_000, "0:02"),
            (60_000, "1:00"),
            (600_000, "10:00"),
            (3_723_000, "1:02:03"),
            (59_600, "1:00"),
            (1_499, "0:01"),
            (300, "0:01"),
            (0, "0:00"),
            (36_000_000, "10:00:00"),
        ] {
            assert_eq!(duration_text(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn durations_in_words_and_as_html_durations() {
        assert_eq!(duration_words(2_000), "2 seconds");
        assert_eq!(duration_words(60_000), "1 minute");
        assert_eq!(duration_words(3_723_000), "1 hour 2 minutes 3 seconds");
        assert_eq!(duration_words(0), "0 seconds");
        assert_eq!(duration_datetime(62_000), "PT62S");
        assert_eq!(duration_datetime(2_500), "PT2.5S");
        assert_eq!(duration_datetime(4_040), "PT4.04S");
        assert_eq!(duration_datetime(7), "PT0.007S");
    }

    #[test]
    fn poster_heights_follow_the_video() {
        assert_eq!(poster_height(Some((1920, 1080))), 270);
        assert_eq!(poster_height(Some((320, 240))), 360);
        assert_eq!(poster_height(Some((1080, 1920))), 854);
        assert_eq!(poster_height(Some((720, 720))), 480);
        assert_eq!(poster_height(None), 270, "unknown: 16:9");
        assert_eq!(poster_height(Some((0, 720))), 270);
        assert_eq!(poster_height(Some((1, 10_000))), 1920, "held to 1:4");
        assert_eq!(poster_height(Some((10_000, 1))), 120, "held to 4:1");
        for size in [(1920, 1080), (1080, 1920), (853, 480), (641, 479)] {
            assert_eq!(poster_height(Some(size)) % 2, 0, "{size:?}");
        }
        let p = Poster::new("/videos/x/poster".into(), None);
        assert_eq!((p.width, p.height), (480, 270));
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1_468_006), "1.4 MB");
        assert_eq!(human_size(1 << 30), "1.0 GB");
    }
}
