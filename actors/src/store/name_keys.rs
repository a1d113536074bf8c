//! Migration step: `users.name_key`, the key user names are unique under (case folding + NFKC,
//! see [`crate::text::name_key`]), backfilled in Rust and guarded by a UNIQUE index.
//!
//! Existing rows whose keys collide (`alice`, `Alice`, `ａｌｉｃｅ` registered before this step):
//! the oldest account (by `created_at`, then id) keeps the key; each younger one gets
//! [`displaced_key`] — `<key>#<id>`, which no valid name can produce since `#` is in none, and
//! which is unique because ids are. A displaced account keeps its name and still signs in and is
//! found by it exactly, since name look-ups try the exact stored name before the key
//! ([`super::users`]).

use std::collections::HashSet;

use rusqlite::{Transaction, params};

use crate::error::StoreError;
use crate::text::name_key;

/// The key given to an account whose name's key an older account already has.
pub fn displaced_key(key: &str, id: i64) -> String {
    format!("{key}#{id}")
}

pub(super) fn add_name_keys(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch("ALTER TABLE users ADD COLUMN name_key TEXT NOT NULL DEFAULT '';")?;
    let users = tx
        .prepare("SELECT id, user_name FROM users ORDER BY created_at, id")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut taken = HashSet::with_capacity(users.len());
    let mut set_key = tx.prepare("UPDATE users SET name_key = ?2 WHERE id = ?1")?;
    for (id, name) in users {
        let mut key = name_key(&name);
        if !taken.insert(key.clone()) {
            let older = key.clone();
            key = displaced_key(&older, id);
            log::warn!(
                "user {id} ({name}) shares the name key {older:?} with an older account; keyed {key:?}"
            );
        }
        set_key.execute(params![id, key])?;
    }
    drop(set_key);
    tx.execute_batch("CREATE UNIQUE INDEX users_name_key ON users(name_key);")?;
    Ok(())
}
