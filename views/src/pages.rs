//! The five pages: feed, the user's home, watch, a user's public page, and errors.

use maud::{Markup, html};

use crate::cards::{duration_badge, grid, poster_img};
use crate::layout::{Bdi, alert_slot, isolate, page};
use crate::model::{
    CommentView, ErrorPage, HomePage, UserHomePage, UserPage, VideoState, WatchPage,
    duration_datetime, duration_text, duration_words, human_size, user_href, watch_href,
};

fn account_forms() -> Markup {
    html! {
        section #account .account aria-labelledby="account-h" {
            h2 #account-h { "Join in" }
            p.lead { "Sign in to upload clips and comment. Watching needs no account." }
            div.forms {
                form.panel #sign-in-form data-action="sign-in" {
                    h3 { "Sign in" }
                    label for="si-name" { "User name" }
                    input #si-name name="user_name" autocomplete="username" required minlength="2" maxlength="32";
                    label for="si-pwd" { "Password" }
                    input #si-pwd name="pwd" type="password" autocomplete="current-password" required minlength="6" maxlength="128";
                    (alert_slot())
                    button.btn type="submit" { "Sign in" }
                }
                form.panel #register-form data-action="register" {
                    h3 { "Create an account" }
                    label for="rg-name" { "User name" }
                    input #rg-name name="user_name" autocomplete="username" required minlength="2" maxlength="32" aria-describedby="rg-name-hint";
                    small #rg-name-hint .hint { "2–32 letters, digits, _ - or ." }
                    label for="rg-pwd" { "Password" }
                    input #rg-pwd name="pwd" type="password" autocomplete="new-password" required minlength="6" maxlength="128" aria-describedby="rg-pwd-hint";
                    small #rg-pwd-hint .hint { "At least 6 characters." }
                    (alert_slot())
                    button.btn type="submit" { "Register" }
                }
            }
        }
    }
}

/// `/`: the newest ready videos; the account forms when signed out.
pub fn home(p: &HomePage) -> Markup {
    let body = html! {
        @if p.viewer.is_none() { (account_forms()) }
        section aria-labelledby="feed-h" {
            h1 #feed-h { "Latest videos" }
            (grid(&p.feed, true, "No videos yet. Be the first to upload one!"))
        }
    };
    page("Feed", p.viewer.as_ref(), body)
}

/// `/userhome`: upload with progress, and the user's videos with status and delete.
pub fn user_home(p: &UserHomePage) -> Markup {
    let max = human_size(p.max_upload_bytes);
    let body = html! {
        h1 { "My videos" }
        form.panel.upload #upload-form data-action="upload" data-max-bytes=(p.max_upload_bytes) data-max-size=(max) data-direct-upload[p.direct_upload] {
            h2 { "Upload a clip" }
            label for="up-name" { "Title" }
            input #up-name name="name" required maxlength="200" placeholder="What is it about?";
            label for="up-file" { "Video file" }
            input #up-file name="file" type="file" accept="video/*" required aria-describedby="up-hint";
            small #up-hint .hint { "MP4, WebM, MOV or MKV, up to " (max) "." }
            div.progress #up-progress hidden {
                progress #up-bar max="100" value="0" aria-labelledby="up-pct" {}
                span #up-pct aria-live="polite" { "0%" }
            }
            (alert_slot())
            button.btn type="submit" { "Upload" }
        }
        section aria-labelledby="mine-h" {
            h2 #mine-h { "Your uploads" }
            @if p.videos.videos.is_empty() {
                p.empty { "Nothing here yet — your uploads will appear in this list." }
            } @else {
                ul.rows {
                    @for v in &p.videos.videos {
                        li.row #(format!("video-{}", v.id)) data-video=(v.id) {
                            // A picture of what the title links to: out of the tab order and
                            // hidden from screen readers, which have the title link already.
                            @if let (VideoState::Ready, Some(poster)) = (v.state, &v.poster) {
                                a.row-thumb href=(watch_href(&v.id, &v.author)) tabindex="-1" aria-hidden="true" {
                                    (poster_img(poster))
                                    @if let Some(ms) = v.duration_ms { (duration_badge(ms)) }
                                }
                            }
                            div.row-main {
                                @if v.state == VideoState::Ready {
                                    a.row-title href=(watch_href(&v.id, &v.author)) { (Bdi(&v.name)) }
                                } @else { span.row-title { (Bdi(&v.name)) } }
                                p.sub {
                                    time datetime=(v.datetime) { (v.date) }
                                    @if let Some(s) = v.size { " · " (human_size(s)) }
                                    @if let (Some(_), Some(ms)) = (&v.poster, v.duration_ms) {
                                        span.sr-only { " · " (duration_words(ms)) }
                                    }
                                }
                            }
                            @match v.state {
                                VideoState::Ready => span.badge.ready { "Ready" },
                                VideoState::Pending => span.badge.pending title="The file has not arrived yet" { "Pending" },
                            }
                            button.btn.danger.small type="button" data-action="delete-video" data-id=(v.id) data-name=(v.name) aria-label=(format!("Delete “{}”", isolate(&v.name))) { "Delete" }
                        }
                    }
                }
            }
            @if let Some(next) = &p.videos.next_href {
                nav.pager aria-label="Pages" { a.btn.ghost href=(next) rel="next" { "Older videos →" } }
            }
        }
    };
    page("My videos", Some(&p.viewer), body)
}

