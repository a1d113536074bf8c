//! What every service shares: request logging, Prometheus metrics, `/healthz`, the API error
//! format for extractor failures, unknown paths and wrong methods.

use std::net::TcpListener;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::ServiceRequest;
use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Logger, Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use actors::store::{Ping, VideoStore};
use serde_json::json;

use crate::error::{AppError, extractors};

/// How a service tells `/healthz` that it can do its work.
#[derive(Clone)]
pub enum Health {
    /// The service can reach its database.
    Store(Addr<VideoStore>),
    /// The service has no database of its own (web): being up is being healthy.
    Up,
}

async fn healthz(health: web::Data<Health>) -> Result<HttpResponse, AppError> {
    if let Health::Store(store) = health.get_ref() {
        store.send(Ping).await??;
    }
    Ok(HttpResponse::Ok().json(json!({ "status": "ok" })))
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
    let body = body.json(json!({ "error": "method not allowed", "error_code": "001" }));
    let res = ServiceResponse::new(req, body).map_into_right_body::<B>();
    Ok(ErrorHandlerResponse::Response(res))
}

/// API.md fixes JSON bodies as `application/json; charset=utf-8`; actix-web's `json()` says
/// `application/json` alone, so the charset is added on the way out.
async fn json_charset(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    if res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == "application/json") {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    Ok(res)
}

/// The Prometheus middleware of one service, recording into `registry`.
pub fn metrics(service: &str, registry: prometheus::Registry) -> PrometheusMetrics {
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

/// Starts one service's HTTP server on `listener` with everything every service shares plus
/// the routes and app data `configure` adds.
pub fn serve<F>(
    listener: TcpListener,
    metrics: PrometheusMetrics,
    health: Health,
    configure: F,
) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let health = web::Data::new(health);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed))
            .wrap(metrics.clone())
            .wrap(Logger::new("%a \"%r\" %s %b %Dms"))
            // Outermost, so that the 405 body made above gets the charset too.
            .wrap(from_fn(json_charset))
            .app_data(health.clone())
            .app_data(extractors::json_config())
            .app_data(extractors::path_config())
            .app_data(extractors::query_config())
            .route("/healthz", web::get().to(healthz))
            .configure(configure.clone())
            .default_service(web::to(not_found))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    Ok(server)
}
