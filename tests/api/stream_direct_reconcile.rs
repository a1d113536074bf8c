//! What uploads leave in a real Garage, and the scheduler's reconciliation of it: direct uploads
//! whose `complete` never came (checked once past the grace, not before), objects replaced
//! through a ticket still valid after `complete`, objects of deleted videos, unfinished multipart
//! uploads of a crashed writer; and a cut-off upload through the server, which leaves nothing.

use std::time::Duration;

use actors::blob::BlobStore as _;
use actors::model::VideoId;
use actors::scheduler::Tick;
use actors::store::{LookupVideo, VideoRow};
use awc::http::Method;
use bytes::Bytes;
use tokio::io::AsyncWriteExt as _;

use crate::direct_support::*;
use crate::garage_support::{Garage, s3_app};
use crate::stream_support::{
    eventually, fake_mp4, get, header, read_head, start_raw_upload, upload_body,
};

/// `n` seconds after the real time, for a reconciliation pass.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[actix::test]
async fn direct_uploads_without_complete_are_checked_once_past_the_grace() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    // Grace 100 s, tickets valid 300 s: a pass between the two still keeps the tickets.
    let app = s3_app(&garage, |c| {
        c.max_upload_bytes = 64 * 1024;
        c.storage.direct_upload_grace_secs = 100;
    })
    .await;
    let alice = app.register("alice").await;
    let mut tickets = Vec::new();
    for name in ["good", "bad", "big", "empty", "gone"] {
        let vid = app.create_video(&alice, name).await;
        tickets.push((granted(&app, &alice, &vid).await, vid));
    }
    let [good, bad, big, empty, gone] = std::array::from_fn(|i| tickets[i].1.clone());
    let data = fake_mp4(20_000);
    post_form(&tickets[0].0, &data).await.assert_stored();
    post_form(&tickets[1].0, b"GIF89a, not a video").await.assert_stored();
    // Over the limit: as if posted under a larger limit than the one the node has now.
    let mut w = blobs.begin_write(video_id(&big)).await.unwrap();
    w.append(Bytes::from(fake_mp4(64 * 1024 + 1))).await.unwrap();
    w.commit().await.unwrap();
    // Deleted, and its removal done; then its form is posted all the same.
    let del = format!("/user/alice/videos/{gone}");
    app.api(Method::DELETE, &del, Some(&alice.session), None).await.assert_status(204);
    let store = app.node.store().unwrap();
    eventually("the deleted video's row is purged", || async {
        let row = store.send(LookupVideo { id: video_id(&gone) }).await.unwrap().unwrap();
        row == VideoRow::Missing
    })
    .await;
    post_form(&tickets[4].0, &data).await.assert_stored();

    // Not before the grace.
    for ahead in [secs(0), secs(95)] {
        let report = reconcile_at(&app, ahead).await;
        assert_eq!(report.direct, Default::default(), "nothing is due {ahead:?} on");
    }
    assert_eq!(status_of(&app, &alice, &good).await.assert_status(200)["status"], "pending");

    // Past it: the good one is ready, the bad ones and the deleted video's are removed; every
    // ticket is still valid, so every one is kept.
    let report = reconcile_at(&app, secs(105)).await.direct;
    assert_eq!(report.made_ready, [video_id(&good)]);
    let mut removed = report.removed.clone();
    removed.sort();
    let mut want: Vec<VideoId> = [&bad, &big, &gone].map(|v| video_id(v)).to_vec();
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(report.forgotten, 0);
    for vid in [&bad, &big, &gone, &empty] {
        assert!(!has_object(&blobs, vid).await, "no object for {vid}");
    }
    for vid in [&bad, &big, &empty] {
        assert_eq!(status_of(&app, &alice, vid).await.assert_status(200)["status"], "pending");
    }
    let played = get(&app, &format!("/videos/{good}"), &[]).await;
    played.assert_status(200);
    assert!(played.raw[..] == data[..], "the good one plays byte for byte");
    let etag = blobs.head(video_id(&good)).await.unwrap().unwrap().etag;
    assert_eq!(header(&played, "etag"), etag);

    // Once the tickets have expired, they are forgotten: nothing is left to look at.
    let report = reconcile_at(&app, secs(305)).await.direct;
    assert_eq!((report.made_ready.len(), report.removed.len(), report.replaced.len()), (0, 0, 0));
    assert_eq!(report.forgotten, 5);
    assert_eq!(reconcile_at(&app, secs(3600)).await.direct, Default::default());
    assert_eq!(status_of(&app, &alice, &good).await.assert_status(200)["status"], "ready");
}

