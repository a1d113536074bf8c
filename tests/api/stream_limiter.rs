//! The StreamLimiter through the HTTP edge: buckets per client, global slots held by the
//! response body, and slots given back by clients that vanish — on local files and on a real
//! Garage, where a vanished client must also end the GET relayed from the store.

use std::time::Duration;

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{Backend, TestApp};
use crate::stream_support::*;

on_both_backends!(
    slots_held_by_idle_readers_come_back_when_they_leave,
    no_slot_leaks_after_a_thousand_aborted_streams,
);

#[actix::test]
async fn burst_then_429_then_refill() {
    let app = TestApp::spawn_with(|c| {
        c.stream_rate = 2.0;
        c.stream_burst = 3.0;
    })
    .await;
    let missing = format!("/videos/{}", uuid::Uuid::new_v4());
    // Every request costs a token, a 404 included.
    for _ in 0..3 {
        get(&app, &missing, &[]).await.assert_error(404, "006");
    }
    let r = get(&app, &missing, &[]).await;
    r.assert_error(429, "010");
    let retry: u64 = header(&r, "retry-after").parse().expect("Retry-After in seconds");
    assert!(retry >= 1, "{retry}");
    assert!(metric(&app, "limiter_rejections_total").await >= 1.0);

    // Other clients have their own buckets: a session, and an address forwarded by a trusted
    // proxy (the test client connects from 127.0.0.1, which is trusted by default).
    let alice = app.register("alice").await;
    get(&app, &missing, &[("X-Session-Id", &alice.session)]).await.assert_error(404, "006");
    get(&app, &missing, &[("X-Forwarded-For", "203.0.113.9")]).await.assert_error(404, "006");
    // A made-up session is no session: it shares the address's empty bucket.
    let fake = "A".repeat(43);
    get(&app, &missing, &[("X-Session-Id", &fake)]).await.assert_error(429, "010");

    tokio::time::sleep(Duration::from_millis(600)).await;
    get(&app, &missing, &[]).await.assert_error(404, "006");
}

async fn open_stream(app: &TestApp, vid: &str) -> TcpStream {
    let mut s = TcpStream::connect(host_of(&app.stream)).await.expect("connect");
    let req = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s
}

async fn slots_held_by_idle_readers_come_back_when_they_leave(backend: Backend) {
    let Some(app) = TestApp::on(backend, |c| c.max_streams = 2).await else { return };
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &fake_mp4(32 << 20)).await;

    // Two clients that ask and never read hold both slots.
    let mut a = open_stream(&app, &vid).await;
    let mut b = open_stream(&app, &vid).await;
    assert!(read_head(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(read_head(&mut b).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric(&app, "active_streams").await, 2.0);
    let r = get(&app, &format!("/videos/{vid}"), &[("Range", "bytes=0-9")]).await;
    r.assert_error(429, "010");
    assert!(header(&r, "retry-after").parse::<u64>().is_ok_and(|s| s >= 1));

    drop(a);
    drop(b);
    eventually("both slots are back", || async { metric(&app, "active_streams").await == 0.0 })
        .await;
    let r = get(&app, &format!("/videos/{vid}"), &[("Range", "bytes=0-9")]).await;
    r.assert_status(206);
}

async fn no_slot_leaks_after_a_thousand_aborted_streams(backend: Backend) {
    let Some(app) = TestApp::on(backend, |c| {
        c.max_streams = 64;
        // Every test client is 127.0.0.1: one client, allowed every slot here.
        c.max_streams_per_client = 64;
        c.stream_rate = 100_000.0;
        c.stream_burst = 100_000.0;
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &fake_mp4(8 << 20)).await;

    let mut aborted = 0;
    for round in 0..50 {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let host = host_of(&app.stream);
            let vid = vid.clone();
            tasks.push(actix_web::rt::spawn(async move {
                let mut s = TcpStream::connect(host).await.expect("connect");
                let req = format!("GET /videos/{vid} HTTP/1.1\r\nHost: x\r\n\r\n");
                s.write_all(req.as_bytes()).await.expect("write");
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                // Gone after the first bytes of the body.
                n > 0 && buf.starts_with(b"HTTP/1.1 200")
            }));
        }
        for t in tasks {
            if t.await.expect("join") {
                aborted += 1;
            }
        }
        assert!(aborted > round * 10, "most streams should start: {aborted} by round {round}");
        // A slot comes back once the node notices its client is gone, which it does on its
        // next write: at once from a file, on the store's next chunk from S3. Leaks are what
        // this counts, not that latency, so each round starts with room for all its streams.
        eventually("room for the next round", || async {
            metric(&app, "active_streams").await <= 44.0
        })
        .await;
    }
    assert!(aborted >= 900, "{aborted} streams started and were aborted");
    eventually("every slot is back", || async { metric(&app, "active_streams").await == 0.0 })
        .await;
    // All 64 slots are usable again.
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut s = open_stream(&app, &vid).await;
        assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    get(&app, &format!("/videos/{vid}"), &[]).await.assert_error(429, "010");
}
