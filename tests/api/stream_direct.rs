//! Direct uploads on a real Garage (API.md, "Object storage", patterns 2 and 3): a ticket, the
//! browser's form post straight to the store, `complete`, and playback of the result; what the
//! store itself refuses; every status of the ticket and complete tables.

use std::time::Duration;

use actors::blob::BlobStore as _;
use awc::http::Method;
use bytes::Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWriteExt as _;

use crate::direct_support::*;
use crate::garage_support::{Garage, s3_app};
use crate::helpers::{TestApp, read_reply};
use crate::stream_support::{eventually, fake_mp4, get, header, read_head, start_raw_upload};

#[actix::test]
async fn ticket_form_post_and_complete_make_a_video_that_plays_byte_exact() {
    let Some(garage) = Garage::start().await else { return };
    let app = s3_app(&garage, |c| c.max_upload_bytes = 1 << 20).await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "direct").await;

    let r = ticket(&app, &alice, &vid).await;
    assert_eq!(header(&r, "cache-control"), "no-store");
    let t = r.assert_status(200).clone();
    assert_eq!(t["method"], "POST");
    assert_eq!(t["file_field"], "file");
    assert_eq!(t["max_bytes"], 1 << 20);
    assert!(t["url"].as_str().unwrap().starts_with(&garage.endpoint), "{t}");
    assert_eq!(t["fields"]["key"], format!("videos/{vid}"));
    let expires = OffsetDateTime::parse(t["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let ttl = (expires - OffsetDateTime::now_utc()).whole_seconds();
    assert!((295..=300).contains(&ttl), "expires in the default 300 s: {ttl}");
    // Nothing is ready before `complete`, even once the store has the object.
    let data = fake_mp4(300_000);
    post_form(&t, &data).await.assert_stored();
    assert_eq!(status_of(&app, &alice, &vid).await.assert_status(200)["status"], "pending");
    get(&app, &format!("/videos/{vid}"), &[]).await.assert_error(404, "006");

    let v = complete(&app, &alice, &vid).await;
    let v = v.assert_status(201);
    assert_eq!(v["status"], "ready");
    assert_eq!(v["size"], 300_000);
    assert_eq!(v["content_type"], "video/mp4");

    // Byte-exact, with the object's own ETag as the strong validator.
    let etag = garage.blobs().head(video_id(&vid)).await.unwrap().unwrap().etag;
    let played = get(&app, &format!("/videos/{vid}"), &[]).await;
    played.assert_status(200);
    assert!(played.raw[..] == data[..], "the whole file, byte for byte");
    assert_eq!(header(&played, "etag"), etag);
    assert_eq!(header(&played, "content-type"), "video/mp4");
    let ranged = [("Range", "bytes=1000-1999"), ("If-Range", etag.as_str())];
    let range = get(&app, &format!("/videos/{vid}"), &ranged).await;
    assert_eq!(range.status.as_u16(), 206);
    assert!(range.raw[..] == data[1000..2000]);
    let cached = get(&app, &format!("/videos/{vid}"), &[("If-None-Match", &etag)]).await;
    assert_eq!(cached.status.as_u16(), 304);
    let again = get(&app, &format!("/videos/{vid}"), &[]).await;
    assert_eq!(header(&again, "etag"), etag, "stable");

    // Done once: no second complete, no new ticket.
    complete(&app, &alice, &vid).await.assert_error(409, "007");
    ticket(&app, &alice, &vid).await.assert_error(409, "007");
}

#[actix::test]
async fn the_store_refuses_another_key_a_file_over_the_limit_and_an_expired_ticket() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let app = s3_app(&garage, |c| c.max_upload_bytes = 64 * 1024).await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "mine").await;
    let other = app.create_video(&alice, "other").await;
    let t = granted(&app, &alice, &vid).await;

    let swapped = format!("videos/{other}");
    let posted = post_form_with(&t, &fake_mp4(1000), |f| {
        f.insert("key".into(), swapped.clone().into());
    })
    .await;
    posted.assert_refused("another key");
    let posted = post_form(&t, &fake_mp4(64 * 1024 + 1)).await;
    posted.assert_refused("a file over --max-upload-bytes");
    assert!(!has_object(&blobs, &vid).await && !has_object(&blobs, &other).await);
    complete(&app, &alice, &vid).await.assert_error(404, "006");
    post_form(&t, &fake_mp4(64 * 1024)).await.assert_stored();
    complete(&app, &alice, &vid).await.assert_status(201);

    // A ticket lives --signed-url-ttl-secs: a node with 1 s, on the same store.
    let short = s3_app(&garage, |c| c.storage.signed_url_ttl_secs = 1).await;
    let bob = short.register("bob").await;
    let late = short.create_video(&bob, "late").await;
    let t = granted(&short, &bob, &late).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    post_form(&t, &fake_mp4(1000)).await.assert_refused("an expired ticket");
    assert!(!has_object(&blobs, &late).await);
}

