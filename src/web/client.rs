//! The api as the pages use it: the same HTTP calls a browser could make, answered as typed
//! JSON or as an [`ApiFailure`] carrying API.md's status and error code.

use std::time::Duration;

use actix_web::http::header::HeaderValue;
use actix_web::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::{self, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::SESSION_HEADER;
use crate::error::ErrorCode;

/// A video object, with the fields the pages show. What the scheduler learns by probing the
/// file is `null` until then, and absent from an api older than the probe: both read as `None`.
#[derive(Debug, Deserialize)]
pub struct VideoJson {
    pub id: String,
    pub author: String,
    pub name: String,
    pub status: String,
    pub size: Option<u64>,
    pub display_ctime: String,
    pub create_time: String,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// The displayed size, rotation applied.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub poster_url: Option<String>,
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

/// The largest api answer read back; api answers are pages of at most 100 small objects.
pub const MAX_REPLY: usize = 4 << 20;
/// The longest an api call may take, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Idle pooled connections are closed after this, by a timer: before the api's own 5 s
/// keep-alive closes them, and without waiting for the next call. (awc, used before, closed
/// them only when it next drew from its pool, so after a burst of pages the sockets the api had
/// closed stayed open here in CLOSE_WAIT.)
const POOL_IDLE: Duration = Duration::from_secs(4);

/// The web service's HTTP/1 client of the api: pooled, timed out, bodies of bounded size.
#[derive(Clone)]
pub struct ApiHttp {
    client: legacy::Client<HttpConnector, Full<Bytes>>,
}

/// An api answer: status, the headers the web passes on, the body.
#[derive(Debug)]
pub struct ApiReply {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub body: Bytes,
}

impl ApiHttp {
    pub fn new() -> Self {
        let client = legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build_http();
        Self { client }
    }

    /// One call; `body` is JSON text; `forwarded_for` the browser's `X-Forwarded-For` chain, so
    /// the api sees (and throttles) the browser, not this node. `Err` when the api cannot be
    /// reached, is too slow, or answers with more than [`MAX_REPLY`] bytes.
    pub async fn call(
        &self,
        method: &Method,
        url: &str,
        session: Option<&str>,
        forwarded_for: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<ApiReply, String> {
        let mut req = hyper::Request::builder()
            .method(method.as_str())
            .uri(url)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(s) = session {
            req = req.header(SESSION_HEADER, s);
        }
        if let Some(chain) = forwarded_for {
            req = req.header("x-forwarded-for", chain);
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| e.to_string())?;
        let call = async {
            let res = self.client.request(req).await.map_err(|e| format!("unreachable: {e}"))?;
            let (head, body) = res.into_parts();
            let body = Limited::new(body, MAX_REPLY)
                .collect()
                .await
                .map_err(|e| format!("reply unreadable: {e}"))?
                .to_bytes();
            let header = |name| {
                head.headers.get(name).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
            };
            Ok(ApiReply {
                status: StatusCode::from_u16(head.status.as_u16())
                    .map_err(|e| format!("bad status: {e}"))?,
                content_type: header(hyper::header::CONTENT_TYPE),
                retry_after: header(hyper::header::RETRY_AFTER),
                body,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| "timed out".to_owned())?
    }
}

/// One page request's view of the api: the base URL and the caller's session, if any.
pub struct Api<'a> {
    pub http: &'a ApiHttp,
    pub base: &'a str,
    pub session: Option<&'a str>,
}

impl Api<'_> {
    /// `GET <base><path>` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let url = format!("{}{path}", self.base);
        let res =
            self.http.call(&Method::GET, &url, self.session, None, None).await.map_err(|e| {
                log::warn!("api call {path}: {e}");
                ApiFailure::unavailable()
            })?;
        if res.status.is_success() {
            serde_json::from_slice(&res.body).map_err(|e| {
                log::error!("api answered {path} with unexpected JSON: {e}");
                ApiFailure { status: 500, code: ErrorCode::Internal }
            })
        } else {
            let code = serde_json::from_slice::<ErrorJson>(&res.body)
                .map(|e| e.error_code)
                .unwrap_or(ErrorCode::Internal);
            Err(ApiFailure { status: res.status.as_u16(), code })
        }
    }
}
