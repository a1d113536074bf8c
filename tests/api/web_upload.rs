//! Uploads through the web's proxy that the stream service refuses early: a slow client sending
//! 20 MiB gets the stream's status and JSON error as soon as the stream answers, and the web
//! stops taking its body then; and a large accepted upload through the proxy stays byte-exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{TestApp, read_reply};
use crate::stream_support::{
    etag_of, eventually, fake_mp4, header, host_of, metric, partial_files, read_head,
};
use crate::web_support::jar_of;

/// The whole body the slow client announces: far more than it can send before an answer.
const TOTAL: usize = 20 << 20;
/// The slow client's pace: 64 KiB every 25 ms, about 2.6 MB/s, so 20 MiB would take 8 s.
const STEP: usize = 64 << 10;
const PACE: Duration = Duration::from_millis(25);

/// What a slow client saw of one upload through the web.
#[derive(Debug)]
struct Seen {
    status: u16,
    head: String,
    body: Value,
    /// From the first body byte written to the end of the response head.
    answered_after: Duration,
    /// Body bytes the client had written when the head arrived.
    sent_at_answer: usize,
    /// Body bytes the client managed to write before the server stopped taking them.
    sent_total: usize,
    /// How long after the answer the server closed the connection, if it did within 10 s.
    closed_after: Option<Duration>,
    /// Why the client's writing stopped, if the server made it stop.
    write_error: Option<std::io::ErrorKind>,
}

/// How the slow client frames its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length: TOTAL`, as browsers send files.
    Sized,
    /// `Transfer-Encoding: chunked`, one chunk per write, `TOTAL` bytes in all.
    Chunked,
}

/// `POST /upload/:vid` to the service at `base` (the web, or the stream itself) over a raw
/// socket: `TOTAL` bytes of `content_type`, `first` then filler at a steady trickle, while the
/// answer is read.
async fn slow_upload(
    base: &str,
    vid: &str,
    cookie: Option<&str>,
    content_type: &str,
    framing: Framing,
    first: Vec<u8>,
) -> Seen {
    let s = TcpStream::connect(host_of(base)).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let length = match framing {
        Framing::Sized => format!("Content-Length: {TOTAL}"),
        Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
    };
    let head = format!(
        "POST /upload/{vid} HTTP/1.1\r\nHost: {}\r\n{cookie}Content-Type: {content_type}\r\n\
         {length}\r\n\r\n",
        host_of(base)
    );
    wr.write_all(head.as_bytes()).await.expect("the head is written");
    let sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let counter = sent.clone();
    let writer = actix_web::rt::spawn(async move {
        let mut first = Some(first);
        let mut done = 0;
        while done < TOTAL {
            let chunk = first.take().unwrap_or_else(|| vec![b'x'; STEP.min(TOTAL - done)]);
            let n = chunk.len();
            let framed = match framing {
                Framing::Sized => chunk,
                Framing::Chunked => [format!("{n:x}\r\n").as_bytes(), &chunk, b"\r\n"].concat(),
            };
            if let Err(e) = wr.write_all(&framed).await {
                return Some(e.kind());
            }
            done += n;
            counter.store(done, Ordering::SeqCst);
            tokio::time::sleep(PACE).await;
        }
        None
    });

    let head = read_head(&mut rd).await;
    let answered_after = start.elapsed();
    let sent_at_answer = sent.load(Ordering::SeqCst);
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .expect("the answer has a Content-Length");
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(5), rd.read_exact(&mut body))
        .await
        .expect("the body arrives in time")
        .expect("the body is read");
    let answered = Instant::now();
    // Read on until the server closes (end of stream or a reset), or give up after 10 s.
    let mut sink = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let closed_after = closed.ok().map(|()| answered.elapsed());
    let write_error = writer.await.expect("the writer task ends");
    Seen {
        status,
        head,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered_after,
        sent_at_answer,
        sent_total: sent.load(Ordering::SeqCst),
        closed_after,
        write_error,
    }
}

