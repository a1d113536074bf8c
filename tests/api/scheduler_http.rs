//! The scheduler's internal REST API and the api → scheduler deletion path, over real sockets.

use std::time::Duration;

use actix_web::http::Method;
use actors::model::{UserId, VideoId};
use actors::store::EnqueueDeletion;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, TestUser, enc};
use crate::scheduler_support::{assert_gone, eventually, make_ready, remnants};

impl TestApp {
    async fn internal(&self, method: Method, path: &str, token: Option<&str>) -> Reply {
        let url = format!("{}{}", self.scheduler, path);
        let auth = token.map(|t| ("Authorization", format!("Bearer {t}")));
        self.send(method, &url, auth, None).await
    }

    async fn listing(&self) -> Vec<Value> {
        let token = self.node.internal_token.to_string();
        let r = self.internal(Method::GET, "/video-delete-record", Some(&token)).await;
        r.assert_status(200)["pending"].as_array().expect("a pending array").clone()
    }

    /// A ready video of `user` with a file on disk, as an upload leaves it.
    async fn ready_video(&self, user: &TestUser) -> VideoId {
        let id: VideoId = self.create_video(user, "clip").await.parse().expect("a video id");
        let r = self
            .api(Method::GET, &format!("/user/{}", enc(&user.name)), Some(&user.session), None)
            .await;
        let owner = UserId(r.assert_status(200)["id"].as_i64().expect("an id"));
        let store = self.node.store().expect("this node opens the store");
        make_ready(&store, &self.node.blobs().expect("and the files"), owner, id).await;
        id
    }
}

#[actix_web::test]
async fn the_internal_api_requires_the_token() {
    let app = TestApp::spawn().await;
    let vid = VideoId::new().to_string();
    app.internal(Method::GET, "/video-delete-record", None).await.assert_error(401, "002");
    app.internal(Method::GET, "/video-delete-record", Some("wrong")).await.assert_error(401, "002");
    let path = format!("/video-delete-record/{vid}");
    app.internal(Method::POST, &path, None).await.assert_error(401, "002");
    let almost = format!("{}x", app.node.internal_token);
    app.internal(Method::POST, &path, Some(&almost)).await.assert_error(401, "002");
    // Basic auth with the token as password is not the bearer scheme.
    let basic = ("Authorization", format!("Basic {}", app.node.internal_token));
    let url = format!("{}/video-delete-record", app.scheduler);
    app.send(Method::GET, &url, Some(basic), None).await.assert_error(401, "002");
    assert_eq!(app.listing().await, Vec::<Value>::new());

    // The queue is internal: no public service serves it, token or not.
    let bearer = ("Authorization", format!("Bearer {}", app.node.internal_token));
    for base in [&app.api, &app.stream, &app.web] {
        let url = format!("{base}/video-delete-record");
        app.send(Method::GET, &url, Some(bearer.clone()), None).await.assert_error(404, "006");
    }
}

#[actix_web::test]
async fn the_job_listing_needs_the_token_and_filters_by_kind() {
    let app = TestApp::spawn().await;
    let token = app.node.internal_token.to_string();
    app.internal(Method::GET, "/jobs", None).await.assert_error(401, "002");
    app.internal(Method::GET, "/jobs?kind=nope", Some(&token)).await.assert_error(400, "001");
    if !crate::media_support::have_ffmpeg() {
        return;
    }
    // A probe that gives up stays listed for good: a file that only looks like a video.
    let user = app.register("lister").await;
    let data = crate::stream_support::fake_mp4(4096);
    let vid = crate::stream_support::ready_video(&app, &user, &data).await;
    let jobs = |query: &'static str| {
        let (app, token) = (&app, token.clone());
        async move {
            let r = app.internal(Method::GET, &format!("/jobs{query}"), Some(&token)).await;
            r.assert_status(200)["jobs"].as_array().expect("a jobs array").clone()
        }
    };
    let gave_up = eventually(Duration::from_secs(20), || async {
        jobs("?kind=probe_video").await.iter().any(|j| j["video_id"] == vid && j["failed"] == true)
    });
    assert!(gave_up.await, "the probe job is listed, given up");
    let all = jobs("").await;
    assert!(all.iter().any(|j| j["video_id"] == vid && j["kind"] == "probe_video"), "{all:?}");
    let removals = jobs("?kind=remove_video").await;
    assert!(removals.iter().all(|j| j["kind"] == "remove_video"), "{removals:?}");
    assert!(!removals.iter().any(|j| j["video_id"] == vid), "{removals:?}");
    assert!(app.listing().await.iter().all(|j| j["video_id"] != vid), "not a deletion");
}

#[cfg(unix)]
#[actix_web::test]
async fn the_generated_token_is_private_and_stable() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = TestApp::spawn().await;
    let file = app.data_dir().join("internal.token");
    let mode = std::fs::metadata(&file).expect("the token file exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored = std::fs::read_to_string(&file).expect("readable");
    assert_eq!(stored.trim(), &*app.node.internal_token);
}

