//! `VideoStore`: the only code that touches the database, SQLite or PostgreSQL (see [`db`]). A
//! `SyncArbiter` of these actors shares one r2d2 pool; every message runs on the arbiter's own
//! threads, never on an async executor.

mod batch;
mod claims;
mod comments;
pub mod db;
mod deletions;
mod feed;
mod jobs;
mod locations;
mod media;
mod migrate;
mod name_keys;
mod tickets;
mod users;
mod videos;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use r2d2_sqlite::SqliteConnectionManager;
use time::OffsetDateTime;

use crate::changes::Changes;
use crate::error::StoreError;

pub use batch::{Batch, Batchable, Batcher, CommentBatcher};
pub use claims::{ClaimJobs, Heartbeat, Incarnation, Liveness, SchedulerNode};
pub use comments::{CreateComment, DeleteComment, ListComments};
pub use deletions::{
    CompleteDeletion, EnqueueDeletion, QueueStalePending, Remnants, VideoRemnants,
};
pub use jobs::{FailJob, JobQueueStats, ListJobs, QueueStats, ReleaseWaiting, WaitForTool};
pub use locations::{FileToMove, FilesToMove, SwitchToObjectStore, Whereabouts, WhereaboutsOf};
pub use media::{DropProbe, ProbeSubject, ProbeTarget, RecordProbe};
pub use tickets::{
    DueTickets, ForgetTicket, LookupVideo, MarkDirectReady, RecordTicket, TicketRecord, VideoRow,
};
pub use users::{
    Credentials, FindCredentials, InsertSession, InsertUser, LoadSession, PurgeSessions,
    RemoveSession, SessionRecord, SessionRevocations, TouchSession,
};
pub use videos::{
    CreateVideo, DeleteVideo, GetPlayable, GetVideo, KnownVideoIds, ListVideos, MarkReady,
};

use db::Row;
pub use db::{Conn, Db, Pool};

/// Owns database access. Start it with [`VideoStore::start`].
#[derive(Debug)]
pub struct VideoStore {
    pool: Pool,
    /// Shared by every thread of the arbiter.
    feed: Arc<feed::FeedCache>,
    /// Reads of the count of logouts on PostgreSQL, shared likewise.
    logouts: Arc<feed::VersionReads>,
}

impl Actor for VideoStore {
    type Context = SyncContext<Self>;
}

/// SQLite's busy handler: called while another connection — another process's, on a shared
/// data dir — holds the write lock, `attempt` times so far; `true` waits and tries again.
/// SQLite's own `busy_timeout` sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries, far longer than
/// a group commit holds the lock (about a millisecond): two api processes posting comments
/// through nginx managed 9.4k req/s against one process's 21k (`bench/cluster.sh`). This one
/// tries again within 50 µs, then 200 µs, then every millisecond, for about five seconds in
/// all: 12.9–13.6k req/s, p99 13.5 ms instead of 23.5 ms.
/// What every SQLite connection of the store is set up with.
fn init_sqlite(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    // Room for every list statement (one per page size in use) beside the rest.
    c.set_prepared_statement_cache_capacity(128);
    // The busy handler first: it queues writers instead of failing them (processes starting
    // together on one new data dir each switch and migrate, one after the other).
    c.busy_handler(Some(wait_for_the_lock))?;
    // WAL lets readers run beside the writer; synchronous=FULL makes every commit durable
    // before the reply (a 204 never outlives a power cut); foreign keys are off by default.
    // Each connection's page cache is held to 512 KiB (SQLite's default is 2 MiB): the hot
    // pages of a feed or a comment page are few, the OS page cache holds the file anyway, and
    // six pooled connections at 2 MiB kept up to 12 MiB resident for good after a busy spell.
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -512;",
    )
}

fn wait_for_the_lock(attempt: i32) -> bool {
    let pause = match attempt {
        0..10 => Duration::from_micros(50),
        10..100 => Duration::from_micros(200),
        100..5000 => Duration::from_millis(1),
        _ => return false,
    };
    std::thread::sleep(pause);
    true
}

impl VideoStore {
    /// Opens (creating when missing) the database at `path`, applies the schema migrations and
    /// returns the pool. Blocking: call it from a blocking thread.
    pub fn open(path: &Path, pool_size: u32) -> Result<Pool, StoreError> {
        // One connection first, alone: it switches a new file to WAL and migrates it. The
        // pool's connections open after (r2d2 opens them all at once, on threads of its own),
        // when the switch is done and their own `journal_mode = WAL` is a read: beside it, a
        // switch could fail with "database is locked", which no busy handler waits out.
        let mut first = rusqlite::Connection::open(path)?;
        init_sqlite(&first)?;
        migrate::apply(&mut first)?;
        drop(first);
        let manager = SqliteConnectionManager::file(path).with_init(|c| init_sqlite(c));
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(10))
            // A connection from this pool cannot go stale (it is a local file), and the check
            // costs a round trip into SQLite on every message.
            .test_on_check_out(false)
            .build(manager)?;
        Ok(Pool::Sqlite(pool))
    }

    /// Connects to the PostgreSQL database `url` names, applies the schema migrations and
    /// returns the pool. Blocking: call it from a blocking thread.
    pub fn open_postgres(url: &str, pool_size: u32) -> Result<Pool, StoreError> {
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            // While the server is down a request fails within this, rather than queueing.
            .connection_timeout(Duration::from_secs(2))
            // No round trip on every check-out: a connection that died while idle is replaced
            // by its first statement (see `db::PgConn::run`).
            .test_on_check_out(false)
            .error_handler(Box::new(db::ConnectErrors::default()))
            .build(db::PgManager::new(url)?)?;
        migrate::apply_postgres(&mut Conn::Postgres(Box::new(pool.get()?)))?;
        Ok(Pool::Postgres(pool))
    }

    /// Starts `threads` store actors over `pool`, alone on its database.
    pub fn start(pool: Pool, threads: usize) -> Addr<Self> {
        Self::start_with(pool, threads, Changes::in_process())
    }

    /// Starts `threads` store actors over `pool`, whose feed cache follows `changes`: the
    /// changes of every process on the database.
    pub fn start_with(pool: Pool, threads: usize, changes: Changes) -> Addr<Self> {
        let feed = Arc::new(feed::FeedCache::new(Duration::from_secs(1), changes));
        let logouts = Arc::new(feed::VersionReads::default());
        SyncArbiter::start(threads, move || VideoStore {
            pool: pool.clone(),
            feed: feed.clone(),
            logouts: logouts.clone(),
        })
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get()
    }
}

/// Checks that the database answers (for `/healthz`).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Ping;

impl Handler<Ping> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, _: Ping, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().query_one("SELECT 1", &[], |r| r.get::<i64>(0))?;
        Ok(())
    }
}

pub fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

pub(crate) fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_ms(ms: i64) -> OffsetDateTime {
    // Every stored time was written by to_ms from a valid OffsetDateTime, so it is in range;
    // a corrupt value falls back to the epoch rather than failing a whole list.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Reads a stored UUID column; a malformed one is database corruption, reported as such.
pub(crate) fn uuid_col(row: &Row<'_>, idx: usize) -> Result<uuid::Uuid, StoreError> {
    let s: String = row.get(idx)?;
    uuid::Uuid::try_parse(&s)
        .map_err(|e| StoreError::Internal(format!("a malformed id {s:?} in column {idx}: {e}")))
}
