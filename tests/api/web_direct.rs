//! The web's `POST /upload/:vid/ticket` and `/complete`, the upload page's direct path: the
//! session cookie reaches the stream service as the session header, and the stream's statuses,
//! headers and JSON errors come back unchanged. The page says which path to take.

use serde_json::Value;

use crate::direct_support::{direct, has_object, post_form};
use crate::garage_support::{Garage, s3_app};
use crate::helpers::{Reply, TestApp, read_reply};
use crate::stream_support::fake_mp4;
use crate::web_support::{Jar, jar_of, page};

/// `POST <web>/upload/:vid/<what>` as a browser sends it: the jar's cookies, and `origin`.
async fn web_step(app: &TestApp, jar: &Jar, origin: Option<&str>, vid: &str, what: &str) -> Reply {
    let mut req = app.client.post(format!("{}/upload/{vid}/{what}", app.web));
    if let Some(c) = jar.header() {
        req = req.insert_header(("Cookie", c));
    }
    if let Some(o) = origin {
        req = req.insert_header(("Origin", o));
    }
    read_reply(req.send().await.expect("the web service answers")).await
}

/// Asserts that the web answered exactly what the stream service answers to the same call.
#[track_caller]
fn same_answer(via_web: &Reply, from_stream: &Reply) {
    assert_eq!(via_web.status, from_stream.status, "web: {}", via_web.body);
    assert_eq!(via_web.body, from_stream.body);
    let ct = |r: &Reply| r.headers.get("content-type").cloned();
    assert_eq!(ct(via_web), ct(from_stream));
}

#[actix::test]
async fn steps_pass_the_streams_refusals_through_on_the_file_store() {
    let app = TestApp::spawn().await;
    let user = app.register("fiona").await;
    let jar = jar_of(&user);
    let vid = app.create_video(&user, "clip").await;
    let own = Some(app.web.as_str());
    for what in ["ticket", "complete"] {
        // Without a session: the stream's 401.
        let anon = web_step(&app, &Jar::default(), own, &vid, what).await;
        anon.assert_error(401, "002");
        same_answer(&anon, &direct(&app, None, &vid, what).await);
        // With the cookie: the file store has no direct uploads, the stream's 404.
        let r = web_step(&app, &jar, own, &vid, what).await;
        r.assert_error(404, "006");
        same_answer(&r, &direct(&app, Some(&user), &vid, what).await);
        // The web's own refusals: a foreign page, a malformed id.
        web_step(&app, &jar, Some("http://evil.example"), &vid, what)
            .await
            .assert_error(403, "005");
        web_step(&app, &jar, own, "not-a-uuid", what).await.assert_error(400, "001");
    }
    // The page uploads through the site.
    let (status, html, _) = page(&app, &jar, "/userhome").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"upload-form\""), "{html}");
    assert!(!html.contains("data-direct-upload"), "the file store has no direct path");
}

#[actix::test]
async fn steps_give_the_ticket_and_complete_on_s3() {
    let Some(garage) = Garage::start().await else { return };
    let app = s3_app(&garage, |_| {}).await;
    let user = app.register("olga").await;
    let other = app.register("oscar").await;
    let jar = jar_of(&user);
    let own = Some(app.web.as_str());
    let vid = app.create_video(&user, "clip").await;

    // The page takes the direct path.
    let (_, html, _) = page(&app, &jar, "/userhome").await;
    assert!(html.contains("data-direct-upload"), "{html}");

    // Nothing posted yet: `complete` is the stream's 404; someone else's video is 404 too.
    let early = web_step(&app, &jar, own, &vid, "complete").await;
    early.assert_error(404, "006");
    same_answer(&early, &direct(&app, Some(&user), &vid, "complete").await);
    web_step(&app, &jar_of(&other), own, &vid, "ticket").await.assert_error(404, "006");

    // The ticket as the stream gives it, `no-store` included; the store takes its form.
    let t = web_step(&app, &jar, own, &vid, "ticket").await;
    let ticket: Value = t.assert_status(200).clone();
    assert_eq!(t.headers.get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]));
    assert_eq!(ticket["file_field"], "file");
    let url = ticket["url"].as_str().expect("url");
    assert!(url.starts_with(&garage.endpoint), "the store's own URL: {url}");
    post_form(&ticket, &fake_mp4(4000)).await.assert_stored();
    assert!(has_object(&garage.blobs(), &vid).await);

    // `complete` through the web makes it ready: the stream's 201 and video object.
    let done = web_step(&app, &jar, own, &vid, "complete").await;
    let video = done.assert_status(201);
    assert_eq!(video["id"], vid.as_str());
    assert_eq!(video["status"], "ready");
    assert_eq!(video["size"], 4000);

    // Once ready, both are the stream's 409, and another user's cookie its 403.
    for what in ["ticket", "complete"] {
        let again = web_step(&app, &jar, own, &vid, what).await;
        again.assert_error(409, "007");
        same_answer(&again, &direct(&app, Some(&user), &vid, what).await);
        web_step(&app, &jar_of(&other), own, &vid, what).await.assert_error(403, "005");
    }
}
