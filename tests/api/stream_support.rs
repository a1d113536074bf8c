//! Helpers for the stream tests: synthetic and real clips, uploads, raw sockets, metrics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{Reply, TestApp, TestUser, read_reply};

/// A file that sniffs as MP4 (an `ftyp` box) followed by `len - 24` patterned bytes.
pub fn fake_mp4(len: usize) -> Vec<u8> {
    let mut v = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    v.extend((0..len.saturating_sub(v.len())).map(|i| (i * 7 + i / 251) as u8));
    v.truncate(len);
    v
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `ETag` a file must get.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", sha256_hex(data))
}

/// Uploads `data` as the request body with `content_type`: raw bytes, or a body made by
/// [`multipart_body`].
pub async fn upload_body(
    app: &TestApp,
    user: &TestUser,
    vid: &str,
    content_type: &str,
    data: Vec<u8>,
) -> Reply {
    let res = app
        .client
        .post(format!("{}/upload/{vid}", app.stream))
        .insert_header(("X-Session-Id", user.session.clone()))
        .insert_header(("Content-Type", content_type))
        .send_body(data)
        .await
        .expect("the upload reaches the server");
    read_reply(res).await
}

/// A `multipart/form-data` body with a text field and the file in `field`.
pub fn multipart_body(field: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----douyinTestBoundary7MA4YWxk";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
             filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A ready video of `user` with `data` as its file; returns its id.
pub async fn ready_video(app: &TestApp, user: &TestUser, data: &[u8]) -> String {
    let vid = app.create_video(user, "clip").await;
    let r = upload_body(app, user, &vid, "video/mp4", data.to_vec()).await;
    assert_eq!(r.assert_status(201)["status"], "ready");
    vid
}

/// GET `path` on the stream service with extra headers.
pub async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = app.client.get(format!("{}{path}", app.stream));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    read_reply(req.send().await.expect("the request reaches the server")).await
}

pub fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The host:port of a service URL.
pub fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

/// Sends raw request bytes and reads until the server closes; returns status and body.
pub async fn raw_exchange(url: &str, request: &[u8]) -> (u16, Bytes) {
    let mut s = TcpStream::connect(host_of(url)).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(Bytes::new(), |i| Bytes::copy_from_slice(&out[i + 4..]));
    (status, body)
}

/// Reads the response head of a raw connection, or of its read half (up to the blank line).
pub async fn read_head(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("the head arrives in time")
            .expect("read");
        assert!(n > 0, "connection closed before the head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The stream's `douyin_stream_<name>` sample from `/metrics`.
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    let r = app.client.get(format!("{}/metrics", app.stream)).send().await;
    let raw = read_reply(r.expect("metrics")).await.raw;
    let text = String::from_utf8_lossy(&raw);
    let prefix = format!("douyin_stream_{name}{{");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in metrics:\n{text}"))
}

/// Polls `check` for up to five seconds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Files left in the temporary upload directory.
pub fn partial_files(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir.join("videos/.partial"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Writes begun and not finished on the node's backend: partial files, or unfinished
/// multipart uploads in the object store.
pub async fn unfinished_writes(app: &TestApp) -> usize {
    match app.node.blob_backend().expect("this node opens the blobs").s3() {
        None => partial_files(&app.data_dir()).len(),
        Some(s3) => s3.list_uploads().await.expect("the uploads are listed").len(),
    }
}

/// Whether `vid` has a committed file (or object) on the node's backend.
pub async fn has_file(app: &TestApp, vid: &str) -> bool {
    let blobs = app.node.blob_backend().expect("this node opens the blobs").store();
    match blobs.open(vid.parse().expect("a video id")).await {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("cannot tell whether {vid} has a file: {e}"),
    }
}

/// Whether `tool` can run; without it the test fails under `CI=true` and is skipped elsewhere.
pub fn have_tool(tool: &str) -> bool {
    let ok =
        std::process::Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is required under CI");
        eprintln!("skipping: {tool} is not installed");
    }
    ok
}

/// Runs a command on a blocking thread (the test's own thread runs the limiter actor).
pub async fn run(mut cmd: std::process::Command) -> std::process::Output {
    actix_web::web::block(move || cmd.output()).await.expect("join").expect("the tool runs")
}

/// Starts an upload over a raw socket: headers announcing `total` bytes (and
/// `Connection: close`), then `sent` of them; returns the socket, to finish or to drop.
pub async fn start_raw_upload(
    stream_url: &str,
    session: &str,
    vid: &str,
    total: usize,
    sent: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect(host_of(stream_url)).await.expect("connect");
    let head = format!(
        "POST /upload/{vid} HTTP/1.1\r\nHost: x\r\nX-Session-Id: {session}\r\n\
         Content-Type: video/mp4\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(sent).await.expect("body");
    s.flush().await.expect("flush");
    s
}
