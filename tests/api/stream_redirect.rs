//! `--playback redirect` on a real Garage: a GET is a 302 to a signed URL of the object on the
//! public endpoint, after the visibility check, the limiter's token and the preconditions; the
//! URL plays ranges from Garage until its TTL; HEAD is answered by the stream service; the web's
//! proxy passes the 302 through; ffprobe and ffmpeg follow it.

use std::time::{Duration, Instant};

use awc::http::Method;
use douyin_club::Config;
use douyin_club::config::Playback;

use crate::garage_support::BUCKET;
use crate::helpers::{Backend, Reply, TestApp, read_reply};
use crate::stream_playback::real_clip;
use crate::stream_support::*;

/// A node on Garage with redirected playback. The public endpoint names Garage as `localhost`
/// (the node itself uses `127.0.0.1`), so a `Location` on the wrong endpoint shows.
async fn redirect_app(tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
    TestApp::on(Backend::S3, |c| {
        c.storage.playback = Playback::Redirect;
        let endpoint = c.storage.s3_endpoint.clone().expect("set for s3");
        c.storage.s3_public_endpoint = Some(endpoint.replace("127.0.0.1", "localhost"));
        tweak(c);
    })
    .await
}

/// The public endpoint's origin, as a `Location` must start.
fn public_origin(app: &TestApp) -> String {
    let garage = app.garage.as_ref().expect("an s3 node");
    garage.endpoint.replace("127.0.0.1", "localhost")
}

/// Checks a 302 of redirected playback and returns its `Location`.
#[track_caller]
fn signed_location(app: &TestApp, r: &Reply, vid: &str, ttl: u64) -> String {
    assert_eq!(r.status.as_u16(), 302, "body: {}", r.body);
    assert_eq!(header(r, "cache-control"), "no-store", "nobody may keep an expiring redirect");
    assert!(r.raw.is_empty(), "a redirect has no body");
    let location = header(r, "location").to_owned();
    let object = format!("{}/{BUCKET}/videos/{vid}?", public_origin(app));
    assert!(location.starts_with(&object), "{location} is not {object}…");
    let url = url::Url::parse(&location).expect("a URL");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query.get("X-Amz-Algorithm").map(String::as_str), Some("AWS4-HMAC-SHA256"));
    assert_eq!(query.get("X-Amz-Expires"), Some(&ttl.to_string()), "the TTL of the flag");
    assert!(query.get("X-Amz-Signature").is_some_and(|s| s.len() == 64), "{location}");
    let garage = app.garage.as_ref().expect("an s3 node");
    assert!(!location.contains(&garage.secret_key), "the secret itself is never in a URL");
    location
}

async fn follow(app: &TestApp, location: &str, range: Option<&str>) -> Reply {
    let mut req = app.client.get(location);
    if let Some(range) = range {
        req = req.insert_header(("Range", range));
    }
    read_reply(req.send().await.expect("Garage answers")).await
}

#[actix::test]
async fn a_get_is_a_302_to_a_signed_url_that_plays_ranges_from_garage() {
    let Some(app) = redirect_app(|_| {}).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(300_000);
    let vid = ready_video(&app, &alice, &data).await;

    // Our Range is not applied here: the redirect is the same, the store serves the range.
    for range in [None, Some("bytes=0-99")] {
        let r = get(&app, &format!("/videos/{vid}"), &range.map_or(vec![], |r| vec![("Range", r)]))
            .await;
        signed_location(&app, &r, &vid, 300);
    }
    let r = get(&app, &format!("/videos/{vid}"), &[]).await;
    let location = signed_location(&app, &r, &vid, 300);

    let whole = follow(&app, &location, None).await;
    whole.assert_status(200);
    assert!(whole.raw[..] == data[..], "the whole object");
    let n = data.len();
    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, n - 1),
        ("bytes=-10", n - 10, n - 1),
        ("bytes=131071-131072", 131_071, 131_072),
    ] {
        let r = follow(&app, &location, Some(range)).await;
        r.assert_status(206);
        assert_eq!(header(&r, "content-range"), format!("bytes {first}-{last}/{n}"), "{range}");
        assert!(r.raw[..] == data[first..=last], "{range}");
    }
    // Garage's own answer for a range past the end.
    let r = follow(&app, &location, Some(&format!("bytes={n}-"))).await;
    assert_eq!(r.status.as_u16(), 416);

    // The 302 held its slot only while it was sent; no byte went through the node.
    eventually("the slots are back", || async { metric(&app, "active_streams").await == 0.0 })
        .await;
    assert_eq!(metric(&app, "bytes_served_total").await, 0.0);
}

