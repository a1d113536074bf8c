//! The stream port's playback front (`src/stream/front`): it answers `GET`/`HEAD /videos/:id`
//! itself with `sendfile(2)` and hands every other request to actix-web. Shown here over raw
//! sockets: its answers are actix-web's header for header (a second node on the same data dir
//! with `--blob-read pread` serves the same routes with actix-web alone), and its connection
//! handling —
//! pipelining, HTTP/1.0, half-closed clients, head and keep-alive timeouts, the hand-off
//! mid-connection, heads too large or malformed — is what actix-http's is. The playback matrix,
//! the limiter and the slow-reader tests run against it too: it is the default.

use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use douyin_club::Node;
use douyin_club::config::{BlobRead, Role};

use crate::helpers::{TestApp, read_reply, test_config};
use crate::stream_support::*;

/// One response read off a raw connection.
#[derive(PartialEq, Eq)]
struct Raw {
    /// The status line, e.g. `HTTP/1.1 206 Partial Content`.
    line: String,
    /// Header lines but `date`, sorted (actix-http writes them in hash order).
    headers: Vec<String>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = format!("{} bytes, sha256 {}", self.body.len(), sha256_hex(&self.body));
        f.debug_struct("Raw")
            .field("line", &self.line)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers.iter().find_map(|h| h.strip_prefix(&prefix))
    }
}

/// Reads one response; its body by `content-length` (none for HEAD and 304).
async fn read_response(r: &mut BufReader<TcpStream>, head_request: bool) -> Raw {
    let mut line = String::new();
    let within = Duration::from_secs(10);
    let read = tokio::time::timeout(within, r.read_line(&mut line)).await.expect("in time");
    assert!(read.expect("read") > 0, "the connection closed before a response");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        tokio::time::timeout(within, r.read_line(&mut h)).await.expect("in time").expect("read");
        let h = h.trim_end_matches("\r\n").to_owned();
        if h.is_empty() {
            break;
        }
        let name = h.split(':').next().unwrap_or("");
        assert_eq!(name, name.to_lowercase(), "header names go out in lower case");
        if !h.starts_with("date: ") {
            headers.push(h);
        }
    }
    headers.sort();
    let raw = Raw { line: line.trim_end().to_owned(), headers, body: Vec::new() };
    let len: usize = raw.header("content-length").map_or(0, |l| l.parse().expect("a length"));
    let mut body = vec![0; if head_request || raw.line.contains(" 304 ") { 0 } else { len }];
    tokio::time::timeout(within, r.read_exact(&mut body)).await.expect("in time").expect("body");
    Raw { body, ..raw }
}

async fn connect(url: &str) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(host_of(url)).await.expect("connect"))
}

/// Sends `request` on a fresh connection to `url` and reads the answer.
async fn exchange(url: &str, request: &str) -> Raw {
    let mut c = connect(url).await;
    c.get_mut().write_all(request.as_bytes()).await.expect("write");
    read_response(&mut c, request.starts_with("HEAD ")).await
}

/// Whether the server closes `c` within `within` without sending anything more.
async fn closes_quietly(c: &mut BufReader<TcpStream>, within: Duration) -> bool {
    let mut rest = Vec::new();
    match tokio::time::timeout(within, c.read_to_end(&mut rest)).await {
        Ok(_) => rest.is_empty(),
        Err(_) => false,
    }
}

