//! `Session`: the session cache in front of a [`SessionStore`], written through before it
//! replies. Ids are 256-bit random strings; only their SHA-256 is stored or cached.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::changes::{Changes, Topic};
use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::model::User;
use crate::store::{
    InsertSession, LoadSession, PurgeSessions, RemoveSession, SessionRecord, SessionRevocations,
    TouchSession, VideoStore,
};

/// Where sessions live durably: the database ([`DbSessions`]), with Redis in front when asked.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn insert(
        &self,
        token_hash: String,
        user: &User,
        expires_at_ms: i64,
    ) -> Result<(), StoreError>;
    async fn load(
        &self,
        token_hash: String,
        now_ms: i64,
    ) -> Result<Option<SessionRecord>, StoreError>;
    async fn touch(&self, token_hash: String, expires_at_ms: i64) -> Result<(), StoreError>;
    async fn remove(&self, token_hash: String) -> Result<(), StoreError>;
    async fn purge(&self, now_ms: i64) -> Result<usize, StoreError>;
    /// How many logouts every node has made, as of a read sent after this call began, when
    /// the store keeps that count (PostgreSQL); `None` when it does not (SQLite, whose
    /// processes share [`Changes`] instead).
    async fn revocations(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}

/// Sessions in the `sessions` table, through the [`VideoStore`] actor.
#[derive(Debug, Clone)]
pub struct DbSessions(pub Addr<VideoStore>);

#[async_trait]
impl SessionStore for DbSessions {
    async fn insert(
        &self,
        token_hash: String,
        user: &User,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.0.send(InsertSession { token_hash, user_id: user.id, expires_at_ms }).await?
    }
    async fn load(
        &self,
        token_hash: String,
        now_ms: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.0.send(LoadSession { token_hash, now_ms }).await?
    }
    async fn touch(&self, token_hash: String, expires_at_ms: i64) -> Result<(), StoreError> {
        self.0.send(TouchSession { token_hash, expires_at_ms }).await?
    }
    async fn remove(&self, token_hash: String) -> Result<(), StoreError> {
        self.0.send(RemoveSession { token_hash }).await?
    }
    async fn purge(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.0.send(PurgeSessions { now_ms }).await?
    }
    async fn revocations(&self) -> Result<Option<u64>, StoreError> {
        self.0.send(SessionRevocations).await?
    }
}

/// A session id as the client holds it; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts what a client sent if it has the shape of an id we issue; anything else cannot be
    /// a session and is refused without a database look-up.
    pub fn from_client(raw: &str) -> Option<Self> {
        (raw.len() == 43
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// Signs `user` in: a new session, stored before the reply.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionToken, StoreError>")]
pub struct CreateSession {
    pub user: User,
}

/// Who a session belongs to, sliding its idle expiry; `None` when unknown, expired or revoked.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<User>, StoreError>")]
pub struct ResolveSession {
    pub token: SessionToken,
}

/// Logs out: the session stops working at once.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RevokeSession {
    pub token: SessionToken,
}

/// Removes expired sessions from the cache and the store now (also runs on an interval).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Sweep;

#[derive(Debug, Clone)]
struct Cached {
    user: User,
    expires_at_ms: i64,
    /// The expiry the store has; the cache may run ahead of it by less than `persist_step`.
    stored_expires_at_ms: i64,
    /// When the store last confirmed this session: another process may have revoked it since.
    confirmed: Instant,
    /// The sessions' change counter before that confirmation: once it has moved, some process
    /// revoked some session, and the entry is confirmed again before it is trusted.
    seen: u64,
}

/// How long sessions live and how long a cached one is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Idle lifetime: each use slides the expiry this far ahead.
    pub ttl: Duration,
    /// How long a cached entry is trusted before the store is asked again: the longest a
    /// logout made by another process can go unseen here.
    pub revalidate_after: Duration,
}

impl SessionConfig {
    /// The default revalidation window.
    pub const REVALIDATE_AFTER: Duration = Duration::from_secs(2);

    /// `ttl` with the default revalidation window.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, revalidate_after: Self::REVALIDATE_AFTER }
    }
}

