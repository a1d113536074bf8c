//! The stream service: Range playback and streaming upload behind the StreamLimiter.

mod direct;
pub mod front;
mod limit;
mod playback;
mod poster;
mod range;
mod upload;

use std::net::IpAddr;
use std::sync::Arc;

use actix::Addr;
use actix_web::middleware::from_fn;
use actix_web::web;
use actors::blob::Blobs;
use actors::limiter::StreamLimiter;
use actors::session::Session;
use actors::store::VideoStore;
use actors::upload::Uploads;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::config::Playback;
use crate::pace::MinRate;
use crate::scheduler::WakeScheduler;

/// What the stream handlers share.
#[derive(Debug)]
pub struct StreamState {
    pub store: Addr<VideoStore>,
    pub sessions: Addr<Session>,
    pub blobs: Blobs,
    /// How object-store videos play (files always play through the service).
    pub playback: Playback,
    /// Lifetime of signed playback URLs (and upload tickets).
    pub signed_url_ttl: std::time::Duration,
    pub limiter: Addr<StreamLimiter>,
    pub uploads: Uploads,
    /// How fast an upload's body must keep arriving while we wait for it.
    pub receive_pace: MinRate,
    pub trusted_proxies: Vec<IpAddr>,
    pub metrics: StreamMetrics,
    /// Told when an upload made a video ready (its probe job is queued).
    pub scheduler: Arc<dyn WakeScheduler>,
}

/// The stream's own Prometheus series, beside the per-route request metrics.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    pub active: IntGauge,
    pub rejections: IntCounter,
    pub bytes_served: IntCounter,
    pub bytes_uploaded: IntCounter,
    /// Answers of the stream's front (`front`: playback and raw uploads), by status:
    /// actix-web's request metrics do not see them.
    pub front_requests: IntCounterVec,
}

impl StreamMetrics {
    /// Registers the series in `registry` (a fresh one per service, so names cannot clash).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let opts = |name: &str, help: &str| {
            Opts::new(name, help).namespace("douyin").const_label("service", "stream")
        };
        let m = StreamMetrics {
            active: IntGauge::with_opts(opts(
                "stream_active_streams",
                "playback and upload responses holding a stream slot",
            ))?,
            rejections: IntCounter::with_opts(opts(
                "stream_limiter_rejections_total",
                "requests refused by the stream limiter (429)",
            ))?,
            bytes_served: IntCounter::with_opts(opts(
                "stream_bytes_served_total",
                "video bytes handed to clients",
            ))?,
            bytes_uploaded: IntCounter::with_opts(opts(
                "stream_bytes_uploaded_total",
                "upload bytes received",
            ))?,
            front_requests: IntCounterVec::new(
                opts(
                    "stream_front_requests_total",
                    "answers sent by the stream's front (playback and raw uploads)",
                ),
                &["status"],
            )?,
        };
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.bytes_served.clone()))?;
        registry.register(Box::new(m.bytes_uploaded.clone()))?;
        registry.register(Box::new(m.front_requests.clone()))?;
        Ok(m)
    }
}

/// The stream's routes (health and metrics are added by the server builder). All sit behind
/// the limiter, so every request — a 404 included — costs a token and holds a slot.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/videos/{vid}")
            .wrap(from_fn(limit::limit))
            .route(web::get().to(playback::play))
            .route(web::head().to(playback::play)),
    )
    .service(
        web::resource("/videos/{vid}/poster")
            .wrap(from_fn(limit::limit))
            .route(web::get().to(poster::poster))
            .route(web::head().to(poster::poster)),
    )
    .service(
        web::resource("/upload/{vid}")
            .wrap(from_fn(limit::limit))
            .route(web::post().to(upload::upload)),
    )
    .service(
        web::resource("/upload/{vid}/ticket")
            .wrap(from_fn(limit::limit))
            .route(web::post().to(direct::ticket)),
    )
    .service(
        web::resource("/upload/{vid}/complete")
            .wrap(from_fn(limit::limit))
            .route(web::post().to(direct::complete)),
    );
}
