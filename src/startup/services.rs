//! One builder per service: its app data, metrics registry and routes on a bound listener. Each
//! takes exactly what its service works on, so the compiler proves that it has it.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use actix::{Actor as _, Addr};
use actix_web::web;
use actors::accounts::{Accounts, AccountsConfig};
use actors::store::CommentBatcher;

use super::{Common, StartError, Stores, io_err};
use crate::api::{self, ApiState};
use crate::auth::AuthState;
use crate::config::{BlobRead, Config};
use crate::scheduler::{self, LocalWake, RemoteWake, Runner, SchedulerState, WakeScheduler};
use crate::server::{self, Health, Service};
use crate::{stream, web as web_service};

fn auth_state(common: &Common, stores: &Stores) -> web::Data<AuthState> {
    web::Data::new(AuthState {
        sessions: stores.sessions.clone(),
        public_origin: common.urls.public_origin.clone(),
    })
}

/// A fresh registry for a service that reads sessions, with `douyin_redis_errors_total` when
/// the node has Redis.
fn registry(stores: &Stores) -> Result<prometheus::Registry, StartError> {
    let registry = prometheus::Registry::new();
    if let Some(redis) = &stores.redis {
        registry.register(Box::new(redis.errors())).map_err(metrics_error("redis metrics"))?;
    }
    Ok(registry)
}

fn metrics_error(what: &str) -> impl FnOnce(prometheus::Error) -> StartError + '_ {
    move |e| StartError::Io { what: what.into(), source: io::Error::other(e) }
}

/// The api; `scheduler` is this process's runner, when it has one.
pub(super) fn start_api(
    common: &Common,
    stores: &Stores,
    scheduler: Option<&Runner>,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    // How the api tells the scheduler about a delete: by message in this process, by the
    // internal REST call when the scheduler runs elsewhere (`--role api`).
    let wake: Arc<dyn WakeScheduler> = match scheduler {
        Some(runner) => Arc::new(LocalWake(runner.dispatcher.clone())),
        None => Arc::new(RemoteWake::start(&common.urls.scheduler, common.internal_token.clone())),
    };
    let accounts =
        Accounts::new(stores.store.clone(), AccountsConfig::default(), common.config.clock.clone())
            .map_err(io_err("starting the password hashing threads"))?;
    let state = web::Data::new(ApiState {
        comments: CommentBatcher::new(stores.store.clone()).start(),
        store: stores.store.clone(),
        sessions: stores.sessions.clone(),
        accounts: accounts.start(),
        trusted_proxies: common.config.trusted_proxies.clone(),
        scheduler: wake,
    });
    let auth = auth_state(common, stores);
    let service = Service::new("api", registry(stores)?, &common.config);
    server::serve(l, service, stores.health(), None, move |cfg| {
        cfg.app_data(state.clone()).app_data(auth.clone()).configure(api::routes);
    })
    .map_err(io_err("starting api"))
}

/// What the stream's routes work on: its state (one `StreamLimiter`, whichever origin a request
/// came in by), its sessions, and the registry its metrics are in.
pub(super) struct StreamApp {
    state: web::Data<stream::StreamState>,
    auth: web::Data<AuthState>,
    registry: prometheus::Registry,
}

impl StreamApp {
    /// `scheduler` is this process's runner, when it has one.
    pub(super) fn new(
        common: &Common,
        stores: &Stores,
        scheduler: Option<&Runner>,
    ) -> Result<Self, StartError> {
        let auth = auth_state(common, stores);
        let registry = registry(stores)?;
        let metrics =
            stream::StreamMetrics::register(&registry).map_err(metrics_error("stream metrics"))?;
        let config = &common.config;
        let state = web::Data::new(stream::StreamState {
            store: stores.store.clone(),
            sessions: stores.sessions.clone(),
            blobs: stores.blobs.clone(),
            playback: config.storage.playback,
            signed_url_ttl: config.storage.signed_url_ttl(),
            limiter: start_limiter(config, stores),
            uploads: stores.uploads.clone(),
            receive_pace: config.receive_pace(),
            trusted_proxies: config.trusted_proxies.clone(),
            metrics,
            // A scheduler in another process finds the probe at its next tick.
            scheduler: match scheduler {
                Some(runner) => Arc::new(LocalWake(runner.dispatcher.clone())),
                None => Arc::new(scheduler::NextTick),
            },
        });
        Ok(StreamApp { state, auth, registry })
    }

