//! The upload page's direct path in a real browser against a real Garage (`--blob-store s3`,
//! redirected playback): the file goes from the page straight to the store with the site's
//! ticket while the bar moves to 100 %, `complete` makes it ready, and it plays and seeks from
//! the store; the stream service sees none of its bytes. A file that is not a video, or one over
//! the limit that the store itself refuses, reads as it does through the site; a post after the
//! ticket expired says the upload took too long.

use std::path::Path;

use douyin_club::config::Playback;
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser_support::{
    LIMIT, a_text_file_is_not_a_video, click, fill, make_clip, path_is, play_and_seek,
    progress_reaches_100, register, shot, skip, start_browser, submit_upload, until, upload_alert,
};
use crate::direct_support::has_object;
use crate::garage_support::{Garage, s3_app};
use crate::helpers::{TestApp, read_reply};
use crate::stream_support::metric;

/// The id of the listed video called `title` on the user's home.
async fn row_id(c: &Client, web: &str, title: &str) -> String {
    c.goto(&format!("{web}/userhome")).await.expect("userhome");
    path_is(c, "/userhome").await;
    let js = format!(
        "const r = [...document.querySelectorAll('.row')].find(r => r.textContent.includes({}));
         return r ? r.getAttribute('data-video') : null;",
        json!(title)
    );
    let id = c.execute(&js, vec![]).await.expect("the rows");
    id.as_str().unwrap_or_else(|| panic!("no row for {title}")).to_owned()
}