/// The front's answers so far, over all statuses.
async fn front_answers(app: &TestApp) -> f64 {
    let r = app.client.get(format!("{}/metrics", app.stream)).send().await;
    let raw = read_reply(r.expect("metrics")).await.raw;
    String::from_utf8_lossy(&raw)
        .lines()
        .filter(|l| l.starts_with("douyin_stream_front_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A stream node on `app`'s data dir that plays with actix-web alone: the reference.
async fn actix_twin(app: &TestApp) -> Node {
    let mut cfg = test_config(app.data_dir());
    // The same database: the data dir's SQLite file, or the suite's PostgreSQL one.
    cfg.database_url = app.database_url.as_ref().map(|url| url.parse().expect("any text"));
    cfg.role = Role::Stream;
    cfg.blob_read = BlobRead::Pread;
    let mut node = Node::start(cfg).await.expect("the twin starts");
    node.spawn();
    node
}

#[actix_web::test]
async fn the_fronts_answers_are_actix_webs_header_for_header() {
    let app = TestApp::spawn().await;
    let twin = actix_twin(&app).await;
    let actix_url = twin.urls.stream.clone();
    let alice = app.register("alice").await;
    let data = fake_mp4(5000);
    let vid = ready_video(&app, &alice, &data).await;
    let pending = app.create_video(&alice, "pending").await;
    let etag = etag_of(&data);
    let modified =
        header(&get(&app, &format!("/videos/{vid}"), &[]).await, "last-modified").to_owned();
    let unknown = "0190f6c1-7b36-7cc0-9e33-8d1e0b1a2f3c";
    let v = |extra: &str| format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    let requests = [
        v(""),
        v("Range: bytes=0-99\r\n"),
        v("Range: bytes=-10\r\n"),
        v("Range: bytes=4990-9000\r\n"),
        v("Range: bytes=5000-6000\r\n"),
        v("Range: bytes=abc\r\n"),
        v("Range: bytes=0-1,5-6\r\n"),
        v(&format!("If-None-Match: {etag}\r\n")),
        v(&format!("If-Modified-Since: {modified}\r\n")),
        v("If-Match: \"nope\"\r\n"),
        v("If-Unmodified-Since: Mon, 01 Jan 2001 00:00:00 GMT\r\n"),
        v("If-Range: \"old\"\r\nRange: bytes=0-9\r\n"),
        v(&format!("If-Range: {etag}\r\nRange: bytes=10-19\r\n")),
        v("Connection: close\r\n"),
        format!("GET /videos/{vid}?t=3 HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("HEAD /videos/{vid} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"),
        format!("GET /videos/{vid} HTTP/1.0\r\nRange: bytes=1-2\r\n\r\n"),
        format!("GET /videos/{vid} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        format!("GET /videos/{pending} HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET /videos/{unknown} HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("HEAD /videos/{unknown} HTTP/1.1\r\nHost: x\r\n\r\n"),
        "GET /videos/not-a-video-id HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nX-Session-Id: {}\r\n\r\n", alice.session),
        format!(
            "GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nCookie: session={}\r\n\r\n",
            alice.session
        ),
    ];
    // Not the front's: actix-http refuses these (400), on either port.
    let refused = [
        format!("GET /videos/{vid} HTTP/1.1\r\n\r\n"),
        format!("GET /videos/{vid} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        format!("GET /videos/{vid}?q=\"{{}}\" HTTP/1.1\r\nHost: a\r\n\r\n"),
    ];
    let before = front_answers(&app).await;
    for request in &requests {
        let front = exchange(&app.stream, request).await;
        let actix = exchange(&actix_url, request).await;
        assert_eq!(front, actix, "{request}");
        // The public origin plays through the same front.
        assert_eq!(exchange(&app.web, request).await, front, "{request}");
    }
    // Each request above, once through the stream port and once through the web origin. The
    // count goes up once the answer is out, which may be after the client has read it.
    let answered = 2.0 * requests.len() as f64;
    eventually("every request above counted as the front's", || async {
        front_answers(&app).await - before == answered
    })
    .await;
    for request in &refused {
        let front = exchange(&app.stream, request).await;
        assert_eq!(front.line, "HTTP/1.1 400 Bad Request", "{request}");
        assert_eq!(front, exchange(&actix_url, request).await, "{request}");
    }
    assert_eq!(front_answers(&app).await - before, answered, "those went to actix-web");
    // And they are right, not merely alike.
    let r = exchange(&app.stream, &v("Range: bytes=4990-9000\r\n")).await;
    assert_eq!(r.line, "HTTP/1.1 206 Partial Content");
    assert_eq!(r.header("content-range"), Some("bytes 4990-4999/5000"));
    assert_eq!(r.body, data[4990..]);
    let r =
        exchange(&app.stream, &format!("GET /videos/{unknown} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(r.line, "HTTP/1.1 404 Not Found");
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[actix_web::test]
async fn pipelined_requests_are_answered_in_order() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let data = fake_mp4(300_000);
    let vid = ready_video(&app, &alice, &data).await;
    let mut c = connect(&app.stream).await;
    let mut all = String::new();
    for range in ["0-99", "200000-299999", "5-5"] {
        all += &format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nRange: bytes={range}\r\n\r\n");
        all += &format!("HEAD /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    // One write: the requests arrive together, and the answers must come back in order.
    c.get_mut().write_all(all.as_bytes()).await.expect("write");
    for (first, last) in [(0, 99), (200_000, 299_999), (5, 5)] {
        let r = read_response(&mut c, false).await;
        assert_eq!(r.line, "HTTP/1.1 206 Partial Content");
        assert_eq!(r.body, data[first..=last]);
        let h = read_response(&mut c, true).await;
        assert_eq!(h.line, "HTTP/1.1 200 OK");
        assert_eq!(h.header("content-length"), Some("300000"));
    }
}

#[actix_web::test]
async fn http_1_0_closes_unless_kept_alive_and_a_half_closed_client_gets_its_answer() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let data = fake_mp4(70_000);
    let vid = ready_video(&app, &alice, &data).await;

    let mut c = connect(&app.stream).await;
    c.get_mut().write_all(format!("GET /videos/{vid} HTTP/1.0\r\n\r\n").as_bytes()).await.unwrap();
    let r = read_response(&mut c, false).await;
    assert_eq!((r.line.as_str(), &r.body[..]), ("HTTP/1.0 200 OK", &data[..]));
    assert_eq!(r.header("connection"), None);
    assert!(closes_quietly(&mut c, Duration::from_secs(2)).await, "HTTP/1.0 closes");

    let mut c = connect(&app.stream).await;
    let keep = format!("GET /videos/{vid} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    for _ in 0..2 {
        c.get_mut().write_all(keep.as_bytes()).await.unwrap();
        let r = read_response(&mut c, false).await;
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.body, data);
    }

    // The client sends its request and closes its side: the answer still comes, whole.
    let mut c = connect(&app.stream).await;
    let req = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nRange: bytes=100-60099\r\n\r\n");
    c.get_mut().write_all(req.as_bytes()).await.unwrap();
    c.get_mut().shutdown().await.unwrap();
    let r = read_response(&mut c, false).await;
    assert_eq!(r.body, data[100..60_100]);
    assert!(closes_quietly(&mut c, Duration::from_secs(2)).await);
}

#[actix_web::test]
async fn slow_heads_get_408_and_idle_connections_close_after_the_keep_alive() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &fake_mp4(100)).await;
    let partial = async {
        let mut c = connect(&app.stream).await;
        let t = Instant::now();
        c.get_mut()
            .write_all(format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nRange: by").as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut c, false).await;
        (r.line, t.elapsed())
    };
    // A byte every 200 ms keeps the connection busy but never ends the head.
    let trickle = async {
        let mut c = connect(&app.stream).await;
        let t = Instant::now();
        let head = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nX-Pad: {}", "y".repeat(100));
        for b in head.bytes() {
            if c.get_mut().write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if t.elapsed() > Duration::from_secs(7) {
                break;
            }
        }
        let r = read_response(&mut c, false).await;
        (r.line, t.elapsed())
    };
    let silent = async {
        let mut c = connect(&app.stream).await;
        let t = Instant::now();
        let r = read_response(&mut c, false).await;
        (r.line, t.elapsed())
    };
    let idle = async {
        let mut c = connect(&app.stream).await;
        c.get_mut()
            .write_all(format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        read_response(&mut c, false).await;
        let t = Instant::now();
        assert!(closes_quietly(&mut c, Duration::from_secs(8)).await, "closed without a word");
        t.elapsed()
    };
    let (partial, trickle, silent, idle) = tokio::join!(partial, trickle, silent, idle);
    for (what, (line, took)) in [("partial", partial), ("trickle", trickle), ("silent", silent)] {
        assert_eq!(line, "HTTP/1.1 408 Request Timeout", "{what}");
        assert!(
            took >= Duration::from_millis(4900) && took < Duration::from_secs(7),
            "{what}: {took:?}"
        );
    }
    assert!(idle >= Duration::from_millis(4900) && idle < Duration::from_secs(7), "idle: {idle:?}");
}

#[actix_web::test]
async fn other_requests_go_to_actix_web_mid_connection_with_every_byte() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let data = fake_mp4(20_000);
    let vid = ready_video(&app, &alice, &data).await;
    let second = app.create_video(&alice, "second").await;
    let other = fake_mp4(9_000);

    // Playback (the front), an upload (actix-web), playback again (now actix-web's), all on
    // one connection, the upload's head and body in the same write as the playback before it.
    let mut c = connect(&app.stream).await;
    let mut burst =
        format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n").into_bytes();
    burst.extend_from_slice(
        format!(
            "POST /upload/{second} HTTP/1.1\r\nHost: x\r\nX-Session-Id: {}\r\nContent-Type: video/mp4\r\n\
             Content-Length: {}\r\n\r\n",
            alice.session,
            other.len()
        )
        .as_bytes(),
    );
    burst.extend_from_slice(&other);
    c.get_mut().write_all(&burst).await.unwrap();
    let r = read_response(&mut c, false).await;
    assert_eq!((r.line.as_str(), &r.body[..]), ("HTTP/1.1 206 Partial Content", &data[..10]));
    let r = read_response(&mut c, false).await;
    assert_eq!(r.line, "HTTP/1.1 201 Created", "{}", String::from_utf8_lossy(&r.body));
    c.get_mut()
        .write_all(format!("GET /videos/{second} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut c, false).await.body, other);

    // What the front does not read is actix-http's to refuse, as before.
    // A head longer than the front reads (32 KiB) is actix-http's, which refuses it when it
    // cannot parse it from what it has read (it takes a 100 KB head that comes in one go).
    let before = front_answers(&app).await;
    let huge = format!(
        "GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(1_000_000)
    );
    assert_eq!(
        exchange(&app.stream, &huge).await.line,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(front_answers(&app).await, before, "not the front's");
    let bad = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n");
    assert_eq!(exchange(&app.stream, &bad).await.line, "HTTP/1.1 400 Bad Request");
    let escaped = exchange(&app.stream, "GET /videos/%2e%2e HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(escaped.line, "HTTP/1.1 400 Bad Request");
    let r =
        exchange(&app.stream, &format!("DELETE /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(r.line, "HTTP/1.1 405 Method Not Allowed");
    // The video is untouched by all of it.
    assert_eq!(get(&app, &format!("/videos/{vid}"), &[]).await.raw, data);
}

/// A raw upload's head and `body`, with a declared length of `length`.
fn upload_request(vid: &str, extra: &str, length: usize, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /upload/{vid} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {length}\r\n\r\n"
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends raw bytes on a fresh connection and reads one answer.
async fn exchange_bytes(url: &str, request: &[u8]) -> Raw {
    let mut c = connect(url).await;
    c.get_mut().write_all(request).await.expect("write");
    read_response(&mut c, false).await
}

#[actix_web::test]
async fn the_fronts_upload_answers_are_actix_webs_and_its_uploads_play() {
    let app = TestApp::spawn().await;
    let twin = actix_twin(&app).await;
    let actix_url = twin.urls.stream.clone();
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let vid = app.create_video(&alice, "clip").await;
    let data = fake_mp4(300_000);
    let alices = format!("X-Session-Id: {}\r\nContent-Type: video/mp4\r\n", alice.session);
    let bobs = format!("X-Session-Id: {}\r\nContent-Type: video/mp4\r\n", bob.session);
    let cookie = format!(
        "Cookie: session={}\r\nOrigin: http://evil.example\r\nContent-Type: video/mp4\r\n",
        alice.session
    );
    let unknown = "0190f6c1-7b36-7cc0-9e33-8d1e0b1a2f3c";
    let refusals = [
        upload_request(&vid, "Content-Type: video/mp4\r\n", 10, b"0123456789"),
        upload_request(&vid, &bobs, 10, b"0123456789"),
        upload_request(&vid, &cookie, 10, b"0123456789"),
        upload_request(unknown, &alices, 10, b"0123456789"),
        upload_request("not-an-id", &alices, 10, b"0123456789"),
        upload_request(
            &vid,
            &format!("X-Session-Id: {}\r\nContent-Type: text/plain\r\n", alice.session),
            4,
            b"text",
        ),
        upload_request(&vid, &alices, 100_000_000_000, b""),
        upload_request(&vid, &alices, 4000, &b"not a video at all "[..].repeat(220)[..4000]),
    ];
    let before = front_answers(&app).await;
    // Whether actix-http keeps such a connection depends on whether it had decoded the body by
    // the time the answer was ready (a refusal before a database round trip closes, one after
    // it does not). The front closes every connection whose body the upload did not take.
    let without_connection = |mut r: Raw| {
        r.headers.retain(|h| !h.starts_with("connection: "));
        r
    };
    for request in &refusals {
        let front = exchange_bytes(&app.stream, request).await;
        let actix = exchange_bytes(&actix_url, request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(300)]).into_owned();
        assert_eq!(front.header("connection"), Some("close"), "{shown}");
        assert_eq!(without_connection(front), without_connection(actix), "{shown}");
    }
    eventually("the refusals counted as the front's", || async {
        front_answers(&app).await - before == refusals.len() as f64
    })
    .await;

    // Through the front, with `Expect: 100-continue` as curl sends it: 100, then 201.
    let mut c = connect(&app.stream).await;
    let head = upload_request(&vid, &format!("{alices}Expect: 100-continue\r\n"), data.len(), b"");
    c.get_mut().write_all(&head).await.unwrap();
    let mut line = String::new();
    c.read_line(&mut line).await.unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    c.read_line(&mut line).await.unwrap();
    c.get_mut().write_all(&data).await.unwrap();
    let created = read_response(&mut c, false).await;
    assert_eq!(created.line, "HTTP/1.1 201 Created", "{}", String::from_utf8_lossy(&created.body));
    // The connection carries on: the video plays on it, byte for byte.
    let again = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n");
    c.get_mut().write_all(again.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut c, false).await.body, data);
    // A second upload is refused alike by both.
    let twice = upload_request(&vid, &alices, 10, b"0123456789");
    let front = exchange_bytes(&app.stream, &twice).await;
    assert_eq!(front.line, "HTTP/1.1 409 Conflict");
    let actix = exchange_bytes(&actix_url, &twice).await;
    assert_eq!(without_connection(front), without_connection(actix));
}
