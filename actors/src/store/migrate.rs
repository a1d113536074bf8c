//! Versioned schema: `PRAGMA user_version` says which migrations an existing database has.

use rusqlite::Connection;

use crate::error::StoreError;

/// Migration `i` brings a database from version `i` to `i + 1`. Append, never edit.
const MIGRATIONS: &[&str] = &[include_str!("../../../schema.sql")];

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
