//! One builder per service: its app data, metrics registry and routes on a bound listener.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use actix::{Actor as _, Addr};
use actix_web::web;
use actors::session::Session;
use actors::store::{CommentBatcher, VideoStore};

use super::{NodeContext, StartError, io_err};
use crate::api::{self, ApiState};
use crate::auth::AuthState;
use crate::config::{Config, Role};
use crate::scheduler::{self, LocalWake, NoWake, RemoteWake, SchedulerState, WakeScheduler};
use crate::server::{self, Health};
use crate::{stream, web as web_service};

fn sessions_of(ctx: &NodeContext) -> Addr<Session> {
    // The Session actor starts with the store, which every role but web opens.
    ctx.sessions.clone().expect("sessions start with the store")
}

fn auth_state(ctx: &NodeContext) -> web::Data<AuthState> {
    web::Data::new(AuthState {
        sessions: sessions_of(ctx),
        public_origin: ctx.urls.public_origin.clone(),
    })
}

fn store_of(ctx: &NodeContext) -> Addr<VideoStore> {
    // Every role but web opens the store in `Node::start`.
    ctx.store.clone().expect("the store is started for this role")
}

pub(super) fn start_api(
    ctx: &NodeContext,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    let store = store_of(ctx);
    let state = web::Data::new(ApiState {
        comments: CommentBatcher::new(store.clone()).start(),
        store: store.clone(),
        sessions: sessions_of(ctx),
        scheduler: wake_for(ctx),
    });
    let auth = auth_state(ctx);
    let metrics = server::metrics("api", prometheus::Registry::new());
    server::serve(l, metrics, Health::Store(store), move |cfg| {
        cfg.app_data(state.clone()).app_data(auth.clone()).configure(api::routes);
    })
    .map_err(io_err("starting api"))
}

/// How the api tells the scheduler about a delete: by message in this process, by the internal
/// REST call when the scheduler runs elsewhere (`--role api`).
fn wake_for(ctx: &NodeContext) -> Arc<dyn WakeScheduler> {
    match (&ctx.scheduler, ctx.config.role) {
        (Some(runner), _) => Arc::new(LocalWake(runner.dispatcher.clone())),
        (None, Role::Api) => {
            Arc::new(RemoteWake::start(&ctx.urls.scheduler, ctx.internal_token.clone()))
        }
        (None, _) => Arc::new(NoWake),
    }
}

pub(super) fn start_stream(
    ctx: &NodeContext,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    let store = store_of(ctx);
    let auth = auth_state(ctx);
    let registry = prometheus::Registry::new();
    let metrics = stream::StreamMetrics::register(&registry).map_err(|e| StartError::Io {
        what: "stream metrics".into(),
        source: io::Error::other(e),
    })?;
    let state = web::Data::new(stream::StreamState {
        store: store.clone(),
        sessions: sessions_of(ctx),
        // Every role but web opens the blob store in `Node::start`, beside the database.
        blobs: ctx.blobs.clone().expect("the blob store is opened with the store"),
        limiter: start_limiter(&ctx.config),
        max_upload_bytes: ctx.config.max_upload_bytes,
        trusted_proxies: ctx.config.trusted_proxies.clone(),
        metrics,
    });
    let metrics = server::metrics("stream", registry);
    server::serve(l, metrics, Health::Store(store), move |cfg| {
        cfg.app_data(auth.clone()).app_data(state.clone()).configure(stream::routes);
    })
    .map_err(io_err("starting stream"))
}

/// The StreamLimiter, started once per stream service on the System arbiter.
fn start_limiter(config: &Config) -> Addr<actors::limiter::StreamLimiter> {
    actors::limiter::StreamLimiter::new(actors::limiter::LimiterConfig {
        rate: config.stream_rate,
        burst: config.stream_burst,
        max_streams: config.max_streams,
    })
    .start()
}

pub(super) fn start_scheduler(
    ctx: &NodeContext,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    let store = store_of(ctx);
    // Started in `Node::start` whenever the scheduler's listener is bound.
    let runner = ctx.scheduler.clone().expect("the runner starts with the scheduler's listener");
    let registry = prometheus::Registry::new();
    runner.metrics.register(&registry).map_err(|e| StartError::Io {
        what: "registering the scheduler metrics".into(),
        source: io::Error::other(e),
    })?;
    let state = web::Data::new(SchedulerState {
        store: store.clone(),
        dispatcher: runner.dispatcher,
        internal_token: ctx.internal_token.clone(),
    });
    let metrics = server::metrics("scheduler", registry);
    server::serve(l, metrics, Health::Store(store), move |cfg| {
        cfg.app_data(state.clone()).configure(scheduler::routes);
    })
    .map_err(io_err("starting scheduler"))
}

pub(super) fn start_web(
    ctx: &NodeContext,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    // The web service reaches the api and stream by their URLs even in one process, so that
    // `--role web` takes the same code path.
    let state = web::Data::new(web_service::WebState {
        api: ctx.urls.api.clone(),
        stream: ctx.urls.stream.clone(),
        public_origin: ctx.urls.public_origin.clone(),
        max_upload_bytes: ctx.config.max_upload_bytes,
    });
    let metrics = server::metrics("web", prometheus::Registry::new());
    server::serve(l, metrics, Health::Up, move |cfg| web_service::routes(cfg, state.clone()))
        .map_err(io_err("starting web"))
}
