//! Redis as the shared cache, the database as the truth (API.md, "Guarantees across nodes"; the
//! original design's "cache ⇒ db forced sync"). Sessions are written to the database before the
//! reply and to Redis after it; read from Redis, falling back to the database and refilling;
//! removed from both. Redis unreachable or hung is never an error for a client: every operation
//! is bounded by a short timeout, counted in `douyin_redis_errors_total`, logged, and answered
//! from the database — and Redis is used again once it answers.
//!
//! An entry in Redis is trusted only if it was written under the current **epoch**, a random
//! value in Redis itself. A node that saw Redis fail sets a new epoch before it uses Redis
//! again (and every node sets one when it first connects): a removal it could not make while
//! Redis was away (a logout) cannot come back with Redis — restarted from an old append-only
//! file, say — because whatever was written before is under an older epoch. Reading an entry
//! and the epoch is one `MGET`; writing one reads the epoch in a script, atomically.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;

use crate::error::StoreError;
use crate::model::{User, UserId};
use crate::session::SessionStore;
use crate::store::{SessionRecord, now_ms};

/// How long one Redis command may take before the database answers instead.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, how long requests go straight to the database before Redis is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

const EPOCH_KEY: &str = "douyin:epoch";

/// A token bucket (`KEYS[1]`: fields `tokens` and `at`, ms) refilled at `ARGV[1]` per second
/// up to `ARGV[2]`, on Redis's clock (so the nodes' clocks do not matter): takes a token and
/// answers 0, or answers how many ms until one is there (-1: never, for a rate of 0).
const TAKE_TOKEN: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
if now > at then tokens = math.min(burst, tokens + (now - at) / 1000 * rate) end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
elseif rate <= 0 or burst < 1 then
  wait = -1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
local full_in = 60000
if rate > 0 then full_in = math.ceil(burst / rate * 1000) + 1000 end
redis.call('PEXPIRE', KEYS[1], full_in)
return wait
";

/// The longest wait a shared bucket suggests (as `MAX_RETRY_AFTER` does locally).
const NEVER: Duration = Duration::from_secs(3600);

/// Sets `KEYS[1]` to `<current epoch>|ARGV[1]` for `ARGV[2]` ms.
const WRITE_UNDER_EPOCH: &str = r"
local epoch = redis.call('GET', KEYS[2])
if not epoch then return 0 end
redis.call('SET', KEYS[1], epoch .. '|' .. ARGV[1], 'PX', ARGV[2])
return 1
";

/// One Redis, shared by the services of a process. Cheap to clone.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// The connection while Redis answers; `None` after a failure until reconnected. Taken
    /// under a plain lock for a clone (never held across an await).
    conn: std::sync::Mutex<Option<MultiplexedConnection>>,
    /// Held by the one caller that reconnects.
    connecting: tokio::sync::Mutex<()>,
    /// When connecting last failed: until `RETRY_AFTER` later, nobody waits on Redis.
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// Redis failed since the epoch was last set: set a new one before trusting it again.
    outage: AtomicBool,
    write: redis::Script,
    take: redis::Script,
    errors: prometheus::IntCounter,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.write_str("RedisCache(<redacted>)")
    }
}

/// Why Redis was not used for one operation (the database answers instead).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis is unreachable (waiting before trying again)")]
    Down,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

