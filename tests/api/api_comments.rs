//! `/videos/:vid/comments` and `/videos/:vid/comment/:cid`.

use std::collections::HashSet;

use actors::model::{CommentId, VideoId};
use awc::http::Method;
use serde_json::json;

use crate::api_videos::{mark_ready, side_store};
use crate::helpers::{TestApp, TestUser};

async fn ready_video(app: &TestApp, owner: &TestUser) -> String {
    let id = app.create_video(owner, "clip").await;
    mark_ready(&side_store(app), app, owner, &id).await;
    id
}

async fn comment(app: &TestApp, user: &TestUser, video: &str, text: &str) -> String {
    let r = app
        .api(
            Method::POST,
            &format!("/videos/{video}/comments"),
            Some(&user.session),
            Some(json!({"content": text})),
        )
        .await;
    r.assert_status(201)["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn posting_validates_and_returns_the_comment_object() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let video = ready_video(&app, &alice).await;
    let path = format!("/videos/{video}/comments");

    let r = app
        .api(
            Method::POST,
            &path,
            Some(&bob.session),
            Some(json!({"content": "  nice <b>clip</b>\n"})),
        )
        .await;
    let c = r.assert_status(201);
    assert_eq!(
        c["content"], "nice <b>clip</b>",
        "trimmed, stored as given (escaping is the page's job)"
    );
    assert_eq!(c["author"], "bob");
    assert_eq!(c["video_id"], video.as_str());
    assert!(c["id"].as_str().unwrap().parse::<CommentId>().is_ok());
    assert!(c["time"].as_str().unwrap().ends_with('Z'));
    assert!(c["author_id"].is_i64());

    let body = Some(json!({"content": "hi"}));
    app.api(Method::POST, &path, None, body.clone()).await.assert_error(401, "002");
    for bad in [
        json!({"content": "   "}),
        json!({"content": "x".repeat(2001)}),
        json!({"content": 1}),
        json!({}),
    ] {
        app.api(Method::POST, &path, Some(&bob.session), Some(bad)).await.assert_error(400, "001");
    }
    app.api(Method::POST, &path, Some(&bob.session), Some(json!({"content": "é".repeat(2000)})))
        .await
        .assert_status(201);
    let missing = format!("/videos/{}/comments", VideoId::new());
    app.api(Method::POST, &missing, Some(&bob.session), body.clone())
        .await
        .assert_error(404, "006");
    app.api(Method::POST, "/videos/..%2F..%2Fx/comments", Some(&bob.session), body.clone())
        .await
        .assert_error(400, "001");

    // Nobody but the owner can comment on a pending video: to them it does not exist.
    let pending = app.create_video(&alice, "pending").await;
    let p = format!("/videos/{pending}/comments");
    app.api(Method::POST, &p, Some(&bob.session), body.clone()).await.assert_error(404, "006");
    app.api(Method::POST, &p, Some(&alice.session), body).await.assert_status(201);
}

#[actix_web::test]
async fn comments_list_newest_first_with_pages() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let video = ready_video(&app, &alice).await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(comment(&app, &alice, &video, &format!("c{i}")).await);
    }
    made.reverse();
    let first =
        app.api(Method::GET, &format!("/videos/{video}/comments?limit=5"), None, None).await;
    let first = first.assert_status(200).clone();
    let next = first["next"].as_str().unwrap();
    let second = app
        .api(Method::GET, &format!("/videos/{video}/comments?limit=5&cursor={next}"), None, None)
        .await;
    let second = second.assert_status(200).clone();
    assert!(second["next"].is_null());
    let got: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|p| {
            p["comments"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(got, made);
    app.api(Method::GET, &format!("/videos/{}/comments", VideoId::new()), None, None)
        .await
        .assert_error(404, "006");
    app.api(Method::GET, "/videos/not-a-uuid/comments", None, None).await.assert_error(400, "001");
    let empty = ready_video(&app, &alice).await;
    let r = app.api(Method::GET, &format!("/videos/{empty}/comments"), None, None).await;
    assert_eq!(r.assert_status(200)["comments"], json!([]));
}

#[actix_web::test]
async fn a_comment_is_deleted_by_its_author_or_the_videos_owner_only() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let author = app.register("author").await;
    let stranger = app.register("stranger").await;
    let video = ready_video(&app, &owner).await;
    let other_video = ready_video(&app, &owner).await;
    let c1 = comment(&app, &author, &video, "one").await;
    let c2 = comment(&app, &author, &video, "two").await;
    let del = |c: &str| format!("/videos/{video}/comment/{c}");

    app.api(Method::DELETE, &del(&c1), None, None).await.assert_error(401, "002");
    app.api(Method::DELETE, &del(&c1), Some(&stranger.session), None)
        .await
        .assert_error(403, "005");
    let wrong_video = format!("/videos/{other_video}/comment/{c1}");
    app.api(Method::DELETE, &wrong_video, Some(&author.session), None)
        .await
        .assert_error(404, "006");
    app.api(Method::DELETE, &del(&CommentId::new().to_string()), Some(&author.session), None)
        .await
        .assert_error(404, "006");
    app.api(Method::DELETE, &del("bad"), Some(&author.session), None)
        .await
        .assert_error(400, "001");

    let r = app.api(Method::DELETE, &del(&c1), Some(&author.session), None).await;
    assert_eq!(r.status.as_u16(), 204);
    let r = app.api(Method::DELETE, &del(&c2), Some(&owner.session), None).await;
    assert_eq!(r.status.as_u16(), 204);
    app.api(Method::DELETE, &del(&c1), Some(&author.session), None).await.assert_error(404, "006");
    let list = app.api(Method::GET, &format!("/videos/{video}/comments"), None, None).await;
    assert_eq!(list.body["comments"], json!([]));
}

#[actix_web::test]
async fn a_hundred_concurrent_comments_are_all_stored() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let video = ready_video(&app, &alice).await;
    let posts = (0..100).map(|i| {
        let app = &app;
        let alice = &alice;
        let video = &video;
        async move { comment(app, alice, video, &format!("comment {i}")).await }
    });
    let ids: HashSet<String> = futures_util::future::join_all(posts).await.into_iter().collect();
    assert_eq!(ids.len(), 100);
    let list =
        app.api(Method::GET, &format!("/videos/{video}/comments?limit=100"), None, None).await;
    let listed: HashSet<String> = list.assert_status(200)["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    let texts: HashSet<String> = list.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 100);
}