#[actix::test]
async fn every_status_of_ticket_and_complete() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let app = s3_app(&garage, |c| c.max_upload_bytes = 64 * 1024).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let vid = app.create_video(&alice, "mine").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for what in ["ticket", "complete"] {
        // 400 whoever asks; 401 without a session; 404 unknown, or someone else's pending one.
        direct(&app, None, "not-a-uuid", what).await.assert_error(400, "001");
        direct(&app, Some(&alice), "..", what).await.assert_error(400, "001");
        direct(&app, None, &vid, what).await.assert_error(401, "002");
        direct(&app, Some(&alice), &unknown, what).await.assert_error(404, "006");
        direct(&app, Some(&bob), &vid, what).await.assert_error(404, "006");
        // The cookie from another site's page is refused.
        let res = app
            .client
            .post(format!("{}/upload/{vid}/{what}", app.stream))
            .insert_header(("Cookie", format!("session={}", alice.session)))
            .insert_header(("Origin", "http://evil.example"))
            .send()
            .await;
        read_reply(res.unwrap()).await.assert_error(403, "005");
    }
    // 404: nothing uploaded yet.
    let t = granted(&app, &alice, &vid).await;
    complete(&app, &alice, &vid).await.assert_error(404, "006");
    // 415: not a video; the object is removed and the video may be uploaded again.
    post_form(&t, b"<html>certainly not a video</html>").await.assert_stored();
    complete(&app, &alice, &vid).await.assert_error(415, "009");
    assert!(!has_object(&blobs, &vid).await, "a refused object is removed");
    // 413: an object over the limit (as if posted under a larger limit than today's).
    let mut w = blobs.begin_write(video_id(&vid)).await.unwrap();
    w.append(Bytes::from(fake_mp4(64 * 1024 + 1))).await.unwrap();
    w.commit().await.unwrap();
    complete(&app, &alice, &vid).await.assert_error(413, "008");
    assert!(!has_object(&blobs, &vid).await, "a refused object is removed");
    assert_eq!(status_of(&app, &alice, &vid).await.assert_status(200)["status"], "pending");
    // Then it works; now someone else's ready video is 403, one's own 409.
    let t = granted(&app, &alice, &vid).await;
    post_form(&t, &fake_mp4(5000)).await.assert_stored();
    complete(&app, &alice, &vid).await.assert_status(201);
    for what in ["ticket", "complete"] {
        direct(&app, Some(&bob), &vid, what).await.assert_error(403, "005");
        direct(&app, Some(&alice), &vid, what).await.assert_error(409, "007");
    }

    // Deleted after its ticket: a file posted anyway never outlives the row.
    let gone = app.create_video(&alice, "gone").await;
    let t = granted(&app, &alice, &gone).await;
    let del = format!("/user/alice/videos/{gone}");
    app.api(Method::DELETE, &del, Some(&alice.session), None).await.assert_status(204);
    post_form(&t, &fake_mp4(5000)).await.assert_stored();
    complete(&app, &alice, &gone).await.assert_error(404, "006");
    assert!(!has_object(&blobs, &gone).await, "the deleted video's object is removed");
    ticket(&app, &alice, &gone).await.assert_error(404, "006");
}

#[actix::test]
async fn file_store_has_no_tickets_and_the_limiter_applies() {
    let app = TestApp::spawn_with(|c| {
        c.stream_burst = 3.0;
        c.stream_rate = 0.01;
    })
    .await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "local").await;
    ticket(&app, &alice, &vid).await.assert_error(404, "006");
    complete(&app, &alice, &vid).await.assert_error(404, "006");
    let _ = ticket(&app, &alice, &vid).await;
    let limited = ticket(&app, &alice, &vid).await;
    limited.assert_error(429, "010");
    assert!(header(&limited, "retry-after").parse::<u64>().is_ok_and(|s| s >= 1));
}

#[actix::test]
async fn complete_and_an_upload_through_the_server_cannot_both_win() {
    let Some(garage) = Garage::start().await else { return };
    let app = s3_app(&garage, |_| {}).await;
    let alice = app.register("alice").await;
    let vid = app.create_video(&alice, "race").await;
    // A valid object is in place, so only the claim stands between `complete` and a 201.
    let t = granted(&app, &alice, &vid).await;
    post_form(&t, &fake_mp4(5000)).await.assert_stored();

    // An upload through the server holds the video while its body arrives: once a multipart
    // upload shows in the store, it surely has the video's claim...
    let data = fake_mp4(10 << 20);
    let cut = 9 << 20;
    let mut s = start_raw_upload(&app.stream, &alice.session, &vid, data.len(), &data[..cut]).await;
    let blobs = garage.blobs();
    eventually("the upload reaches the store", || async {
        !blobs.list_uploads().await.unwrap().is_empty()
    })
    .await;
    // ...so `complete` is refused meanwhile, as a second upload would be.
    complete(&app, &alice, &vid).await.assert_error(409, "007");
    s.write_all(&data[cut..]).await.unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "the upload through the server wins: {answer}");
    let played = get(&app, &format!("/videos/{vid}"), &[]).await;
    assert!(played.raw[..] == data[..], "its bytes, not the posted object's");
    complete(&app, &alice, &vid).await.assert_error(409, "007");
}
