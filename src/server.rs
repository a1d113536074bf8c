//! What every service shares: request logging, Prometheus metrics, `/healthz`, the API error
//! format for extractor failures, unknown paths and wrong methods.

use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{HttpService, Protocol, error::DispatchError};
use actix_server::Server;
use actix_service::{Service as _, ServiceFactory as _, fn_factory, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::ServiceRequest;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Logger, Next, from_fn};
use actix_web::{App, HttpResponse, web};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use actors::blob::Blobs;
use actors::store::{Ping, VideoStore};
use serde_json::json;

use actors::cache::RedisCache;

use crate::config::Config;
use crate::error::{AppError, ErrorCode, extractors};
use crate::pace::{MinRate, PacedIo};

/// How a service tells `/healthz` that it can do its work.
#[derive(Clone)]
pub enum Health {
    /// The service works on the database and the blob store: both are named in the answer.
    Stores { store: Addr<VideoStore>, blobs: Blobs, redis: Option<RedisCache> },
    /// The service has no database of its own (web): being up is being healthy.
    Up,
}

/// The longest a dependency may take to answer `/healthz` before it counts as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

fn up_or_down<T, E>(r: Result<Result<T, E>, tokio::time::error::Elapsed>) -> &'static str {
    if matches!(r, Ok(Ok(_))) { "ok" } else { "down" }
}

/// API.md's `/healthz`: 200 while the database answers (a blob store that does not is
/// degraded, still 200), 503 `{"status":"down",…}` when it does not. Redis is `"off"` without
/// `--redis-url`, and a Redis that is down is degraded too.
async fn healthz(health: web::Data<Health>) -> HttpResponse {
    let Health::Stores { store, blobs, redis } = health.get_ref() else {
        return HttpResponse::Ok().json(json!({ "status": "ok" }));
    };
    let ping = async { store.send(Ping).await.map_err(drop)?.map_err(drop) };
    let redis_ping = async {
        match redis {
            Some(redis) => Some(tokio::time::timeout(HEALTH_TIMEOUT, redis.check()).await),
            None => None,
        }
    };
    let (database, blobs, redis) = futures_util::join!(
        tokio::time::timeout(HEALTH_TIMEOUT, ping),
        tokio::time::timeout(HEALTH_TIMEOUT, blobs.check()),
        redis_ping,
    );
    let (database, blobs) = (up_or_down(database), up_or_down(blobs));
    let redis = redis.map_or("off", up_or_down);
    let body =
        |status| json!({ "status": status, "database": database, "redis": redis, "blobs": blobs });
    if database == "ok" {
        HttpResponse::Ok().json(body("ok"))
    } else {
        HttpResponse::ServiceUnavailable().json(body("down"))
    }
}

async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound("no such path"))
}

/// actix-web answers a known path with a wrong method by a bare 405; give it the API's body.
fn method_not_allowed<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let (req, res) = res.into_parts();
    let mut body = HttpResponse::build(StatusCode::METHOD_NOT_ALLOWED);
    if let Some(allow) = res.headers().get(actix_web::http::header::ALLOW) {
        body.insert_header((actix_web::http::header::ALLOW, allow.clone()));
    }
    let body = body.json(AppError::body("method not allowed", ErrorCode::BadRequest));
    let res = ServiceResponse::new(req, body).map_into_right_body::<B>();
    Ok(ErrorHandlerResponse::Response(res))
}

/// Headers every answer of every service carries. API.md fixes JSON bodies as
/// `application/json; charset=utf-8` (actix-web's `json()` says `application/json` alone), and
/// `nosniff` stops a browser from reading a body as anything but its declared type (a video or
/// JSON error rendered as HTML, say).
async fn common_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    add_common_headers(res.headers_mut());
    Ok(res)
}