fn comment(c: &CommentView) -> Markup {
    html! {
        li.comment #(format!("comment-{}", c.id)) {
            p.sub {
                a.author href=(user_href(&c.author)) { "@" (Bdi(&c.author)) }
                " · " time datetime=(c.datetime) { (c.date) }
            }
            // A comment is a paragraph of its own: isolated, and set in its own direction.
            p.text dir="auto" { (c.content) }
            @if c.can_delete {
                button.link.danger type="button" data-action="delete-comment" data-id=(c.id) { "Delete" }
            }
        }
    }
}

/// `/watch/:vid`: the player, who made it, and the conversation.
pub fn watch(p: &WatchPage) -> Markup {
    let v = &p.video;
    let poster = v.poster.as_ref();
    let body = html! {
        article.watch data-video=(v.id) data-author=(v.author) {
            div.player {
                // The poster's size is the video's shape: the player keeps that room from the
                // start instead of growing when the video's own size is known.
                video #player controls playsinline preload="metadata" src=(p.src) poster=[poster.map(|i| &i.url)] width=[poster.map(|i| i.width)] height=[poster.map(|i| i.height)] {
                    "Your browser cannot play this video. "
                    a href=(p.src) { "Download it" } " instead."
                }
            }
            div.about {
                h1 { (Bdi(&v.name)) }
                p.sub {
                    a.author href=(user_href(&v.author)) { "@" (Bdi(&v.author)) }
                    " · " time datetime=(v.datetime) { (v.date) }
                    @if let Some(ms) = v.duration_ms {
                        " · " time.length datetime=(duration_datetime(ms)) aria-label=(format!("Duration: {}", duration_words(ms))) { (duration_text(ms)) }
                    }
                }
                @if p.is_owner {
                    button.btn.danger.small type="button" data-action="delete-video" data-id=(v.id) data-name=(v.name) data-then="/userhome" { "Delete video" }
                }
            }
            section.comments aria-labelledby="comments-h" {
                h2 #comments-h { "Comments" }
                @if p.viewer.is_some() {
                    form.panel #comment-form data-action="comment" {
                        label for="cm-text" { "Add a comment" }
                        textarea #cm-text name="content" required maxlength="2000" rows="3" placeholder="Say something nice" {}
                        (alert_slot())
                        button.btn type="submit" { "Post" }
                    }
                } @else {
                    p.hint { a href="/#account" { "Sign in" } " to comment." }
                }
                @if p.comments.is_empty() {
                    p.empty #no-comments { "No comments yet." }
                } @else {
                    ul.comment-list { @for c in &p.comments { (comment(c)) } }
                }
                @if let Some(next) = &p.more_comments_href {
                    nav.pager aria-label="Comment pages" { a.btn.ghost href=(next) rel="next" { "Older comments →" } }
                }
            }
        }
    };
    page(&isolate(&v.name), p.viewer.as_ref(), body)
}

/// `/u/:username`: one user's ready videos.
pub fn user_page(p: &UserPage) -> Markup {
    let body = html! {
        h1 { "@" (Bdi(&p.user)) }
        (grid(&p.videos, false, "No videos yet."))
    };
    page(&format!("@{}", isolate(&p.user)), p.viewer.as_ref(), body)
}