#[actix_web::test]
async fn queueing_is_idempotent_and_the_listing_shows_attempts_and_errors() {
    let app = TestApp::spawn().await;
    let token = app.node.internal_token.to_string();
    let user = app.register("alice").await;
    let video = app.ready_video(&user).await;
    // Make the removal fail for real (see scheduler_actors::obstruct) so the record stays.
    let path = app.node.blobs().expect("files").path_of(video);
    std::fs::remove_file(&path).expect("the file was there");
    std::fs::create_dir_all(path.join("in-the-way")).expect("a directory in its place");

    let url = format!("/video-delete-record/{video}");
    for _ in 0..2 {
        let r = app.internal(Method::POST, &url, Some(&token)).await;
        assert_eq!(r.assert_status(202), &json!({"video_id": video.to_string(), "queued": true}));
    }
    app.internal(Method::POST, "/video-delete-record/NOT-A-UUID", Some(&token))
        .await
        .assert_error(400, "001");
    let get = format!("/user/alice/videos/{video}");
    app.api(Method::GET, &get, Some(&user.session), None).await.assert_error(404, "006");

    // The wake ran the executor at once; its failure is what the listing shows.
    let tried = eventually(Duration::from_secs(5), || async {
        app.listing().await.first().is_some_and(|e| e["attempts"].as_u64() >= Some(1))
    })
    .await;
    let list = app.listing().await;
    assert!(tried, "{list:?}");
    assert_eq!(list.len(), 1, "queued once: {list:?}");
    let entry = &list[0];
    assert_eq!(entry["video_id"], video.to_string());
    assert_eq!(entry["failed"], false);
    let next = entry["next_attempt_at"].as_str().expect("a time");
    assert!(
        time::OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339).is_ok(),
        "{next}"
    );
    assert!(
        entry["last_error"].as_str().is_some_and(|e| e.contains("removing the file")),
        "{entry}"
    );
}

#[actix_web::test]
async fn an_api_delete_hides_at_once_and_removes_file_and_comments_soon() {
    let app = TestApp::spawn_with(|c| c.delete_every_secs = 1).await;
    let user = app.register("bob").await;
    let video = app.ready_video(&user).await;
    let comments = format!("/videos/{video}/comments");
    for text in ["first", "second"] {
        let body = json!({ "content": text });
        app.api(Method::POST, &comments, Some(&user.session), Some(body)).await.assert_status(201);
    }

    let path = format!("/user/bob/videos/{video}");
    let r = app.api(Method::DELETE, &path, Some(&user.session), None).await;
    r.assert_status(204);
    assert!(r.raw.is_empty(), "204 has no body");
    app.api(Method::GET, &path, Some(&user.session), None).await.assert_error(404, "006");
    app.api(Method::GET, &comments, None, None).await.assert_error(404, "006");
    let feed = app.api(Method::GET, "/user/bob/videos", Some(&user.session), None).await;
    assert_eq!(feed.assert_status(200)["videos"], json!([]));

    let store = app.node.store().expect("store");
    let blobs = app.node.blobs().expect("files");
    let removed = eventually(Duration::from_secs(4), || {
        let store = store.clone();
        async move { remnants(&store, video).await == Default::default() }
    })
    .await;
    assert!(removed, "removed within a few timer periods");
    assert_gone(&store, &blobs, video).await;
}

#[actix_web::test]
async fn the_timer_drains_records_nobody_woke_the_scheduler_for() {
    let app = TestApp::spawn_with(|c| c.delete_every_secs = 1).await;
    let user = app.register("carol").await;
    let video = app.ready_video(&user).await;
    let store = app.node.store().expect("store");
    // Queued straight in the database, as another process without a scheduler would.
    store.send(EnqueueDeletion { video }).await.expect("reachable").expect("queued");
    assert!(remnants(&store, video).await.record);
    let removed = eventually(Duration::from_secs(5), || {
        let store = store.clone();
        async move { !remnants(&store, video).await.record }
    })
    .await;
    assert!(removed, "the timer's tick picked it up");
    assert_gone(&store, &app.node.blobs().expect("files"), video).await;
}

#[actix_web::test]
async fn an_api_without_a_scheduler_wakes_the_remote_one_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The scheduler alone, whose timer will not fire during the test: only a wake runs it.
    let mut sched_cfg = crate::helpers::test_config(dir.path().to_path_buf());
    sched_cfg.role = douyin_club::config::Role::Scheduler;
    sched_cfg.delete_every_secs = 3600;
    let mut scheduler = douyin_club::Node::start(sched_cfg).await.expect("the scheduler starts");
    scheduler.spawn();
    // The api alone on the same data dir, told where the scheduler is.
    let mut api_cfg = crate::helpers::test_config(dir.path().to_path_buf());
    api_cfg.role = douyin_club::config::Role::Api;
    api_cfg.scheduler_url = Some(scheduler.urls.scheduler.clone());
    crate::helpers::pin_sqlite(&mut api_cfg);
    let app = TestApp::spawn_config(api_cfg, dir).await;

    let user = app.register("dave").await;
    let video = app.ready_video(&user).await;
    let path = format!("/user/dave/videos/{video}");
    app.api(Method::DELETE, &path, Some(&user.session), None).await.assert_status(204);

    let store = app.node.store().expect("store");
    let removed = eventually(Duration::from_secs(3), || {
        let store = store.clone();
        async move { remnants(&store, video).await == Default::default() }
    })
    .await;
    assert!(removed, "the wake reached the other scheduler, which removed the video");
    assert_gone(&store, &app.node.blobs().expect("files"), video).await;
    scheduler.stop(false).await;
}
