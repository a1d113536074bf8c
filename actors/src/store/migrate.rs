//! Versioned schema. On SQLite `PRAGMA user_version` says which migrations an existing
//! database has; on PostgreSQL the table `schema_migrations` does.

use rusqlite::Connection;

use crate::error::StoreError;

/// One step of the schema's history.
enum Migration {
    /// Plain SQL.
    Sql(&'static str),
    /// A step that needs Rust, such as a backfill computed by Rust code; it runs inside the
    /// step's transaction like SQL does.
    Rust(fn(&rusqlite::Transaction<'_>) -> Result<(), StoreError>),
}

/// Migration `i` brings a database from version `i` to `i + 1`. Append, never edit.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(include_str!("../../../schema.sql")),
    // 2: users.name_key, unique: look-alike names are one name.
    Migration::Rust(super::name_keys::add_name_keys),
    // 3: claims name their scheduler incarnation.
    Migration::Sql(SCHEDULER_INCARNATIONS),
    // 4: upload tickets, for reconciling direct uploads.
    Migration::Sql(UPLOAD_TICKETS),
    // 5: where each video's bytes live.
    Migration::Sql(BLOB_LOCATIONS),
    // 6: one durable queue of typed jobs; what probing a video found.
    Migration::Sql(JOBS_AND_MEDIA),
];

/// Version 3: a claim names the scheduler incarnation that made it, and incarnations keep a
/// heartbeat, so a dead scheduler's claims are freed when its node restarts or a few timer
/// periods after its last sign of life, rather than when a 60 s lease runs out
/// (see `store/claims.rs`). Plain SQL that PostgreSQL runs as well.
const SCHEDULER_INCARNATIONS: &str = "
CREATE TABLE scheduler_incarnations (
    id          TEXT    PRIMARY KEY,    -- a UUID, new at every start of a scheduler
    node        TEXT    NOT NULL,       -- the stable identity it runs as (host, address, data)
    started_at  INTEGER NOT NULL,       -- unix milliseconds
    alive_until INTEGER NOT NULL,       -- pushed forward by every heartbeat and claim
    ended_at    INTEGER                 -- set when a later incarnation of the node registered
);
CREATE INDEX scheduler_incarnations_node ON scheduler_incarnations(node);
ALTER TABLE video_del_rec ADD COLUMN claimed_by TEXT;  -- the incarnation running it, or NULL
CREATE INDEX video_del_rec_claimed ON video_del_rec(claimed_by) WHERE claimed_by IS NOT NULL;
";

/// Version 4: when the last upload ticket of a video was issued and until when the store
/// accepts it, so that reconciliation can find a direct upload whose `complete` never came and
/// look once more after the ticket has expired (see `upload/leftovers.rs`). No foreign key on
/// purpose: the ticket outlives a deleted video's row, so that an object posted after the
/// deletion is still found and removed. Plain SQL that PostgreSQL runs as well.
const UPLOAD_TICKETS: &str = "
CREATE TABLE upload_tickets (
    video_id      TEXT    PRIMARY KEY,  -- the video's UUID
    issued_at     INTEGER NOT NULL,     -- unix milliseconds, of the latest ticket
    expires_at    INTEGER NOT NULL,     -- when the store stops accepting every ticket issued
    verified_etag TEXT                  -- the object's ETag when its check made the video ready
);
CREATE INDEX upload_tickets_issued ON upload_tickets(issued_at);
";

/// Version 5: where a ready video's bytes are, `file` (the node's `videos` directory) or `s3`
/// (the object store), so that a site moving from files to the store serves each video from
/// where it is. Every file uploaded before this version is a local file: the object store
/// arrived with this version.
const BLOB_LOCATIONS: &str = "
ALTER TABLE videos ADD COLUMN blob_location TEXT CHECK (blob_location IN ('file', 's3'));
UPDATE videos SET blob_location = 'file' WHERE sha256 IS NOT NULL;
CREATE INDEX videos_on_file ON videos(seq) WHERE blob_location = 'file' AND state = 'ready';
";

/// Version 6: the deletion queue becomes the queue of every job the scheduler runs, each row
/// a kind and a video (`remove_video` carries the deletion records over; `probe_video` reads a
/// ready video's media and takes its poster), and videos gain what probing found. Every video
/// already ready is queued for probing, so an existing site gets its posters too.
const JOBS_AND_MEDIA: &str = "
CREATE TABLE jobs (
    kind            TEXT    NOT NULL CHECK (kind IN ('remove_video', 'probe_video')),
    video_id        TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    failed          INTEGER NOT NULL DEFAULT 0,
    queued_at       INTEGER NOT NULL,
    claimed_by      TEXT,               -- the incarnation running it, or NULL
    waiting_for     TEXT,               -- a program the last scheduler to run it lacked
    PRIMARY KEY (kind, video_id)
) WITHOUT ROWID;
INSERT INTO jobs (kind, video_id, attempts, next_attempt_at, last_error, failed, queued_at,
                  claimed_by)
    SELECT 'remove_video', video_id, attempts, next_attempt_at, last_error, failed, queued_at,
           claimed_by
    FROM video_del_rec;
DROP TABLE video_del_rec;
CREATE INDEX jobs_due ON jobs(kind, failed, next_attempt_at);
CREATE INDEX jobs_claimed ON jobs(claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX jobs_video ON jobs(video_id);
ALTER TABLE videos ADD COLUMN probed_at INTEGER;   -- unix ms; NULL until probed
ALTER TABLE videos ADD COLUMN duration_ms INTEGER;
ALTER TABLE videos ADD COLUMN width INTEGER;
ALTER TABLE videos ADD COLUMN height INTEGER;
ALTER TABLE videos ADD COLUMN video_codec TEXT;
ALTER TABLE videos ADD COLUMN audio_codec TEXT;
ALTER TABLE videos ADD COLUMN poster_size INTEGER; -- NULL when there is no poster
ALTER TABLE videos ADD COLUMN poster_type TEXT;
ALTER TABLE videos ADD COLUMN poster_etag TEXT;
INSERT INTO jobs (kind, video_id, next_attempt_at, queued_at)
    SELECT 'probe_video', id, CAST(unixepoch('subsec') * 1000 AS INTEGER),
           CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM videos WHERE state = 'ready';
";

pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    // One step per exclusive transaction, the version read inside it: processes starting
    // together on a new data dir each wait for the lock, and whoever comes second finds the
    // step done instead of running it again ("table users already exists").
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Internal(format!(
                "database schema version {version} is newer than this program ({})",
                MIGRATIONS.len()
            )));
        }
        let Some(step) = MIGRATIONS.get(version) else { return Ok(()) };
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Rust(run) => run(&tx)?,
        }
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
        log::info!("database schema migrated to version {}", version + 1);
    }
}