    /// The front for a port that serves the stream's routes (local files played with
    /// `sendfile(2)`, raw uploads read in large pieces), unless `--blob-read` says to read
    /// files otherwise.
    fn front(&self, config: &Config) -> Option<server::Front> {
        (config.blob_read == BlobRead::Sendfile)
            .then(|| stream::front::front(self.state.clone(), self.auth.clone()))
    }

    /// The stream's routes, on any service's app.
    fn configure(&self) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
        let (auth, state) = (self.auth.clone(), self.state.clone());
        move |cfg| {
            cfg.app_data(auth.clone()).app_data(state.clone()).configure(stream::routes);
        }
    }
}

pub(super) fn start_stream(
    common: &Common,
    stores: &Stores,
    app: &StreamApp,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    let service = Service::new("stream", app.registry.clone(), &common.config);
    server::serve(l, service, stores.health(), app.front(&common.config), app.configure())
        .map_err(io_err("starting stream"))
}

/// The StreamLimiter, started once per stream service on the System arbiter.
fn start_limiter(config: &Config, stores: &Stores) -> Addr<actors::limiter::StreamLimiter> {
    let limiter = actors::limiter::StreamLimiter::new(actors::limiter::LimiterConfig {
        rate: config.stream_rate,
        burst: config.stream_burst,
        max_streams: config.max_streams,
        max_per_client: config.max_streams_per_client,
    });
    match &stores.redis {
        Some(redis) => limiter.with_shared_buckets(redis.clone()),
        None => limiter,
    }
    .start()
}

pub(super) fn start_scheduler(
    common: &Common,
    stores: &Stores,
    runner: &Runner,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    let registry = prometheus::Registry::new();
    runner.metrics.register(&registry).map_err(metrics_error("scheduler metrics"))?;
    let state = web::Data::new(SchedulerState {
        store: stores.store.clone(),
        dispatcher: runner.dispatcher.clone(),
        internal_token: common.internal_token.clone(),
    });
    let service = Service::new("scheduler", registry, &common.config);
    server::serve(l, service, stores.health(), None, move |cfg| {
        cfg.app_data(state.clone()).configure(scheduler::routes);
    })
    .map_err(io_err("starting scheduler"))
}

/// The web; `stream` is this process's stream service, when it has one and the web is to use
/// it (no `--stream-url` elsewhere): the public origin then serves `/videos/*` and `/upload/*`
/// with the stream's own handlers, state and limiter, rather than relaying them over loopback
/// to the same process.
pub(super) fn start_web(
    common: &Common,
    stream: Option<&StreamApp>,
    l: TcpListener,
) -> Result<actix_web::dev::Server, StartError> {
    // Otherwise the web service reaches the api and stream by their URLs even in one process,
    // so that `--role web` takes the same code path.
    let state = web::Data::new(web_service::WebState {
        api: common.urls.api.clone(),
        stream: common.urls.stream.clone(),
        public_origin: common.urls.public_origin.clone(),
        max_upload_bytes: common.config.max_upload_bytes,
        blob_store: common.config.storage.blob_store,
    });
    let service = Service::new("web", prometheus::Registry::new(), &common.config);
    let stream = stream.filter(|_| common.config.stream_url.is_none());
    // Playback on the public origin takes the stream port's own path, front and all.
    let front = stream.and_then(|app| app.front(&common.config));
    let media = stream.map(StreamApp::configure);
    server::serve(l, service, Health::Up, front, move |cfg| {
        web_service::routes(cfg, state.clone());
        match &media {
            Some(stream_routes) => stream_routes(cfg),
            None => web_service::media_proxy_routes(cfg),
        }
    })
    .map_err(io_err("starting web"))
}
