//! Building a node: open the store, start the actors once, bind every service's listener, then
//! start the HTTP servers. Production (`main`) and the tests use this same function.

mod services;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};
use actix_web::dev::ServerHandle;
use actix_web::web;
use actors::blob::LocalBlobs;
use actors::session::{Session, SqliteSessions};
use actors::store::VideoStore;
use base64::Engine as _;
use rand::RngCore as _;

use crate::config::{Config, Role};
use crate::scheduler::{self, Runner};
use services::{start_api, start_scheduler, start_stream, start_web};

/// SQLite threads: readers run beside the one writer WAL allows; more than this only queues.
const STORE_THREADS: usize = 4;

/// Where each service of this node is reached (the bound addresses, or the configured URLs).
#[derive(Debug, Clone)]
pub struct Urls {
    pub api: String,
    pub stream: String,
    pub scheduler: String,
    pub public_origin: String,
}

/// Everything the service builders share; built once per node.
#[derive(Clone)]
pub struct NodeContext {
    pub config: Arc<Config>,
    pub urls: Urls,
    pub internal_token: Arc<str>,
    pub store: Option<Addr<VideoStore>>,
    pub sessions: Option<Addr<Session>>,
    /// Video files, `<data-dir>/videos`; opened with the store.
    pub blobs: Option<Arc<LocalBlobs>>,
    /// The deletion runner, when this process runs the scheduler.
    pub scheduler: Option<Runner>,
}

/// A running node: its bound addresses and the handles to stop it.
pub struct Node {
    pub api_addr: Option<SocketAddr>,
    pub stream_addr: Option<SocketAddr>,
    pub scheduler_addr: Option<SocketAddr>,
    pub web_addr: Option<SocketAddr>,
    pub urls: Urls,
    pub data_dir: PathBuf,
    pub internal_token: Arc<str>,
    store: Option<Addr<VideoStore>>,
    blobs: Option<Arc<LocalBlobs>>,
    scheduler: Option<Runner>,
    handles: StopHandle,
    servers: Vec<actix_web::dev::Server>,
}

/// Stops every server of a node; cheap to clone into a signal task.
#[derive(Clone)]
pub struct StopHandle(Vec<ServerHandle>);

