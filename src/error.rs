//! `AppError`: every failure a service answers with, as `{"error","error_code"}` with the
//! status and stable code of API.md.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use actors::StoreError;
use std::fmt;

use actors::upload::UploadError;
use serde::{Deserialize, Serialize};

use crate::pace::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("the database failed")]
    Database,
    #[error("internal error")]
    Internal,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMedia(&'static str),
    #[error("too many requests, retry later")]
    RateLimited { retry_after_secs: u64 },
    #[error("the service is overloaded or shutting down")]
    Unavailable,
    /// The client sent its body too slowly, or stopped sending it.
    #[error("{0}")]
    TimedOut(String),
    /// A conditional request's `If-Match` or `If-Unmodified-Since` failed (RFC 9110 §13).
    #[error("precondition failed")]
    PreconditionFailed,
}

/// API.md's stable error codes, one per row of its table. The services answer with them and the
/// web service reads them back from the api.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// `001`: malformed body, field, id or request.
    #[serde(rename = "001")]
    BadRequest,
    /// `002`: no session, unknown or expired session, wrong name or password.
    #[serde(rename = "002")]
    Unauthorized,
    /// `003`: the database failed.
    #[serde(rename = "003")]
    Database,
    /// `004`: any other internal fault.
    #[serde(rename = "004")]
    Internal,
    /// `005`: someone else's resource.
    #[serde(rename = "005")]
    Forbidden,
    /// `006`: no such user, video or comment.
    #[serde(rename = "006")]
    NotFound,
    /// `007`: name taken, file already uploaded.
    #[serde(rename = "007")]
    Conflict,
    /// `008`: body or file too large.
    #[serde(rename = "008")]
    TooLarge,
    /// `009`: not a recognised video container.
    #[serde(rename = "009")]
    UnsupportedMedia,
    /// `010`: rate or stream limit reached.
    #[serde(rename = "010")]
    RateLimited,
    /// `011`: overloaded or shutting down.
    #[serde(rename = "011")]
    Unavailable,
}

impl ErrorCode {
    /// The code as API.md writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "001",
            ErrorCode::Unauthorized => "002",
            ErrorCode::Database => "003",
            ErrorCode::Internal => "004",
            ErrorCode::Forbidden => "005",
            ErrorCode::NotFound => "006",
            ErrorCode::Conflict => "007",
            ErrorCode::TooLarge => "008",
            ErrorCode::UnsupportedMedia => "009",
            ErrorCode::RateLimited => "010",
            ErrorCode::Unavailable => "011",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::BadRequest(_) | AppError::TimedOut(_) | AppError::PreconditionFailed => {
                ErrorCode::BadRequest
            }
            AppError::Unauthorized(_) => ErrorCode::Unauthorized,
            AppError::Database => ErrorCode::Database,
            AppError::Internal => ErrorCode::Internal,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::TooLarge(_) => ErrorCode::TooLarge,
            AppError::UnsupportedMedia(_) => ErrorCode::UnsupportedMedia,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::Unavailable => ErrorCode::Unavailable,
        }
    }

    /// API.md's error body for `status` and `code`, for answers built outside `AppError`.
    pub fn body(message: &str, code: ErrorCode) -> serde_json::Value {
        serde_json::json!({ "error": message, "error_code": code })
    }

    pub fn unauthorized() -> Self {
        AppError::Unauthorized("sign in required: no session, or it expired")
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    error_code: ErrorCode,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Database | AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            AppError::RateLimited { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, (*retry_after_secs).max(1)));
            }
            AppError::Unavailable => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            _ => {}
        }
        res.json(ErrorBody { error: self.to_string(), error_code: self.code() })
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound("no such resource"),
            StoreError::Forbidden => AppError::Forbidden("this belongs to someone else"),
            StoreError::BadCredentials => AppError::Unauthorized("wrong user name or password"),
            StoreError::Conflict(what) => AppError::Conflict(what),
            StoreError::Unavailable(_) => AppError::Unavailable,
            e if e.is_database() => {
                log::error!("{e}");
                AppError::Database
            }
            e => {
                log::error!("{e}");
                AppError::Internal
            }
        }
    }
}

impl From<UploadError> for AppError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Store(e) => e.into(),
            UploadError::AlreadyUploaded => AppError::Conflict("video file already uploaded"),
            UploadError::InProgress => {
                AppError::Conflict("an upload of this video is already in progress")
            }
            UploadError::TooLarge { max } => {
                AppError::TooLarge(format!("the file is larger than {max} bytes"))
            }
            UploadError::NotAVideo => {
                AppError::UnsupportedMedia("not a recognised video container")
            }
            UploadError::Io(e) => {
                log::error!("writing an upload: {e}");
                AppError::Internal
            }
            UploadError::NoObjectStore => {
                AppError::NotFound("direct uploads need the object store (--blob-store s3)")
            }
            UploadError::NothingUploaded => {
                AppError::NotFound("nothing was uploaded for this video")
            }
        }
    }
}

impl From<BodyError> for AppError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooSlow(e) => {
                log::info!("upload dropped: {e}");
                AppError::TimedOut("the body arrived too slowly".into())
            }
            BodyError::Broken(why) => AppError::BadRequest(format!("upload cut off: {why}")),
        }
    }
}

impl From<actors::accounts::AccountError> for AppError {
    fn from(e: actors::accounts::AccountError) -> Self {
        use actors::accounts::AccountError;
        match e {
            AccountError::BadCredentials => AppError::Unauthorized("wrong user name or password"),
            AccountError::Throttled { .. } => {
                AppError::RateLimited { retry_after_secs: e.retry_after_secs() }
            }
            AccountError::Busy => AppError::Unavailable,
            AccountError::Store(e) => e.into(),
        }
    }
}

impl From<actix::MailboxError> for AppError {
    fn from(e: actix::MailboxError) -> Self {
        log::warn!("actor mailbox: {e}");
        AppError::Unavailable
    }
}

impl From<actors::model::Invalid> for AppError {
    fn from(e: actors::model::Invalid) -> Self {
        AppError::BadRequest(e.0)
    }
}

/// The error handlers that turn actix-web's extractor failures into the API's error format.
pub mod extractors {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::{Error, HttpRequest, web};

    use super::AppError;

    /// JSON request bodies: at most 64 KiB, `application/json`, well-formed.
    pub fn json_config() -> web::JsonConfig {
        web::JsonConfig::default().limit(64 * 1024).error_handler(json_error)
    }

    fn json_error(err: JsonPayloadError, _: &HttpRequest) -> Error {
        match err {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                AppError::TooLarge("request body is larger than 64 KiB".into()).into()
            }
            JsonPayloadError::ContentType => {
                AppError::BadRequest("Content-Type must be application/json".into()).into()
            }
            JsonPayloadError::Deserialize(e) => {
                AppError::BadRequest(format!("invalid JSON body: {e}")).into()
            }
            other => AppError::BadRequest(format!("invalid request body: {other}")).into(),
        }
    }

    pub fn path_config() -> web::PathConfig {
        web::PathConfig::default()
            .error_handler(|e: PathError, _| AppError::BadRequest(format!("bad path: {e}")).into())
    }

    pub fn query_config() -> web::QueryConfig {
        web::QueryConfig::default().error_handler(|e: QueryPayloadError, _| {
            AppError::BadRequest(format!("bad query string: {e}")).into()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_failed_batch_is_a_database_error() {
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        );
        let shared = Arc::new(StoreError::Db(sqlite));
        let e = AppError::from(StoreError::Batch(shared));
        assert_eq!(
            (e.status_code(), e.code()),
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Database)
        );
    }
}
