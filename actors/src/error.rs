//! The errors actors reply with; the binary maps each to a status and an API error code.

use std::sync::Arc;

use thiserror::Error;

/// Everything a store or session message can fail with.
#[derive(Debug, Error)]
pub enum StoreError {
    /// No such user, video or comment (deleted counts as missing).
    #[error("not found")]
    NotFound,
    /// The resource exists but belongs to someone else.
    #[error("forbidden")]
    Forbidden,
    /// Unknown user or wrong password: deliberately the same variant for both.
    #[error("wrong user name or password")]
    BadCredentials,
    /// A uniqueness rule was violated (user name taken, video already uploaded).
    #[error("{0}")]
    Conflict(&'static str),
    /// SQLite failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// PostgreSQL failed, or could not be reached.
    #[error("database error: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    /// A batched write failed as a whole: every item of the batch gets this same error,
    /// shared, so each caller still sees the cause (and its source, e.g. the SQLite error).
    #[error(transparent)]
    Batch(Arc<StoreError>),
    /// No connection could be taken from the pool in time.
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    /// An actor's mailbox is closed or full: the service is overloaded or shutting down.
    #[error("service unavailable: {0}")]
    Unavailable(#[from] actix::MailboxError),
    /// Anything else that is not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// True when the failure is the database's (API code `003`) rather than another fault.
    pub fn is_database(&self) -> bool {
        match self {
            StoreError::Db(_) | StoreError::Postgres(_) | StoreError::Pool(_) => true,
            StoreError::Batch(shared) => shared.is_database(),
            _ => false,
        }
    }
}

/// What PostgreSQL said (its own `Display` is only "db error"), or the client's error with its
/// cause.
fn postgres_message(e: &postgres::Error) -> String {
    use std::error::Error as _;
    match (e.as_db_error(), e.source()) {
        (Some(db), _) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}
