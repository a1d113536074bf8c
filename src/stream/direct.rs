//! `POST /upload/:vid-id/ticket` and `POST /upload/:vid-id/complete`: direct uploads to the
//! object store (API.md, "Object storage", patterns 2 and 3). The checks and the records are
//! `Uploads::ticket` and `Uploads::complete`; here the path is parsed and the answer mapped.

use std::collections::BTreeMap;

use actix_web::{FromRequest as _, HttpRequest, HttpResponse, web};
use actors::model::{UserId, VideoId};
use serde::Serialize;

use super::StreamState;
use crate::auth::Authenticated;
use crate::error::AppError;
use crate::json::{VideoJson, rfc3339};

/// The form the client posts to the store: `fields` first, then the file in `file_field`.
#[derive(Debug, Serialize)]
struct TicketJson {
    method: &'static str,
    url: String,
    fields: BTreeMap<String, String>,
    file_field: &'static str,
    max_bytes: u64,
    expires_at: String,
}

/// The video of the path and who asks. The id first, as for the upload: a malformed one is 400
/// whoever asks.
async fn video_and_caller(req: &HttpRequest, path: &str) -> Result<(VideoId, UserId), AppError> {
    let id: VideoId = path.parse()?;
    let auth = Authenticated::extract(req).await?;
    Ok((id, auth.user.id))
}

/// `POST /upload/:vid-id/ticket`.
pub async fn ticket(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (id, caller) = video_and_caller(&req, &path).await?;
    let ticket = state.uploads.ticket(id, caller, state.signed_url_ttl).await?;
    let policy = ticket.policy;
    Ok(HttpResponse::Ok()
        // The fields are a credential for as long as they are valid.
        .insert_header(("Cache-Control", "no-store"))
        .json(TicketJson {
            method: "POST",
            url: policy.url.to_string(),
            fields: policy.fields,
            file_field: "file",
            max_bytes: ticket.max_bytes,
            expires_at: rfc3339(policy.expires_at),
        }))
}

/// `POST /upload/:vid-id/complete`.
pub async fn complete(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (id, caller) = video_and_caller(&req, &path).await?;
    let video = state.uploads.complete(id, caller).await?;
    state.scheduler.wake(id);
    Ok(HttpResponse::Created().json(VideoJson::from(video)))
}
