//! A video in the lists: its card (poster or coloured placeholder, length badge, title) and
//! the grid of cards with its pager.

use maud::{Markup, html};

use crate::layout::Bdi;
use crate::model::{
    Poster, VideoCard, VideoList, VideoState, duration_datetime, duration_text, duration_words,
    user_href, watch_href,
};

/// A hue from the id, so that cards without thumbnails are still told apart at a glance.
fn hue(id: &str) -> u32 {
    id.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 360
}

/// The length badge in a thumbnail's corner; screen readers hear it in words.
pub(crate) fn duration_badge(ms: u64) -> Markup {
    html! {
        time.duration datetime=(duration_datetime(ms)) aria-label=(format!("Duration: {}", duration_words(ms))) {
            (duration_text(ms))
        }
    }
}

/// A poster in a thumbnail: its size given, so that the box it fills is known before it
/// arrives; lazy, so that a long feed fetches only what comes into view; `alt=""`, since the
/// link around it already names the video.
pub(crate) fn poster_img(p: &Poster) -> Markup {
    html! {
        img.poster src=(p.url) width=(p.width) height=(p.height) alt="" loading="lazy" decoding="async";
    }
}

fn card(v: &VideoCard, show_author: bool) -> Markup {
    html! {
        li.card {
            @match (v.state, &v.poster) {
                (VideoState::Ready, Some(poster)) => a.thumb.has-poster href=(watch_href(&v.id, &v.author)) {
                    (poster_img(poster))
                    span.play aria-hidden="true" { "▶" }
                    span.sr-only { "Watch " (Bdi(&v.name)) }
                    @if let Some(ms) = v.duration_ms { (duration_badge(ms)) }
                },
                // Not probed yet: the coloured card, told apart by its hue.
                (VideoState::Ready, None) => a.thumb href=(watch_href(&v.id, &v.author)) style=(format!("--h:{}", hue(&v.id))) {
                    span.play aria-hidden="true" { "▶" }
                    span.sr-only { "Watch " (Bdi(&v.name)) }
                },
                (VideoState::Pending, _) => div.thumb.pending style=(format!("--h:{}", hue(&v.id))) {
                    span.play aria-hidden="true" { "…" }
                },
            }
            div.meta {
                h3.title {
                    @if v.state == VideoState::Ready {
                        a href=(watch_href(&v.id, &v.author)) { (Bdi(&v.name)) }
                    } @else { (Bdi(&v.name)) }
                }
                p.sub {
                    @if show_author { a href=(user_href(&v.author)) { "@" (Bdi(&v.author)) } " · " }
                    time datetime=(v.datetime) { (v.date) }
                }
            }
        }
    }
}

pub(crate) fn grid(list: &VideoList, show_author: bool, empty: &str) -> Markup {
    html! {
        @if list.videos.is_empty() {
            p.empty { (empty) }
        } @else {
            ul.grid { @for v in &list.videos { (card(v, show_author)) } }
        }
        @if let Some(next) = &list.next_href {
            nav.pager aria-label="Pages" { a.btn.ghost href=(next) rel="next" { "Older videos →" } }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn video(name: &str) -> VideoCard {
        VideoCard {
            id: "0190a0b0-0000-7000-8000-000000000001".into(),
            name: name.into(),
            author: "a<b".into(),
            date: "Nov 26, 2026".into(),
            datetime: "2026-11-26T00:00:00Z".into(),
            state: VideoState::Ready,
            size: Some(1),
            poster: None,
            duration_ms: None,
        }
    }

    /// `video(name)` as the scheduler leaves it: probed, a 4:3 clip of 4.04 s.
    pub(crate) fn probed(name: &str) -> VideoCard {
        let mut v = video(name);
        v.poster = Some(Poster::new(format!("/videos/{}/poster", v.id), Some((320, 240))));
        v.duration_ms = Some(4_040);
        v
    }

    pub(crate) const POSTER_IMG: &str = r#"<img class="poster" src="/videos/0190a0b0-0000-7000-8000-000000000001/poster" width="480" height="360" alt="" loading="lazy" decoding="async">"#;
    pub(crate) const BADGE: &str =
        r#"<time class="duration" datetime="PT4.04S" aria-label="Duration: 4 seconds">0:04</time>"#;

    fn feed_of(videos: Vec<VideoCard>) -> String {
        grid(&VideoList { videos, next_href: None }, true, "none").into_string()
    }

    #[test]
    fn a_probed_video_shows_its_poster_and_length() {
        let html = feed_of(vec![probed("<b>Sunset</b>")]);
        assert!(html.contains(r#"<a class="thumb has-poster" href="/watch/0190a0b0-0000-7000-8000-000000000001?by=a%3Cb">"#), "{html}");
        assert!(html.contains(POSTER_IMG), "{html}");
        assert!(html.contains(BADGE), "{html}");
        // The badge sits inside the thumbnail, after the picture.
        let (img, badge) = (html.find(POSTER_IMG).expect("img"), html.find(BADGE).expect("badge"));
        let thumb_end = html[img..].find("</a>").expect("the thumbnail ends") + img;
        assert!(img < badge && badge < thumb_end);
        assert!(html.contains("Watch <bdi>&lt;b&gt;Sunset&lt;/b&gt;</bdi>"), "still escaped");
        assert!(!html.contains("<b>Sunset"));
        // The same on a user's page, which names no author.
        let user = grid(&VideoList { videos: vec![probed("x")], next_href: None }, false, "");
        assert!(user.into_string().contains(POSTER_IMG));
    }

    #[test]
    fn a_poster_of_unknown_size_is_given_a_16_9_box() {
        let mut v = probed("x");
        v.poster = Some(Poster::new("/videos/v/poster".into(), None));
        v.duration_ms = None;
        let html = feed_of(vec![v]);
        assert!(html.contains(r#"src="/videos/v/poster" width="480" height="270""#), "{html}");
        assert!(!html.contains("class=\"duration\""), "no length, no badge");
    }

    #[test]
    fn an_unprobed_video_keeps_the_coloured_card() {
        let v = video("plain");
        let html = feed_of(vec![v.clone()]);
        let card = format!(
            r#"<li class="card"><a class="thumb" href="/watch/{}?by=a%3Cb" style="--h:{}"><span class="play" aria-hidden="true">▶</span><span class="sr-only">Watch <bdi>plain</bdi></span></a><div class="meta">"#,
            v.id,
            hue(&v.id)
        );
        assert!(html.contains(&card), "{html}");
        assert!(!html.contains("<img") && !html.contains("duration"), "{html}");
        // A pending video never has a poster to show, whatever the api says.
        let mut pending = probed("p");
        pending.state = VideoState::Pending;
        let html = feed_of(vec![pending]);
        assert!(html.contains(r#"<div class="thumb pending""#) && !html.contains("<img"));
    }
}
