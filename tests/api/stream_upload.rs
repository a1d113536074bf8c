//! Uploads over a real socket: multipart and raw, every refusal, a client cut off mid-upload,
//! and a process killed mid-upload then restarted. Every test runs on local files and on a real
//! Garage; what a cut-off upload may leave behind is a partial file on one and an unfinished
//! multipart upload on the other, and neither may stay.

use std::time::Duration;

use awc::http::Method;
use serde_json::json;

use crate::garage_support::Garage;
use crate::helpers::{Backend, TestApp, TestUser, read_reply};
use crate::process_support::{Ports, Proc};
use crate::stream_support::*;

on_both_backends!(
    multipart_and_raw_uploads_become_playable,
    refusals,
    a_client_cut_off_mid_upload_leaves_nothing_behind,
    a_process_killed_mid_upload_restarts_clean,
);

/// Past one 8 MiB part of the S3 writer, so that on S3 a multipart upload is under way.
const CUT_AT: usize = 10 << 20;

async fn video_status(app: &TestApp, user: &TestUser, vid: &str) -> String {
    let path = format!("/user/{}/videos/{vid}", user.name);
    let r = app.api(Method::GET, &path, Some(&user.session), None).await;
    r.assert_status(200)["status"].as_str().expect("status").to_owned()
}

async fn multipart_and_raw_uploads_become_playable(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let alice = app.register("alice").await;

    let data = fake_mp4(200_000);
    let vid = app.create_video(&alice, "multipart").await;
    let (ct, body) = multipart_body("file", &data);
    let r = upload_body(&app, &alice, &vid, &ct, body).await;
    let v = r.assert_status(201);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["size"], 200_000);
    assert_eq!(v["content_type"], "video/mp4");
    assert_eq!(&get(&app, &format!("/videos/{vid}"), &[]).await.raw[..], &data[..]);

    let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm and then some bytes".to_vec();
    let vid = app.create_video(&alice, "raw").await;
    let r = upload_body(&app, &alice, &vid, "application/octet-stream", webm.clone()).await;
    assert_eq!(r.assert_status(201)["content_type"], "video/webm");
    let played = get(&app, &format!("/videos/{vid}"), &[]).await;
    assert_eq!(header(&played, "content-type"), "video/webm");
    assert_eq!(header(&played, "etag"), etag_of(&webm));
    assert_eq!(unfinished_writes(&app).await, 0);
    assert!(metric(&app, "bytes_uploaded_total").await >= 200_000.0);
}

async fn refusals(backend: Backend) {
    let Some(app) = TestApp::on(backend, |c| c.max_upload_bytes = 64 * 1024).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let small = fake_mp4(1000);
    let vid = app.create_video(&alice, "mine").await;
    let url = format!("{}/upload/{vid}", app.stream);

    // 401: no session.
    let r = app.client.post(&url).content_type("video/mp4").send_body(small.clone()).await;
    read_reply(r.expect("sent")).await.assert_error(401, "002");
    // 404: someone else's pending video is invisible; unknown and malformed ids.
    upload_body(&app, &bob, &vid, "video/mp4", small.clone()).await.assert_error(404, "006");
    let unknown = uuid::Uuid::new_v4().to_string();
    upload_body(&app, &alice, &unknown, "video/mp4", small.clone()).await.assert_error(404, "006");
    upload_body(&app, &alice, "..", "video/mp4", small.clone()).await.assert_error(400, "001");
    // 415: not a video, by content or by declared type.
    let text = b"hello, this is plainly not a video file at all".to_vec();
    upload_body(&app, &alice, &vid, "video/mp4", text).await.assert_error(415, "009");
    upload_body(&app, &alice, &vid, "text/plain", small.clone()).await.assert_error(415, "009");
    upload_body(&app, &alice, &vid, "video/mp4", Vec::new()).await.assert_error(415, "009");
    // 413: declared too large, and found too large while streaming (multipart).
    let big = fake_mp4(100 * 1024);
    upload_body(&app, &alice, &vid, "video/mp4", big.clone()).await.assert_error(413, "008");
    let (ct, body) = multipart_body("file", &big);
    upload_body(&app, &alice, &vid, &ct, body).await.assert_error(413, "008");
    // 400: a form without the `file` field.
    let (ct, body) = multipart_body("other", &small);
    upload_body(&app, &alice, &vid, &ct, body).await.assert_error(400, "001");

    assert_eq!(video_status(&app, &alice, &vid).await, "pending");
    eventually("no unfinished write", || async { unfinished_writes(&app).await == 0 }).await;
    assert!(!has_file(&app, &vid).await, "nothing refused was kept");

    // Then it works; a second upload is 409; someone else's ready video is 403.
    upload_body(&app, &alice, &vid, "video/mp4", small.clone()).await.assert_status(201);
    upload_body(&app, &alice, &vid, "video/mp4", small.clone()).await.assert_error(409, "007");
    upload_body(&app, &bob, &vid, "video/mp4", small.clone()).await.assert_error(403, "005");
    // Deleted: 404.
    let del = format!("/user/alice/videos/{vid}");
    app.api(Method::DELETE, &del, Some(&alice.session), None).await.assert_status(204);
    upload_body(&app, &alice, &vid, "video/mp4", small).await.assert_error(404, "006");
}