/// The refusal arrived quickly and whole, and the web stopped taking the body.
#[track_caller]
fn assert_refused_early(seen: &Seen, status: u16, code: &str) {
    assert_eq!(seen.status, status, "{seen:#?}");
    assert_eq!(seen.body["error_code"], code, "{seen:#?}");
    assert!(seen.body["error"].as_str().is_some_and(|e| !e.is_empty()), "{seen:#?}");
    assert!(seen.head.to_ascii_lowercase().contains("content-type: application/json"), "{seen:#?}");
    assert!(seen.answered_after < Duration::from_millis(1500), "answered late: {seen:#?}");
    assert!(seen.sent_at_answer < TOTAL / 4, "the body was waited for: {seen:#?}");
    // Having answered, the web takes no more of the body: it closes the connection (after
    // actix-http's short linger) and the client's writing fails long before 20 MiB.
    assert!(seen.head.to_ascii_lowercase().contains("connection: close"), "{seen:#?}");
    assert!(seen.closed_after.is_some_and(|d| d < Duration::from_secs(3)), "{seen:#?}");
    assert!(seen.write_error.is_some(), "the client could send everything: {seen:#?}");
    assert!(seen.sent_total < TOTAL / 2, "{seen:#?}");
    eprintln!(
        "{status}: answered after {:?} with {} KiB sent; closed {:?} later; {} KiB sent in all ({:?})",
        seen.answered_after,
        seen.sent_at_answer >> 10,
        seen.closed_after.unwrap_or_default(),
        seen.sent_total >> 10,
        seen.write_error
    );
}

/// The start of a body that is not a video: text where a container's magic would be.
fn not_a_video() -> Vec<u8> {
    b"This is a plain text file that someone renamed to clip.mp4. ".repeat(20)
}

#[actix_web::test]
async fn not_a_video_is_refused_with_415_before_the_body_is_sent() {
    let app = TestApp::spawn().await;
    let amy = app.register("amy").await;
    let vid = app.create_video(&amy, "text").await;
    let cookie = jar_of(&amy).header();
    let seen =
        slow_upload(&app.web, &vid, cookie.as_deref(), "video/mp4", Framing::Sized, not_a_video())
            .await;
    assert_refused_early(&seen, 415, "009");
}

#[actix_web::test]
async fn an_uploaded_video_is_refused_with_409_before_the_body_is_sent() {
    let app = TestApp::spawn().await;
    let ben = app.register("ben").await;
    let vid = crate::stream_support::ready_video(&app, &ben, &fake_mp4(10_000)).await;
    let cookie = jar_of(&ben).header();
    let seen =
        slow_upload(&app.web, &vid, cookie.as_deref(), "video/mp4", Framing::Sized, fake_mp4(STEP))
            .await;
    assert_refused_early(&seen, 409, "007");
}

#[actix_web::test]
async fn no_session_is_refused_with_401_before_the_body_is_sent() {
    let app = TestApp::spawn().await;
    let cat = app.register("cat").await;
    let vid = app.create_video(&cat, "anonymous").await;
    let seen = slow_upload(&app.web, &vid, None, "video/mp4", Framing::Sized, fake_mp4(STEP)).await;
    assert_refused_early(&seen, 401, "002");
}

#[actix_web::test]
async fn an_unknown_video_is_refused_with_404_before_the_body_is_sent() {
    let app = TestApp::spawn().await;
    let dan = app.register("dan").await;
    let cookie = jar_of(&dan).header();
    let vid = "0190a0b0-0000-7000-8000-00000000dead";
    let seen =
        slow_upload(&app.web, vid, cookie.as_deref(), "video/mp4", Framing::Sized, fake_mp4(STEP))
            .await;
    assert_refused_early(&seen, 404, "006");
}

#[actix_web::test]
async fn a_file_over_the_limit_is_refused_with_413_as_the_limit_is_crossed() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 1 << 20).await;
    let eve = app.register("eve").await;
    let vid = app.create_video(&eve, "too big").await;
    let cookie = jar_of(&eve).header();
    // Multipart, as a browser sends it: the length on the request says nothing about the
    // file's, so the stream service counts and answers once 1 MiB is crossed.
    let boundary = "----douyinEarly413";
    let mut first = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    )
    .into_bytes();
    first.extend(fake_mp4(STEP));
    let ct = format!("multipart/form-data; boundary={boundary}");
    let seen = slow_upload(&app.web, &vid, cookie.as_deref(), &ct, Framing::Sized, first).await;
    assert_refused_early(&seen, 413, "008");
    assert!(seen.sent_at_answer > 1 << 20, "413 came once the limit was crossed: {seen:#?}");
}