#[actix::test]
async fn the_signed_url_stops_working_after_its_ttl() {
    let Some(app) = redirect_app(|c| c.storage.signed_url_ttl_secs = 2).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(5000);
    let vid = ready_video(&app, &alice, &data).await;

    let r = get(&app, &format!("/videos/{vid}"), &[]).await;
    let signed_at = Instant::now();
    let location = signed_location(&app, &r, &vid, 2);
    // The signature's time has whole seconds: right after signing at least one is left.
    let r = follow(&app, &location, Some("bytes=10-19")).await;
    r.assert_status(206);
    assert_eq!(&r.raw[..], &data[10..20]);

    // 2 s after signing, plus a margin for the whole seconds, it has expired.
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(signed_at.elapsed())).await;
    let r = follow(&app, &location, Some("bytes=10-19")).await;
    assert!(matches!(r.status.as_u16(), 400 | 403), "an expired URL is refused: {}", r.status);
    assert!(String::from_utf8_lossy(&r.raw).contains("<Error>"), "Garage's error document");

    // The stream service signs a fresh one.
    let r = get(&app, &format!("/videos/{vid}"), &[]).await;
    let location = signed_location(&app, &r, &vid, 2);
    assert_eq!(&follow(&app, &location, Some("bytes=10-19")).await.raw[..], &data[10..20]);
}

#[actix::test]
async fn preconditions_are_ours_and_head_is_answered_here() {
    let Some(app) = redirect_app(|_| {}).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(4000);
    let vid = ready_video(&app, &alice, &data).await;
    let path = format!("/videos/{vid}");
    let etag = etag_of(&data);

    let head = app.send(Method::HEAD, &format!("{}{path}", app.stream), None, None).await;
    head.assert_status(200);
    assert!(head.raw.is_empty());
    assert_eq!(header(&head, "location"), "", "HEAD is not redirected");
    assert_eq!(header(&head, "content-length"), "4000");
    assert_eq!(header(&head, "content-type"), "video/mp4");
    assert_eq!(header(&head, "accept-ranges"), "bytes");
    assert_eq!(header(&head, "etag"), etag);
    assert_eq!(header(&head, "cache-control"), "no-cache");
    let modified = header(&head, "last-modified").to_owned();
    assert!(httpdate::parse_http_date(&modified).is_ok());
    let ranged = app
        .send(
            Method::HEAD,
            &format!("{}{path}", app.stream),
            Some(("Range", "bytes=0-9".into())),
            None,
        )
        .await;
    ranged.assert_status(200);
    assert_eq!(header(&ranged, "content-length"), "4000", "HEAD describes the whole file");
    // Nothing after the head on the wire either.
    let (status, body) = raw_exchange(
        &app.stream,
        format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));

    for inm in [etag.clone(), format!("W/{etag}"), "*".into()] {
        let r = get(&app, &path, &[("If-None-Match", &inm)]).await;
        assert_eq!(r.status.as_u16(), 304, "{inm}");
        assert_eq!(header(&r, "etag"), etag);
        assert_eq!(header(&r, "location"), "", "a 304 is not redirected");
    }
    let r = get(&app, &path, &[("If-Modified-Since", &modified)]).await;
    assert_eq!(r.status.as_u16(), 304);
    signed_location(&app, &get(&app, &path, &[("If-None-Match", "\"other\"")]).await, &vid, 300);

    let before = "Mon, 01 Jan 2001 00:00:00 GMT";
    for failing in [
        [("If-Match", "\"other\""), ("Range", "bytes=0-9")],
        [("If-Match", &format!("W/{etag}")), ("Range", "bytes=0-9")],
        [("If-Unmodified-Since", before), ("Range", "bytes=0-9")],
    ] {
        let r = get(&app, &path, &failing).await;
        r.assert_error(412, "001");
        assert_eq!(header(&r, "location"), "", "{failing:?}");
    }
    let r = get(&app, &path, &[("If-Match", &etag)]).await;
    signed_location(&app, &r, &vid, 300);
}