impl RedisCache {
    /// A cache on `url` (`redis://host:port/db`); connects on first use. The error names no
    /// part of the URL (it may hold a password).
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|_| "not a valid redis:// URL".to_owned())?;
        let errors = prometheus::IntCounter::new(
            "douyin_redis_errors_total",
            "Redis operations that failed or timed out (answered from the database instead)",
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn: std::sync::Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                failed_at: std::sync::Mutex::new(None),
                outage: AtomicBool::new(true),
                write: redis::Script::new(WRITE_UNDER_EPOCH),
                take: redis::Script::new(TAKE_TOKEN),
                errors,
            }),
        })
    }

    /// `douyin_redis_errors_total`, for a service's registry.
    pub fn errors(&self) -> prometheus::IntCounter {
        self.inner.errors.clone()
    }

    /// Whether Redis answers a `PING` now.
    pub async fn check(&self) -> Result<(), CacheError> {
        let mut conn = self.connection().await?;
        self.bounded(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(drop)
    }

    /// Whether Redis failed less than `RETRY_AFTER` ago: then nobody waits on it.
    fn resting(&self) -> bool {
        let failed_at = self.inner.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER)
    }

    /// A connection, connecting (and setting a new epoch) if there is none or Redis failed
    /// since. One caller connects; the others meanwhile go to the database rather than wait
    /// (a hung Redis would hold them up to the connect's timeouts).
    async fn connection(&self) -> Result<MultiplexedConnection, CacheError> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if self.resting() {
            return Err(CacheError::Down);
        }
        let Ok(_connecting) = self.inner.connecting.try_lock() else {
            return Err(CacheError::Down);
        };
        // Someone else may have reconnected, or failed to, just before.
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if self.resting() {
            return Err(CacheError::Down);
        }
        let connected = self.connect().await;
        *self.inner.failed_at.lock().unwrap_or_else(|e| e.into_inner()) =
            connected.is_err().then(Instant::now);
        *self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()) =
            connected.as_ref().ok().cloned();
        connected
    }

    /// The connection, unless there is none or Redis failed since it was made.
    fn current(&self) -> Option<MultiplexedConnection> {
        if self.inner.outage.load(Ordering::SeqCst) {
            return None;
        }
        self.inner.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Connects and starts a new epoch: nothing written before is trusted from here on.
    async fn connect(&self) -> Result<MultiplexedConnection, CacheError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let connecting = self.inner.client.get_multiplexed_async_connection_with_config(&config);
        let connected = match tokio::time::timeout(CONNECT_TIMEOUT * 2, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(CacheError::Redis(e)),
            Err(_) => Err(CacheError::Timeout(CONNECT_TIMEOUT)),
        };
        let mut conn = connected.inspect_err(|_| self.inner.errors.inc())?;
        let epoch = format!("{:016x}", rand::random::<u64>());
        self.bounded(redis::cmd("SET").arg(EPOCH_KEY).arg(&epoch).query_async::<()>(&mut conn))
            .await?;
        if self.inner.outage.swap(false, Ordering::SeqCst) {
            log::info!("redis answers: a new epoch, entries from before are not trusted");
        }
        Ok(conn)
    }

    /// Runs one command with the timeout; a failure drops the connection and starts an outage.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        let res = match tokio::time::timeout(COMMAND_TIMEOUT, op).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => CacheError::Redis(e),
            Err(_) => CacheError::Timeout(COMMAND_TIMEOUT),
        };
        if !self.inner.outage.swap(true, Ordering::SeqCst) {
            log::warn!("redis failed ({res}); answering from the database until it is back");
        }
        self.inner.errors.inc();
        Err(res)
    }

    /// The value of `key` if it was written under the current epoch.
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        let mut conn = self.connection().await?;
        let (value, epoch): (Option<String>, Option<String>) =
            self.bounded(redis::cmd("MGET").arg(key).arg(EPOCH_KEY).query_async(&mut conn)).await?;
        let (Some(value), Some(epoch)) = (value, epoch) else { return Ok(None) };
        Ok(value
            .split_once('|')
            .filter(|(written, _)| *written == epoch)
            .map(|(_, rest)| rest.to_owned()))
    }

    /// Sets `key` to `value` under the current epoch for `ttl`.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.connection().await?;
        let ms = ttl.as_millis().max(1).to_string();
        let mut call = self.inner.write.key(key);
        call.key(EPOCH_KEY).arg(value).arg(ms);
        self.bounded(call.invoke_async::<i64>(&mut conn)).await.map(drop)
    }

    /// Takes a token from the shared bucket `client` (rate per second, depth `burst`): `None`
    /// when taken, else how long until one is there.
    pub async fn take_token(
        &self,
        client: &str,
        rate: f64,
        burst: f64,
    ) -> Result<Option<Duration>, CacheError> {
        let mut conn = self.connection().await?;
        let mut call = self.inner.take.key(format!("douyin:bucket:{client}"));
        call.arg(rate).arg(burst);
        let wait: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(match u64::try_from(wait) {
            Ok(0) => None,
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => Some(NEVER),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.connection().await?;
        self.bounded(redis::cmd("DEL").arg(key).query_async::<i64>(&mut conn)).await.map(drop)
    }
}

/// Sessions in Redis in front of the database (`D`, the truth).
pub struct RedisSessions<D> {
    db: D,
    redis: RedisCache,
}

impl<D> RedisSessions<D> {
    pub fn new(db: D, redis: RedisCache) -> Self {
        Self { db, redis }
    }
}

fn session_key(token_hash: &str) -> String {
    format!("douyin:session:{token_hash}")
}

/// `expires_at_ms|user_id|<bytes of name_key>|<name_key><name>`: the two names may hold any
/// character, so the first is measured rather than delimited.
fn encode(record: &SessionRecord) -> String {
    let u = &record.user;
    format!("{}|{}|{}|{}{}", record.expires_at_ms, u.id.0, u.name_key.len(), u.name_key, u.name)
}

fn decode(value: &str) -> Option<SessionRecord> {
    let mut parts = value.splitn(4, '|');
    let expires_at_ms = parts.next()?.parse().ok()?;
    let id = UserId(parts.next()?.parse().ok()?);
    let key_len: usize = parts.next()?.parse().ok()?;
    let names = parts.next()?;
    let (name_key, name) = (names.get(..key_len)?, names.get(key_len..)?);
    let user = User { id, name: name.to_owned(), name_key: name_key.to_owned() };
    Some(SessionRecord { user, expires_at_ms })
}

/// How long an entry may live in Redis: until the session expires.
fn ttl_until(expires_at_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(expires_at_ms - now_ms).unwrap_or(0).max(1))
}

