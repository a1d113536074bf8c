//! Configuration: documented defaults, then command-line flags and their environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::pace::MinRate;

mod storage;

pub use storage::{BlobSettings, BlobStoreKind, FlagError, Playback, Secret, StorageFlags};

/// The database a node keeps its rows in (`--database-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file: one host, shared by the processes on it.
    Sqlite(PathBuf),
    /// A PostgreSQL server, shared by nodes on any host.
    Postgres(Secret),
}

/// Which services this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    All,
    Api,
    Stream,
    Scheduler,
    Web,
}

impl Role {
    pub fn runs(self, service: Role) -> bool {
        self == Role::All || self == service
    }
}

/// How playback reads local video files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BlobRead {
    /// The stream port's own front sends files with `sendfile(2)` (`stream::front`); answers
    /// made by actix-web (the web origin's `/videos/*`) read them with `pread`.
    Sendfile,
    /// actix-web everywhere, reading windows with `pread` (see `actors::blob::ReadMode`).
    Pread,
    /// actix-web everywhere, reading windows from memory maps.
    Mmap,
}

impl From<BlobRead> for actors::blob::ReadMode {
    fn from(r: BlobRead) -> Self {
        match r {
            BlobRead::Sendfile | BlobRead::Pread => actors::blob::ReadMode::Pread,
            BlobRead::Mmap => actors::blob::ReadMode::Mmap,
        }
    }
}

/// douyin_club: a self-hosted short-video site.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Which services to run in this process.
    #[arg(long, env = "DOUYIN_ROLE", value_enum, default_value = "all")]
    pub role: Role,

    /// Where the database and the video files live (created when missing).
    #[arg(long, env = "DOUYIN_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Listen address of the web service.
    #[arg(long, env = "DOUYIN_WEB_ADDR", default_value = "127.0.0.1:8080")]
    pub web_addr: SocketAddr,

    /// Listen address of the api service.
    #[arg(long, env = "DOUYIN_API_ADDR", default_value = "127.0.0.1:8000")]
    pub api_addr: SocketAddr,

    /// Listen address of the stream service.
    #[arg(long, env = "DOUYIN_STREAM_ADDR", default_value = "127.0.0.1:9000")]
    pub stream_addr: SocketAddr,

    /// Listen address of the scheduler service.
    #[arg(long, env = "DOUYIN_SCHEDULER_ADDR", default_value = "127.0.0.1:9001")]
    pub scheduler_addr: SocketAddr,

    /// Where the api service is reached [default: http:// + --api-addr as bound].
    #[arg(long, env = "DOUYIN_API_URL")]
    pub api_url: Option<String>,

    /// Where the stream service is reached [default: http:// + --stream-addr as bound].
    #[arg(long, env = "DOUYIN_STREAM_URL")]
    pub stream_url: Option<String>,

    /// Where the scheduler service is reached [default: http:// + --scheduler-addr as bound].
    #[arg(long, env = "DOUYIN_SCHEDULER_URL")]
    pub scheduler_url: Option<String>,

    /// Idle lifetime of a session, in seconds.
    #[arg(long, env = "DOUYIN_SESSION_TTL_SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_ttl_secs: u64,

    /// How long a session cached by this process is trusted before the database is asked again,
    /// in milliseconds: the longest a logout made in another process can go unseen here.
    #[arg(long, env = "DOUYIN_SESSION_REVALIDATE_MS", default_value_t = 2000)]
    pub session_revalidate_ms: u64,

    /// Largest accepted video file, in bytes.
    #[arg(long, env = "DOUYIN_MAX_UPLOAD_BYTES", default_value_t = 1 << 30)]
    pub max_upload_bytes: u64,

    /// Concurrent playback and upload responses, all clients together.
    #[arg(long, env = "DOUYIN_MAX_STREAMS", default_value_t = 256)]
    pub max_streams: usize,

    /// Concurrent playback and upload responses of one client (a signed-in user, else an IP
    /// address), so that one client cannot hold every slot.
    #[arg(long, env = "DOUYIN_MAX_STREAMS_PER_CLIENT", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams_per_client: u64,

    /// Token-bucket refill: stream requests per second per client.
    #[arg(long, env = "DOUYIN_STREAM_RATE", default_value_t = 50.0)]
    pub stream_rate: f64,

    /// Token-bucket size per client.
    #[arg(long, env = "DOUYIN_STREAM_BURST", default_value_t = 100.0)]
    pub stream_burst: f64,

    /// Seconds a client may hold up a response it does not read (every service): from the first
    /// hold-up it must take at least --min-send-rate bytes per second over this window, or its
    /// connection is closed and its stream slot freed.
    #[arg(long, env = "DOUYIN_SEND_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub send_timeout_secs: u64,

    /// The slowest a client may read a response it holds up, in bytes per second.
    #[arg(long, env = "DOUYIN_MIN_SEND_RATE", default_value_t = 1024)]
    pub min_send_rate: u64,

    /// Seconds an upload's body may stall: from the first wait it must bring at least
    /// --min-receive-rate bytes per second over this window, or the upload is refused (408).
    #[arg(long, env = "DOUYIN_RECEIVE_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub receive_timeout_secs: u64,

    /// The slowest an upload's body may arrive, in bytes per second.
    #[arg(long, env = "DOUYIN_MIN_RECEIVE_RATE", default_value_t = 1024)]
    pub min_receive_rate: u64,

    /// How playback reads local video files: `sendfile` from the stream's own front, or
    /// actix-web's body with positioned reads (`pread`) or memory maps (`mmap`);
    /// `bench/stream.sh` compares them.
    #[arg(long, env = "DOUYIN_BLOB_READ", value_enum, default_value = "sendfile", hide = true)]
    pub blob_read: BlobRead,

    /// Scheduler timer period, in seconds.
    #[arg(long, env = "DOUYIN_DELETE_EVERY_SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub delete_every_secs: u64,

    /// The ffprobe the scheduler runs to read a video's duration, size and codecs: a name
    /// looked up on PATH, or a path. Missing, videos play without them until it is installed.
    #[arg(long, env = "DOUYIN_FFPROBE", default_value = "ffprobe")]
    pub ffprobe: std::ffi::OsString,

    /// The ffmpeg the scheduler runs to take a video's poster frame (as --ffprobe).
    #[arg(long, env = "DOUYIN_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: std::ffi::OsString,

    /// Videos the scheduler probes at once (each an ffprobe, then an ffmpeg).
    #[arg(long, env = "DOUYIN_MAX_PROBES", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_probes: u16,

    /// Shared secret of the internal scheduler API [default: generated once into
    /// <data-dir>/internal.token].
    #[arg(long, env = "DOUYIN_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<Secret>,

    /// The database: sqlite://<path> (a relative path is relative to the working directory) or
    /// postgres://[user[:password]@]host[:port]/database [default:
    /// sqlite://<data-dir>/douyin.sqlite3].
    #[arg(long, env = "DOUYIN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Redis as the shared cache of sessions, as `redis://[:password@]host:port/db` [default:
    /// none: each process caches for itself].
    #[arg(long, env = "DOUYIN_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// The origin people reach the site at [default: http:// + --web-addr].
    #[arg(long, env = "DOUYIN_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Peers whose X-Forwarded-For is believed (comma-separated IP addresses).
    #[arg(
        long,
        env = "DOUYIN_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Where video files live and how they play (API.md, "Scale-out").
    #[command(flatten)]
    pub storage: StorageFlags,

    /// Where the actors read the time: the real clock, or a hand-moved one in tests.
    #[arg(skip)]
    pub clock: actors::clock::SharedClock,

    /// A one-off task instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The one-off tasks.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Moves every video still in <data-dir>/videos to the object store while the site keeps
    /// serving: each file is copied, verified by its SHA-256, switched, then removed. Needs
    /// --blob-store s3 and the --s3-* flags (before the command's name), the nodes running
    /// with them, and the data dir of the node that has the files. Safe to interrupt; run it
    /// again to go on.
    MoveToObjectStore(MoveArgs),
}