/// The session cache actor. See the module docs.
pub struct Session {
    store: Arc<dyn SessionStore>,
    clock: SharedClock,
    ttl_ms: i64,
    /// Slides smaller than this are kept in the cache only, so a busy session does not write
    /// on every request.
    persist_step_ms: i64,
    /// How long a cached entry is trusted before the store is asked again (revocation by
    /// another process becomes visible within this).
    revalidate_after: Duration,
    sweep_every: Duration,
    cache: HashMap<String, Cached>,
    /// Tokens (by hash) whose revocation is in flight, with how many: while the store's
    /// delete has not committed, the row is still there, so these are refused without asking.
    revoking: HashMap<String, usize>,
    /// Store loads in flight, by a sequence number. A revocation of a token marks its loads, and
    /// a marked load's answer is discarded: it may have read the row before the delete.
    loads: HashMap<u64, Load>,
    next_load: u64,
    /// Revocations by every process on the database (see [`Changes`]).
    changes: Changes,
    /// Revocations are counted by the store, for nodes on several hosts: each resolve first
    /// reads that count (a read shared with the resolves beside it), and a cached entry is
    /// trusted only while it has not moved.
    store_counts_revocations: bool,
}

/// A store load in flight for [`ResolveSession`].
#[derive(Debug)]
struct Load {
    hash: String,
    /// A revocation of this token began while the load ran.
    revoked: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("cached", &self.cache.len()).finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig, clock: SharedClock) -> Self {
        let ttl = config.ttl;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2).max(1000);
        Self {
            store,
            clock,
            ttl_ms,
            persist_step_ms: (ttl_ms / 10).clamp(1, 60_000),
            revalidate_after: config.revalidate_after,
            sweep_every: ttl.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            cache: HashMap::new(),
            revoking: HashMap::new(),
            loads: HashMap::new(),
            next_load: 0,
            changes: Changes::in_process(),
            store_counts_revocations: false,
        }
    }

    /// Follows the revocations of every process sharing `changes`, not only its own.
    pub fn with_changes(mut self, changes: Changes) -> Self {
        self.changes = changes;
        self
    }

    /// Follows the revocations the store counts ([`SessionStore::revocations`]): a logout on
    /// any node, on any host, is seen at the next resolve here.
    pub fn with_store_revocations(mut self) -> Self {
        self.store_counts_revocations = true;
        self
    }

    fn revocations(&self) -> u64 {
        self.changes.version(Topic::Sessions)
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.sweep_every, |_, ctx| ctx.notify(Sweep));
    }
}

impl Handler<CreateSession> for Session {
    type Result = ResponseActFuture<Self, Result<SessionToken, StoreError>>;

    fn handle(&mut self, msg: CreateSession, _: &mut Self::Context) -> Self::Result {
        let token = SessionToken::generate();
        let hash = token.hash();
        let expires_at_ms = self.clock.wall_ms() + self.ttl_ms;
        let store = self.store.clone();
        let user = msg.user;
        let seen = self.revocations();
        Box::pin(
            async move {
                store.insert(hash.clone(), &user, expires_at_ms).await?;
                Ok((hash, user))
            }
            .into_actor(self)
            .map(move |res: Result<_, StoreError>, act, _| {
                let (hash, user) = res?;
                act.cache.insert(
                    hash,
                    Cached {
                        user,
                        expires_at_ms,
                        stored_expires_at_ms: expires_at_ms,
                        confirmed: act.clock.now(),
                        seen,
                    },
                );
                Ok(token)
            }),
        )
    }
}

impl Handler<ResolveSession> for Session {
    type Result = ResponseActFuture<Self, Result<Option<User>, StoreError>>;

    fn handle(&mut self, msg: ResolveSession, _: &mut Self::Context) -> Self::Result {
        let hash = msg.token.hash();
        if !self.store_counts_revocations {
            return self.resolve(hash, None);
        }
        let store = self.store.clone();
        Box::pin(async move { store.revocations().await }.into_actor(self).then(
            move |counted, act, _| match counted {
                Ok(count) => act.resolve(hash, count),
                Err(e) => Box::pin(fut::ready(Err(e))),
            },
        ))
    }
}

