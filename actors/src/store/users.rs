//! Users and the database side of sessions.

use actix::prelude::*;

use super::db::is_unique_violation;
use super::{Db, VideoStore, now_ms};
use crate::error::StoreError;
use crate::model::{PwdHash, User, UserId, UserName};
use crate::params;

/// Stores a new user with an already computed password hash (hashing is the `Accounts`
/// actor's, never a store thread's). `Conflict` when the name's key is taken.
#[derive(Debug, Message)]
#[rtype(result = "Result<User, StoreError>")]
pub struct InsertUser {
    pub name: UserName,
    pub pwd_hash: PwdHash,
}

/// The user a typed name means, with the stored password hash; `None` when there is none.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Credentials>, StoreError>")]
pub struct FindCredentials {
    pub name: UserName,
}

/// A user and their password hash, for checking a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: User,
    pub pwd_hash: PwdHash,
}

/// Which user a typed name means, with `?1` its exact (NFC) form and `?2` its key: the account
/// whose stored name is exactly this one, else the account that owns the key. For names
/// registered since name keys exist the two are the same account; the exact match first is
/// what lets an account displaced by the key migration ([`super::name_keys`]) be found.
const BY_NAME: &str = "user_name = ?1 OR name_key = ?2 ORDER BY user_name = ?1 DESC LIMIT 1";

/// The id of the user `name` means (see [`BY_NAME`]).
pub(super) fn user_id_by_name(db: &mut Db<'_>, name: &UserName) -> Result<Option<i64>, StoreError> {
    db.query_opt(
        &format!("SELECT id FROM users WHERE {BY_NAME}"),
        params![name.as_str(), name.key()],
        |r| r.get(0),
    )
}

/// A session as stored: whose it is and until when (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user: User,
    pub expires_at_ms: i64,
}

/// Stores a new session under the hash of its id.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct InsertSession {
    pub token_hash: String,
    pub user_id: UserId,
    pub expires_at_ms: i64,
}

/// Reads a session that has not expired.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<SessionRecord>, StoreError>")]
pub struct LoadSession {
    pub token_hash: String,
    pub now_ms: i64,
}

/// Slides a session's expiry forward.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct TouchSession {
    pub token_hash: String,
    pub expires_at_ms: i64,
}

/// Revokes a session.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RemoveSession {
    pub token_hash: String,
}

/// How many logouts every node has made, on PostgreSQL (`None` on SQLite, whose processes
/// count them in their shared [`crate::changes::Changes`]): read after the message came, in a
/// read shared with the store threads asking at the same time.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<u64>, StoreError>")]
pub struct SessionRevocations;

/// Deletes every session that expired before `now_ms`; replies with how many.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct PurgeSessions {
    pub now_ms: i64,
}

impl Handler<InsertUser> for VideoStore {
    type Result = Result<User, StoreError>;

    fn handle(&mut self, msg: InsertUser, _: &mut Self::Context) -> Self::Result {
        let id = self
            .conn()?
            .db()
            .query_one(
                "INSERT INTO users (user_name, name_key, pwd_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4) RETURNING id",
                params![msg.name.as_str(), msg.name.key(), msg.pwd_hash.as_str(), now_ms()],
                |r| r.get(0),
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("user name already taken")
                } else {
                    e
                }
            })?;
        Ok(User { id: UserId(id), name: msg.name.to_string(), name_key: msg.name.key().to_owned() })
    }
}

impl Handler<FindCredentials> for VideoStore {
    type Result = Result<Option<Credentials>, StoreError>;

    fn handle(&mut self, msg: FindCredentials, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().query_opt(
            &format!("SELECT id, user_name, name_key, pwd_hash FROM users WHERE {BY_NAME}"),
            params![msg.name.as_str(), msg.name.key()],
            |r| {
                let user = User { id: UserId(r.get(0)?), name: r.get(1)?, name_key: r.get(2)? };
                Ok(Credentials { user, pwd_hash: PwdHash::from_phc(r.get(3)?) })
            },
        )
    }
}

impl Handler<InsertSession> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: InsertSession, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![msg.token_hash, msg.user_id.0, now_ms(), msg.expires_at_ms],
        )?;
        Ok(())
    }
}

impl Handler<LoadSession> for VideoStore {
    type Result = Result<Option<SessionRecord>, StoreError>;

    fn handle(&mut self, msg: LoadSession, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().query_opt(
            "SELECT u.id, u.user_name, u.name_key, s.expires_at FROM sessions s
             JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            params![msg.token_hash, msg.now_ms],
            |r| {
                Ok(SessionRecord {
                    user: User { id: UserId(r.get(0)?), name: r.get(1)?, name_key: r.get(2)? },
                    expires_at_ms: r.get(3)?,
                })
            },
        )
    }
}

impl Handler<TouchSession> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: TouchSession, _: &mut Self::Context) -> Self::Result {
        // Never extends a revoked session: the row is gone, so nothing is updated.
        self.conn()?.db().execute(
            "UPDATE sessions SET expires_at = ?2 WHERE token_hash = ?1 AND expires_at < ?2",
            params![msg.token_hash, msg.expires_at_ms],
        )?;
        Ok(())
    }
}

impl Handler<RemoveSession> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: RemoveSession, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| {
            db.execute("DELETE FROM sessions WHERE token_hash = ?1", params![msg.token_hash])?;
            // Counted in the same commit on PostgreSQL: every node's next resolve reads it.
            if db.is_postgres() {
                db.execute(
                    "UPDATE change_counters SET version = version + 1 WHERE topic = 0",
                    &[],
                )?;
            }
            Ok(())
        })
    }
}

impl Handler<SessionRevocations> for VideoStore {
    type Result = Result<Option<u64>, StoreError>;

    fn handle(&mut self, _: SessionRevocations, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        let db = &mut conn.db();
        if !db.is_postgres() {
            return Ok(None);
        }
        let count = self.logouts.current(|| {
            let v: i64 =
                db.query_one("SELECT version FROM change_counters WHERE topic = 0", &[], |r| {
                    r.get(0)
                })?;
            Ok(v as u64)
        })?;
        Ok(Some(count))
    }
}

impl Handler<PurgeSessions> for VideoStore {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, msg: PurgeSessions, _: &mut Self::Context) -> Self::Result {
        let purged = self
            .conn()?
            .db()
            .execute("DELETE FROM sessions WHERE expires_at <= ?1", params![msg.now_ms])?;
        Ok(purged.try_into().unwrap_or(usize::MAX))
    }
}