async fn a_client_cut_off_mid_upload_leaves_nothing_behind(backend: Backend) {
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "cut").await;
    let data = fake_mp4(2 * CUT_AT);
    let s = start_raw_upload(&app.stream, &alice.session, &vid, data.len(), &data[..CUT_AT]).await;
    eventually("the unfinished write appears", || async { unfinished_writes(&app).await > 0 })
        .await;
    drop(s);
    eventually("the unfinished write goes", || async { unfinished_writes(&app).await == 0 }).await;
    assert_eq!(video_status(&app, &alice, &vid).await, "pending");
    assert!(!has_file(&app, &vid).await);
    eventually("the slot is back", || async { metric(&app, "active_streams").await == 0.0 }).await;
    // A retry simply works.
    upload_body(&app, &alice, &vid, "video/mp4", data.clone()).await.assert_status(201);
    assert!(get(&app, &format!("/videos/{vid}"), &[]).await.raw[..] == data[..]);
}

/// The binary over `dir` on `ports`, with the flags of `garage` when the test runs on S3.
async fn start_binary(dir: &std::path::Path, ports: Ports, garage: Option<&Garage>) -> Proc {
    let (args, secret) = garage.map(|g| (g.flags(), g.secret_key.as_str())).unwrap_or_default();
    let env = [("RUST_LOG", "warn"), ("DOUYIN_S3_SECRET_ACCESS_KEY", secret)];
    let env = if garage.is_some() { &env[..] } else { &env[..1] };
    let mut child = Proc::spawn(dir, ports, &args, env);
    child.wait_healthy(&awc::Client::default()).await;
    child
}

/// What a kill in the middle of an upload left: a partial file, or an unfinished multipart
/// upload.
async fn crash_leftovers(dir: &std::path::Path, garage: Option<&Garage>) -> usize {
    match garage {
        None => partial_files(dir).len(),
        Some(g) => g.blobs().list_uploads().await.expect("the uploads are listed").len(),
    }
}

async fn a_process_killed_mid_upload_restarts_clean(backend: Backend) {
    let garage = match backend {
        Backend::Files => None,
        Backend::S3 => match Garage::start().await {
            Some(garage) => Some(garage),
            None => return,
        },
    };
    let garage = garage.as_ref();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ports = Ports::fresh();
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let child = start_binary(dir.path(), ports, garage).await;
    let (api, stream) = (child.api(), child.stream());

    let r = client
        .post(format!("{api}/user"))
        .send_json(&json!({"user_name": "alice", "pwd": "password1"}));
    let r = read_reply(r.await.expect("register")).await;
    let session = r.assert_status(201)["session_id"].as_str().expect("session").to_owned();
    let r = client
        .post(format!("{api}/user/alice/videos"))
        .insert_header(("X-Session-Id", session.clone()))
        .send_json(&json!({"name": "killed"}));
    let r = read_reply(r.await.expect("create")).await;
    let vid = r.assert_status(201)["id"].as_str().expect("id").to_owned();

    let data = fake_mp4(2 * CUT_AT);
    let s = start_raw_upload(&stream, &session, &vid, data.len(), &data[..CUT_AT]).await;
    eventually("the unfinished write appears", || async {
        crash_leftovers(dir.path(), garage).await > 0
    })
    .await;
    drop(child); // SIGKILL: no destructor in the child runs.
    drop(s);
    assert_eq!(crash_leftovers(dir.path(), garage).await, 1, "the kill left its unfinished write");

    let _child = start_binary(dir.path(), ports, garage).await;
    match garage {
        None => assert!(partial_files(dir.path()).is_empty(), "start-up removed the partial file"),
        // The store keeps a crashed multipart upload until someone aborts it: the scheduler's
        // reconciliation (its own tests), not start-up. What matters here is that it made no
        // object.
        Some(g) => assert!(g.blobs().head(vid.parse().expect("an id")).await.unwrap().is_none()),
    }
    assert!(!dir.path().join("videos").join(&vid).exists());
    let r = client
        .get(format!("{api}/user/alice/videos/{vid}"))
        .insert_header(("X-Session-Id", session.clone()))
        .send();
    assert_eq!(read_reply(r.await.expect("get")).await.assert_status(200)["status"], "pending");
    let r = client.get(format!("{stream}/videos/{vid}")).send();
    read_reply(r.await.expect("play")).await.assert_error(404, "006");

    let r = client
        .post(format!("{stream}/upload/{vid}"))
        .insert_header(("X-Session-Id", session.clone()))
        .content_type("video/mp4")
        .send_body(data.clone());
    read_reply(r.await.expect("retry")).await.assert_status(201);
    let r = client.get(format!("{stream}/videos/{vid}")).send();
    assert!(read_reply(r.await.expect("play")).await.raw[..] == data[..]);
    // The retry finished its own write; at most the crashed one is still there.
    assert!(crash_leftovers(dir.path(), garage).await <= 1);
}
