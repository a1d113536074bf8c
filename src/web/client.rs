//! The api as the pages use it: the same HTTP calls a browser could make, answered as typed
//! JSON or as an [`ApiFailure`] carrying API.md's status and error code.

use actix_web::http::header;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::SESSION_HEADER;
use crate::error::ErrorCode;

/// A video object, with the fields the pages show.
#[derive(Debug, Deserialize)]
pub struct VideoJson {
    pub id: String,
    pub author: String,
    pub name: String,
    pub status: String,
    pub size: Option<u64>,
    pub display_ctime: String,
    pub create_time: String,
}

#[derive(Debug, Deserialize)]
pub struct VideoList {
    pub videos: Vec<VideoJson>,
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CommentJson {
    pub id: String,
    pub author: String,
    pub content: String,
    pub time: String,
}

#[derive(Debug, Deserialize)]
pub struct CommentList {
    pub comments: Vec<CommentJson>,
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UserJson {
    pub user_name: String,
}

/// Why an api call gave no data: the api's status and error code, or 503/`011` when it could
/// not be reached or answered nonsense.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: u16,
    pub code: ErrorCode,
}

impl ApiFailure {
    fn unavailable() -> Self {
        ApiFailure { status: 503, code: ErrorCode::Unavailable }
    }
}

#[derive(Deserialize)]
struct ErrorJson {
    error_code: ErrorCode,
}

/// One page request's view of the api: the base URL and the caller's session, if any.
pub struct Api<'a> {
    pub http: &'a awc::Client,
    pub base: &'a str,
    pub session: Option<&'a str>,
}

impl Api<'_> {
    /// `GET <base><path>` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .insert_header((header::ACCEPT, "application/json"));
        if let Some(s) = self.session {
            req = req.insert_header((SESSION_HEADER, s));
        }
        let mut res = req.send().await.map_err(|e| {
            log::warn!("api unreachable: {e}");
            ApiFailure::unavailable()
        })?;
        let body = res.body().limit(4 << 20).await.map_err(|e| {
            log::warn!("api reply unreadable: {e}");
            ApiFailure::unavailable()
        })?;
        if res.status().is_success() {
            serde_json::from_slice(&body).map_err(|e| {
                log::error!("api answered {path} with unexpected JSON: {e}");
                ApiFailure { status: 500, code: ErrorCode::Internal }
            })
        } else {
            let code = serde_json::from_slice::<ErrorJson>(&body)
                .map(|e| e.error_code)
                .unwrap_or(ErrorCode::Internal);
            Err(ApiFailure { status: res.status().as_u16(), code })
        }
    }
}