#[actix::test]
async fn an_object_replaced_through_a_valid_ticket_after_complete_is_not_served() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let app = s3_app(&garage, |_| {}).await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "swapped").await;
    let kept = app.create_video(&alice, "kept").await;
    let t = granted(&app, &alice, &vid).await;
    let k = granted(&app, &alice, &kept).await;
    let (first, second) = (fake_mp4(10_000), fake_mp4(12_000));
    post_form(&t, &first).await.assert_stored();
    post_form(&k, &first).await.assert_stored();
    complete(&app, &alice, &vid).await.assert_status(201);
    complete(&app, &alice, &kept).await.assert_status(201);
    // The same bytes again change nothing (a retried post); other bytes replace the object.
    post_form(&k, &first).await.assert_stored();
    post_form(&t, &second).await.assert_stored();

    // Until the ticket expires the key is writable, so the comparison waits for the expiry.
    assert_eq!(reconcile_at(&app, secs(601)).await.direct.replaced, [video_id(&vid)]);
    let path = format!("/user/alice/videos/{vid}");
    app.api(Method::GET, &path, Some(&alice.session), None).await.assert_error(404, "006");
    get(&app, &format!("/videos/{vid}"), &[]).await.assert_error(404, "006");
    let dispatcher = app.node.dispatcher().unwrap();
    eventually("the replaced object is removed", || async {
        dispatcher.send(Tick).await.unwrap().unwrap();
        !has_object(&blobs, &vid).await
    })
    .await;
    let played = get(&app, &format!("/videos/{kept}"), &[]).await;
    assert!(played.raw[..] == first[..], "the unchanged one still plays");
}

#[actix::test]
async fn multipart_uploads_of_a_crashed_writer_are_aborted_and_live_ones_kept() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let app = s3_app(&garage, |_| {}).await;
    let alice = app.register("alice").await;

    // A writer of a node killed mid-upload never aborts its multipart upload.
    let crashed = VideoId::new();
    let mut w = blobs.begin_write(crashed).await.unwrap();
    w.append(Bytes::from(fake_mp4(9 << 20))).await.unwrap();
    std::mem::forget(w);
    // An upload through this node is under way, as old as it may be.
    let vid = app.create_video(&alice, "live").await;
    let data = fake_mp4(10 << 20);
    let mut s =
        start_raw_upload(&app.stream, &alice.session, &vid, data.len(), &data[..9 << 20]).await;
    eventually("both uploads are in the store", || async {
        blobs.list_uploads().await.unwrap().len() == 2
    })
    .await;

    assert_eq!(reconcile_at(&app, secs(0)).await.direct.aborted, 0, "young ones are kept");
    assert_eq!(reconcile_at(&app, secs(13 * 3600)).await.direct.aborted, 1);
    let left = blobs.list_uploads().await.unwrap();
    assert_eq!(left.iter().map(|u| u.video).collect::<Vec<_>>(), [Some(video_id(&vid))]);
    assert!(blobs.head(crashed).await.unwrap().is_none());

    s.write_all(&data[9 << 20..]).await.unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "the live upload completes: {answer}");
    assert!(get(&app, &format!("/videos/{vid}"), &[]).await.raw[..] == data[..]);
    assert!(blobs.list_uploads().await.unwrap().is_empty());
}

#[actix::test]
async fn a_cut_off_upload_through_the_server_leaves_nothing_in_the_store() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let app = s3_app(&garage, |_| {}).await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "cut").await;
    let data = fake_mp4(20 << 20);
    let s =
        start_raw_upload(&app.stream, &alice.session, &vid, data.len(), &data[..12 << 20]).await;
    eventually("a multipart upload is under way", || async {
        !blobs.list_uploads().await.unwrap().is_empty()
    })
    .await;
    drop(s);
    eventually("the multipart upload is aborted", || async {
        blobs.list_uploads().await.unwrap().is_empty()
    })
    .await;
    assert!(!has_object(&blobs, &vid).await, "no object");
    assert_eq!(status_of(&app, &alice, &vid).await.assert_status(200)["status"], "pending");
    // A retry simply works.
    upload_body(&app, &alice, &vid, "video/mp4", data.clone()).await.assert_status(201);
    assert!(get(&app, &format!("/videos/{vid}"), &[]).await.raw[..] == data[..]);
}