/// Any failure, in words a visitor understands.
pub fn error_page(p: &ErrorPage) -> Markup {
    let body = html! {
        section.panel.error-page {
            p.code { (p.status) }
            h1 { (p.title) }
            p { (p.message) }
            p { a.btn href="/" { "Back to the feed" } }
        }
    };
    page(&p.title, p.viewer.as_ref(), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cards::tests::{BADGE, POSTER_IMG, probed, video};
    use crate::model::{VideoCard, VideoList, Viewer};

    #[test]
    fn own_videos_show_their_poster_beside_the_title() {
        let mut pending = video("waiting");
        pending.state = VideoState::Pending;
        let p = UserHomePage {
            viewer: Viewer { name: "a<b".into() },
            videos: VideoList { videos: vec![probed("mine"), pending], next_href: None },
            max_upload_bytes: 1 << 20,
            direct_upload: false,
        };
        let html = user_home(&p).into_string();
        assert_eq!(html.matches("<img").count(), 1, "only the probed video has a picture");
        assert!(html.contains(POSTER_IMG) && html.contains(BADGE), "{html}");
        assert!(html.contains(r#"<a class="row-thumb" href="/watch/0190a0b0-0000-7000-8000-000000000001?by=a%3Cb" tabindex="-1" aria-hidden="true">"#));
        assert!(html.contains(r#"<span class="sr-only"> · 4 seconds</span>"#));
    }

    #[test]
    fn the_player_shows_the_poster_until_it_plays() {
        let page = |video: VideoCard| {
            watch(&WatchPage {
                viewer: None,
                src: format!("/videos/{}", video.id),
                video,
                comments: vec![],
                more_comments_href: None,
                is_owner: false,
            })
            .into_string()
        };
        let html = page(probed("x"));
        let id = "0190a0b0-0000-7000-8000-000000000001";
        assert!(html.contains(&format!(
            r#"<video id="player" controls playsinline preload="metadata" src="/videos/{id}" poster="/videos/{id}/poster" width="480" height="360">"#
        )), "{html}");
        assert!(html.contains(r#"<time class="length" datetime="PT4.04S" aria-label="Duration: 4 seconds">0:04</time>"#));
        let html = page(video("x"));
        assert!(
            html.contains(&format!(
                r#"<video id="player" controls playsinline preload="metadata" src="/videos/{id}">"#
            )),
            "no poster yet: {html}"
        );
        assert!(!html.contains("Duration"));
    }

    #[test]
    fn escapes_user_strings() {
        let p = HomePage {
            viewer: Some(Viewer { name: "x\"y".into() }),
            feed: VideoList { videos: vec![video("<script>alert(1)</script>")], next_href: None },
        };
        let html = home(&p).into_string();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("data-user=\"x&quot;y\""));
        assert!(html.contains("a%3Cb"));
    }

    #[test]
    fn the_upload_form_names_its_path() {
        let page = |direct_upload| {
            let p = UserHomePage {
                viewer: Viewer { name: "bob".into() },
                videos: VideoList { videos: vec![], next_href: None },
                max_upload_bytes: 1 << 20,
                direct_upload,
            };
            user_home(&p).into_string()
        };
        assert!(page(true).contains("data-direct-upload"), "with an object store");
        assert!(!page(false).contains("data-direct-upload"), "through the site");
    }

    /// Where `needle` may appear unisolated: attributes no one reads on screen.
    const UNSHOWN: [&str; 3] = ["data-name=\"", "data-author=\"", "data-user=\""];

    /// Every occurrence of `needle` in `html` is isolated for bidi: the whole content of a
    /// `<bdi>` or of a `dir="auto"` element, or between FSI and PDI where no markup can go.
    #[track_caller]
    fn assert_isolated(html: &str, needle: &str) {
        let mut seen = 0;
        for (i, _) in html.match_indices(needle) {
            seen += 1;
            let (before, after) = (&html[..i], &html[i + needle.len()..]);
            let isolated = (before.ends_with("<bdi>") && after.starts_with("</bdi>"))
                || (before.ends_with("dir=\"auto\">") && after.starts_with("</"))
                || (before.ends_with('\u{2068}') && after.starts_with('\u{2069}'))
                || UNSHOWN.iter().any(|a| before.ends_with(a));
            if !isolated {
                let tail: String = before.chars().rev().take(60).collect();
                let after: String = after.chars().take(60).collect();
                let context =
                    format!("{}[{needle}]{after}", tail.chars().rev().collect::<String>());
                panic!("{needle:?} is not isolated here: {context:?}");
            }
        }
        assert!(seen > 0, "{needle:?} is not on the page");
    }

    #[test]
    fn isolates_user_text_for_bidi() {
        // A right-to-left override that would turn "…exe.mp4" around, and a Hebrew name.
        let name = "\u{202E}4pm.exe";
        let author = "אבי_01";
        let comment = "\u{202E}!tnemmoc a";
        let mut v = video(name);
        v.author = author.into();
        let viewer = Some(Viewer { name: author.into() });
        let list = VideoList { videos: vec![v.clone()], next_href: None };
        let mut pending = v.clone();
        pending.state = VideoState::Pending;
        let mine = VideoList { videos: vec![v.clone(), pending], next_href: None };
        let watch_page = WatchPage {
            viewer: viewer.clone(),
            video: v.clone(),
            src: "/videos/x".into(),
            comments: vec![CommentView {
                id: "c1".into(),
                author: author.into(),
                content: comment.into(),
                date: "d".into(),
                datetime: "t".into(),
                can_delete: true,
            }],
            more_comments_href: None,
            is_owner: true,
        };
        let pages = [
            home(&HomePage { viewer: viewer.clone(), feed: list.clone() }).into_string(),
            user_home(&UserHomePage {
                viewer: Viewer { name: author.into() },
                videos: mine,
                max_upload_bytes: 1 << 20,
                direct_upload: false,
            })
            .into_string(),
            watch(&watch_page).into_string(),
            user_page(&UserPage { viewer, user: author.into(), videos: list }).into_string(),
        ];
        for html in &pages {
            assert_isolated(html, name);
            assert_isolated(html, author);
        }
        assert_isolated(&pages[2], comment);
        assert!(pages[2].contains("<title>\u{2068}\u{202E}4pm.exe\u{2069} · douyin club</title>"));
        assert!(pages[3].contains("<title>@\u{2068}אבי_01\u{2069} · douyin club</title>"));
    }
}