/// A chunked body over the limit sent to `base` of `app` (the web or the stream), with gus's
/// session: what the server did, and when.
async fn chunked_over_the_limit(app: &TestApp, base: &str) -> Seen {
    let gus = app.register("gus").await;
    let vid = app.create_video(&gus, "too big, chunked").await;
    let cookie = jar_of(&gus).header();
    let body = fake_mp4(STEP);
    slow_upload(base, &vid, cookie.as_deref(), "video/mp4", Framing::Chunked, body).await
}

#[actix_web::test]
async fn a_chunked_file_over_the_limit_is_refused_with_413_and_not_drained() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 1 << 20).await;
    let seen = chunked_over_the_limit(&app, &app.web).await;
    // Closed like a sized body, not drained to its end as actix-http would drain a chunked
    // body whose reader had gone.
    assert_refused_early(&seen, 413, "008");
}

/// The stream service itself, as nginx reaches it in a cluster: a chunked body over the limit
/// is refused and the connection closed, not drained (actix-http drains a chunked body whose
/// reader has gone, here 20 MiB over 8 s, unless the refusal holds the body until it is sent).
#[actix_web::test]
async fn the_stream_closes_rather_than_drains_a_chunked_file_over_the_limit() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 1 << 20).await;
    let seen = chunked_over_the_limit(&app, &app.stream).await;
    assert_refused_early(&seen, 413, "008");
}

#[actix_web::test]
async fn a_large_upload_through_the_web_stays_byte_exact() {
    let app = TestApp::spawn().await;
    let fay = app.register("fay").await;
    let vid = app.create_video(&fay, "large").await;
    let file = fake_mp4(TOTAL + 12_345);
    let up = app
        .client
        .post(format!("{}/upload/{vid}", app.web))
        .insert_header(("Cookie", jar_of(&fay).header().expect("cookies")))
        .insert_header(("Content-Type", "video/mp4"))
        .send_body(file.clone())
        .await
        .expect("answers");
    let up = read_reply(up).await;
    assert_eq!(up.assert_status(201)["size"], file.len());
    let back = read_reply(
        app.client.get(format!("{}/videos/{vid}", app.web)).send().await.expect("answers"),
    )
    .await;
    assert_eq!(back.status.as_u16(), 200);
    assert_eq!(back.raw.len(), file.len());
    assert!(back.raw.as_ref() == file.as_slice(), "the file comes back byte for byte");
    assert_eq!(header(&back, "etag"), etag_of(&file));
}

/// A client that goes away mid-upload through the web: the stream service must see a cut-off
/// upload (not a short one that looks complete, which a chunked body ended cleanly would be),
/// so the video stays pending, nothing is left behind, and a retry works.
#[actix_web::test]
async fn a_client_cut_off_mid_upload_through_the_web_leaves_the_video_pending() {
    let app = TestApp::spawn().await;
    let hal = app.register("hal").await;
    let cookie = jar_of(&hal).header().expect("cookies");
    let data = fake_mp4(3 << 20);
    for framing in [Framing::Sized, Framing::Chunked] {
        let vid = app.create_video(&hal, "cut").await;
        let mut s = TcpStream::connect(host_of(&app.web)).await.expect("connect");
        let length = match framing {
            Framing::Sized => format!("Content-Length: {}", 8 << 20),
            Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
        };
        let head = format!(
            "POST /upload/{vid} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\
             Content-Type: video/mp4\r\n{length}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("head");
        for chunk in data.chunks(STEP) {
            let framed = match framing {
                Framing::Sized => chunk.to_vec(),
                Framing::Chunked => {
                    [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat()
                }
            };
            s.write_all(&framed).await.expect("body");
        }
        s.flush().await.expect("flush");
        eventually("the partial file appears", || async {
            !partial_files(&app.data_dir()).is_empty()
        })
        .await;
        drop(s);
        eventually("the partial file goes", || async { partial_files(&app.data_dir()).is_empty() })
            .await;
        eventually("the slot is back", || async { metric(&app, "active_streams").await == 0.0 })
            .await;
        let r = app
            .api(
                awc::http::Method::GET,
                &format!("/user/hal/videos/{vid}"),
                Some(&hal.session),
                None,
            )
            .await;
        assert_eq!(r.assert_status(200)["status"], "pending", "{framing:?}");
        // A retry through the web simply works.
        let up = app
            .client
            .post(format!("{}/upload/{vid}", app.web))
            .insert_header(("Cookie", cookie.clone()))
            .insert_header(("Content-Type", "video/mp4"))
            .send_body(data.clone())
            .await
            .expect("answers");
        read_reply(up).await.assert_status(201);
    }
}
