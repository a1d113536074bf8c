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
use actors::blob::{Blobs, LocalBlobs, S3Blobs};
use actors::cache::{RedisCache, RedisSessions};
use actors::changes::Changes;
use actors::session::{DbSessions, Session, SessionConfig, SessionStore};
use actors::store::{Pool, VideoStore};
use actors::upload::Uploads;
use base64::Engine as _;
use rand::RngCore as _;

use crate::config::{BlobSettings, Config, Database, Role};
use crate::scheduler::{self, Runner};
use services::{StreamApp, start_api, start_scheduler, start_stream, start_web};

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

/// The data-dir state every service but web works on: the store, the session cache and the
/// video files, opened once per node and shared by the services of this process.
#[derive(Clone)]
pub struct Stores {
    pub store: Addr<VideoStore>,
    pub sessions: Addr<Session>,
    pub blobs: Blobs,
    /// One per node: the stream's uploads and the scheduler's reconciliation share its claims.
    pub uploads: Uploads,
    /// The shared cache, with `--redis-url`.
    pub redis: Option<RedisCache>,
}

/// What every service builder reads: the configuration, where the services are, the secret.
#[derive(Clone)]
pub struct Common {
    pub config: Arc<Config>,
    pub urls: Urls,
    pub internal_token: Arc<str>,
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
    stores: Option<Stores>,
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
    /// A flag's value cannot work; the message names the flag.
    #[error(transparent)]
    Flag(#[from] crate::config::FlagError),
    #[error("object store: {0}")]
    ObjectStore(#[from] actors::blob::s3::S3Error),
    /// PostgreSQL could not be reached or migrated at start-up; the URL (and its password)
    /// is not repeated.
    #[error("--database-url: PostgreSQL: {0}")]
    Postgres(actors::StoreError),
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
        return Ok(t.expose().into());
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
    // Processes starting together on a new data dir must all end up with one token: each
    // writes its own whole file, then links it into place, which only the first can do; the
    // others read the winner's.
    let tmp = data_dir.join(format!("internal.token.{}.{:x}", std::process::id(), bytes[0]));
    let written = write_private(&tmp, token.as_bytes()).and_then(|()| {
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        linked
    });
    match written {
        Ok(()) => Ok(token.into()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let winner = std::fs::read_to_string(&path)
                .map_err(io_err(format!("reading {}", path.display())))?;
            Ok(winner.trim().into())
        }
        Err(e) => Err(io_err(format!("writing {}", path.display()))(e)),
    }
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

/// Opens the data dir for a one-off task rather than a node: its store actor and its blobs,
/// as a node opens them (the flags checked first).
pub async fn open_for_task(config: &Config) -> Result<(Addr<VideoStore>, Blobs), StartError> {
    let settings = config.storage.settings()?;
    let cfg = config.clone();
    let opened = web::block(move || -> Result<_, StartError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(io_err(format!("creating {}", cfg.data_dir.display())))?;
        open_data_dir(&cfg, &settings)
    })
    .await
    .map_err(|e| StartError::Io {
        what: "opening the data dir".into(),
        source: io::Error::other(e),
    })??;
    Ok((VideoStore::start_with(opened.pool, STORE_THREADS, opened.changes), opened.blobs))
}

/// Opens the database (private to its owner: it holds password and session hashes) and the
/// video directory. Blocking.
fn open_data_dir(cfg: &Config, settings: &BlobSettings) -> Result<Opened, StartError> {
    let (pool, changes) = match cfg.database()? {
        Database::Sqlite(db) => open_sqlite(&db)?,
        // Nodes on several hosts share no memory: the feed's version is a row of the database
        // (see actors' store/feed.rs), and sessions are asked of the database or Redis.
        Database::Postgres(url) => (
            VideoStore::open_postgres(url.expose(), STORE_THREADS as u32 + 2)
                .map_err(StartError::Postgres)?,
            Changes::in_process(),
        ),
    };
    let videos = cfg.data_dir.join("videos");
    // With the object store too: it holds the files not moved there yet.
    let files = Arc::new(
        LocalBlobs::open(&videos, cfg.blob_read.into())
            .map_err(io_err(format!("opening {}", videos.display())))?,
    );
    let blobs = match settings {
        BlobSettings::Files => Blobs::files_only(files),
        BlobSettings::S3(s3) => Blobs::object_store(Arc::new(S3Blobs::new((**s3).clone())?), files),
    };
    Ok(Opened { pool, blobs, changes })
}

/// Opens the SQLite file `db` and the change counters beside it.
fn open_sqlite(db: &Path) -> Result<(Pool, Changes), StartError> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    make_private(db).map_err(io_err(format!("securing {}", db.display())))?;
    let pool = VideoStore::open(db, STORE_THREADS as u32 + 2)?;
    // Every process on this data dir shares the change counters of its caches.
    // Beside the database, as SQLite keeps its `-shm`: whoever shares the file shares these.
    let mut changes_path = db.to_path_buf().into_os_string();
    changes_path.push("-changes");
    let changes_path = PathBuf::from(changes_path);
    let changes = Changes::open(&changes_path)
        .map_err(io_err(format!("opening {}", changes_path.display())))?;
    Ok((pool, changes))
}

/// What [`open_data_dir`] opened.
struct Opened {
    pool: Pool,
    blobs: Blobs,
    changes: Changes,
}

/// Creates the database file with mode 0600 before SQLite does (its `-wal` and `-shm` files
/// take the database file's mode), and narrows the mode of files an older version created.
fn make_private(db: &Path) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(db)?;
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    for path in [db.as_os_str(), &wal, &shm] {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

impl Stores {
    /// What `/healthz` of a service working on these stores checks.
    pub fn health(&self) -> crate::server::Health {
        crate::server::Health::Stores {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            redis: self.redis.clone(),
        }
    }

    /// Starts the store actors and the session cache over an opened data dir.
    fn start(opened: Opened, redis: Option<RedisCache>, config: &Config) -> Self {
        let Opened { pool, blobs, changes } = opened;
        let pool_is_postgres = pool.is_postgres();
        let store = VideoStore::start_with(pool, STORE_THREADS, changes.clone());
        let db = DbSessions(store.clone());
        let (session_store, revalidate_after): (Arc<dyn SessionStore>, _) = match &redis {
            // Redis is where every node reads sessions: asked on every request, so a logout
            // on any node is seen by the next request on every other.
            Some(redis) => (Arc::new(RedisSessions::new(db, redis.clone())), Duration::ZERO),
            None => (Arc::new(db), Duration::from_millis(config.session_revalidate_ms)),
        };
        let session_config =
            SessionConfig { ttl: Duration::from_secs(config.session_ttl_secs), revalidate_after };
        let sessions =
            Session::new(session_store, session_config, config.clock.clone()).with_changes(changes);
        // PostgreSQL's nodes may be on several hosts, which share no change counters: without
        // Redis they learn of a logout elsewhere from the count the database keeps.
        let sessions = match (&redis, pool_is_postgres) {
            (None, true) => sessions.with_store_revocations(),
            _ => sessions,
        }
        .start();
        let uploads = Uploads::new(store.clone(), blobs.clone(), config.max_upload_bytes);
        Stores { store, sessions, blobs, uploads, redis }
    }
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
        let needs_stores =
            [Role::Api, Role::Stream, Role::Scheduler].into_iter().any(|s| role.runs(s));
        // Flags that cannot work stop start-up before anything is bound or written. A web-only
        // node opens no store: it needs neither the object store's credentials nor Redis (it
        // reads only which blob store the site uses).
        let blob_settings = needs_stores.then(|| config.storage.settings()).transpose()?;
        if needs_stores && let Database::Postgres(url) = config.database()? {
            // A PostgreSQL that cannot be reached (or refuses the password) is a flag that
            // cannot work too: said before any port is bound or any file written.
            let url = url.expose().to_owned();
            web::block(move || actors::store::db::reach(&url))
                .await
                .map_err(|e| StartError::Io {
                    what: "start-up".into(),
                    source: io::Error::other(e),
                })?
                .map_err(StartError::Postgres)?;
        }
        let redis = if needs_stores { config.redis()? } else { None };

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
        let (token, node, opened) = web::block(move || -> Result<_, StartError> {
            std::fs::create_dir_all(&cfg.data_dir)
                .map_err(io_err(format!("creating {}", cfg.data_dir.display())))?;
            let token = internal_token(&cfg, &cfg.data_dir)?;
            let node = scheduler_addr.map(|a| scheduler::node_identity(a, &cfg.data_dir));
            let opened = blob_settings.map(|s| open_data_dir(&cfg, &s)).transpose()?;
            Ok((token, node, opened))
        })
        .await
        .map_err(|e| StartError::Io { what: "start-up".into(), source: io::Error::other(e) })??;

        let urls = Urls {
            api: url_or(&config.api_url, api_addr, config.api_addr),
            stream: url_or(&config.stream_url, stream_addr, config.stream_addr),
            scheduler: url_or(&config.scheduler_url, scheduler_addr, config.scheduler_addr),
            public_origin: config.public_origin(web_addr.unwrap_or(config.web_addr)),
        };
        let common =
            Common { config: Arc::new(config), urls: urls.clone(), internal_token: token.clone() };

        let mut servers = Vec::new();
        let mut scheduler = None;
        let mut stream_app = None;
        let stores = opened.map(|opened| Stores::start(opened, redis, &common.config));
        if let Some(stores) = &stores {
            if let Some(s3) = stores.blobs.s3() {
                // Browsers upload straight to the store (tickets) and play from it (redirects)
                // only if the bucket lets the site's pages do so.
                match s3.put_bucket_cors(&urls.public_origin).await {
                    Ok(()) => log::info!("object store: CORS allows {}", urls.public_origin),
                    Err(e) => log::warn!("object store: cannot set the bucket's CORS rule: {e}"),
                }
            }
            if let (Some(l), Some(node)) = (scheduler_l, node) {
                let every = Duration::from_secs(common.config.delete_every_secs);
                let grace = Duration::from_secs(common.config.storage.direct_upload_grace_secs);
                let uploads = stores.uploads.clone();
                let tools = common.config.media_tools();
                let runner = Runner::start(
                    stores.store.clone(),
                    uploads,
                    every,
                    node,
                    grace,
                    tools,
                    common.config.max_probes.into(),
                )
                .await?;
                servers.push(start_scheduler(&common, stores, &runner, l)?);
                log::info!("scheduler service listening on {}", urls.scheduler);
                scheduler = Some(runner);
            }
            if let Some(l) = api_l {
                servers.push(start_api(&common, stores, scheduler.as_ref(), l)?);
                log::info!("api service listening on {}", urls.api);
            }
            if let Some(l) = stream_l {
                let app = StreamApp::new(&common, stores, scheduler.as_ref())?;
                servers.push(start_stream(&common, stores, &app, l)?);
                log::info!("stream service listening on {}", urls.stream);
                stream_app = Some(app);
            }
        }
        if let Some(l) = web_l {
            servers.push(start_web(&common, stream_app.as_ref(), l)?);
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
            stores,
            scheduler,
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
        self.stores.as_ref().map(|s| s.store.clone())
    }

    /// The session actor, when this node's role opens the database (tests make sessions with
    /// it).
    pub fn sessions(&self) -> Option<Addr<Session>> {
        self.stores.as_ref().map(|s| s.sessions.clone())
    }

    /// The local video files, when this node's role opens them and keeps new files there.
    pub fn blobs(&self) -> Option<Arc<LocalBlobs>> {
        let stores = self.stores.as_ref()?;
        stores.blobs.s3().is_none().then(|| stores.blobs.files().clone())
    }

    /// The blob backend, when this node's role opens it.
    pub fn blob_backend(&self) -> Option<Blobs> {
        self.stores.as_ref().map(|s| s.blobs.clone())
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
