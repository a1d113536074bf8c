//! The web service: maud pages, `/api` forwarding and the stream proxy, on one origin. It is a
//! client of the api and stream services over HTTP — in one process as across processes — and
//! never reaches the actors or the database itself.

mod client;
mod direct;
mod forward;
mod pages;
mod proxy;
pub mod target;
mod upload;

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::SESSION_COOKIE;
use crate::config::BlobStoreKind;
use crate::error::AppError;

/// The cookie that remembers who the session belongs to, so that pages can ask the api about
/// that user; it proves nothing by itself (the api checks the session against it).
pub const USER_COOKIE: &str = "user";

/// Where the web service finds the other services; shared by every worker.
#[derive(Debug, Clone)]
pub struct WebState {
    /// Base URL of the api service, without a trailing slash.
    pub api: String,
    /// Base URL of the stream service, without a trailing slash.
    pub stream: String,
    /// The site's origin: the only `Origin` allowed on state-changing requests.
    pub public_origin: String,
    pub max_upload_bytes: u64,
    /// Where video files live: with `s3` the upload page sends the file straight to the
    /// object store with a ticket instead of through `/upload/:vid`.
    pub blob_store: BlobStoreKind,
}

impl WebState {
    /// Whether the cookie should be `Secure`: only when the site is served over HTTPS, else a
    /// browser would refuse to send it back.
    fn secure(&self) -> bool {
        self.public_origin.starts_with("https://")
    }

    /// A foreign `Origin` on a state-changing request is refused (cross-site request forgery):
    /// the browser's cookie rides on every request to this origin, so unlike the api the web
    /// refuses it whatever carries the session.
    fn check_origin(&self, req: &HttpRequest) -> Result<(), AppError> {
        if crate::auth::foreign_origin(req, &self.public_origin) {
            return Err(AppError::Forbidden("cross-site request refused"));
        }
        Ok(())
    }
}

/// The HTTP clients of one worker (`awc::Client` is not `Send`, so each worker builds its own).
pub struct Clients {
    /// JSON calls to the api: small bodies, short deadline.
    pub api: client::ApiHttp,
    /// The playback proxy: bodies of any size and duration, so no overall deadline. (Uploads
    /// go through hyper, which reads an early answer; see `upload.rs`.)
    pub stream: awc::Client,
}

impl Clients {
    fn new() -> Self {
        // Pooled connections are given up before the services' own 5 s keep-alive closes them,
        // so a request never goes out on a connection the other side is closing.
        let pooled = Duration::from_secs(4);
        let api = client::ApiHttp::new();
        let connector = awc::Connector::new()
            .limit(1024)
            .timeout(Duration::from_secs(5))
            .conn_keep_alive(pooled);
        let stream = awc::Client::builder()
            .connector(connector)
            .disable_timeout()
            .disable_redirects()
            .no_default_headers()
            .finish();
        Clients { api, stream }
    }
}

/// The session id the browser's cookie carries, if any.
fn session_of(req: &HttpRequest) -> Option<String> {
    req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()).filter(|v| !v.is_empty())
}

/// A cookie the way the site keeps them: `HttpOnly` (scripts never see it), `SameSite=Lax`,
/// `Path=/`.
fn cookie(name: &'static str, value: String, state: &WebState) -> Cookie<'static> {
    Cookie::build(name, value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(state.secure())
        .finish()
}

fn removal(name: &'static str, state: &WebState) -> Cookie<'static> {
    let mut c = cookie(name, String::new(), state);
    c.make_removal();
    c
}

/// `GET /statics/{name}`: CSS and JS from the binary. Their URLs carry a content hash, so they
/// may be cached for a year.
async fn statics(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AppError> {
    let file = views::statics::find(&name).ok_or(AppError::NotFound("no such file"))?;
    let etag = format!("\"{}\"", file.hash);
    let cache = (header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim() == etag)));
    if fresh {
        return Ok(HttpResponse::NotModified()
            .insert_header(cache)
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .content_type(file.content_type)
        .insert_header(cache)
        .insert_header((header::ETAG, etag))
        .body(file.body))
}

/// The web service's routes (health and metrics are added by the server builder).
pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<WebState>) {
    cfg.app_data(state)
        .app_data(web::Data::new(Clients::new()))
        .route("/", web::get().to(pages::home))
        .route("/userhome", web::get().to(pages::user_home))
        .route("/watch/{vid}", web::get().to(pages::watch))
        .route("/u/{username}", web::get().to(pages::user))
        // Resources, not bare routes, so that a wrong method gets 405 rather than 404.
        .service(web::resource("/api").route(web::post().to(forward::forward)))
        .route("/statics/{name}", web::get().to(statics));
}

/// `/videos/*` and `/upload/*` relayed to the stream service at its URL: for a web service
/// without a stream service of its own to use (with one, the stream's own routes serve them,
/// posters included).
pub fn media_proxy_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/videos/{vid}")
            .route(web::get().to(proxy::playback))
            .route(web::head().to(proxy::playback)),
    )
    .service(
        web::resource("/videos/{vid}/poster")
            .route(web::get().to(proxy::poster))
            .route(web::head().to(proxy::poster)),
    )
    .service(web::resource("/upload/{vid}").route(web::post().to(upload::upload)))
    .service(web::resource("/upload/{vid}/ticket").route(web::post().to(direct::ticket)))
    .service(web::resource("/upload/{vid}/complete").route(web::post().to(direct::complete)));
}
