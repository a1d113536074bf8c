//! Versioned schema: `PRAGMA user_version` says which migrations an existing database has.

use rusqlite::Connection;

use crate::error::StoreError;

/// Migration `i` brings a database from version `i` to `i + 1`. Append, never edit.
const MIGRATIONS: &[&str] = &[include_str!("../../../schema.sql"), SCHEDULER_INCARNATIONS];

/// Version 2: a claim names the scheduler incarnation that made it, and incarnations keep a
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

pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "database schema version {version} is newer than this program ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        log::info!("database schema migrated to version {}", i + 1);
    }
    Ok(())
}
