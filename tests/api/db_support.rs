//! The store-level suites run on both databases: SQLite in a temporary file, and PostgreSQL in
//! a fresh database of the test binary's private cluster (`pg_support`). Outside CI a missing
//! PostgreSQL skips the `postgres::` cases with a reason; under `CI=true` they fail.

use actix::Addr;
use actors::store::{Pool, VideoStore};

/// A new, empty database for one test.
pub enum TestDb {
    /// Kept so the file lives as long as the test.
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl TestDb {
    pub fn sqlite() -> Self {
        TestDb::Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }

    /// `None` (having said why) when the test must skip.
    pub async fn postgres() -> Option<Self> {
        crate::pg_support::fresh_database().await.map(TestDb::Postgres)
    }

    /// A pool of `size` connections to it, migrated. Each call is another pool on the same
    /// database, as another process's would be.
    pub fn pool(&self, size: u32) -> Pool {
        blocking(|| match self {
            TestDb::Sqlite(dir) => VideoStore::open(&dir.path().join("db.sqlite3"), size),
            TestDb::Postgres(url) => VideoStore::open_postgres(url, size),
        })
        .expect("the store opens")
    }

    /// Store actors on `threads` threads over a new pool.
    pub fn start(&self, threads: usize) -> Addr<VideoStore> {
        VideoStore::start(self.pool(threads as u32 + 2), threads)
    }

    /// A number the database answers `sql` with, asked on a connection of its own.
    pub fn scalar(&self, sql: &str) -> i64 {
        let pool = self.pool(1);
        blocking(move || {
            let mut conn = pool.get().expect("a connection");
            conn.db().query_one(sql, &[], |r| r.get(0)).expect("the query runs")
        })
    }
}

/// Runs `f` on a thread of its own: the PostgreSQL client blocks on a runtime of its own, which
/// it may not start on a test's (connecting, and closing a connection, both do).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("the blocking call returns"))
}

/// Runs each named test body, an `async fn name(db: TestDb)` of the calling module, once per
/// database: as `sqlite::name` and as `postgres::name` (so `cargo test postgres::` runs every
/// store-level test against PostgreSQL).
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[actix::test]
                async fn $name() {
                    super::$name($crate::db_support::TestDb::sqlite()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[actix::test]
                async fn $name() {
                    if let Some(db) = $crate::db_support::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            )+
        }
    };
}
