//! Playback over a real socket: the Range and conditional matrix byte for byte, HEAD, missing
//! and hostile ids, and real clients (ffprobe, ffmpeg) reading over HTTP. Every test runs on
//! local files and on a real Garage (proxied playback): the answers must not differ.

use awc::http::Method;

use crate::helpers::{Backend, TestApp};
use crate::stream_support::*;

on_both_backends!(
    range_matrix_is_byte_exact,
    conditional_requests,
    head_describes_without_a_body,
    windows_join_up_in_large_ranges,
    missing_pending_deleted_and_hostile_ids,
    ffprobe_and_ffmpeg_read_over_http,
);

async fn range_matrix_is_byte_exact(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(1000);
    let vid = ready_video(&app, &alice, &data).await;
    let path = format!("/videos/{vid}");

    let full = get(&app, &path, &[]).await;
    full.assert_status(200);
    assert_eq!(&full.raw[..], &data[..]);
    assert_eq!(header(&full, "accept-ranges"), "bytes");
    assert_eq!(header(&full, "content-type"), "video/mp4");
    assert_eq!(header(&full, "content-length"), "1000");
    assert_eq!(header(&full, "etag"), etag_of(&data));
    // Revalidated before each use, so a deleted video stops playing from caches at once.
    assert_eq!(header(&full, "cache-control"), "no-cache");
    assert_eq!(header(&full, "x-content-type-options"), "nosniff");
    assert!(httpdate::parse_http_date(header(&full, "last-modified")).is_ok());

    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=0-0", 0, 0),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=995-2000", 995, 999),
        ("bytes=100-199", 100, 199),
    ] {
        let r = get(&app, &path, &[("Range", range)]).await;
        r.assert_status(206);
        assert_eq!(header(&r, "content-range"), format!("bytes {first}-{last}/1000"), "{range}");
        assert_eq!(&r.raw[..], &data[first..=last], "{range}");
        assert_eq!(header(&r, "etag"), etag_of(&data));
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let r = get(&app, &path, &[("Range", range)]).await;
        assert_eq!(r.status.as_u16(), 416, "{range}");
        assert_eq!(header(&r, "content-range"), "bytes */1000", "{range}");
    }
    for range in ["bytes=5-2", "bytes=abc", "items=0-1", "bytes=", "0-10", "bytes=0-1,5-6"] {
        let r = get(&app, &path, &[("Range", range)]).await;
        r.assert_status(200);
        assert_eq!(&r.raw[..], &data[..], "{range}");
    }
}

async fn conditional_requests(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(4000);
    let vid = ready_video(&app, &alice, &data).await;
    let path = format!("/videos/{vid}");
    let etag = etag_of(&data);
    let full = get(&app, &path, &[]).await;
    let modified = header(&full, "last-modified").to_owned();

    for inm in [etag.clone(), format!("W/{etag}"), format!("\"nope\", {etag}"), "*".into()] {
        let r = get(&app, &path, &[("If-None-Match", &inm)]).await;
        assert_eq!(r.status.as_u16(), 304, "{inm}");
        assert!(r.raw.is_empty());
        assert_eq!(header(&r, "etag"), etag);
    }
    get(&app, &path, &[("If-None-Match", "\"other\"")]).await.assert_status(200);
    let r = get(&app, &path, &[("If-Modified-Since", &modified)]).await;
    assert_eq!(r.status.as_u16(), 304);
    // If-None-Match wins over If-Modified-Since.
    let both = [("If-None-Match", "\"x\""), ("If-Modified-Since", modified.as_str())];
    get(&app, &path, &both).await.assert_status(200);

    let r = get(&app, &path, &[("Range", "bytes=10-19"), ("If-Range", &etag)]).await;
    r.assert_status(206);
    assert_eq!(&r.raw[..], &data[10..20]);
    let r = get(&app, &path, &[("Range", "bytes=10-19"), ("If-Range", &modified)]).await;
    r.assert_status(206);
    for stale in ["\"other\"", &format!("W/{etag}"), "Mon, 01 Jan 2001 00:00:00 GMT"] {
        let r = get(&app, &path, &[("Range", "bytes=10-19"), ("If-Range", stale)]).await;
        r.assert_status(200);
        assert_eq!(&r.raw[..], &data[..], "{stale}");
    }

    // If-Match and If-Unmodified-Since: 412 when they fail (RFC 9110 §13.1.1, §13.1.4).
    let before = "Mon, 01 Jan 2001 00:00:00 GMT";
    for failing in [
        [("If-Match", "\"other\""), ("Range", "bytes=0-9")],
        [("If-Match", &format!("W/{etag}")), ("Range", "bytes=0-9")],
        [("If-Unmodified-Since", before), ("Range", "bytes=0-9")],
        // A failed If-Match wins over a matching If-None-Match.
        [("If-Match", "\"other\""), ("If-None-Match", &etag)],
    ] {
        get(&app, &path, &failing).await.assert_error(412, "001");
    }
    for holding in [
        [("If-Match", etag.as_str()), ("Range", "bytes=0-9")],
        [("If-Match", "*"), ("Range", "bytes=0-9")],
        [("If-Unmodified-Since", &modified), ("Range", "bytes=0-9")],
        // If-Unmodified-Since is ignored when If-Match is present.
        [("If-Match", etag.as_str()), ("If-Unmodified-Since", before)],
    ] {
        let r = get(&app, &path, &holding).await;
        assert!([200, 206].contains(&r.status.as_u16()), "{holding:?}: {}", r.status);
    }
}

