//! `POST /api`: the browser's way to the api service. Only the api table's calls pass (see
//! [`super::target`]); the session cookie becomes `X-Session-Id`, and a successful register or
//! sign-in moves the session id out of the body into the cookie.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use super::proxy::forwarded_for;
use super::target::{self, Effect};
use super::{Clients, USER_COOKIE, WebState, cookie, removal, session_of};
use crate::auth::SESSION_COOKIE;
use crate::error::AppError;
use bytes::Bytes;

/// The largest `/api` body, as for the api's own JSON bodies.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
struct Envelope {
    url: String,
    method: String,
    /// The api call's body: a JSON value, or a string holding JSON text.
    #[serde(default)]
    req_body: Option<Value>,
}

fn parse(req: &HttpRequest, body: &[u8]) -> Result<Envelope, AppError> {
    if crate::headers::media_type(req.headers()) != "application/json" {
        return Err(AppError::BadRequest("Content-Type must be application/json".into()));
    }
    if body.len() > MAX_BODY {
        return Err(AppError::TooLarge("request body is larger than 64 KiB".into()));
    }
    serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

/// `POST /api`.
pub async fn forward(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> Result<HttpResponse, AppError> {
    state.check_origin(&req)?;
    let envelope = parse(&req, &body)?;
    let target = target::check(&envelope.url, &envelope.method)
        .map_err(|r| AppError::BadRequest(r.0.to_owned()))?;
    let call_body = match envelope.req_body {
        None | Some(Value::Null) if target.method != actix_web::http::Method::POST => None,
        None | Some(Value::Null) => Some(Bytes::new()),
        Some(Value::String(text)) => Some(Bytes::from(text)),
        Some(value) => Some(Bytes::from(value.to_string())),
    };
    let url = format!("{}{}", state.api, target.path_and_query);
    let session = session_of(&req);
    // The browser, as the api's per-address sign-in budget must see it.
    let chain = forwarded_for(&req);
    let res = clients
        .api
        .call(&target.method, &url, session.as_deref(), chain.as_deref(), call_body)
        .await
        .map_err(|e| {
            log::warn!("api call {}: {e}", target.path_and_query);
            AppError::Unavailable
        })?;
    let reply = res.body;
    let status = res.status;
    let mut out = HttpResponse::build(status);
    for (name, value) in
        [(header::CONTENT_TYPE, res.content_type), (header::RETRY_AFTER, res.retry_after)]
    {
        if let Some(v) = value {
            out.insert_header((name, v));
        }
    }
    out.insert_header((header::CACHE_CONTROL, "no-store"));
    match target.effect {
        Effect::SignIn { user } if status.is_success() => {
            let mut json: Value = serde_json::from_slice(&reply).map_err(|e| {
                log::error!("api sign-in answer is not JSON: {e}");
                AppError::Internal
            })?;
            let session = json
                .as_object_mut()
                .and_then(|o| o.remove("session_id"))
                .and_then(|v| v.as_str().map(str::to_owned))
                .ok_or_else(|| {
                    log::error!("api sign-in answer has no session_id");
                    AppError::Internal
                })?;
            // Registering names the user in the body; signing in names them in the path.
            let user = user.or_else(|| body_user(&body)).unwrap_or_default();
            out.cookie(cookie(SESSION_COOKIE, session, &state));
            out.cookie(cookie(USER_COOKIE, user, &state));
            Ok(out.json(json))
        }
        Effect::SignOut if status == StatusCode::NO_CONTENT => {
            out.cookie(removal(SESSION_COOKIE, &state));
            out.cookie(removal(USER_COOKIE, &state));
            Ok(out.finish())
        }
        _ if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED => {
            Ok(out.finish())
        }
        _ => Ok(out.body(reply)),
    }
}

/// The `user_name` of a register call's `req_body` (an object, or JSON text of one).
fn body_user(body: &[u8]) -> Option<String> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let req_body = match envelope.req_body? {
        Value::String(text) => serde_json::from_str(&text).ok()?,
        v => v,
    };
    req_body.get("user_name")?.as_str().map(str::to_owned)
}
