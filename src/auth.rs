//! Who is calling: the `X-Session-Id` header or the `session` cookie, resolved by the `Session`
//! actor. A cookie-authenticated POST/DELETE from a foreign `Origin` is refused (CSRF).

use std::future::Future;
use std::pin::Pin;

use actix::Addr;
use actix_web::cookie::Cookie;
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, dev::Payload, web};
use actors::model::User;
use actors::session::{ResolveSession, Session, SessionToken};

use crate::error::AppError;

/// The header a session id travels in.
pub const SESSION_HEADER: &str = "X-Session-Id";
/// The cookie a browser keeps the session id in.
pub const SESSION_COOKIE: &str = "session";

/// What the extractors need; registered as app data by every service that authenticates.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub sessions: Addr<Session>,
    /// The site's origin, e.g. `http://127.0.0.1:8080`; other `Origin`s may not use the cookie.
    pub public_origin: String,
}

/// Where the request's session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Header,
    Cookie,
}

/// The session id a request presents, and where: the header, else the cookie. Cookies are read
/// as actix-web's `HttpRequest::cookie` reads them (one malformed cookie hides them all), so the
/// stream's own front (`stream::front`), which has headers but no `HttpRequest`, agrees with it.
fn presented(headers: &HeaderMap) -> Option<(String, Source)> {
    if let Some(v) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        return Some((v.trim().to_owned(), Source::Header));
    }
    let mut cookies = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let value = value.to_str().ok()?;
        for one in value.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            cookies.push(Cookie::parse_encoded(one).ok()?);
        }
    }
    let session = cookies.into_iter().find(|c| c.name() == SESSION_COOKIE)?;
    Some((session.value().to_owned(), Source::Cookie))
}

/// The session token `headers` present, if any is well formed.
pub fn presented_token(headers: &HeaderMap) -> Option<SessionToken> {
    presented(headers).and_then(|(raw, _)| SessionToken::from_client(&raw))
}

fn state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether `req` changes state on behalf of a page of another origin: a POST or DELETE whose
/// `Origin` names a site other than ours. A browser sends `Origin` on every cross-site POST, so a
/// forged request carrying our cookie is recognised by it.
pub fn foreign_origin(req: &HttpRequest, public_origin: &str) -> bool {
    foreign(req.method(), req.headers(), public_origin)
}

fn foreign(method: &Method, headers: &HeaderMap, public_origin: &str) -> bool {
    state_changing(method)
        && headers
            .get(header::ORIGIN)
            .is_some_and(|origin| origin.as_bytes() != public_origin.as_bytes())
}

/// The cross-site rule of the JSON services: a state-changing request carried by the cookie
/// must come from our own origin when it names one (a header-carried session cannot be forged).
fn check_origin(req: &HttpRequest, source: Source, state: &AuthState) -> Result<(), AppError> {
    if source == Source::Cookie && foreign_origin(req, &state.public_origin) {
        return Err(AppError::Forbidden("cross-site request refused"));
    }
    Ok(())
}

fn auth_state(req: &HttpRequest) -> Result<web::Data<AuthState>, AppError> {
    req.app_data::<web::Data<AuthState>>().cloned().ok_or_else(|| {
        log::error!("AuthState is not registered on this service");
        AppError::Internal
    })
}

/// Who the request's session belongs to, if it presents a live one. Resolved once per request:
/// the answer is kept in the request's extensions, so the stream limiter and the handler's
/// extractor share one look-up.
pub async fn caller(req: &HttpRequest) -> Result<Option<(User, SessionToken)>, AppError> {
    #[derive(Clone)]
    struct Resolved(Option<(User, SessionToken)>);

    if let Some(Resolved(known)) = req.extensions().get::<Resolved>() {
        return Ok(known.clone());
    }
    let found = match presented_token(req.headers()) {
        None => None,
        Some(token) => {
            let state = auth_state(req)?;
            let user = state.sessions.send(ResolveSession { token: token.clone() }).await??;
            user.map(|u| (u, token))
        }
    };
    req.extensions_mut().insert(Resolved(found.clone()));
    Ok(found)
}

async fn resolve(req: HttpRequest) -> Result<Option<(User, SessionToken)>, AppError> {
    let Some((_, source)) = presented(req.headers()) else { return Ok(None) };
    check_origin(&req, source, &*auth_state(&req)?)?;
    caller(&req).await
}

/// [`Authenticated`] from a request's method and headers alone (the stream's front has no
/// `HttpRequest`): the same checks in the same order as the extractor.
pub async fn authenticate(
    method: &Method,
    headers: &HeaderMap,
    state: &AuthState,
) -> Result<Authenticated, AppError> {
    let (raw, source) = presented(headers).ok_or_else(AppError::unauthorized)?;
    if source == Source::Cookie && foreign(method, headers, &state.public_origin) {
        return Err(AppError::Forbidden("cross-site request refused"));
    }
    let token = SessionToken::from_client(&raw).ok_or_else(AppError::unauthorized)?;
    let user = state.sessions.send(ResolveSession { token: token.clone() }).await??;
    let user = user.ok_or_else(AppError::unauthorized)?;
    Ok(Authenticated { user, token })
}

/// A signed-in caller; 401 otherwise.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub token: SessionToken,
}

impl FromRequest for Authenticated {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (user, token) = resolve(req).await?.ok_or_else(AppError::unauthorized)?;
            Ok(Authenticated { user, token })
        })
    }
}

/// A caller who may or may not be signed in; an unknown or expired session counts as anonymous.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<User>);

impl MaybeUser {
    pub fn id(&self) -> Option<actors::model::UserId> {
        self.0.as_ref().map(|u| u.id)
    }
}

impl FromRequest for MaybeUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(MaybeUser(resolve(req).await?.map(|(u, _)| u))) })
    }
}