#[async_trait]
impl<D: SessionStore> SessionStore for RedisSessions<D> {
    async fn insert(
        &self,
        token_hash: String,
        user: &User,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.db.insert(token_hash.clone(), user, expires_at_ms).await?;
        let record = SessionRecord { user: user.clone(), expires_at_ms };
        let ttl = ttl_until(expires_at_ms, now_ms());
        // A failure is counted and logged; the next load reads the database.
        let _ = self.redis.set(&session_key(&token_hash), &encode(&record), ttl).await;
        Ok(())
    }

    async fn load(
        &self,
        token_hash: String,
        now_ms: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let key = session_key(&token_hash);
        if let Ok(Some(value)) = self.redis.get(&key).await
            && let Some(record) = decode(&value)
        {
            return Ok((record.expires_at_ms > now_ms).then_some(record));
        }
        let found = self.db.load(token_hash, now_ms).await?;
        if let Some(record) = &found {
            let ttl = ttl_until(record.expires_at_ms, now_ms);
            let _ = self.redis.set(&key, &encode(record), ttl).await;
        }
        Ok(found)
    }

    async fn touch(&self, token_hash: String, expires_at_ms: i64) -> Result<(), StoreError> {
        self.db.touch(token_hash.clone(), expires_at_ms).await?;
        // The next load refills it with the new expiry from the database.
        let _ = self.redis.delete(&session_key(&token_hash)).await;
        Ok(())
    }

    async fn remove(&self, token_hash: String) -> Result<(), StoreError> {
        self.db.remove(token_hash.clone()).await?;
        // Failed, Redis is in an outage: a new epoch retires the entry before Redis is trusted
        // again.
        let _ = self.redis.delete(&session_key(&token_hash)).await;
        Ok(())
    }

    async fn purge(&self, now_ms: i64) -> Result<usize, StoreError> {
        // Redis forgets expired entries by itself.
        self.db.purge(now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_its_encoding_whatever_the_name() {
        let user = User { id: UserId(7), name: "a|b|c".into(), name_key: "a|b|c".into() };
        let record = SessionRecord { user, expires_at_ms: 123 };
        let back = decode(&encode(&record)).unwrap();
        assert_eq!(back.user, record.user);
        assert_eq!(back.expires_at_ms, 123);
        assert!(decode("garbage").is_none());
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let e = RedisCache::new("http://user:hunter2@host").unwrap_err();
        assert!(!e.contains("hunter2"));
        assert!(
            format!("{:?}", RedisCache::new("redis://:pw@127.0.0.1:1/0").unwrap())
                .contains("redacted")
        );
    }
}
