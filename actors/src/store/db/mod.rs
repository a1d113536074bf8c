//! The two databases behind [`super::VideoStore`]: SQLite (the default, one file) and
//! PostgreSQL (`--database-url postgres://…`, for several hosts). The store's SQL is written
//! once, in the subset both speak, with SQLite's numbered parameters (`?1`), which become
//! PostgreSQL's (`$1`) when a statement is first prepared on a connection. Where the two must
//! differ (row locks, which SQLite has no need of since it has one writer) a statement asks
//! [`Db::is_postgres`].
//!
//! Values cross as [`Value`]: integers, text and NULL, which is all the schema stores. On
//! PostgreSQL every integer column is a `BIGINT`, as SQLite's are 64-bit.
//!
//! The PostgreSQL client is the blocking `postgres` crate (rust-postgres): the store already
//! runs on its own `SyncArbiter` threads, so a blocking client is the one that fits, with
//! r2d2 pooling connections as it does SQLite's. [`PgManager`] is r2d2's manager for it,
//! written here because each pooled connection keeps its own cache of prepared statements
//! (r2d2_postgres has none) and because a connection found dead after a restart of the server
//! is replaced and the first statement retried once (`PgConn::run`, in `pg.rs`).

mod pg;
mod values;

use r2d2_sqlite::SqliteConnectionManager;

pub use pg::{ConnectErrors, PgConn, PgManager, check_postgres_url, reach};
pub use values::{Column, Row, ToValue, Value};

use crate::error::StoreError;
use pg::pg_params;

/// The connection pool of either database.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(r2d2::Pool<SqliteConnectionManager>),
    Postgres(r2d2::Pool<PgManager>),
}

/// A connection taken from a [`Pool`].
pub enum Conn {
    Sqlite(r2d2::PooledConnection<SqliteConnectionManager>),
    /// Boxed: a client with its runtime is twice the size of SQLite's connection.
    Postgres(Box<r2d2::PooledConnection<PgManager>>),
}

impl Pool {
    pub fn get(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Pool::Sqlite(p) => Conn::Sqlite(p.get()?),
            Pool::Postgres(p) => Conn::Postgres(Box::new(p.get()?)),
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Pool::Postgres(_))
    }
}

impl Conn {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Postgres(_))
    }

    /// Statements outside a transaction, each committed on its own.
    pub fn db(&mut self) -> Db<'_> {
        match self {
            Conn::Sqlite(c) => Db::Sqlite(c),
            Conn::Postgres(c) => Db::Postgres(c),
        }
    }

    /// Runs `f` in a write transaction, committed when it returns `Ok`, rolled back otherwise.
    /// On SQLite it is `BEGIN IMMEDIATE`: writers take the lock up front, so two never
    /// deadlock upgrading a read lock. On PostgreSQL it is READ COMMITTED, as usual there:
    /// statements that read rows they then change take row locks ([`Db::for_update`]).
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = f(&mut Db::Sqlite(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Conn::Postgres(c) => {
                c.run(|c| c.client.batch_execute("BEGIN"))?;
                c.in_tx = true;
                let out = f(&mut Db::Postgres(c));
                let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
                match c.client.batch_execute(end) {
                    Ok(()) => c.in_tx = false,
                    // The transaction's own error says more than a failed rollback (the
                    // connection, left `in_tx`, is not put back in the pool).
                    Err(e) if out.is_ok() => return Err(e.into()),
                    Err(_) => {}
                }
                out
            }
        }
    }
}

/// Where statements run: a connection, or a transaction on one.
pub enum Db<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c mut PgConn),
}

impl Db<'_> {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// ` FOR UPDATE` on PostgreSQL, nothing on SQLite (whose writer holds the whole database):
    /// for a read whose rows the transaction then changes.
    pub fn for_update(&self) -> &'static str {
        if self.is_postgres() { " FOR UPDATE" } else { "" }
    }

    /// Runs a statement; replies with the number of rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        match self {
            Db::Sqlite(c) => {
                Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))? as u64)
            }
            Db::Postgres(c) => c.run(|c| {
                let stmt = c.statement(sql)?;
                c.client.execute(&stmt, &pg_params(params))
            }),
        }
    }

    /// Runs statements without parameters, such as a savepoint.
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(c) => c.run(|c| c.client.batch_execute(sql)),
        }
    }

    /// Every row of a query, each made into a `T` by `f`.
    pub fn query<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.rows(sql, params, usize::MAX, f)
    }

    /// The first row of a query, if any.
    pub fn query_opt<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut f = Some(f);
        // `rows` calls it once at the most: it reads one row.
        let first = self.rows(sql, params, 1, |r| match f.take() {
            Some(f) => f(r),
            None => Err(StoreError::Internal("a second row read for one".into())),
        });
        Ok(first?.into_iter().next())
    }

    /// The first `limit` rows of a query, each made into a `T` by `f`.
    fn rows<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        limit: usize,
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while out.len() < limit
                    && let Some(r) = rows.next()?
                {
                    out.push(f(&Row::Sqlite(r))?);
                }
                Ok(out)
            }
            Db::Postgres(c) => {
                let rows = c.run(|c| {
                    let stmt = c.statement(sql)?;
                    c.client.query(&stmt, &pg_params(params))
                })?;
                rows.iter().take(limit).map(|r| f(&Row::Postgres(r))).collect()
            }
        }
    }

    /// The one row a query always has (an aggregate's).
    pub fn query_one<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::Internal(format!("no row from {sql}")))
    }
}

/// Whether `e` is a violated UNIQUE or PRIMARY KEY constraint, on either database.
pub fn is_unique_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Db(rusqlite::Error::SqliteFailure(f, _)) => {
            f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        }
        StoreError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
        _ => false,
    }
}
