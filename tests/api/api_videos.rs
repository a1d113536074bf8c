//! `/user/:username/videos…` and `/videos`: create, visibility, lists, pagination, deletion.

use std::collections::HashSet;

use actix::Addr;
use actors::model::{UserId, VideoFile, VideoId};
use actors::store::{LookupVideo, MarkReady, VideoRemnants, VideoRow, VideoStore};
use awc::http::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, enc};

/// A second store over the node's database: what another process on the same data dir sees.
pub fn side_store(app: &TestApp) -> Addr<VideoStore> {
    app.side_store()
}

/// Marks a video ready as a finished upload would (the stream service's job), so that api
/// tests do not depend on uploading real files.
pub async fn mark_ready(store: &Addr<VideoStore>, app: &TestApp, user: &TestUser, id: &str) {
    let path = format!("/user/{}", enc(&user.name));
    let me = app.api(Method::GET, &path, Some(&user.session), None).await;
    let owner = UserId(me.body["id"].as_i64().unwrap());
    let file = VideoFile {
        size: 1234,
        content_type: "video/mp4".into(),
        sha256: "ab".repeat(32),
        uploaded_at: time::OffsetDateTime::now_utc(),
        location: actors::model::BlobLocation::File,
    };
    let id: VideoId = id.parse().unwrap();
    store.send(MarkReady { id, owner, file }).await.unwrap().unwrap();
}

fn ids(body: &Value) -> Vec<String> {
    body["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn create_needs_the_owner_and_a_valid_name() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let path = "/user/alice/videos";
    let body = Some(json!({"name": "  first clip  "}));
    app.api(Method::POST, path, None, body.clone()).await.assert_error(401, "002");
    app.api(Method::POST, path, Some(&bob.session), body.clone()).await.assert_error(403, "005");
    let r = app.api(Method::POST, path, Some(&alice.session), body).await;
    let v = r.assert_status(201);
    assert_eq!(v["name"], "first clip", "the name is trimmed");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["author"], "alice");
    assert!(v["size"].is_null() && v["content_type"].is_null());
    assert!(v["id"].as_str().unwrap().parse::<VideoId>().is_ok());
    assert!(v["create_time"].as_str().unwrap().ends_with('Z'));
    assert!(!v["display_ctime"].as_str().unwrap().is_empty());
    for key in [
        "id",
        "author_id",
        "author",
        "name",
        "status",
        "size",
        "content_type",
        "display_ctime",
        "create_time",
    ] {
        assert!(v.get(key).is_some(), "video object has {key}");
    }

    for bad in [
        json!({"name": "   "}),
        json!({"name": "x".repeat(201)}),
        json!({"name": "a\u{1}b"}),
        json!({"name": 7}),
        json!({}),
    ] {
        app.api(Method::POST, path, Some(&alice.session), Some(bad)).await.assert_error(400, "001");
    }
    let max = json!({"name": "é".repeat(200)});
    app.api(Method::POST, path, Some(&alice.session), Some(max)).await.assert_status(201);
}

#[actix_web::test]
async fn pending_videos_are_seen_by_their_owner_only() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let store = side_store(&app);
    let pending = app.create_video(&alice, "pending").await;
    let ready = app.create_video(&alice, "ready").await;
    mark_ready(&store, &app, &alice, &ready).await;

    let own = app.api(Method::GET, "/user/alice/videos", Some(&alice.session), None).await;
    assert_eq!(ids(own.assert_status(200)), vec![ready.clone(), pending.clone()]);
    for viewer in [None, Some(bob.session.as_str())] {
        let list = app.api(Method::GET, "/user/alice/videos", viewer, None).await;
        assert_eq!(ids(list.assert_status(200)), vec![ready.clone()]);
        let one =
            app.api(Method::GET, &format!("/user/alice/videos/{pending}"), viewer, None).await;
        one.assert_error(404, "006");
    }
    let one = app.api(Method::GET, &format!("/user/alice/videos/{ready}"), None, None).await;
    let v = one.assert_status(200);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["size"], 1234);
    assert_eq!(v["content_type"], "video/mp4");
    let own_pending = app
        .api(Method::GET, &format!("/user/alice/videos/{pending}"), Some(&alice.session), None)
        .await;
    assert_eq!(own_pending.assert_status(200)["status"], "pending");
    // By id alone (an extension beyond API.md's table): same visibility.
    let by_id = app.api(Method::GET, &format!("/videos/{ready}"), None, None).await;
    assert_eq!(by_id.assert_status(200)["id"], ready.as_str());
    let hidden =
        app.api(Method::GET, &format!("/videos/{pending}"), Some(&bob.session), None).await;
    hidden.assert_error(404, "006");
    let mine =
        app.api(Method::GET, &format!("/videos/{pending}"), Some(&alice.session), None).await;
    assert_eq!(mine.assert_status(200)["status"], "pending");
    app.api(Method::GET, "/videos/..", None, None).await.assert_error(400, "001");
    // A video is found only under its author's name.
    let elsewhere = app.api(Method::GET, &format!("/user/bob/videos/{ready}"), None, None).await;
    elsewhere.assert_error(404, "006");

    let feed = app.api(Method::GET, "/videos", Some(&alice.session), None).await;
    assert_eq!(ids(feed.assert_status(200)), vec![ready]);
    assert!(feed.body["next"].is_null());
}

