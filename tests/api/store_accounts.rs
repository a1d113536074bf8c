//! Accounts at the actor level: the name-key migration over a database made by the previous
//! schema version, and how names are found afterwards.

use actix::Addr;
use actors::StoreError;
use actors::model::{Password, User, UserName};
use actors::store::{CreateUser, VerifyUser, VideoStore};
use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
use rusqlite::params;

fn phc(pwd: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default().hash_password(pwd.as_bytes(), &salt).unwrap().to_string()
}

async fn sign_in(store: &Addr<VideoStore>, name: &str, pwd: &str) -> Result<User, StoreError> {
    let name: UserName = name.parse().unwrap();
    let password: Password = pwd.parse().unwrap();
    store.send(VerifyUser { name, password }).await.unwrap()
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
    let store = VideoStore::start(pool, 1);

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
    assert_eq!(sign_in(&store, "ALICE", "second-pass").await.unwrap().id.0, 2);
    assert_eq!(sign_in(&store, "alice", "second-pass").await.unwrap().id.0, 2);
    let first = sign_in(&store, "Alice", "first-pass").await.unwrap();
    assert_eq!((first.id.0, first.name.as_str()), (1, "Alice"));
    assert_eq!(sign_in(&store, "ａｌｉｃｅ", "third-pass").await.unwrap().id.0, 3);
    assert!(matches!(
        sign_in(&store, "ALICE", "first-pass").await,
        Err(StoreError::BadCredentials)
    ));

    // The key stays taken for new accounts.
    let again = store
        .send(CreateUser {
            name: "ＡＬＩＣＥ".parse().unwrap(),
            password: "whatever1".parse().unwrap(),
        })
        .await
        .unwrap();
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}
