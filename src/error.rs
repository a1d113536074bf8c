//! `AppError`: every failure a service answers with, as `{"error","error_code"}` with the
//! status and stable code of API.md.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use actors::StoreError;
use serde::Serialize;

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
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "001",
            AppError::Unauthorized(_) => "002",
            AppError::Database => "003",
            AppError::Internal => "004",
            AppError::Forbidden(_) => "005",
            AppError::NotFound(_) => "006",
            AppError::Conflict(_) => "007",
            AppError::TooLarge(_) => "008",
            AppError::UnsupportedMedia(_) => "009",
            AppError::RateLimited { .. } => "010",
            AppError::Unavailable => "011",
        }
    }

    pub fn unauthorized() -> Self {
        AppError::Unauthorized("sign in required: no session, or it expired")
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    error_code: &'a str,
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
        assert_eq!((e.status_code(), e.code()), (StatusCode::INTERNAL_SERVER_ERROR, "003"));
    }
}