#[actix::test]
async fn pending_deleted_unknown_and_hostile_ids_are_not_redirected() {
    let Some(app) = redirect_app(|_| {}).await else { return };
    let alice = app.register("alice").await;
    let pending = app.create_video(&alice, "later").await;
    let vid = ready_video(&app, &alice, &fake_mp4(100)).await;
    let del = format!("/user/alice/videos/{vid}");
    app.api(Method::DELETE, &del, Some(&alice.session), None).await.assert_status(204);
    let unknown = uuid::Uuid::new_v4().to_string();

    for id in [&pending, &vid, &unknown] {
        for method in [Method::GET, Method::HEAD] {
            let url = format!("{}/videos/{id}", app.stream);
            let r = app.send(method.clone(), &url, None, None).await;
            assert_eq!(r.status.as_u16(), 404, "{method} {id}");
            assert_eq!(header(&r, "location"), "", "{method} {id}");
        }
        get(&app, &format!("/videos/{id}"), &[]).await.assert_error(404, "006");
    }
    let r = get(&app, &format!("/videos/{}", unknown.to_uppercase()), &[]).await;
    r.assert_error(400, "001");
    assert_eq!(header(&r, "location"), "");
}

#[actix::test]
async fn the_limiter_takes_a_token_before_the_redirect() {
    let Some(app) = redirect_app(|c| {
        c.stream_rate = 0.01;
        c.stream_burst = 3.0;
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    // The upload spends a token of alice's bucket; the plays below are anonymous (the address).
    let vid = ready_video(&app, &alice, &fake_mp4(1000)).await;
    for _ in 0..3 {
        signed_location(&app, &get(&app, &format!("/videos/{vid}"), &[]).await, &vid, 300);
    }
    let r = get(&app, &format!("/videos/{vid}"), &[]).await;
    r.assert_error(429, "010");
    assert_eq!(header(&r, "location"), "");
    assert!(header(&r, "retry-after").parse::<u64>().is_ok_and(|s| s >= 1));
    assert!(metric(&app, "limiter_rejections_total").await >= 1.0);
}

#[actix::test]
async fn the_web_proxy_passes_the_302_through() {
    let Some(app) = redirect_app(|_| {}).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(70_000);
    let vid = ready_video(&app, &alice, &data).await;
    let url = format!("{}/videos/{vid}", app.web);

    let r = read_reply(
        app.client.get(&url).insert_header(("Range", "bytes=5-9")).send().await.expect("answers"),
    )
    .await;
    let location = signed_location(&app, &r, &vid, 300);
    let played = follow(&app, &location, Some("bytes=60000-60009")).await;
    played.assert_status(206);
    assert_eq!(&played.raw[..], &data[60_000..60_010]);

    let r = read_reply(
        app.client.get(&url).insert_header(("If-None-Match", etag_of(&data))).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status.as_u16(), 304);
    let head = app.send(Method::HEAD, &url, None, None).await;
    head.assert_status(200);
    assert_eq!(header(&head, "content-length"), "70000");
    assert_eq!(header(&head, "etag"), etag_of(&data));
    assert!(head.raw.is_empty());
}

#[actix::test]
async fn ffprobe_and_ffmpeg_follow_the_redirect() {
    let Some(app) = redirect_app(|_| {}).await else { return };
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let Some(clip) = real_clip(scratch.path()).await else { return };
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &clip).await;

    for base in [&app.stream, &app.web] {
        let url = format!("{base}/videos/{vid}");
        let mut probe = std::process::Command::new("ffprobe");
        probe.args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", &url]);
        let o = run(probe).await;
        assert!(o.status.success(), "ffprobe {url}: {}", String::from_utf8_lossy(&o.stderr));
        let duration: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().expect("a duration");
        assert!((duration - 4.0).abs() < 0.2, "{url}: duration {duration}");

        let frame = scratch.path().join("frame.png");
        let _ = std::fs::remove_file(&frame);
        let mut seek = std::process::Command::new("ffmpeg");
        seek.args(["-v", "error", "-y", "-ss", "3", "-i", &url, "-frames:v", "1"]).arg(&frame);
        let o = run(seek).await;
        assert!(o.status.success(), "ffmpeg -ss {url}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::metadata(&frame).is_ok_and(|m| m.len() > 0));
    }
    // The bytes came from Garage, not through the node.
    assert_eq!(metric(&app, "bytes_served_total").await, 0.0);
}
