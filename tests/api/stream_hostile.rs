//! The stream service against hostile and careless clients: truncated and malformed bodies,
//! clients that stall while sending or reading, one client trying to hold every slot.

use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{Backend, TestApp, TestUser};
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

/// Which service an upload is sent to: the stream service itself, or the web's proxy (which
/// takes the session from the browser's cookie).
#[derive(Debug, Clone, Copy)]
enum Via {
    Stream,
    Web,
}

/// Connects to the stream service and sends the head of an upload declaring `len` bytes.
async fn upload_head(
    app: &TestApp,
    user: &TestUser,
    vid: &str,
    content_type: &str,
    len: usize,
) -> TcpStream {
    upload_head_via(Via::Stream, app, user, vid, content_type, len).await
}

async fn upload_head_via(
    via: Via,
    app: &TestApp,
    user: &TestUser,
    vid: &str,
    content_type: &str,
    len: usize,
) -> TcpStream {
    let (base, auth) = match via {
        Via::Stream => (&app.stream, format!("X-Session-Id: {}", user.session)),
        Via::Web => (&app.web, format!("Cookie: session={}", user.session)),
    };
    let mut s = TcpStream::connect(host_of(base)).await.expect("connect");
    let head = format!(
        "POST /upload/{vid} HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s
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
    post_raw_via(Via::Stream, app, user, vid, content_type, body, wait).await
}

async fn post_raw_via(
    via: Via,
    app: &TestApp,
    user: &TestUser,
    vid: &str,
    content_type: &str,
    body: &[u8],
    wait: Duration,
) -> Option<(u16, String)> {
    let mut s = upload_head_via(via, app, user, vid, content_type, body.len()).await;
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
    for via in [Via::Stream, Via::Web] {
        for tail in ["", "\r", "\r\n", "\r\n-", "\r\n--", "\r\n--XyZb", "\r\n--XyZb-"] {
            let mut body = full[..full.len() - closing].to_vec();
            body.extend_from_slice(tail.as_bytes());
            let wait = Duration::from_secs(5);
            let answer = post_raw_via(via, &app, &alice, &vid, &ct, &body, wait).await;
            let (status, text) =
                answer.unwrap_or_else(|| panic!("no answer for tail {tail:?} via {via:?}"));
            assert_eq!(status, 400, "tail {tail:?} via {via:?}: {text}");
            assert!(text.contains("\"error_code\":\"001\""), "{text}");
        }
    }
    eventually("slots released", || async { metric(&app, "active_streams").await == 0.0 }).await;
    eventually("no partial files", || async { partial_files(&app.data_dir()).is_empty() }).await;
    // The per-video upload lock is free again: a complete retry succeeds.
    let answer = post_raw(&app, &alice, &vid, &ct, &full, Duration::from_secs(5)).await;
    assert_eq!(answer.expect("an answer").0, 201);
}

/// A connection to the stream service with a tiny receive buffer, so that a response it does
/// not read stalls the server's writes after a few KiB instead of after several MiB.
async fn tiny_window(app: &TestApp) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr = host_of(&app.stream).parse().expect("a socket address");
    socket.connect(addr).await.expect("connect")
}

// On S3 the stalled response is a GET relayed from the store: it must end with the client.
on_both_backends!(a_client_that_stops_reading_its_playback_loses_the_slot);