/// The web service's request count for the route pattern `endpoint`, summed over statuses.
async fn web_requests(app: &TestApp, endpoint: &str) -> f64 {
    let r = app.client.get(format!("{}/metrics", app.web)).send().await;
    let raw = read_reply(r.expect("the web's metrics")).await.raw;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let label = format!("endpoint=\"{endpoint}\"");
    text.lines()
        .filter(|l| l.starts_with("douyin_http_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A text file named `.mp4` reaches the store (it checks only the size) and `complete` refuses
/// it as "not a video", removing the object; a file over the limit, with the page's own checks
/// taken away, is refused by the store itself and reads "too large", as the site's 413 does.
async fn store_refusals(c: &Client, web: &str, garage: &Garage, dir: &Path) {
    let blobs = garage.blobs();
    a_text_file_is_not_a_video(c, web, dir, "s3-02-upload-not-a-video").await;
    let vid = row_id(c, web, "Not a video").await;
    assert!(!has_object(&blobs, &vid).await, "the refused object is removed");

    // Over the limit: a WebM header, then 3 MiB of nothing. The page's checks (the form's
    // limit, and the ticket's `max_bytes`) are taken away, so only the store's policy is left.
    let big = dir.join("big.webm");
    let mut bytes = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm".to_vec();
    bytes.resize(3 << 20, 0);
    std::fs::write(&big, bytes).expect("written");
    c.goto(&format!("{web}/userhome")).await.expect("userhome");
    path_is(c, "/userhome").await;
    c.execute(
        "document.getElementById('upload-form').removeAttribute('data-max-bytes');
         const real = window.fetch;
         window.fetch = (url, opts) => real(url, opts).then(res => {
           if (!String(url).endsWith('/ticket') || !res.ok) return res;
           return res.json().then(t => {
             t.max_bytes = 1e12;
             return new Response(JSON.stringify(t), { status: res.status });
           });
         });
         return true;",
        vec![],
    )
    .await
    .expect("the page's checks are taken away");
    fill(c, "#up-name", "Too big for the store").await;
    let input = c.find(Locator::Css("#up-file")).await.expect("file input");
    input.send_keys(&big.display().to_string()).await.expect("file chosen");
    click(c, "#upload-form button[type=submit]").await;
    let alert = upload_alert(c).await;
    assert!(alert.contains("too large") && alert.contains("1.0 MB"), "{alert}");
    assert!(!alert.contains("busy"), "{alert}");
    shot(c, "s3-03-upload-too-large-store").await;
    let vid = row_id(c, web, "Too big for the store").await;
    assert!(!has_object(&blobs, &vid).await, "the store kept nothing");
}

#[actix_web::test]
async fn browser_uploads_straight_to_the_object_store() {
    if skip("the s3 browser test") {
        return;
    }
    let Some(garage) = Garage::start().await else { return };
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let clip = make_clip(tmp.path());
    let app = s3_app(&garage, |c| {
        c.max_upload_bytes = LIMIT;
        c.storage.playback = Playback::Redirect;
    })
    .await;
    let (_driver, c) = start_browser(&tmp.path().join("profile")).await;
    let web = app.web.clone();

    register(&c, &web, "store_sue").await;
    let direct = c.execute(
        "return document.getElementById('upload-form').hasAttribute('data-direct-upload')",
        vec![],
    );
    assert_eq!(direct.await.expect("the form"), json!(true), "the page knows the store is s3");

    // The file goes to the store, the bar moving to 100 %; after the reload it is ready.
    submit_upload(&c, &web, "Straight to the store", &clip).await;
    progress_reaches_100(&c).await;
    shot(&c, "s3-01-upload-100").await;
    until(&c, "[...document.querySelectorAll('.row')].some(r => r.textContent.includes('Straight to the store') && r.textContent.includes('Ready'))", "the listed clip").await;
    let vid = row_id(&c, &web, "Straight to the store").await;
    let object = garage.blobs().head(crate::direct_support::video_id(&vid)).await;
    let object = object.expect("HEAD reaches the store").expect("the object is in Garage");
    let clip_len = std::fs::metadata(&clip).expect("the clip").len();
    assert_eq!(object.len, clip_len, "the whole clip is in the store");

    // None of it went through the site: the web's upload proxy was never called (only the
    // ticket and complete were), and the stream service received no upload byte.
    assert_eq!(web_requests(&app, "/upload/{vid}").await, 0.0, "the web's upload proxy");
    assert_eq!(web_requests(&app, "/upload/{vid}/ticket").await, 1.0, "one ticket");
    assert_eq!(web_requests(&app, "/upload/{vid}/complete").await, 1.0, "one complete");
    assert_eq!(metric(&app, "bytes_uploaded_total").await, 0.0, "the stream's upload bytes");

    // It plays and seeks, from the store (the stream service answers with a redirect).
    click(&c, &format!("#video-{vid} a.row-title")).await;
    until(&c, "location.pathname.startsWith('/watch/')", "the watch page").await;
    play_and_seek(&c).await;
    shot(&c, "s3-04-watch").await;
    assert_eq!(metric(&app, "bytes_served_total").await, 0.0, "played from the store");

    store_refusals(&c, &web, &garage, tmp.path()).await;
    drop(app);
    expired_ticket(&c, &garage, &clip).await;

    c.close().await.expect("the browser closes");
}

/// A form posted after its ticket expired is refused by the store, and the page says that the
/// upload took too long. A node of its own, whose tickets live one second, on the same Garage
/// (it sets the bucket's CORS rule for its own origin); the page is held up 2.5 s between the
/// ticket and the post.
async fn expired_ticket(c: &Client, garage: &Garage, clip: &Path) {
    let app = s3_app(garage, |c| c.storage.signed_url_ttl_secs = 1).await;
    let web = app.web.clone();
    register(c, &web, "late_lou").await;
    c.execute(
        "const real = window.fetch;
         window.fetch = (url, opts) => real(url, opts).then(res =>
           String(url).endsWith('/ticket')
             ? new Promise(done => setTimeout(() => done(res), 2500))
             : res);
         return true;",
        vec![],
    )
    .await
    .expect("the page is slowed down");
    fill(c, "#up-name", "Too late").await;
    let input = c.find(Locator::Css("#up-file")).await.expect("file input");
    input.send_keys(&clip.display().to_string()).await.expect("file chosen");
    click(c, "#upload-form button[type=submit]").await;
    let alert = upload_alert(c).await;
    assert!(alert.contains("took too long"), "{alert}");
    shot(c, "s3-05-upload-expired").await;
    let vid = row_id(c, &web, "Too late").await;
    assert!(!has_object(&garage.blobs(), &vid).await, "the store kept nothing");
}