impl StopHandle {
    /// Stops every server: gracefully lets in-flight responses finish (up to 5 s).
    pub async fn stop(&self, graceful: bool) {
        futures_util::future::join_all(self.0.iter().map(|h| h.stop(graceful))).await;
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("urls", &self.urls).finish_non_exhaustive()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("database: {0}")]
    Store(#[from] actors::StoreError),
    #[error(transparent)]
    Scheduler(#[from] scheduler::RunnerError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

fn bind(addr: SocketAddr, name: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(io_err(format!("cannot listen on {addr} for {name}")))
}

/// The internal token: the flag's value, else the one stored in `<data-dir>/internal.token`
/// (created once, mode 0600, so every service of the node reads the same secret).
fn internal_token(config: &Config, data_dir: &Path) -> Result<Arc<str>, StartError> {
    if let Some(t) = &config.internal_token {
        return Ok(t.as_str().into());
    }
    let path = data_dir.join("internal.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().into()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let tmp = data_dir.join("internal.token.tmp");
    write_private(&tmp, token.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(io_err(format!("writing {}", path.display())))?;
    Ok(token.into())
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

fn url_or(configured: &Option<String>, bound: Option<SocketAddr>, fallback: SocketAddr) -> String {
    match configured {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{}", bound.unwrap_or(fallback)),
    }
}

impl Node {
    /// Starts the services `config.role` asks for. Must run inside an actix system.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        let role = config.role;
        let data_dir = config.data_dir.clone();
        let needs_store = role != Role::Web;

        // Listeners first: a taken port fails start-up before any actor or file exists.
        let listen = |service: Role, addr: SocketAddr, name: &str| {
            role.runs(service).then(|| bind(addr, name)).transpose()
        };
        let api_l = listen(Role::Api, config.api_addr, "api")?;
        let stream_l = listen(Role::Stream, config.stream_addr, "stream")?;
        let scheduler_l = listen(Role::Scheduler, config.scheduler_addr, "scheduler")?;
        let web_l = listen(Role::Web, config.web_addr, "web")?;

        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let (api_addr, stream_addr, scheduler_addr, web_addr) =
            (local(&api_l), local(&stream_l), local(&scheduler_l), local(&web_l));

        // Blocking start-up work (directories, token file, the scheduler's identity, opening
        // and migrating SQLite) runs on a blocking thread, never on the System arbiter.
        let cfg = config.clone();
        let (token, node, pool, blobs) = web::block(move || -> Result<_, StartError> {
            std::fs::create_dir_all(&cfg.data_dir)
                .map_err(io_err(format!("creating {}", cfg.data_dir.display())))?;
            let token = internal_token(&cfg, &cfg.data_dir)?;
            let node = scheduler_addr.map(|a| scheduler::node_identity(a, &cfg.data_dir));
            if !needs_store {
                return Ok((token, node, None, None));
            }
            let db = cfg.data_dir.join("douyin.sqlite3");
            let pool = VideoStore::open(&db, STORE_THREADS as u32 + 2)?;
            let videos = cfg.data_dir.join("videos");
            let blobs = LocalBlobs::open(&videos)
                .map_err(io_err(format!("opening {}", videos.display())))?;
            Ok((token, node, Some(pool), Some(Arc::new(blobs))))
        })
        .await
        .map_err(|e| StartError::Io { what: "start-up".into(), source: io::Error::other(e) })??;

        let store = pool.map(|p| VideoStore::start(p, STORE_THREADS));
        let sessions = store.as_ref().map(|s| {
            Session::new(
                Arc::new(SqliteSessions(s.clone())),
                Duration::from_secs(config.session_ttl_secs),
            )
            .start()
        });

        let urls = Urls {
            api: url_or(&config.api_url, api_addr, config.api_addr),
            stream: url_or(&config.stream_url, stream_addr, config.stream_addr),
            scheduler: url_or(&config.scheduler_url, scheduler_addr, config.scheduler_addr),
            public_origin: config.public_origin(web_addr.unwrap_or(config.web_addr)),
        };
        let runner = match (node, &store, &blobs) {
            (Some(node), Some(store), Some(blobs)) => {
                let every = Duration::from_secs(config.delete_every_secs);
                Some(Runner::start(store.clone(), blobs.clone(), every, node).await?)
            }
            _ => None,
        };
        let ctx = NodeContext {
            config: Arc::new(config),
            urls: urls.clone(),
            internal_token: token.clone(),
            store,
            sessions,
            blobs,
            scheduler: runner,
        };

        let mut servers = Vec::new();
        if let Some(l) = api_l {
            servers.push(start_api(&ctx, l)?);
            log::info!("api service listening on {}", urls.api);
        }
        if let Some(l) = stream_l {
            servers.push(start_stream(&ctx, l)?);
            log::info!("stream service listening on {}", urls.stream);
        }
        if let Some(l) = scheduler_l {
            servers.push(start_scheduler(&ctx, l)?);
            log::info!("scheduler service listening on {}", urls.scheduler);
        }
        if let Some(l) = web_l {
            servers.push(start_web(&ctx, l)?);
            log::info!("web service listening on {}", urls.public_origin);
        }
        let handles = StopHandle(servers.iter().map(|s| s.handle()).collect());
        Ok(Node {
            api_addr,
            stream_addr,
            scheduler_addr,
            web_addr,
            urls,
            data_dir,
            internal_token: token,
            store: ctx.store.clone(),
            blobs: ctx.blobs.clone(),
            scheduler: ctx.scheduler.clone(),
            handles,
            servers,
        })
    }

    /// Runs until every server has stopped (see [`Node::stop`]).
    pub async fn run(&mut self) -> io::Result<()> {
        let servers = std::mem::take(&mut self.servers);
        for result in futures_util::future::join_all(servers).await {
            result?;
        }
        Ok(())
    }

    /// Starts the servers in the background (tests), keeping the handles to stop them.
    pub fn spawn(&mut self) {
        for server in std::mem::take(&mut self.servers) {
            actix_web::rt::spawn(server);
        }
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.handles.clone()
    }

    /// The store actor, when this node's role opens the database (tests set up rows with it).
    pub fn store(&self) -> Option<Addr<VideoStore>> {
        self.store.clone()
    }

    /// The local video files, when this node's role opens them.
    pub fn blobs(&self) -> Option<Arc<LocalBlobs>> {
        self.blobs.clone()
    }

    /// The deletion dispatcher, when this node runs the scheduler (tests send it `Tick`).
    pub fn dispatcher(&self) -> Option<Addr<actors::scheduler::Dispatcher>> {
        self.scheduler.as_ref().map(|r| r.dispatcher.clone())
    }

    /// Stops every server; see [`StopHandle::stop`].
    pub async fn stop(&self, graceful: bool) {
        self.handles.stop(graceful).await;
    }
}