impl Session {
    /// [`ResolveSession`] of the token hashed `hash`; `counted` is the store's count of
    /// revocations read after the request came, if it keeps one (else this process's
    /// [`Changes`] say whether a cached entry may be trusted).
    fn resolve(
        &mut self,
        hash: String,
        counted: Option<u64>,
    ) -> ResponseActFuture<Self, Result<Option<User>, StoreError>> {
        let now = self.clock.wall_ms();
        let new_expiry = now + self.ttl_ms;
        let step = self.persist_step_ms;
        let store = self.store.clone();
        if self.revoking.contains_key(&hash) {
            return Box::pin(fut::ready(Ok(None)));
        }

        // Fast path: a fresh cache entry whose slide need not be written yet.
        let cached = self.cache.get(&hash).cloned();
        if let Some(entry) = &cached {
            let fresh = self.clock.now().saturating_duration_since(entry.confirmed)
                < self.revalidate_after
                && entry.seen == counted.unwrap_or_else(|| self.revocations());
            if entry.expires_at_ms <= now {
                self.cache.remove(&hash);
                return Box::pin(fut::ready(Ok(None)));
            }
            if fresh && new_expiry - entry.stored_expires_at_ms < step {
                if let Some(e) = self.cache.get_mut(&hash) {
                    e.expires_at_ms = new_expiry;
                }
                return Box::pin(fut::ready(Ok(Some(entry.user.clone()))));
            }
        }

        // Taken before the load: a revocation committed after the load read the row moves the
        // counter past this, and the entry is confirmed again at its next use.
        let seen = counted.unwrap_or_else(|| self.revocations());
        let load = self.next_load;
        self.next_load = self.next_load.wrapping_add(1);
        self.loads.insert(load, Load { hash: hash.clone(), revoked: false });
        Box::pin(
            async move {
                let Some(record) = store.load(hash.clone(), now).await? else {
                    return Ok((hash, None));
                };
                let stored = if new_expiry - record.expires_at_ms >= step {
                    store.touch(hash.clone(), new_expiry).await?;
                    new_expiry
                } else {
                    record.expires_at_ms
                };
                Ok((hash, Some((record.user, stored))))
            }
            .into_actor(self)
            .map(move |res: Result<_, StoreError>, act, _| {
                let revoked = act.loads.remove(&load).is_none_or(|l| l.revoked);
                let (hash, found) = res?;
                let Some((user, stored)) = found else {
                    act.cache.remove(&hash);
                    return Ok(None);
                };
                // Read before a revocation's delete committed: the session is over all the same,
                // and caching the row would revive it until the next revalidation.
                if revoked || act.revoking.contains_key(&hash) {
                    return Ok(None);
                }
                act.cache.insert(
                    hash,
                    Cached {
                        user: user.clone(),
                        expires_at_ms: new_expiry,
                        stored_expires_at_ms: stored,
                        confirmed: act.clock.now(),
                        seen,
                    },
                );
                Ok(Some(user))
            }),
        )
    }
}

impl Handler<RevokeSession> for Session {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: RevokeSession, _: &mut Self::Context) -> Self::Result {
        let hash = msg.token.hash();
        // From this moment every resolve of the token answers `None`, although the store's
        // delete below has not committed yet: out of the cache, refused while the delete is in
        // flight, and loads already running are marked so that their answer is discarded.
        self.cache.remove(&hash);
        *self.revoking.entry(hash.clone()).or_default() += 1;
        for load in self.loads.values_mut().filter(|l| l.hash == hash) {
            load.revoked = true;
        }
        let store = self.store.clone();
        Box::pin(
            async move {
                let res = store.remove(hash.clone()).await;
                (hash, res)
            }
            .into_actor(self)
            .map(|(hash, res), act, _| {
                // Committed, a load from now on finds no row, and the bump (before the reply)
                // sends every other process's cache back to the store. Failed, the client gets
                // an error rather than a 204 and the session stays as the store has it.
                if res.is_ok() {
                    act.changes.bump(Topic::Sessions);
                }
                if let Some(n) = act.revoking.get_mut(&hash) {
                    *n -= 1;
                    if *n == 0 {
                        act.revoking.remove(&hash);
                    }
                }
                res
            }),
        )
    }
}

impl Handler<Sweep> for Session {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Sweep, _: &mut Self::Context) -> Self::Result {
        let now = self.clock.wall_ms();
        self.cache.retain(|_, e| e.expires_at_ms > now);
        let store = self.store.clone();
        Box::pin(async move {
            match store.purge(now).await {
                Ok(0) => {}
                Ok(n) => log::debug!("removed {n} expired sessions"),
                Err(e) => log::warn!("session sweep failed: {e}"),
            }
        })
    }
}
