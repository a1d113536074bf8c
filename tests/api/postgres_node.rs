//! A whole node on PostgreSQL (`--database-url postgres://…`), and PostgreSQL going away under
//! it: requests fail (500 `003` or 503 `011`, JSON) only while the server is down, `/healthz`
//! says so, and the node reconnects by itself once it is back — after a clean stop and after
//! a crash (`SIGKILL` of the postmaster).

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::json;

use crate::helpers::{TestApp, TestUser, enc};
use crate::pg_support::Postgres;

async fn node_on(pg: &Postgres) -> TestApp {
    let url = pg.url();
    TestApp::spawn_with(|c| c.database_url = Some(url.parse().expect("any text"))).await
}

/// One request of the loop: when it was sent, when its answer came, and what it was.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    done: Instant,
    status: u16,
    code: Option<String>,
}

/// Reads and writes through every part of the store, over and over, until `stop`: the feed,
/// a video, its comments, a comment post, and a session check.
async fn traffic(app: Rc<TestApp>, user: TestUser, video: String, seen: Arc<Mutex<Vec<Seen>>>) {
    let comments = format!("/videos/{video}/comments");
    for i in 0.. {
        let (method, path, body) = match i % 4 {
            0 => (Method::GET, "/videos?limit=5".to_owned(), None),
            1 => (Method::GET, format!("/user/{}/videos/{video}", enc(&user.name)), None),
            2 => (Method::POST, comments.clone(), Some(json!({"content": format!("c{i}")}))),
            _ => (Method::GET, comments.clone(), None),
        };
        let at = Instant::now();
        let r = app.api(method, &path, Some(&user.session), body).await;
        let code = r.body["error_code"].as_str().map(str::to_owned);
        let done = Instant::now();
        let status = r.status.as_u16();
        seen.lock().expect("not poisoned").push(Seen { at, done, status, code });
        if Arc::strong_count(&seen) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Takes PostgreSQL away with `down` for about two seconds under traffic, brings it back with
/// `up`, and checks what the clients saw.
async fn outage(kill: bool) {
    let Some(mut pg) = Postgres::start().await else { return };
    let app = Rc::new(node_on(&pg).await);
    let alice = app.register("alice").await;
    let video = app.create_video(&alice, "clip").await;
    let mp4 = crate::stream_support::fake_mp4(4096);
    let r = crate::stream_support::upload_body(&app, &alice, &video, "video/mp4", mp4).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let driver = actix_rt::spawn(traffic(app.clone(), alice.clone(), video.clone(), seen.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let down_at = Instant::now();
    if kill {
        pg.kill();
    } else {
        pg.stop().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = app.send(Method::GET, &format!("{}/healthz", app.api), None, None).await;
    assert_eq!(health.status.as_u16(), 503, "{:?}", health.body);
    assert_eq!(
        (health.body["status"].as_str(), health.body["database"].as_str()),
        (Some("down"), Some("down"))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.start_again().await;
    let up_at = Instant::now();
    // A request sent while it was down may wait out the pool's connect timeout (2 s).
    let settled = up_at + Duration::from_secs(3);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all: Vec<Seen> = std::mem::take(&mut *seen.lock().expect("not poisoned"));
    drop(seen);
    driver.await.expect("the traffic loop ends");

    let failed: Vec<&Seen> = all.iter().filter(|s| s.status >= 400).collect();
    for s in &failed {
        assert!(
            matches!((s.status, s.code.as_deref()), (500, Some("003")) | (503, Some("011"))),
            "a failure is the database's, as JSON: {s:?}"
        );
        // In flight at some moment of the outage: sent before it ended (plus the pool's 2 s
        // connect timeout), answered after it began.
        assert!(
            s.done >= down_at && s.at < up_at + Duration::from_secs(2),
            "only while down: sent {:?} after the stop and {:?} before the start, answered {:?} later",
            s.at.saturating_duration_since(down_at),
            up_at.saturating_duration_since(s.at),
            s.done - s.at,
        );
    }
    let during = all.iter().filter(|s| s.at >= down_at && s.at < up_at).count();
    assert!(!failed.is_empty() && during > 0, "requests really met the outage: {all:?}");
    let after: Vec<&Seen> = all.iter().filter(|s| s.at >= settled).collect();
    assert!(after.len() >= 20, "traffic went on after the restart: {}", after.len());
    assert!(after.iter().all(|s| s.status < 400), "all well again: {after:?}");
    let before = all.iter().filter(|s| s.at < down_at).count();
    eprintln!(
        "{} requests: {before} before, {during} while down ({} failed), {} after",
        all.len(),
        failed.len(),
        after.len()
    );

    let health = app.send(Method::GET, &format!("{}/healthz", app.api), None, None).await;
    assert_eq!(health.status.as_u16(), 200, "{:?}", health.body);
    // What was acknowledged before the outage is still there.
    let listed =
        app.api(Method::GET, &format!("/videos/{video}/comments?limit=100"), None, None).await;
    let posted = all.iter().filter(|s| s.status == 201).count();
    let items = listed.assert_status(200)["comments"].as_array().expect("comments").len();
    assert!(items >= posted.min(100), "{items} comments listed, {posted} acknowledged");
}

#[actix::test]
async fn a_stopped_postgres_fails_requests_only_while_it_is_down() {
    outage(false).await;
}

#[actix::test]
async fn a_crashed_postgres_fails_requests_only_while_it_is_down() {
    outage(true).await;
}

/// The API over PostgreSQL end to end: accounts, a video through upload to the feed, comments
/// and deletion — and the rows are in PostgreSQL, not in a SQLite file of the data dir.
#[actix::test]
async fn the_api_runs_on_postgres() {
    let Some(pg) = Postgres::start().await else { return };
    let app = node_on(&pg).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let taken = app
        .api(Method::POST, "/user", None, Some(json!({"user_name": "ALICE", "pwd": "password1"})))
        .await;
    taken.assert_error(409, "007");
    let video = app.create_video(&alice, "clip").await;
    let mp4 = crate::stream_support::fake_mp4(64 << 10);
    let r = crate::stream_support::upload_body(&app, &alice, &video, "video/mp4", mp4).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let feed = app.api(Method::GET, "/videos?limit=5", None, None).await;
    assert_eq!(feed.assert_status(200)["videos"][0]["id"].as_str(), Some(video.as_str()));
    let comments = format!("/videos/{video}/comments");
    let body = Some(json!({"content": "nice"}));
    app.api(Method::POST, &comments, Some(&bob.session), body).await.assert_status(201);
    assert_eq!(pg.psql("SELECT count(*) FROM comments"), "1");
    assert_eq!(pg.psql("SELECT state FROM videos"), "ready");
    assert!(!app.data_dir().join("douyin.sqlite3").exists(), "no SQLite file beside it");

    let path = format!("/user/alice/videos/{video}");
    app.api(Method::DELETE, &path, Some(&alice.session), None).await.assert_status(204);
    let feed = app.api(Method::GET, "/videos?limit=5", None, None).await;
    assert_eq!(feed.assert_status(200)["videos"].as_array().map(Vec::len), Some(0));
    app.api(Method::DELETE, "/user/bob", Some(&bob.session), None).await.assert_status(204);
    let r = app.api(Method::POST, &comments, Some(&bob.session), Some(json!({"content": "x"})));
    r.await.assert_error(401, "002");
}

/// Connections that sat idle in the pool while PostgreSQL restarted are dead; the first
/// requests after the restart still succeed (a dead connection is opened again by its first
/// statement), rather than each stale connection failing one request.
#[actix::test]
async fn requests_after_a_restart_succeed_on_connections_that_idled_through_it() {
    let Some(mut pg) = Postgres::start().await else { return };
    let app = node_on(&pg).await;
    let alice = app.register("alice").await;
    let burst = || {
        futures_util::future::join_all(
            (0..16).map(|_| app.api(Method::GET, "/user/alice", Some(&alice.session), None)),
        )
    };
    // Every pooled connection opened and put back.
    for r in burst().await {
        r.assert_status(200);
    }
    pg.restart().await;
    for r in burst().await {
        r.assert_status(200);
    }
}
