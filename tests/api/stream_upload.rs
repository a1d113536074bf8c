//! Uploads over a real socket: multipart and raw, every refusal, a client cut off mid-upload,
//! and a process killed mid-upload then restarted.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use awc::http::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::helpers::{TestApp, TestUser, read_reply};
use crate::stream_support::*;

async fn video_status(app: &TestApp, user: &TestUser, vid: &str) -> String {
    let path = format!("/user/{}/videos/{vid}", user.name);
    let r = app.api(Method::GET, &path, Some(&user.session), None).await;
    r.assert_status(200)["status"].as_str().expect("status").to_owned()
}

#[actix::test]
async fn multipart_and_raw_uploads_become_playable() {
    let app = TestApp::spawn().await;
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
    assert!(partial_files(&app.data_dir()).is_empty());
    assert!(metric(&app, "bytes_uploaded_total").await >= 200_000.0);
}

#[actix::test]
async fn refusals() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 64 * 1024).await;
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
    eventually("no partial files", || async { partial_files(&app.data_dir()).is_empty() }).await;

    // Then it works; a second upload is 409; someone else's ready video is 403.
    upload_body(&app, &alice, &vid, "video/mp4", small.clone()).await.assert_status(201);
    upload_body(&app, &alice, &vid, "video/mp4", small.clone()).await.assert_error(409, "007");
    upload_body(&app, &bob, &vid, "video/mp4", small.clone()).await.assert_error(403, "005");
    // Deleted: 404.
    let del = format!("/user/alice/videos/{vid}");
    app.api(Method::DELETE, &del, Some(&alice.session), None).await.assert_status(204);
    upload_body(&app, &alice, &vid, "video/mp4", small).await.assert_error(404, "006");
}

/// Starts an upload over a raw socket: headers announcing `total` bytes, then `sent` of them.
async fn start_upload(
    stream_url: &str,
    session: &str,
    vid: &str,
    total: usize,
    sent: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect(host_of(stream_url)).await.expect("connect");
    let head = format!(
        "POST /upload/{vid} HTTP/1.1\r\nHost: x\r\nX-Session-Id: {session}\r\n\
         Content-Type: video/mp4\r\nContent-Length: {total}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(sent).await.expect("body");
    s.flush().await.expect("flush");
    s
}

#[actix::test]
async fn a_client_cut_off_mid_upload_leaves_nothing_behind() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "cut").await;
    let data = fake_mp4(8 << 20);
    let s = start_upload(&app.stream, &alice.session, &vid, data.len(), &data[..3 << 20]).await;
    eventually("the partial file appears", || async { !partial_files(&app.data_dir()).is_empty() })
        .await;
    drop(s);
    eventually("the partial file goes", || async { partial_files(&app.data_dir()).is_empty() })
        .await;
    assert_eq!(video_status(&app, &alice, &vid).await, "pending");
    assert!(!app.data_dir().join("videos").join(&vid).exists());
    eventually("the slot is back", || async { metric(&app, "active_streams").await == 0.0 }).await;
    // A retry simply works.
    upload_body(&app, &alice, &vid, "video/mp4", data.clone()).await.assert_status(201);
    assert!(get(&app, &format!("/videos/{vid}"), &[]).await.raw[..] == data[..]);
}

/// The real binary as a child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn start_binary(dir: &std::path::Path, ports: &[u16; 4]) -> Proc {
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let child = Command::new(env!("CARGO_BIN_EXE_douyin_club"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--api-addr", &addr(ports[0]), "--stream-addr", &addr(ports[1])])
        .args(["--scheduler-addr", &addr(ports[2]), "--web-addr", &addr(ports[3])])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    Proc(child)
}

async fn wait_healthy(client: &awc::Client, url: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became healthy");
}

#[actix::test]
async fn a_process_killed_mid_upload_restarts_clean() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let (api, stream) =
        (format!("http://127.0.0.1:{}", ports[0]), format!("http://127.0.0.1:{}", ports[1]));
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let child = start_binary(dir.path(), &ports);
    wait_healthy(&client, &api).await;
    wait_healthy(&client, &stream).await;

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

    let data = fake_mp4(8 << 20);
    let s = start_upload(&stream, &session, &vid, data.len(), &data[..3 << 20]).await;
    eventually("the partial file appears", || async { !partial_files(dir.path()).is_empty() })
        .await;
    drop(child); // SIGKILL: no destructor in the child runs.
    drop(s);
    assert!(!partial_files(dir.path()).is_empty(), "the kill left its partial file");

    let _child = start_binary(dir.path(), &ports);
    wait_healthy(&client, &api).await;
    wait_healthy(&client, &stream).await;
    assert!(partial_files(dir.path()).is_empty(), "start-up removed the stale partial file");
    assert!(!dir.path().join("videos").join(&vid).exists());
    let r = client
        .get(format!("{api}/user/alice/videos/{vid}"))
        .insert_header(("X-Session-Id", session.clone()))
        .send();
    assert_eq!(read_reply(r.await.expect("get")).await.assert_status(200)["status"], "pending");

    let r = client
        .post(format!("{stream}/upload/{vid}"))
        .insert_header(("X-Session-Id", session.clone()))
        .content_type("video/mp4")
        .send_body(data.clone());
    read_reply(r.await.expect("retry")).await.assert_status(201);
    let r = client.get(format!("{stream}/videos/{vid}")).send();
    assert!(read_reply(r.await.expect("play")).await.raw[..] == data[..]);
}
