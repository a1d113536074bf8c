//! Sessions in a real Redis (`--redis-url`), the database kept as the truth: read from Redis,
//! logged out from both, and a Redis that dies, comes back from an old append-only file, or
//! hangs never costs a 5xx, a hung request or a logout.

use std::time::{Duration, Instant};

use awc::http::Method;

use crate::helpers::{TestApp, TestUser};
use crate::redis_support::Redis;
use crate::stream_support::sha256_hex;

async fn app_on(redis: &Redis) -> TestApp {
    let url = redis.url();
    TestApp::spawn_with(move |c| c.redis_url = Some(url.parse().expect("any text"))).await
}

fn key(user: &TestUser) -> String {
    format!("douyin:session:{}", sha256_hex(user.session.as_bytes()))
}

async fn me(app: &TestApp, user: &TestUser) -> u16 {
    let path = format!("/user/{}", user.name);
    app.api(Method::GET, &path, Some(&user.session), None).await.status.as_u16()
}

async fn health(app: &TestApp) -> (u16, serde_json::Value) {
    let r = app.client.get(format!("{}/healthz", app.api)).send().await.expect("healthz");
    let r = crate::helpers::read_reply(r).await;
    (r.status.as_u16(), r.body)
}

/// `douyin_redis_errors_total` on the api's `/metrics`.
async fn redis_errors(app: &TestApp) -> f64 {
    let r = app.client.get(format!("{}/metrics", app.api)).send().await.expect("metrics");
    let raw = crate::helpers::read_reply(r).await.raw;
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines()
        .find(|l| l.starts_with("douyin_redis_errors_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no douyin_redis_errors_total in:\n{text}"))
}

#[actix::test]
async fn a_node_reads_sessions_from_redis_and_a_logout_leaves_neither_copy() {
    let Some(redis) = Redis::start().await else { return };
    let a = app_on(&redis).await;
    // B has a database of its own that never saw the session: it can only know it from Redis.
    let b = app_on(&redis).await;
    // Both connected (each node starts a new epoch when it first connects, which retires what
    // was written before: here, nothing yet).
    assert_eq!(health(&a).await.1["redis"], "ok");
    assert_eq!(health(&b).await.1["redis"], "ok");
    let alice = a.register("alice").await;
    assert!(redis.cli(&["EXISTS", &key(&alice)]).is_some_and(|n| n == "1"), "written to Redis");
    let path = format!("/user/{}", alice.name);
    let r = b.api(Method::GET, &path, Some(&alice.session), None).await;
    // B finds the session (in Redis), then the user is not in its database: 403 or 404 would
    // both prove the session resolved; what it must not be is 401.
    assert_ne!(r.status.as_u16(), 401, "B resolved the session from Redis: {:?}", r.body);
    assert_eq!(health(&a).await.1["redis"], "ok");

    a.api(Method::DELETE, &path, Some(&alice.session), None).await.assert_status(204);
    assert!(redis.cli(&["EXISTS", &key(&alice)]).is_some_and(|n| n == "0"), "gone from Redis");
    b.api(Method::GET, &path, Some(&alice.session), None).await.assert_error(401, "002");
    assert_eq!(me(&a, &alice).await, 401);
}

#[actix::test]
async fn redis_dying_and_coming_back_from_an_old_file_costs_no_5xx_and_no_logout() {
    let Some(mut redis) = Redis::start().await else { return };
    let app = app_on(&redis).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    assert_eq!(me(&app, &alice).await, 200);
    assert_eq!(me(&app, &bob).await, 200);
    let errors_before = redis_errors(&app).await;

    redis.kill();
    // Every request answered from the database; health degraded, not down.
    for _ in 0..20 {
        assert_eq!(me(&app, &alice).await, 200);
    }
    let (status, body) = health(&app).await;
    assert_eq!((status, body["redis"].as_str()), (200, Some("down")), "{body}");
    assert!(redis_errors(&app).await > errors_before, "failures are counted");
    // A logout while Redis is away: only the database can take it.
    let path = format!("/user/{}", bob.name);
    app.api(Method::DELETE, &path, Some(&bob.session), None).await.assert_status(204);
    assert_eq!(me(&app, &bob).await, 401);

    // Back, from its append-only file, which still holds bob's session.
    redis.restart().await;
    assert!(redis.cli(&["EXISTS", &key(&bob)]).is_some_and(|n| n == "1"), "the old entry is back");
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&app).await.1["redis"] != "ok" {
        assert!(Instant::now() < deadline, "the node uses Redis again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(me(&app, &bob).await, 401, "the logout made while Redis was away holds");
        assert_eq!(me(&app, &alice).await, 200);
    }
    // And Redis is used again: alice's session is written back under the new epoch.
    let entry = redis.cli(&["GET", &key(&alice)]).unwrap_or_default();
    let epoch = redis.cli(&["GET", "douyin:epoch"]).unwrap_or_default();
    assert!(!epoch.is_empty() && entry.starts_with(&format!("{epoch}|")), "{entry} / {epoch}");
}

#[actix::test]
async fn a_hung_redis_does_not_hang_requests() {
    let Some(redis) = Redis::start().await else { return };
    let app = app_on(&redis).await;
    let alice = app.register("alice").await;
    assert_eq!(me(&app, &alice).await, 200);

    redis.hang();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(me(&app, &alice).await, 200);
        slowest = slowest.max(started.elapsed());
    }
    let (status, body) = health(&app).await;
    redis.resume();
    assert_eq!((status, body["redis"].as_str()), (200, Some("down")), "{body}");
    // One command's timeout (250 ms), at most a reconnect's, then the database.
    assert!(slowest < Duration::from_millis(1500), "a request took {slowest:?}");

    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&app).await.1["redis"] != "ok" {
        assert!(Instant::now() < deadline, "the node uses Redis again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(me(&app, &alice).await, 200);
}

#[actix::test]
async fn a_bad_redis_url_is_named_at_start_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::process_support::command(&[("DOUYIN_REDIS_URL", "http://user:hunter2@x")])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--redis-url"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let help = crate::process_support::command(&[("DOUYIN_REDIS_URL", "redis://:hunter2@x/0")])
        .arg("--help")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"));
}

#[actix::test]
async fn one_clients_bucket_is_shared_by_every_stream_node() {
    let Some(mut redis) = Redis::start().await else { return };
    let url = redis.url();
    let tweak = |url: String| {
        move |c: &mut douyin_club::Config| {
            c.redis_url = Some(url.parse().expect("any text"));
            // Four tokens and (practically) no refill: the fifth request anywhere is refused.
            c.stream_rate = 0.001;
            c.stream_burst = 4.0;
        }
    };
    let a = TestApp::spawn_with(tweak(url.clone())).await;
    let b = TestApp::spawn_with(tweak(url)).await;
    let path = format!("/videos/{}", actors::model::VideoId::new());
    let status = |app: &TestApp| {
        let req = app.client.get(format!("{}{path}", app.stream));
        async move { req.send().await.expect("the stream answers").status().as_u16() }
    };
    // Every request costs a token, a 404 included: two on each node take the four.
    let taken = [status(&a).await, status(&b).await, status(&a).await, status(&b).await];
    assert_eq!(taken, [404; 4]);
    assert_eq!(status(&a).await, 429, "the bucket the client emptied on both nodes");
    assert_eq!(status(&b).await, 429);

    // Redis away: each node's own bucket decides (full again: it never saw a request), no 5xx.
    redis.kill();
    assert_eq!(status(&a).await, 404);
    assert_eq!(status(&b).await, 404);
}
