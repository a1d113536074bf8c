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
//! is replaced and the first statement retried once (see [`PgConn::run`]).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{NoTls, Statement};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::error::StoreError;

/// A parameter of a statement.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// What can be bound as a [`Value`]; see [`params!`](crate::params).
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// The parameters of one statement, bound by reference as rusqlite's `params!` does:
/// `db.execute(sql, params![id.to_string(), now])`.
#[macro_export]
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$x)),*] as &[$crate::store::db::Value<'_>]
    };
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a parameter of type {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in to_sql, which knows the value as well as the type.
        true
    }

    to_sql_checked!();
}

/// A PostgreSQL integer of any width (`SELECT 1` is an `int4`, `COUNT(*)` an `int8`) or a
/// boolean (`EXISTS`), read as SQLite reads them: a 64-bit integer.
struct PgInt(i64);

impl<'a> FromSql<'a> for PgInt {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(PgInt(match *ty {
            Type::INT8 => i64::from_sql(ty, raw)?,
            Type::INT4 => i64::from(i32::from_sql(ty, raw)?),
            Type::INT2 => i64::from(i16::from_sql(ty, raw)?),
            _ => i64::from(bool::from_sql(ty, raw)?),
        }))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL)
    }
}

/// A column type the store reads.
pub trait Column: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self>;
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error>;
}

impl Column for i64 {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, PgInt>(idx).map(|i| i.0)
    }
}

impl Column for Option<i64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        Ok(row.try_get::<_, Option<PgInt>>(idx)?.map(|i| i.0))
    }
}

impl Column for bool {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get::<_, PgInt>(idx).map(|i| i.0 != 0)
    }
}

impl Column for String {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get(idx)
    }
}

impl Column for Option<String> {
    fn from_sqlite(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Self> {
        row.get(idx)
    }
    fn from_pg(row: &postgres::Row, idx: usize) -> Result<Self, postgres::Error> {
        row.try_get(idx)
    }
}

/// One row of an answer.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    pub fn get<T: Column>(&self, idx: usize) -> Result<T, StoreError> {
        Ok(match self {
            Row::Sqlite(r) => T::from_sqlite(r, idx)?,
            Row::Postgres(r) => T::from_pg(r, idx)?,
        })
    }
}

/// `sql` with SQLite's numbered parameters (`?1`) written as PostgreSQL's (`$1`). Text inside
/// quotes is left as it is.
fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// What the pool does with a failed attempt to connect: while PostgreSQL is down every
/// request's attempt fails, and r2d2's own handler logs each one as an error (about a hundred
/// lines a second from a busy node). This one says it once, then how many more failed, at most
/// every five seconds.
#[derive(Debug, Default)]
pub struct ConnectErrors {
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl r2d2::HandleError<postgres::Error> for ConnectErrors {
    fn handle_error(&self, error: postgres::Error) {
        let Ok(mut state) = self.state.lock() else { return };
        let (last, unsaid) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(5)) {
            *unsaid += 1;
            return;
        }
        let more = std::mem::take(unsaid);
        *last = Some(std::time::Instant::now());
        let error = StoreError::Postgres(error);
        match more {
            0 => log::error!("cannot connect to PostgreSQL: {error}"),
            n => log::error!("cannot connect to PostgreSQL: {error} ({n} more attempts failed)"),
        }
    }
}

/// Connects to the PostgreSQL server `url` names once, and disconnects: whether it can be
/// reached and takes the credentials. Blocking.
pub fn reach(url: &str) -> Result<(), StoreError> {
    use r2d2::ManageConnection as _;
    PgManager::new(url)?.connect()?;
    Ok(())
}

/// r2d2's manager of PostgreSQL connections.
#[derive(Debug)]
pub struct PgManager {
    config: std::sync::Arc<postgres::Config>,
}

impl PgManager {
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url.parse()?;
        // A server that does not answer fails a request within seconds, not minutes.
        config.connect_timeout(Duration::from_secs(2));
        config.application_name("douyin_club");
        Ok(PgManager { config: std::sync::Arc::new(config) })
    }
}

/// Checks a `postgres://` URL without connecting; the reason, if it is refused, never repeats
/// the URL (it may hold a password).
pub fn check_postgres_url(url: &str) -> Result<(), String> {
    let config: postgres::Config = url.parse().map_err(|_| {
        "not a PostgreSQL URL: postgres://[user[:password]@]host[:port]/database".to_owned()
    })?;
    if config.get_ssl_mode() == postgres::config::SslMode::Require {
        return Err("sslmode=require: TLS to PostgreSQL is not built in (reach it over a \
                    private network, or a Unix socket with host=/path)"
            .to_owned());
    }
    if config.get_hosts().is_empty() {
        return Err("names no host".to_owned());
    }
    Ok(())
}

/// A PostgreSQL connection with its prepared statements.
pub struct PgConn {
    client: postgres::Client,
    config: std::sync::Arc<postgres::Config>,
    statements: HashMap<String, Statement>,
    /// Inside a transaction that has not ended: such a connection is not put back.
    in_tx: bool,
    /// No statement has run since the connection left the pool.
    fresh: bool,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").field("statements", &self.statements.len()).finish()
    }
}

/// Statements kept per connection; the store has a few dozen, and a few per page size.
const MAX_STATEMENTS: usize = 256;

impl PgConn {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.client.prepare(&to_postgres(sql))?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }

    /// Runs `op` on this connection. A pooled connection may have died while it sat idle
    /// (the server restarted): when the first statement since the pool handed it out finds it
    /// dead, the connection is opened again and the statement tried once more. Nothing of it
    /// reached the server, which had already closed the connection, so nothing runs twice.
    fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let fresh = std::mem::replace(&mut self.fresh, false);
        match op(self) {
            Err(e) if fresh && connection_lost(&e) => {
                log::warn!("a pooled PostgreSQL connection was closed ({e}); reconnecting");
                self.client = self.config.connect(NoTls)?;
                self.statements.clear();
                Ok(op(self)?)
            }
            other => Ok(other?),
        }
    }
}

/// The connection is gone, or the server said it is shutting down or restarting (class 57P)
/// or that the connection failed (class 08).
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"))
        || e.source().is_some_and(|s| s.is::<std::io::Error>())
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn {
            client: self.config.connect(NoTls)?,
            config: self.config.clone(),
            statements: HashMap::new(),
            in_tx: false,
            fresh: true,
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.fresh = true;
        conn.in_tx || conn.client.is_closed()
    }
}

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

fn pg_params<'v>(params: &'v [Value<'_>]) -> Vec<&'v (dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
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

#[cfg(test)]
mod tests {
    use super::to_postgres;

    #[test]
    fn numbered_parameters_become_dollars_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT '?1', x FROM t WHERE a = ?1 AND b IN (?2, ?12) AND c = '?'"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b IN ($2, $12) AND c = '?'"
        );
    }
}