async fn a_client_that_stops_reading_its_playback_loses_the_slot(backend: Backend) {
    let Some(app) = TestApp::on(backend, |c| {
        c.send_timeout_secs = 1;
        c.min_send_rate = 64 * 1024;
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &fake_mp4(16 << 20)).await;

    let mut stalled = tiny_window(&app).await;
    let req = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n");
    stalled.write_all(req.as_bytes()).await.expect("write");
    assert!(read_head(&mut stalled).await.starts_with("HTTP/1.1 200"));
    eventually("the stalled response holds a slot", || async {
        metric(&app, "active_streams").await == 1.0
    })
    .await;
    let started = Instant::now();
    eventually("the stalled response is dropped", || async {
        metric(&app, "active_streams").await == 0.0
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "the slot came back after {took:?}");

    // The server closed the connection: once the buffered bytes are read, it ends early.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut rest)).await;
    let got = match read {
        Ok(Ok(_)) => rest.len(),
        Ok(Err(_)) => 0, // reset: also closed
        Err(_) => panic!("the connection stayed open"),
    };
    assert!(got < 16 << 20, "the whole body arrived after all");

    // A reader that keeps up is not cut off.
    let whole = get(&app, &format!("/videos/{vid}"), &[]).await;
    assert_eq!(whole.raw.len(), 16 << 20);
}

#[actix::test]
async fn an_upload_trickling_a_byte_at_a_time_gets_408_and_frees_everything() {
    let app = TestApp::spawn_with(|c| {
        c.receive_timeout_secs = 1;
        c.min_receive_rate = 1024;
    })
    .await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "trickle").await;
    let data = fake_mp4(4096);

    let s = upload_head(&app, &alice, &vid, "video/mp4", data.len()).await;
    let started = Instant::now();
    let (mut reader, mut writer) = s.into_split();
    let trickle = actix_web::rt::spawn(async move {
        for byte in data {
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !response_complete(&answer) {
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    trickle.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error_code\":\"001\""), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());

    eventually("slot released", || async { metric(&app, "active_streams").await == 0.0 }).await;
    eventually("no partial files", || async { partial_files(&app.data_dir()).is_empty() }).await;
    let r = upload_body(&app, &alice, &vid, "video/mp4", fake_mp4(4096)).await;
    r.assert_status(201);
}

#[actix::test]
async fn one_client_cannot_hold_every_slot() {
    let app = TestApp::spawn_with(|c| {
        c.max_streams = 8;
        c.max_streams_per_client = 2;
    })
    .await;
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &fake_mp4(16 << 20)).await;

    // One anonymous address opens playbacks it never reads.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tiny_window(&app).await;
        let req = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let path = format!("/videos/{vid}");
    let r = get(&app, &path, &[("Range", "bytes=0-9")]).await;
    r.assert_error(429, "010");
    assert!(header(&r, "retry-after").parse::<u64>().is_ok_and(|s| s >= 1));
    // Everyone else still plays: another address, and a signed-in user on the same address.
    let other = [("Range", "bytes=0-9"), ("X-Forwarded-For", "203.0.113.7")];
    get(&app, &path, &other).await.assert_status(206);
    let mine = [("Range", "bytes=0-9"), ("X-Session-Id", alice.session.as_str())];
    get(&app, &path, &mine).await.assert_status(206);
    drop(held);
    eventually("slots back", || async { metric(&app, "active_streams").await == 0.0 }).await;
    get(&app, &path, &[("Range", "bytes=0-9")]).await.assert_status(206);
}

#[actix::test]
async fn several_sessions_of_one_user_share_one_bucket() {
    let app = TestApp::spawn_with(|c| {
        c.stream_rate = 0.01;
        c.stream_burst = 6.0;
    })
    .await;
    let alice = app.register("alice").await;
    let mut sessions = vec![alice.session.clone()];
    for _ in 0..4 {
        let r = app
            .api(
                awc::http::Method::POST,
                "/user/alice",
                None,
                Some(serde_json::json!({"pwd": "password1"})),
            )
            .await;
        sessions.push(r.assert_status(200)["session_id"].as_str().expect("id").to_owned());
    }
    let missing = format!("/videos/{}", uuid::Uuid::new_v4());
    let mut answered = 0;
    for _ in 0..4 {
        for s in &sessions {
            let r = get(&app, &missing, &[("X-Session-Id", s)]).await;
            if r.status.as_u16() == 404 {
                answered += 1;
            } else {
                r.assert_error(429, "010");
            }
        }
    }
    assert_eq!(answered, 6, "five sessions, one burst of 6 between them");
}

/// One hostile variation of a valid upload body.
#[derive(Debug)]
enum Mutation {
    /// Cut at this byte, sent with the shorter length declared: the body ends early.
    Truncate(usize),
    /// These bytes replaced by random ones.
    Corrupt(Vec<(usize, u8)>),
    /// Declares the full length, sends only this much, then half-closes the connection.
    HalfClose(usize),
}

/// Feeds random truncations and corruptions of valid multipart and raw bodies to the upload,
/// and shows that every one ends — in an answer, or (for a client that half-closed) at least
/// in a closed connection — and that nothing stays held: slots, upload locks, partial files.
#[actix::test]
async fn random_truncations_and_corruptions_each_end_and_release_everything() {
    use rand::{Rng as _, SeedableRng as _};

    let app = TestApp::spawn_with(|c| {
        c.stream_rate = 1e6;
        c.stream_burst = 1e6;
        c.receive_timeout_secs = 2;
    })
    .await;
    let alice = app.register("alice").await;
    let seed = std::env::var("DOUYIN_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let multipart_ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let mut refused = Vec::new();
    let started = Instant::now();
    for case in 0..160 {
        let data = fake_mp4(rng.random_range(0..6000));
        let multipart = rng.random_bool(0.6);
        let (ct, body) =
            if multipart { (multipart_ct.as_str(), form(&data)) } else { ("video/mp4", data) };
        let len = body.len();
        let mutation = match rng.random_range(0..3) {
            0 => Mutation::Truncate(rng.random_range(0..len.max(1))),
            1 => Mutation::Corrupt(
                (0..rng.random_range(1..4))
                    .map(|_| (rng.random_range(0..len.max(1)), rng.random::<u8>()))
                    .collect(),
            ),
            _ => Mutation::HalfClose(rng.random_range(0..len.max(1))),
        };
        let vid = app.create_video(&alice, "hostile").await;
        let what = format!("seed {seed} case {case}: {} {mutation:?}", ct);
        let outcome = match &mutation {
            Mutation::Truncate(at) => {
                let cut = &body[..*at];
                post_raw(&app, &alice, &vid, ct, cut, Duration::from_secs(5)).await
            }
            Mutation::Corrupt(bytes) => {
                let mut bad = body.clone();
                for (at, b) in bytes {
                    if let Some(x) = bad.get_mut(*at) {
                        *x = *b;
                    }
                }
                post_raw(&app, &alice, &vid, ct, &bad, Duration::from_secs(5)).await
            }
            Mutation::HalfClose(at) => half_close(&app, &alice, &vid, ct, &body, *at).await,
        };
        match outcome {
            Some((status, text)) => {
                assert!([201, 400, 408, 413, 415].contains(&status), "{what}: {text}");
                if status != 201 {
                    refused.push(vid);
                }
            }
            None => {
                assert!(matches!(mutation, Mutation::HalfClose(_)), "{what}: no answer");
                refused.push(vid);
            }
        }
    }
    eventually("every slot released", || async { metric(&app, "active_streams").await == 0.0 })
        .await;
    eventually("no partial files", || async { partial_files(&app.data_dir()).is_empty() }).await;
    // Every refused video is free for a retry: no upload lock was left behind.
    for vid in &refused {
        let r = upload_body(&app, &alice, vid, "video/mp4", fake_mp4(1000)).await;
        assert_eq!(r.status.as_u16(), 201, "seed {seed}: retry of {vid}: {}", r.body);
    }
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
}

/// Declares the whole body, sends `at` bytes of it, half-closes; the answer if one comes, or
/// `None` when the server closed the connection instead. Panics if it does neither in time.
async fn half_close(
    app: &TestApp,
    user: &TestUser,
    vid: &str,
    content_type: &str,
    body: &[u8],
    at: usize,
) -> Option<(u16, String)> {
    let mut s = upload_head(app, user, vid, content_type, body.len()).await;
    let _ = s.write_all(&body[..at]).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "a half-closed upload was neither answered nor closed");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok())?;
    Some((status, text))
}