/// PostgreSQL's history, `POSTGRES[i]` bringing a database from version `i` to `i + 1`. It
/// starts where SQLite's stood at its version 5, with the same tables in PostgreSQL's types
/// (`BIGINT` for every integer, identity columns for SQLite's rowid keys) and one more, the
/// change counters a node's caches check (see `store/feed.rs`). Append, never edit; a change
/// of the schema appends a step to both lists.
const POSTGRES: &[&str] = &[include_str!("../../../schema.postgres.sql"), POSTGRES_JOBS_AND_MEDIA];

/// PostgreSQL's step to SQLite's version 6 (see [`JOBS_AND_MEDIA`]).
const POSTGRES_JOBS_AND_MEDIA: &str = "
CREATE TABLE jobs (
    kind            TEXT   NOT NULL CHECK (kind IN ('remove_video', 'probe_video')),
    video_id        TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    failed          BIGINT NOT NULL DEFAULT 0,
    queued_at       BIGINT NOT NULL,
    claimed_by      TEXT,
    waiting_for     TEXT,
    PRIMARY KEY (kind, video_id)
);
INSERT INTO jobs (kind, video_id, attempts, next_attempt_at, last_error, failed, queued_at,
                  claimed_by)
    SELECT 'remove_video', video_id, attempts, next_attempt_at, last_error, failed, queued_at,
           claimed_by
    FROM video_del_rec;
DROP TABLE video_del_rec;
CREATE INDEX jobs_due ON jobs(kind, failed, next_attempt_at);
CREATE INDEX jobs_claimed ON jobs(claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX jobs_video ON jobs(video_id);
ALTER TABLE videos ADD COLUMN probed_at BIGINT, ADD COLUMN duration_ms BIGINT,
    ADD COLUMN width BIGINT, ADD COLUMN height BIGINT, ADD COLUMN video_codec TEXT,
    ADD COLUMN audio_codec TEXT, ADD COLUMN poster_size BIGINT, ADD COLUMN poster_type TEXT,
    ADD COLUMN poster_etag TEXT;
INSERT INTO jobs (kind, video_id, next_attempt_at, queued_at)
    SELECT 'probe_video', id, (extract(epoch FROM now()) * 1000)::BIGINT,
           (extract(epoch FROM now()) * 1000)::BIGINT
    FROM videos WHERE state = 'ready';
";

/// Any number, the same in every node: the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x646f_7579_696e; // "douyin"

pub(super) fn apply_postgres(conn: &mut super::Conn) -> Result<(), StoreError> {
    // One transaction per step under a lock every node takes: nodes starting together wait
    // for each other, and whoever comes second finds the step done. DDL is transactional on
    // PostgreSQL, so a step applies whole or not at all.
    loop {
        let done = conn.write(|db| {
            db.query_one(
                "SELECT pg_advisory_xact_lock(?1)",
                crate::params![MIGRATION_LOCK],
                |_| Ok(()),
            )?;
            db.batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version    BIGINT PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )?;
            let version: i64 = db.query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
                |r| r.get(0),
            )?;
            let version = usize::try_from(version).unwrap_or(usize::MAX);
            if version > POSTGRES.len() {
                return Err(StoreError::Internal(format!(
                    "database schema version {version} is newer than this program ({})",
                    POSTGRES.len()
                )));
            }
            let Some(step) = POSTGRES.get(version) else { return Ok(true) };
            db.batch(step)?;
            db.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                crate::params![version as i64 + 1],
            )?;
            log::info!("database schema migrated to version {}", version + 1);
            Ok(false)
        })?;
        if done {
            return Ok(());
        }
    }
}