#[actix_web::test]
async fn lists_of_missing_users_and_bad_ids_are_refused() {
    let app = TestApp::spawn().await;
    app.api(Method::GET, "/user/nobody/videos", None, None).await.assert_error(404, "006");
    app.api(Method::GET, "/user/x/videos", None, None).await.assert_error(400, "001");
    let empty = app.register("empty").await;
    let r = app.api(Method::GET, "/user/empty/videos", Some(&empty.session), None).await;
    assert_eq!(r.assert_status(200)["videos"], json!([]), "an empty list is [], never null");
    let feed = app.api(Method::GET, "/videos", None, None).await;
    assert_eq!(feed.assert_status(200)["videos"], json!([]));

    let long = "a".repeat(300);
    let upper = VideoId::new().to_string().to_uppercase();
    for hostile in ["..", "%2e%2e", "..%2f..%2fetc%2fpasswd", long.as_str(), upper.as_str(), "1"] {
        let r = app.api(Method::GET, &format!("/user/empty/videos/{hostile}"), None, None).await;
        assert!(matches!(r.status.as_u16(), 400 | 404), "{hostile}: {}", r.status);
        assert!(r.body["error_code"] == "001" || r.body["error_code"] == "006");
    }
    let unknown = VideoId::new();
    app.api(Method::GET, &format!("/user/empty/videos/{unknown}"), None, None)
        .await
        .assert_error(404, "006");
}

#[actix_web::test]
async fn the_feed_pages_newest_first_without_duplicates() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let store = side_store(&app);
    let mut created = Vec::new();
    for i in 0..25 {
        let id = app.create_video(&alice, &format!("clip {i}")).await;
        mark_ready(&store, &app, &alice, &id).await;
        created.push(id);
    }
    created.reverse();

    for base in ["/videos", "/user/alice/videos"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let url = match &cursor {
                None => format!("{base}?limit=10"),
                Some(c) => format!("{base}?limit=10&cursor={}", enc(c)),
            };
            let r = app.api(Method::GET, &url, None, None).await;
            let page = r.assert_status(200).clone();
            pages += 1;
            seen.extend(ids(&page));
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, created, "{base}: newest first, every item once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    }
    let default = app.api(Method::GET, "/videos", None, None).await;
    assert_eq!(ids(default.assert_status(200)).len(), 20, "the default limit is 20");
    for bad in ["limit=0", "limit=101", "limit=abc", "cursor=%%%", "cursor=zzzz"] {
        app.api(Method::GET, &format!("/videos?{bad}"), None, None).await.assert_error(400, "001");
    }
}

#[actix_web::test]
async fn deleting_hides_the_video_everywhere_and_queues_its_removal() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let store = side_store(&app);
    let id = app.create_video(&alice, "doomed").await;
    mark_ready(&store, &app, &alice, &id).await;
    let path = format!("/user/alice/videos/{id}");
    // Read the feed first, so that a cached page exists when the delete happens.
    let feed = app.api(Method::GET, "/videos", None, None).await;
    assert_eq!(ids(feed.assert_status(200)), vec![id.clone()]);

    app.api(Method::DELETE, &path, None, None).await.assert_error(401, "002");
    app.api(Method::DELETE, &path, Some(&bob.session), None).await.assert_error(403, "005");
    let other = format!("/user/bob/videos/{id}");
    app.api(Method::DELETE, &other, Some(&bob.session), None).await.assert_error(404, "006");
    app.api(Method::DELETE, "/user/alice/videos/nope", Some(&alice.session), None)
        .await
        .assert_error(400, "001");
    let unknown = format!("/user/alice/videos/{}", VideoId::new());
    app.api(Method::DELETE, &unknown, Some(&alice.session), None).await.assert_error(404, "006");

    let r = app.api(Method::DELETE, &path, Some(&alice.session), None).await;
    assert_eq!(r.status.as_u16(), 204);
    app.api(Method::GET, &path, Some(&alice.session), None).await.assert_error(404, "006");
    let list = app.api(Method::GET, "/user/alice/videos", Some(&alice.session), None).await;
    assert_eq!(list.body["videos"], json!([]));
    assert_eq!(app.api(Method::GET, "/videos", None, None).await.body["videos"], json!([]));
    let comments = format!("/videos/{id}/comments");
    app.api(Method::GET, &comments, None, None).await.assert_error(404, "006");
    app.api(Method::DELETE, &path, Some(&alice.session), None).await.assert_error(404, "006");

    // Either the removal is still queued beside the hidden row, or a scheduler already carried
    // it out (row and record gone): read in one statement, so both are of the same moment.
    let video: VideoId = id.parse().expect("a video id");
    let left = store.send(VideoRemnants { video }).await.unwrap().unwrap();
    assert!(left.row == left.record, "{left:?}");
    if left.row {
        let row = store.send(LookupVideo { id: video }).await.unwrap().unwrap();
        assert!(matches!(row, VideoRow::Deleted | VideoRow::Missing), "{row:?}");
    }
}
