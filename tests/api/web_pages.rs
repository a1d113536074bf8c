//! The pages: status and key content, signed in and out, and escaping of user strings.

use awc::http::Method;
use serde_json::json;

use crate::helpers::{TestApp, enc, read_reply, test_config};
use crate::web_support::{Jar, call, fake_api, fake_stream, jar_of, page, ready_video};

#[actix_web::test]
async fn home_signed_out_shows_the_feed_and_the_account_forms() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    ready_video(&app, &alice, "Sunset over the bay").await;
    app.create_video(&alice, "still pending").await;

    let (status, html, r) = page(&app, &Jar::default(), "/").await;
    assert_eq!(status, 200);
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(html.contains("Sunset over the bay"));
    assert!(!html.contains("still pending"), "pending videos stay out of the feed");
    assert!(html.contains("/watch/") && html.contains("?by=alice"));
    assert!(html.contains(r#"id="register-form""#) && html.contains(r#"id="sign-in-form""#));
    assert!(html.contains(r#"<label for="rg-name">"#), "inputs are labelled");
    assert!(!html.contains("data-user="), "no user when signed out");
}

#[actix_web::test]
async fn home_paginates_with_a_next_link() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for i in 0..26 {
        ready_video(&app, &alice, &format!("clip number {i}")).await;
    }
    let (_, html, _) = page(&app, &Jar::default(), "/").await;
    assert!(html.contains("clip number 25") && !html.contains("clip number 1<"));
    let next = html.split(r#"href="/?cursor="#).nth(1).expect("a next link");
    let cursor = next.split('"').next().expect("the cursor");
    let (status, older, _) = page(&app, &Jar::default(), &format!("/?cursor={cursor}")).await;
    assert_eq!(status, 200);
    assert!(older.contains("clip number 0") && older.contains("clip number 1<"));
    assert!(!older.contains("clip number 25"));
}

#[actix_web::test]
async fn home_signed_in_has_navigation_and_no_forms() {
    let app = TestApp::spawn().await;
    let bob = app.register("bob").await;
    let (status, html, _) = page(&app, &jar_of(&bob), "/").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-user="bob""#));
    assert!(html.contains(r#"href="/userhome""#) && html.contains("Sign out"));
    assert!(!html.contains("register-form"));
}

#[actix_web::test]
async fn a_stale_session_counts_as_signed_out() {
    let app = TestApp::spawn().await;
    let jar = Jar { session: Some("bogus".into()), user: Some("bob".into()) };
    let (status, html, _) = page(&app, &jar, "/").await;
    assert_eq!(status, 200);
    assert!(html.contains("register-form"));
    let (status, _, r) = page(&app, &jar, "/userhome").await;
    assert_eq!(status, 303);
    assert_eq!(r.headers.get("location").expect("location"), "/");
}

#[actix_web::test]
async fn userhome_lists_own_videos_with_status_upload_and_delete() {
    let app = TestApp::spawn().await;
    let carol = app.register("carol").await;
    let ready = ready_video(&app, &carol, "My ready clip").await;
    let pending = app.create_video(&carol, "My pending clip").await;

    let (status, _, r) = page(&app, &Jar::default(), "/userhome").await;
    assert_eq!(status, 303, "signed out goes home");
    assert_eq!(r.headers.get("location").expect("location"), "/");

    let (status, html, _) = page(&app, &jar_of(&carol), "/userhome").await;
    assert_eq!(status, 200);
    assert!(html.contains("My ready clip") && html.contains("My pending clip"));
    assert!(html.contains("Ready") && html.contains("Pending"));
    assert!(html.contains(r#"id="upload-form""#) && html.contains("<progress"));
    assert!(html.contains(r#"type="file""#) && html.contains(r#"<label for="up-file">"#));
    assert!(html.contains(&format!(r#"data-action="delete-video" data-id="{ready}""#)));
    assert!(html.contains(&format!(r#"data-id="{pending}""#)));
}

#[actix_web::test]
async fn watch_page_has_player_comments_and_form_when_signed_in() {
    let app = TestApp::spawn().await;
    let dave = app.register("dave").await;
    let erin = app.register("erin").await;
    let vid = ready_video(&app, &dave, "Cat jumps").await;
    let path = format!("/videos/{vid}/comments");
    for (who, text) in [(&erin, "first!"), (&dave, "thanks")] {
        app.api(Method::POST, &path, Some(&who.session), Some(json!({"content": text})))
            .await
            .assert_status(201);
    }

    let (status, html, _) = page(&app, &Jar::default(), &format!("/watch/{vid}?by=dave")).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!(
        r#"<video id="player" controls playsinline preload="metadata" src="/videos/{vid}""#
    )));
    assert!(html.contains("Cat jumps") && html.contains("@<bdi>dave</bdi>"));
    let (first, thanks) = (html.find("first!").expect("a"), html.find("thanks").expect("b"));
    assert!(thanks < first, "comments are newest first");
    assert!(!html.contains("comment-form"), "no form when signed out");
    assert!(!html.contains("delete-comment"), "no delete when signed out");

    // erin may delete only her own comment; dave owns the video and may delete both.
    let (_, html, _) = page(&app, &jar_of(&erin), &format!("/watch/{vid}?by=dave")).await;
    assert!(html.contains("comment-form"));
    assert_eq!(html.matches(r#"data-action="delete-comment""#).count(), 1);
    assert!(!html.contains("Delete video"));
    let (_, html, _) = page(&app, &jar_of(&dave), &format!("/watch/{vid}")).await;
    assert_eq!(html.matches(r#"data-action="delete-comment""#).count(), 2);
    assert!(html.contains("Delete video"));

    // A link without ?by= still finds a ready video through the feed.
    let (status, html, _) = page(&app, &Jar::default(), &format!("/watch/{vid}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Cat jumps"));
}

#[actix_web::test]
async fn watch_page_of_missing_or_malformed_video_is_a_friendly_404() {
    let app = TestApp::spawn().await;
    let frank = app.register("frank").await;
    let pending = app.create_video(&frank, "not yet").await;
    for path in [
        "/watch/0190a0b0-0000-7000-8000-000000000001".to_owned(),
        "/watch/not-a-uuid".to_owned(),
        format!("/watch/{pending}?by=frank"),
    ] {
        let (status, html, _) = page(&app, &Jar::default(), &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(html.contains("Not found") && html.contains("Back to the feed"), "{path}");
    }
    // The owner sees their pending video's page.
    let (status, _, _) = page(&app, &jar_of(&frank), &format!("/watch/{pending}")).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn user_page_lists_ready_videos_and_404s_unknown_users() {
    let app = TestApp::spawn().await;
    let name = "小明";
    let user = app.register(name).await;
    ready_video(&app, &user, "Dumplings").await;
    app.create_video(&user, "secret draft").await;
    let (status, html, _) = page(&app, &jar_of(&user), &format!("/u/{}", enc(name))).await;
    assert_eq!(status, 200);
    assert!(html.contains("@<bdi>小明</bdi>") && html.contains("Dumplings"));
    assert!(!html.contains("secret draft"), "the public page shows ready videos only");
    let (status, html, _) = page(&app, &Jar::default(), "/u/nobody").await;
    assert_eq!(status, 404);
    assert!(html.contains("Not found"));
}

#[actix_web::test]
async fn user_strings_are_escaped_everywhere() {
    let app = TestApp::spawn().await;
    let mallory = app.register("mallory").await;
    let evil = r#"<script>alert("x")</script>"#;
    let vid = ready_video(&app, &mallory, evil).await;
    let jar = jar_of(&mallory);
    let r = call(
        &app,
        &jar,
        None,
        json!({"url": format!("/videos/{vid}/comments"), "method": "POST", "req_body": {"content": evil}}),
    )
    .await;
    r.assert_status(201);
    for path in ["/".to_owned(), "/userhome".into(), format!("/watch/{vid}"), "/u/mallory".into()] {
        let (status, html, _) = page(&app, &jar, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path} must escape");
        assert!(html.contains("&lt;script&gt;alert"), "{path} shows it as text");
    }
}

#[actix_web::test]
async fn statics_are_served_from_the_binary_with_cache_headers() {
    let app = TestApp::spawn().await;
    let (_, html, _) = page(&app, &Jar::default(), "/").await;
    let css = html.split(r#"href="/statics/site.css"#).nth(1).expect("css link");
    let css = format!("/statics/site.css{}", css.split('"').next().expect("href"));
    let (status, body, r) = page(&app, &Jar::default(), &css).await;
    assert_eq!(status, 200);
    assert!(body.contains(":root"));
    let h = |n: &str| r.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(h("content-type").starts_with("text/css"));
    assert!(h("cache-control").contains("max-age=31536000"));
    let etag = h("etag");
    let again = app
        .client
        .get(format!("{}/statics/site.js", app.web))
        .insert_header(("If-None-Match", etag.clone()))
        .send()
        .await
        .expect("answers");
    assert_eq!(again.status().as_u16(), 200, "a different file's etag does not match");
    let again = app
        .client
        .get(format!("{}{css}", app.web))
        .insert_header(("If-None-Match", etag))
        .send()
        .await
        .expect("answers");
    assert_eq!(again.status().as_u16(), 304);
    let (status, _, _) = page(&app, &Jar::default(), "/statics/nope.css").await;
    assert_eq!(status, 404);
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from outside");
}

/// Where user text may appear unisolated: attributes no one reads on screen.
const UNSHOWN: [&str; 3] = ["data-name=\"", "data-author=\"", "data-user=\""];

/// Every occurrence of `needle` in `html` is isolated for bidi: the whole content of a `<bdi>`
/// or of a `dir="auto"` element, or between FSI and PDI where no markup can go (the title).
#[track_caller]
fn assert_isolated(html: &str, needle: &str, path: &str) {
    let mut seen = 0;
    for (i, _) in html.match_indices(needle) {
        seen += 1;
        let (before, after) = (&html[..i], &html[i + needle.len()..]);
        let isolated = (before.ends_with("<bdi>") && after.starts_with("</bdi>"))
            || (before.ends_with("dir=\"auto\">") && after.starts_with("</"))
            || (before.ends_with('\u{2068}') && after.starts_with('\u{2069}'))
            || UNSHOWN.iter().any(|a| before.ends_with(a));
        let tail: String =
            before.chars().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        let after: String = after.chars().take(60).collect();
        assert!(isolated, "{path}: {needle:?} is not isolated here: {tail}[{needle}]{after}");
    }
    assert!(seen > 0, "{path}: {needle:?} is not on the page");
}

#[actix_web::test]
async fn user_text_is_isolated_for_bidi_everywhere() {
    let app = TestApp::spawn().await;
    // A right-to-left name, and a title and a comment carrying a right-to-left override that
    // would otherwise turn the text after them around ("…exe.mp4" shown as "…4pm.exe").
    let name = "נועה_01";
    let noa = app.register(name).await;
    let title = "\u{202E}4pm.exe";
    let comment = "\u{202E}!olleh";
    let vid = ready_video(&app, &noa, title).await;
    let jar = jar_of(&noa);
    let r = call(
        &app,
        &jar,
        None,
        json!({"url": format!("/videos/{vid}/comments"), "method": "POST", "req_body": {"content": comment}}),
    )
    .await;
    r.assert_status(201);
    let own_page = format!("/u/{}", enc(name));
    for path in ["/".to_owned(), "/userhome".into(), format!("/watch/{vid}"), own_page.clone()] {
        let (status, html, _) = page(&app, &jar, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_isolated(&html, name, &path);
        assert_isolated(&html, title, &path);
    }
    let (_, html, _) = page(&app, &Jar::default(), &format!("/watch/{vid}")).await;
    assert_isolated(&html, comment, "/watch");
    assert!(html.contains(&format!("<title>\u{2068}{title}\u{2069} · douyin club</title>")));
    let (_, html, _) = page(&app, &Jar::default(), &own_page).await;
    assert!(html.contains(&format!("<title>@\u{2068}{name}\u{2069} · douyin club</title>")));
}

/// A video object as the api gives it; `probe` adds what the scheduler's probe fills in, and
/// `None` leaves those fields out altogether, as an api from before the probe does.
fn video_json(id: &str, name: &str, probe: Option<serde_json::Value>) -> serde_json::Value {
    let mut v = json!({"id": id, "author_id": 1, "author": "alice", "name": name,
        "status": "ready", "size": 4321, "content_type": "video/mp4",
        "display_ctime": "Dec 1, 2026 10:00 UTC", "create_time": "2026-12-01T10:00:00Z"});
    if let (Some(v), Some(probe)) = (v.as_object_mut(), probe.as_ref().and_then(|p| p.as_object()))
    {
        v.extend(probe.clone());
    }
    v
}

/// The pages of a web node whose api reports probed videos (a stand-in api: the real one
/// needs the scheduler's probe): posters with their size and the length badge on every list,
/// the poster on the player; unprobed videos, old JSON or nulls, keep the coloured card.
#[actix_web::test]
async fn probed_videos_show_posters_and_lengths_on_every_page() {
    let wide = "0190a0b0-0000-7000-8000-0000000000a1";
    let tall = "0190a0b0-0000-7000-8000-0000000000a2";
    let old = "0190a0b0-0000-7000-8000-0000000000a3";
    let nulls = "0190a0b0-0000-7000-8000-0000000000a4";
    let probe = |ms: u64, w: u32, h: u32, id: &str| {
        json!({"duration_ms": ms, "width": w, "height": h, "video_codec": "h264",
               "audio_codec": "aac", "poster_url": format!("/videos/{id}/poster")})
    };
    let api = fake_api(vec![
        video_json(wide, "<script>alert(1)</script>", Some(probe(62_000, 1280, 720, wide))),
        video_json(tall, "Tall one", Some(probe(3_723_000, 1080, 1920, tall))),
        video_json(old, "From an older api", None),
        video_json(
            nulls,
            "Not probed yet",
            Some(json!({"duration_ms": null, "width": null,
            "height": null, "video_codec": null, "audio_codec": null, "poster_url": null})),
        ),
    ]);
    let (stream, _) = fake_stream();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut cfg = test_config(dir.path().to_path_buf());
    cfg.role = douyin_club::config::Role::Web;
    cfg.api_url = Some(api);
    cfg.stream_url = Some(stream);
    let app = TestApp::spawn_config(cfg, dir).await;
    let img = |id: &str, height: u32| {
        format!(
            r#"<img class="poster" src="/videos/{id}/poster" width="480" height="{height}" alt="" loading="lazy" decoding="async">"#
        )
    };
    let badge = |iso: &str, words: &str, text: &str| {
        format!(
            r#"<time class="duration" datetime="{iso}" aria-label="Duration: {words}">{text}</time>"#
        )
    };
    let signed_in = Jar { session: Some("s".into()), user: Some("alice".into()) };
    for (path, jar) in
        [("/", Jar::default()), ("/u/alice", Jar::default()), ("/userhome", signed_in)]
    {
        let (status, html, _) = page(&app, &jar, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(html.contains(&img(wide, 270)), "{path}: 16:9 → 480×270: {html}");
        assert!(html.contains(&img(tall, 854)), "{path}: 9:16 → 480×854");
        assert!(html.contains(&badge("PT62S", "1 minute 2 seconds", "1:02")), "{path}");
        assert!(html.contains(&badge("PT3723S", "1 hour 2 minutes 3 seconds", "1:02:03")));
        assert_eq!(html.matches("<img").count(), 2, "{path}: no poster, no picture");
        assert!(!html.contains(&format!("/videos/{old}/poster")), "{path}");
        assert!(!html.contains(&format!("/videos/{nulls}/poster")), "{path}");
        assert!(html.contains("From an older api") && html.contains("Not probed yet"), "{path}");
        assert!(!html.contains("<script>alert") && html.contains("&lt;script&gt;alert(1)"));
        if path != "/userhome" {
            for id in [old, nulls] {
                let card = format!(r#"<a class="thumb" href="/watch/{id}?by=alice" style="--h:"#);
                assert!(html.contains(&card), "{path}: the coloured card for {id}");
            }
        }
    }

    let (status, html, _) = page(&app, &Jar::default(), &format!("/watch/{wide}")).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!(
        r#"src="/videos/{wide}" poster="/videos/{wide}/poster" width="480" height="270">"#
    )));
    assert!(html.contains(">1:02</time>"));
    for id in [old, nulls] {
        let (status, html, _) = page(&app, &Jar::default(), &format!("/watch/{id}")).await;
        assert_eq!(status, 200);
        assert!(html.contains(&format!(r#"preload="metadata" src="/videos/{id}">"#)), "{id}");
    }

    // The picture the pages name is there, through this origin's relay.
    let r = app.client.get(format!("{}/videos/{wide}/poster", app.web)).send().await;
    let r = read_reply(r.expect("the web answers")).await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.headers.get("content-type").expect("a type"), "image/webp");
}