/// How `move-to-object-store` goes about it.
#[derive(Debug, Clone, clap::Args)]
pub struct MoveArgs {
    /// Seconds a local file is kept after its video plays from the store, for requests that
    /// were already on their way to it.
    #[arg(long, default_value_t = 10)]
    pub linger_secs: u64,

    /// Reads at most this many MiB per second from the disk and the store together, so that
    /// playback keeps its share (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    pub max_mib_per_sec: f64,
}

impl Config {
    /// The programs media jobs run.
    pub fn media_tools(&self) -> actors::media::MediaTools {
        actors::media::MediaTools::new(self.ffprobe.clone(), self.ffmpeg.clone())
    }

    /// The configuration with every default and nothing from the environment (a developer's
    /// `DOUYIN_*` variables must not leak into tests).
    pub fn defaults_for(data_dir: PathBuf) -> Self {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let command = Config::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["douyin_club"]);
        // Every field has a default, and defaults always parse: a failure here is a bug in the
        // attributes above, found by the first test that runs.
        let mut cfg = Config::from_arg_matches(&matches).expect("the defaults form a valid Config");
        cfg.data_dir = data_dir;
        cfg
    }

    /// How fast clients must take the responses they hold up.
    pub fn send_pace(&self) -> MinRate {
        MinRate {
            window: Duration::from_secs(self.send_timeout_secs),
            bytes_per_sec: self.min_send_rate,
        }
    }

    /// How fast an upload's body must arrive while we wait for it.
    pub fn receive_pace(&self) -> MinRate {
        MinRate {
            window: Duration::from_secs(self.receive_timeout_secs),
            bytes_per_sec: self.min_receive_rate,
        }
    }

    /// The database `--database-url` names, checked (no connection yet), or the data dir's
    /// SQLite file. The URL is never echoed: it may hold a password.
    pub fn database(&self) -> Result<Database, FlagError> {
        let Some(url) = &self.database_url else {
            return Ok(Database::Sqlite(self.data_dir.join("douyin.sqlite3")));
        };
        let bad = |why: &str| FlagError { flag: "--database-url", why: why.to_owned() };
        let url = url.expose();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return actors::store::db::check_postgres_url(url)
                .map(|()| Database::Postgres(Secret::new(url)))
                .map_err(|why| bad(&why));
        }
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.trim().is_empty() => Ok(Database::Sqlite(PathBuf::from(path))),
            _ => Err(bad("must be sqlite://<path> or postgres://[user[:password]@]host[:port]/db")),
        }
    }

    /// The shared cache `--redis-url` names, checked (no connection yet).
    pub fn redis(&self) -> Result<Option<actors::cache::RedisCache>, FlagError> {
        let Some(url) = &self.redis_url else { return Ok(None) };
        actors::cache::RedisCache::new(url.expose())
            .map(Some)
            .map_err(|why| FlagError { flag: "--redis-url", why })
    }

    /// The public origin, without a trailing slash.
    pub fn public_origin(&self, web_addr: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{web_addr}"),
        }
    }
}
