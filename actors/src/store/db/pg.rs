//! PostgreSQL's side: r2d2's manager of connections, each with its prepared statements, and
//! what turns the store's SQLite-flavoured statements into PostgreSQL's.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{NoTls, Statement};

use super::Value;
use crate::error::StoreError;

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
    pub(super) client: postgres::Client,
    config: std::sync::Arc<postgres::Config>,
    statements: HashMap<String, Statement>,
    /// Inside a transaction that has not ended: such a connection is not put back.
    pub(super) in_tx: bool,
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
    pub(super) fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
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
    pub(super) fn run<T>(
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

pub(super) fn pg_params<'v>(params: &'v [Value<'_>]) -> Vec<&'v (dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
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
