//! The internal REST API: queue a deletion, list the queue. Every request must carry
//! `Authorization: Bearer <internal token>`.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix::Addr;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use actors::model::{DeletionRecord, VideoId};
use actors::scheduler::{Dispatcher, QueueDeletion};
use actors::store::{ListDeletions, VideoStore};
use serde::Serialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::error::AppError;
use crate::json::rfc3339;

/// What the scheduler's handlers need, handed to them as app data.
#[derive(Clone)]
pub struct SchedulerState {
    pub store: Addr<VideoStore>,
    pub dispatcher: Addr<Dispatcher>,
    pub internal_token: Arc<str>,
}

/// A caller that presented the internal token; 401 otherwise.
pub struct InternalCaller;

/// The credentials of `Authorization: Bearer <token>`; the scheme name is case-insensitive
/// (RFC 9110 §11.1), and so is nothing else.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn authorize(req: &HttpRequest) -> Result<InternalCaller, AppError> {
    let state = req.app_data::<web::Data<SchedulerState>>().ok_or_else(|| {
        log::error!("SchedulerState is not registered on this service");
        AppError::Internal
    })?;
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or(AppError::Unauthorized("internal token required"))?;
    // Constant time, so the token cannot be guessed byte by byte from response times.
    if bool::from(presented.as_bytes().ct_eq(state.internal_token.as_bytes())) {
        Ok(InternalCaller)
    } else {
        Err(AppError::Unauthorized("wrong internal token"))
    }
}

impl FromRequest for InternalCaller {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize(req))
    }
}

#[derive(Debug, Serialize)]
struct RecordJson {
    video_id: String,
    attempts: u32,
    next_attempt_at: String,
    last_error: Option<String>,
    /// Given up on after too many attempts: kept for a human, not retried.
    failed: bool,
    queued_at: String,
}

impl From<DeletionRecord> for RecordJson {
    fn from(r: DeletionRecord) -> Self {
        RecordJson {
            video_id: r.video_id.to_string(),
            attempts: r.attempts,
            next_attempt_at: rfc3339(r.next_attempt_at),
            last_error: r.last_error,
            failed: r.failed,
            queued_at: rfc3339(r.queued_at),
        }
    }
}

/// `POST /video-delete-record/:vid`: hide the video and queue its removal; idempotent.
pub async fn queue(
    _: InternalCaller,
    state: web::Data<SchedulerState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let video: VideoId = path.parse()?;
    state.dispatcher.send(QueueDeletion { video }).await??;
    Ok(HttpResponse::Accepted().json(json!({ "video_id": video.to_string(), "queued": true })))
}

/// `GET /video-delete-record`: the queue as it stands, next attempt first.
pub async fn list(
    _: InternalCaller,
    state: web::Data<SchedulerState>,
) -> Result<HttpResponse, AppError> {
    let records = state.store.send(ListDeletions).await??;
    let pending: Vec<RecordJson> = records.into_iter().map(RecordJson::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "pending": pending })))
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_bearer_scheme_is_matched_case_insensitively() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k "] {
            assert_eq!(bearer(header), Some("t0k"), "{header}");
        }
        assert_eq!(bearer("Basic t0k"), None);
        assert_eq!(bearer("Bearert0k"), None);
    }
}
