//! The internal REST API: queue a deletion, list the deletion queue, list the jobs. Every request must carry
//! `Authorization: Bearer <internal token>`.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix::Addr;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use actors::model::{JobKind, JobRecord, VideoId};
use actors::scheduler::{Dispatcher, QueueDeletion};
use actors::store::{ListJobs, VideoStore};
use serde::{Deserialize, Serialize};
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
    kind: &'static str,
    video_id: String,
    attempts: u32,
    next_attempt_at: String,
    last_error: Option<String>,
    /// Given up on after too many attempts (or at once, for a file no retry can read): kept
    /// for a human, not retried.
    failed: bool,
    queued_at: String,
    /// A scheduler is running it now.
    running: bool,
    /// The program it waits for (`ffmpeg`), when the scheduler lacks it.
    waiting_for: Option<String>,
}

impl From<JobRecord> for RecordJson {
    fn from(r: JobRecord) -> Self {
        RecordJson {
            kind: r.kind.as_str(),
            video_id: r.video_id.to_string(),
            attempts: r.attempts,
            next_attempt_at: rfc3339(r.next_attempt_at),
            last_error: r.last_error,
            failed: r.failed,
            queued_at: rfc3339(r.queued_at),
            running: r.claimed_by.is_some(),
            waiting_for: r.waiting_for,
        }
    }
}

/// `?kind=` of the job listing.
#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    kind: Option<String>,
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
    let records = state.store.send(ListJobs { kind: Some(JobKind::RemoveVideo) }).await??;
    let pending: Vec<RecordJson> = records.into_iter().map(RecordJson::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "pending": pending })))
}

/// `GET /jobs[?kind=remove_video|probe_video]`: every job queued, or those of one kind, next
/// attempt first.
pub async fn jobs(
    _: InternalCaller,
    state: web::Data<SchedulerState>,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, AppError> {
    let kind = match query.into_inner().kind {
        Some(k) => Some(k.parse::<JobKind>().map_err(AppError::from)?),
        None => None,
    };
    let records = state.store.send(ListJobs { kind }).await??;
    let jobs: Vec<RecordJson> = records.into_iter().map(RecordJson::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "jobs": jobs })))
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
