//! Accounts at the actor level: `Register` and `SignIn` on the `Accounts` actor with a hand-moved
//! clock, and the name-key migration over a database made by the previous schema version.

use crate::db_support::TestDb;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};
use actors::StoreError;
use actors::accounts::{AccountError, Accounts, AccountsConfig, Register, SignIn};
use actors::clock::{ManualClock, SharedClock};
use actors::model::{Password, User};
use actors::store::VideoStore;
use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
use rusqlite::params;

fn phc(pwd: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default().hash_password(pwd.as_bytes(), &salt).unwrap().to_string()
}

fn accounts(store: &Addr<VideoStore>, clock: SharedClock) -> Addr<Accounts> {
    Accounts::new(store.clone(), AccountsConfig::default(), clock).unwrap().start()
}

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

async fn sign_in(accounts: &Addr<Accounts>, name: &str, pwd: &str) -> Result<User, AccountError> {
    let password = pwd.parse::<Password>().ok();
    accounts.send(SignIn { name: name.parse().unwrap(), password, client: HOME }).await.unwrap()
}

async fn register(accounts: &Addr<Accounts>, name: &str, pwd: &str) -> Result<User, AccountError> {
    let msg = Register { name: name.parse().unwrap(), password: pwd.parse().unwrap() };
    accounts.send(msg).await.unwrap()
}

fn throttled(r: &Result<User, AccountError>) -> bool {
    matches!(r, Err(AccountError::Throttled { .. }))
}

async fn users_register_once_and_sign_in_only_with_the_right_password(db: TestDb) {
    let accounts = accounts(&db.start(2), SharedClock::default());
    let alice = register(&accounts, "alice", "password1").await.unwrap();
    let again = register(&accounts, "Alice", "whatever1").await;
    assert!(matches!(again, Err(AccountError::Store(StoreError::Conflict(_)))), "{again:?}");

    assert_eq!(sign_in(&accounts, "alice", "password1").await.unwrap(), alice);
    assert_eq!(sign_in(&accounts, "ALICE", "password1").await.unwrap(), alice);
    for (name, pwd) in [("alice", "password2"), ("bob", "password1"), ("alice", "short")] {
        let r = sign_in(&accounts, name, pwd).await;
        assert!(matches!(r, Err(AccountError::BadCredentials)), "{name}/{pwd}: {r:?}");
    }
}

async fn the_throttle_runs_on_the_injected_clock_and_a_success_clears_it(db: TestDb) {
    let clock = Arc::new(ManualClock::new());
    let accounts = accounts(&db.start(2), clock.clone().into());
    register(&accounts, "alice", "password1").await.unwrap();
    for _ in 0..5 {
        let r = sign_in(&accounts, "alice", "password2").await;
        assert!(matches!(r, Err(AccountError::BadCredentials)), "{r:?}");
    }
    let r = sign_in(&accounts, "alice", "password1").await;
    assert!(throttled(&r), "{r:?}");
    assert_eq!(r.unwrap_err().retry_after_secs(), 1);
    clock.advance(Duration::from_millis(999));
    assert!(throttled(&sign_in(&accounts, "alice", "password1").await));
    clock.advance(Duration::from_millis(1));
    sign_in(&accounts, "alice", "password1").await.unwrap();
    for _ in 0..5 {
        assert!(!throttled(&sign_in(&accounts, "alice", "password2").await));
    }
    assert!(throttled(&sign_in(&accounts, "alice", "password1").await), "counted afresh");
}

#[actix::test]
async fn look_alike_accounts_from_before_name_keys_keep_their_names_and_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    {
        // A database as schema version 1 left it, with three spellings of one name.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../schema.sql")).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let rows = [
            (1, "Alice", "first-pass", 30),
            (2, "alice", "second-pass", 10),
            (3, "ａｌｉｃｅ", "third-pass", 20),
            (4, "bob", "bob-pass", 40),
        ];
        for (id, name, pwd, created_at) in rows {
            conn.execute(
                "INSERT INTO users (id, user_name, pwd_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, phc(pwd), created_at],
            )
            .unwrap();
        }
    }
    let pool = VideoStore::open(&path, 2).expect("the store opens and migrates");
    let accounts = accounts(&VideoStore::start(pool, 1), SharedClock::default());

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert!(version >= 2);
    let keys: Vec<(i64, String)> = conn
        .prepare("SELECT id, name_key FROM users ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [(1, "alice#1"), (2, "alice"), (3, "alice#3"), (4, "bob")];
    let expected: Vec<(i64, String)> = expected.map(|(i, k)| (i, k.to_owned())).into();
    assert_eq!(keys, expected, "the oldest account keeps the key");

    // The key's owner is found by any spelling; the displaced ones by their exact names.
    assert_eq!(sign_in(&accounts, "ALICE", "second-pass").await.unwrap().id.0, 2);
    assert_eq!(sign_in(&accounts, "alice", "second-pass").await.unwrap().id.0, 2);
    let first = sign_in(&accounts, "Alice", "first-pass").await.unwrap();
    assert_eq!((first.id.0, first.name.as_str()), (1, "Alice"));
    assert_eq!(sign_in(&accounts, "ａｌｉｃｅ", "third-pass").await.unwrap().id.0, 3);
    let wrong = sign_in(&accounts, "ALICE", "first-pass").await;
    assert!(matches!(wrong, Err(AccountError::BadCredentials)), "{wrong:?}");

    // The key stays taken for new accounts.
    let again = register(&accounts, "ＡＬＩＣＥ", "whatever1").await;
    assert!(matches!(again, Err(AccountError::Store(StoreError::Conflict(_)))), "{again:?}");
}

on_both_databases!(
    users_register_once_and_sign_in_only_with_the_right_password,
    the_throttle_runs_on_the_injected_clock_and_a_success_clears_it,
);

/// Nodes starting together on a new PostgreSQL database migrate it once: each step runs under
/// an advisory lock, and whoever comes second finds it done. A database whose schema is newer
/// than the program is refused rather than used.
#[actix::test]
async fn postgres_migrations_run_once_for_nodes_starting_together() {
    let Some(db) = TestDb::postgres().await else { return };
    let TestDb::Postgres(url) = &db else { unreachable!("asked for PostgreSQL") };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || VideoStore::open_postgres(&url, 1).map(drop))
        })
        .collect();
    for open in opens {
        open.join().expect("the thread ends").expect("every node opens the database");
    }
    // Two steps so far: the schema as SQLite's version 5 left it, and the job queue.
    assert_eq!(db.scalar("SELECT COUNT(*) FROM schema_migrations"), 2);
    assert_eq!(db.scalar("SELECT MAX(version) FROM schema_migrations"), 2);

    crate::pg_support::psql_at(url, "INSERT INTO schema_migrations (version) VALUES (3)");
    let url = url.clone();
    let newer = std::thread::spawn(move || VideoStore::open_postgres(&url, 1).map(drop));
    let err = newer.join().expect("the thread ends").expect_err("a newer schema is refused");
    assert!(err.to_string().contains("newer than this program"), "{err}");
}