/// What [`common_headers`] does to an answer; the stream's front does it to its own.
pub fn add_common_headers(headers: &mut header::HeaderMap) {
    if headers.get(header::CONTENT_TYPE).is_some_and(|v| v == "application/json") {
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
}

/// What tells one service's server from another's: its name (a metrics label), its metrics
/// registry, and how fast its clients must read what they are sent.
pub struct Service {
    metrics: PrometheusMetrics,
    send_pace: MinRate,
}

impl Service {
    pub fn new(name: &str, registry: prometheus::Registry, config: &Config) -> Self {
        Self { metrics: metrics(name, registry), send_pace: config.send_pace() }
    }
}

/// The Prometheus middleware of one service, recording into `registry`.
fn metrics(service: &str, registry: prometheus::Registry) -> PrometheusMetrics {
    PrometheusMetricsBuilder::new("douyin")
        .endpoint("/metrics")
        .const_labels([("service".to_owned(), service.to_owned())].into())
        .registry(registry)
        .mask_unmatched_patterns("UNKNOWN")
        .build()
        // Fails only when the same metric is registered twice in one registry, which a fresh
        // registry per service rules out.
        .expect("a fresh registry accepts the request metrics")
}

/// How long a connection may take to send a request head, and stay idle between requests.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long an answer sent before its request body was read lingers for the client to read it.
const LINGER: Duration = Duration::from_secs(1);

/// What may take each connection before actix-web does: it answers requests itself, and either
/// ends the connection (`None`) or hands it over with the bytes it read and did not answer (the
/// stream's playback front, `crate::stream::front`).
pub type Front = Arc<
    dyn Fn(PacedIo<TcpStream>, Option<SocketAddr>) -> LocalBoxFuture<'static, Option<HandOff>>
        + Send
        + Sync,
>;

/// A connection handed to actix-web, with the bytes already read from it.
pub type HandOff = (PacedIo<TcpStream>, Bytes);

/// Starts one service's HTTP server on `listener` with everything every service shares plus
/// the routes and app data `configure` adds. The server owns the accept path (actix-server with
/// actix-http's HTTP/1 service, as actix-web's `HttpServer` builds it) so that every connection
/// is wrapped in [`PacedIo`]: a client that stops reading its response loses the connection.
/// With a `front`, each connection meets it first.
pub fn serve<F>(
    listener: TcpListener,
    service: Service,
    health: Health,
    front: Option<Front>,
    configure: F,
) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let health = web::Data::new(health);
    let Service { metrics, send_pace } = service;
    let addr = listener.local_addr()?;
    let app = move || {
        App::new()
            .wrap(ErrorHandlers::new().handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed))
            .wrap(metrics.clone())
            .wrap(Logger::new("%a \"%r\" %s %b %Dms"))
            // Outermost, so that the 405 body made above gets the charset and header too.
            .wrap(from_fn(common_headers))
            .app_data(health.clone())
            .app_data(extractors::json_config())
            .app_data(extractors::path_config())
            .app_data(extractors::query_config())
            .route("/healthz", web::get().to(healthz))
            .configure(configure.clone())
            .default_service(web::to(not_found))
    };
    let server = actix_server::Server::build()
        .listen(format!("douyin-{addr}"), listener, move || {
            let http = Rc::new(
                HttpService::build()
                    .keep_alive(KEEP_ALIVE)
                    .client_request_timeout(HEAD_TIMEOUT)
                    .client_disconnect_timeout(LINGER)
                    .local_addr(addr)
                    .finish(map_config(app(), |_| AppConfig::default())),
            );
            let front = front.clone();
            fn_factory(move || {
                let (http, front) = (http.clone(), front.clone());
                async move {
                    let http = Rc::new(http.new_service(()).await?);
                    Ok::<_, ()>(fn_service(move |io: TcpStream| {
                        connection(io, send_pace, front.clone(), http.clone())
                    }))
                }
            })
        })?
        .disable_signals()
        .shutdown_timeout(5)
        .run();
    Ok(server)
}

/// One accepted connection: paced, offered to the front, then served by actix-http.
async fn connection<S>(
    io: TcpStream,
    send_pace: MinRate,
    front: Option<Front>,
    http: Rc<S>,
) -> Result<(), DispatchError>
where
    S: actix_service::Service<
            (Prefixed<PacedIo<TcpStream>>, Protocol, Option<SocketAddr>),
            Response = (),
            Error = DispatchError,
        >,
{
    // Small answers go out at once rather than waiting for Nagle's timer.
    if let Err(e) = io.set_nodelay(true) {
        log::warn!("accepting a connection: {e}");
        return Err(DispatchError::Io(e));
    }
    let peer = io.peer_addr().ok();
    let io = PacedIo::new(io, send_pace);
    let (io, read) = match front {
        None => (io, Bytes::new()),
        Some(front) => match front(io, peer).await {
            None => return Ok(()),
            Some(handed) => handed,
        },
    };
    http.call((Prefixed { read, io }, Protocol::Http1, peer)).await
}

/// A connection whose first bytes were read by someone else: they are read again first.
pub struct Prefixed<T> {
    read: Bytes,
    io: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
