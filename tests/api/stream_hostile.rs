//! The stream service against hostile and careless clients: truncated and malformed bodies,
//! clients that stall while sending or reading, one client trying to hold every slot.

use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{TestApp, TestUser};
use crate::stream_support::*;

const BOUNDARY: &str = "XyZb";

/// A multipart body with the file in field `file`, complete with its closing boundary.
fn form(data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Sends `body` in full with an exact Content-Length and reads the answer; `None` when no
/// answer came within `wait`.
async fn post_raw(
    app: &TestApp,
    user: &TestUser,
    vid: &str,
    content_type: &str,
    body: &[u8],
    wait: Duration,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(host_of(&app.stream)).await.expect("connect");
    let head = format!(
        "POST /upload/{vid} HTTP/1.1\r\nHost: x\r\nX-Session-Id: {}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        user.session,
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    // The server may answer and close before reading everything; that is its right.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if response_complete(&out) {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok())?;
    Some((status, text))
}

/// Whether `out` holds a whole response (head plus a Content-Length body).
fn response_complete(out: &[u8]) -> bool {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    out.len() >= end + 4 + len
}

#[actix::test]
async fn a_multipart_body_cut_short_of_its_closing_boundary_gets_400_and_frees_everything() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "cut").await;
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let full = form(&fake_mp4(50_000));
    let closing = format!("\r\n--{BOUNDARY}--\r\n").len();
    for tail in ["", "\r", "\r\n", "\r\n-", "\r\n--", "\r\n--XyZb", "\r\n--XyZb-"] {
        let mut body = full[..full.len() - closing].to_vec();
        body.extend_from_slice(tail.as_bytes());
        let answer = post_raw(&app, &alice, &vid, &ct, &body, Duration::from_secs(5)).await;
        let (status, text) = answer.unwrap_or_else(|| panic!("no answer for tail {tail:?}"));
        assert_eq!(status, 400, "tail {tail:?}: {text}");
        assert!(text.contains("\"error_code\":\"001\""), "{text}");
    }
    eventually("slots released", || async { metric(&app, "active_streams").await == 0.0 }).await;
    eventually("no partial files", || async { partial_files(&app.data_dir()).is_empty() }).await;
    // The per-video upload lock is free again: a complete retry succeeds.
    let answer = post_raw(&app, &alice, &vid, &ct, &full, Duration::from_secs(5)).await;
    assert_eq!(answer.expect("an answer").0, 201);
}
