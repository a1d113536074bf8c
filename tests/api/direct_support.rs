//! Helpers for the direct-upload tests: tickets, `complete`, the browser's form post to the
//! store, and reconciliation passes at a chosen time.

use std::time::Duration;

use actors::blob::S3Blobs;
use actors::model::VideoId;
use actors::scheduler::{Reconcile, ReconcileReport};
use awc::http::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;

use crate::helpers::{Reply, TestApp, TestUser, read_reply};

/// `POST /upload/:vid/<what>` on the stream service as `user` (anonymous when `None`).
pub async fn direct(app: &TestApp, user: Option<&TestUser>, vid: &str, what: &str) -> Reply {
    let mut req = app.client.post(format!("{}/upload/{vid}/{what}", app.stream));
    if let Some(user) = user {
        req = req.insert_header(("X-Session-Id", user.session.clone()));
    }
    read_reply(req.send().await.expect("the request reaches the server")).await
}

pub async fn ticket(app: &TestApp, user: &TestUser, vid: &str) -> Reply {
    direct(app, Some(user), vid, "ticket").await
}

pub async fn complete(app: &TestApp, user: &TestUser, vid: &str) -> Reply {
    direct(app, Some(user), vid, "complete").await
}

/// A ticket that must be granted: its JSON.
pub async fn granted(app: &TestApp, user: &TestUser, vid: &str) -> Value {
    ticket(app, user, vid).await.assert_status(200).clone()
}

/// What the store answered to a form post.
#[derive(Debug)]
pub struct Posted {
    pub status: StatusCode,
    pub body: String,
}

impl Posted {
    #[track_caller]
    pub fn assert_stored(&self) {
        assert!(self.status.is_success(), "the store refused: {} {}", self.status, self.body);
    }

    /// The store refused the form: AWS answers 403, Garage 400 (`InvalidRequest`, with the
    /// reason) to a failed condition or an expired policy; either is a refusal.
    #[track_caller]
    pub fn assert_refused(&self, what: &str) {
        assert!(
            matches!(self.status, StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN),
            "{what} must be refused: {} {}",
            self.status,
            self.body
        );
        assert!(self.body.contains("<Error>"), "{what}: an S3 error document: {}", self.body);
    }
}

/// Posts `ticket`'s form with `file`, as a browser's form would: `multipart/form-data`, the
/// fields (with `change` applied) first, the file last.
pub async fn post_form_with(
    ticket: &Value,
    file: &[u8],
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Posted {
    assert_eq!(ticket["method"], "POST");
    let mut fields = ticket["fields"].as_object().expect("fields").clone();
    change(&mut fields);
    let boundary = "----douyinDirectBoundary";
    let mut body = Vec::new();
    for (name, value) in &fields {
        let value = value.as_str().expect("field values are strings");
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let file_field = ticket["file_field"].as_str().expect("file_field");
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; \
             filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let client = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
    let mut res = client
        .post(ticket["url"].as_str().expect("url"))
        .insert_header(("Content-Type", format!("multipart/form-data; boundary={boundary}")))
        .send_body(body)
        .await
        .expect("the store answers");
    let body = String::from_utf8_lossy(&res.body().await.expect("a body")).into_owned();
    Posted { status: res.status(), body }
}

pub async fn post_form(ticket: &Value, file: &[u8]) -> Posted {
    post_form_with(ticket, file, |_| {}).await
}

pub fn video_id(vid: &str) -> VideoId {
    vid.parse().expect("a video id")
}

/// Whether the store holds an object for `vid`.
pub async fn has_object(blobs: &S3Blobs, vid: &str) -> bool {
    blobs.head(video_id(vid)).await.expect("HEAD reaches the store").is_some()
}

/// One reconciliation pass of the node's scheduler, `ahead` after the real time.
pub async fn reconcile_at(app: &TestApp, ahead: Duration) -> ReconcileReport {
    let dispatcher = app.node.dispatcher().expect("the node runs the scheduler");
    let now = OffsetDateTime::now_utc() + ahead;
    dispatcher.send(Reconcile { now }).await.expect("the dispatcher answers").expect("the pass ran")
}

/// A video's status as its owner sees it through the api.
pub async fn status_of(app: &TestApp, user: &TestUser, vid: &str) -> Reply {
    let path = format!("/user/{}/videos/{vid}", user.name);
    app.api(awc::http::Method::GET, &path, Some(&user.session), None).await
}
