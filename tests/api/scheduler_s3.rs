//! Deletion on a real Garage: the scheduler removes a deleted video's object like a file, and an
//! object already gone counts as removed. The timer is out of the way (an hour); the test drives
//! the dispatcher with `Tick`.

use actix_web::http::Method;
use actors::blob::BlobStore as _;
use actors::model::VideoId;
use actors::scheduler::Tick;
use serde_json::json;

use crate::helpers::{Backend, TestApp, TestUser};
use crate::scheduler_support::{records, remnants};
use crate::stream_support::{fake_mp4, get, has_file, ready_video};

async fn s3_app() -> Option<TestApp> {
    TestApp::on(Backend::S3, |c| c.delete_every_secs = 3600).await
}

/// Deletes `vid` through the api, then ticks the dispatcher until nothing of it is left: no
/// object, no row, no comments, no deletion record (a failed removal would stay queued with
/// its error).
async fn delete_and_tick(app: &TestApp, user: &TestUser, vid: &str) {
    let path = format!("/user/{}/videos/{vid}", user.name);
    app.api(Method::DELETE, &path, Some(&user.session), None).await.assert_status(204);
    get(app, &format!("/videos/{vid}"), &[]).await.assert_error(404, "006");

    let store = app.node.store().expect("the store");
    let dispatcher = app.node.dispatcher().expect("this node runs the scheduler");
    let video: VideoId = vid.parse().expect("an id");
    // The api's delete also wakes the dispatcher, whose pass may hold the record for a moment:
    // each Tick then finds nothing to claim, and the next one looks again.
    for _ in 0..200 {
        dispatcher.send(Tick).await.expect("the dispatcher answers").expect("a pass");
        if remnants(&store, video).await == Default::default() {
            assert!(!has_file(app, vid).await, "the object outlived its row");
            assert_eq!(records(&store).await, vec![], "no record is left");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{vid} was not removed: {:?}", records(&store).await);
}

#[actix::test]
async fn deleting_a_video_removes_its_object() {
    let Some(app) = s3_app().await else { return };
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &fake_mp4(300_000)).await;
    let other = ready_video(&app, &alice, &fake_mp4(1000)).await;
    let comments = format!("/videos/{vid}/comments");
    let body = json!({"content": "nice"});
    app.api(Method::POST, &comments, Some(&alice.session), Some(body)).await.assert_status(201);
    assert!(has_file(&app, &vid).await);

    delete_and_tick(&app, &alice, &vid).await;
    let garage = app.garage.as_ref().expect("an s3 node").blobs();
    assert!(garage.head(vid.parse().unwrap()).await.unwrap().is_none(), "Garage has no object");
    // Only that one: the other video still plays.
    assert!(has_file(&app, &other).await);
    get(&app, &format!("/videos/{other}"), &[]).await.assert_status(200);
}

#[actix::test]
async fn a_video_whose_object_is_already_gone_still_deletes() {
    let Some(app) = s3_app().await else { return };
    let alice = app.register("alice").await;
    let vid = ready_video(&app, &alice, &fake_mp4(5000)).await;
    let garage = app.garage.as_ref().expect("an s3 node").blobs();
    assert!(garage.remove(vid.parse().unwrap()).await.unwrap(), "removed behind the node's back");
    // Ready in the database, gone from the store: missing, not a fault.
    get(&app, &format!("/videos/{vid}"), &[]).await.assert_error(404, "006");

    delete_and_tick(&app, &alice, &vid).await;
    let r = app.api(Method::GET, "/user/alice/videos", Some(&alice.session), None).await;
    assert_eq!(r.assert_status(200)["videos"], json!([]));
}