async fn head_describes_without_a_body(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(3000);
    let vid = ready_video(&app, &alice, &data).await;
    let url = format!("{}/videos/{vid}", app.stream);
    for range in [None, Some("bytes=0-9")] {
        let r = app.send(Method::HEAD, &url, range.map(|r| ("Range", r.to_owned())), None).await;
        r.assert_status(200);
        assert!(r.raw.is_empty());
        assert_eq!(header(&r, "content-length"), "3000");
        assert_eq!(header(&r, "etag"), etag_of(&data));
        assert_eq!(header(&r, "content-type"), "video/mp4");
    }
    // The connection stays usable after a HEAD: a GET on a fresh exchange still works.
    let (status, _) = raw_exchange(
        &app.stream,
        format!("HEAD /videos/{vid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
}

async fn windows_join_up_in_large_ranges(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let alice = app.register("alice").await;
    let data = fake_mp4(3 * 1024 * 1024 + 17);
    let vid = ready_video(&app, &alice, &data).await;
    let path = format!("/videos/{vid}");
    let full = get(&app, &path, &[]).await;
    assert_eq!(full.raw.len(), data.len());
    assert!(full.raw[..] == data[..], "whole file differs");
    let r = get(&app, &path, &[("Range", "bytes=200000-2700000")]).await;
    r.assert_status(206);
    assert!(r.raw[..] == data[200_000..=2_700_000], "range differs");
}

async fn missing_pending_deleted_and_hostile_ids(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let alice = app.register("alice").await;
    let pending = app.create_video(&alice, "later").await;
    get(&app, &format!("/videos/{pending}"), &[]).await.assert_error(404, "006");
    let unknown = uuid::Uuid::new_v4().to_string();
    get(&app, &format!("/videos/{unknown}"), &[]).await.assert_error(404, "006");
    get(&app, &format!("/videos/{}", unknown.to_uppercase()), &[]).await.assert_error(400, "001");

    let vid = ready_video(&app, &alice, &fake_mp4(100)).await;
    let del = format!("/user/alice/videos/{vid}");
    app.api(Method::DELETE, &del, Some(&alice.session), None).await.assert_status(204);
    get(&app, &format!("/videos/{vid}"), &[]).await.assert_error(404, "006");

    let long = "a".repeat(300);
    for hostile in [
        "..",
        "..%2F..%2Fdouyin.sqlite3",
        "%2e%2e",
        "..%2fvideos",
        ".partial",
        "%00",
        long.as_str(),
    ] {
        let req = format!("GET /videos/{hostile} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_exchange(&app.stream, req.as_bytes()).await;
        assert!(status == 400 || status == 404, "{hostile}: {status}");
        assert!(String::from_utf8_lossy(&body).contains("error_code"), "{hostile}");
    }
}

/// A short real MP4 (moov at the end, so a reader must seek with Range) made by ffmpeg.
pub async fn real_clip(dir: &std::path::Path) -> Option<Vec<u8>> {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return None;
    }
    let out = dir.join("clip.mp4");
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=4:size=160x120:rate=10"])
        .args(["-c:v", "mpeg4", "-q:v", "5", "-f", "mp4"])
        .arg(&out);
    let o = run(cmd).await;
    assert!(o.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&o.stderr));
    Some(std::fs::read(&out).expect("the clip"))
}

async fn ffprobe_and_ffmpeg_read_over_http(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let Some(clip) = real_clip(scratch.path()).await else { return };
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &clip).await;
    let url = format!("{}/videos/{vid}", app.stream);

    let mut probe = std::process::Command::new("ffprobe");
    probe.args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", &url]);
    let o = run(probe).await;
    assert!(o.status.success(), "ffprobe: {}", String::from_utf8_lossy(&o.stderr));
    let duration: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().expect("a duration");
    assert!((duration - 4.0).abs() < 0.2, "duration {duration}");

    let frame = scratch.path().join("frame.png");
    let mut seek = std::process::Command::new("ffmpeg");
    seek.args(["-v", "error", "-y", "-ss", "3", "-i", &url, "-frames:v", "1"]).arg(&frame);
    let o = run(seek).await;
    assert!(o.status.success(), "ffmpeg -ss: {}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata(&frame).is_ok_and(|m| m.len() > 0));
}
