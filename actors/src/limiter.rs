//! `StreamLimiter`: per-client token buckets and the global count of stream slots.
//!
//! Every stream request takes one token from its client's bucket, one of its client's
//! `max_per_client` slots and one of `max_streams` global slots. All three are decided inside one
//! synchronous handler, so two requests can never spend the same token or slot. A slot comes back when its [`SlotPermit`] is dropped, which the stream service
//! ties to the end of the response body (fully sent, or the client gone).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::cache::RedisCache;
use crate::model::UserId;

/// How often idle (full) buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// At most this many clients are tracked; past it a sweep runs, and if every bucket is still in
/// use the new client is turned away (memory stays bounded under a flood of client ids).
pub const MAX_CLIENTS: usize = 100_000;
/// The longest `Retry-After` ever suggested, for a rate of zero or a bucket shallower than 1.
const MAX_RETRY_SECS: u64 = 3600;

/// A token bucket. Time is an argument, so it is tested without clocks or actors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, updated: now }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        // `saturating_duration_since`: a "now" older than the last update adds nothing.
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = self.updated.max(now);
    }

    /// Takes one token, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if rate <= 0.0 || burst < 1.0 {
            return Err(Duration::from_secs(MAX_RETRY_SECS));
        }
        let wait = (1.0 - self.tokens) / rate;
        Err(Duration::from_secs_f64(wait.min(MAX_RETRY_SECS as f64)))
    }

    /// Whether the bucket is full at `now`: then forgetting it changes nothing for its client.
    pub fn is_idle(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let mut b = *self;
        b.refill(now, rate, burst);
        b.tokens >= burst
    }

    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// Who a bucket and its slots belong to: a signed-in user (whichever of their sessions the
/// request carries, so several sign-ins do not multiply the quota), else an IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    User(UserId),
    Ip(IpAddr),
}

/// Limits: refill per second, bucket depth, global slots, slots of one client.
#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    pub rate: f64,
    pub burst: f64,
    pub max_streams: usize,
    pub max_per_client: u64,
}

/// The actor. Start it once per node with [`StreamLimiter::new`] and `.start()`.
#[derive(Debug)]
pub struct StreamLimiter {
    config: LimiterConfig,
    buckets: HashMap<ClientKey, TokenBucket>,
    active: usize,
    /// Slots held per client; a client with none has no entry.
    held: HashMap<ClientKey, u64>,
    /// Where the buckets are shared by every stream node (`--redis-url`); the local buckets
    /// answer while it does not.
    shared: Option<RedisCache>,
}

impl StreamLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, buckets: HashMap::new(), active: 0, held: HashMap::new(), shared: None }
    }

    /// Takes the tokens from buckets in Redis, one per client across every node; slots stay
    /// this node's.
    pub fn with_shared_buckets(mut self, redis: RedisCache) -> Self {
        self.shared = Some(redis);
        self
    }

    fn release(&mut self, client: ClientKey) {
        self.active = self.active.saturating_sub(1);
        if let Some(n) = self.held.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&client);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let LimiterConfig { rate, burst, .. } = self.config;
        self.buckets.retain(|_, b| !b.is_idle(now, rate, burst));
    }

    /// The synchronous decision: a token, then one of the client's slots, then a global slot.
    fn acquire(&mut self, client: ClientKey, now: Instant) -> Result<(), Rejected> {
        self.decide(client, now, None)
    }

    /// [`Self::acquire`], with the token already decided by the shared bucket when `shared` is
    /// given (`Err` holds when to retry).
    fn decide(
        &mut self,
        client: ClientKey,
        now: Instant,
        shared: Option<Result<(), Duration>>,
    ) -> Result<(), Rejected> {
        let LimiterConfig { rate, burst, max_streams, max_per_client } = self.config;
        let token = match shared {
            Some(token) => token,
            None => {
                if !self.buckets.contains_key(&client) && self.buckets.len() >= MAX_CLIENTS {
                    self.sweep(now);
                    if self.buckets.len() >= MAX_CLIENTS {
                        let reason = Reason::TooManyClients;
                        return Err(Rejected { retry_after: SWEEP_EVERY, reason });
                    }
                }
                let bucket =
                    self.buckets.entry(client).or_insert_with(|| TokenBucket::new(burst, now));
                bucket.try_take(now, rate, burst)
            }
        };
        token.map_err(|retry_after| Rejected { retry_after, reason: Reason::Rate })?;
        // Slots free up as responses finish; a second is a fair guess at when.
        let soon = Duration::from_secs(1);
        let held = self.held.get(&client).copied().unwrap_or(0);
        if held >= max_per_client {
            return Err(Rejected { retry_after: soon, reason: Reason::ClientSlots });
        }
        if self.active >= max_streams {
            return Err(Rejected { retry_after: soon, reason: Reason::Slots });
        }
        self.active += 1;
        *self.held.entry(client).or_insert(0) += 1;
        Ok(())
    }
}

impl Actor for StreamLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_EVERY, |this, _| this.sweep(Instant::now()));
    }
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client's bucket is empty.
    Rate,
    /// The client holds as many slots as one client may.
    ClientSlots,
    /// Every global slot is taken.
    Slots,
    /// Too many distinct clients are tracked right now.
    TooManyClients,
}

/// A refusal and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream limit reached ({reason:?}), retry in {retry_after:?}")]
pub struct Rejected {
    pub retry_after: Duration,
    pub reason: Reason,
}

impl Rejected {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// One held slot; dropping it gives the slot back (the release is a message, so it works from
/// any thread and even after the response future was cancelled).
#[derive(Debug)]
pub struct SlotPermit {
    limiter: Addr<StreamLimiter>,
    client: ClientKey,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        // `do_send` ignores the mailbox bound: a release must never be lost to backpressure.
        self.limiter.do_send(Release { client: self.client });
    }
}

/// Takes a token from `client`'s bucket and a global slot, or says when to retry.
#[derive(Debug, Message)]
#[rtype(result = "Result<SlotPermit, Rejected>")]
pub struct Acquire {
    pub client: ClientKey,
}

/// Gives a slot back; sent only by [`SlotPermit`]'s `Drop`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Release {
    client: ClientKey,
}

impl Handler<Acquire> for StreamLimiter {
    type Result = ResponseActFuture<Self, Result<SlotPermit, Rejected>>;

    fn handle(&mut self, msg: Acquire, ctx: &mut Self::Context) -> Self::Result {
        let client = msg.client;
        let limiter = ctx.address();
        let Some(redis) = self.shared.clone() else {
            let decided = self.acquire(client, Instant::now());
            return Box::pin(fut::ready(decided.map(|()| SlotPermit { limiter, client })));
        };
        let LimiterConfig { rate, burst, .. } = self.config;
        Box::pin(
            async move { redis.take_token(&client.to_string(), rate, burst).await }
                .into_actor(self)
                .map(move |token, act, _| {
                    // Redis away: this node's own bucket decides, as without Redis.
                    let shared = token.ok().map(|wait| wait.map_or(Ok(()), Err));
                    act.decide(client, Instant::now(), shared)?;
                    Ok(SlotPermit { limiter, client })
                }),
        )
    }
}

impl std::fmt::Display for ClientKey {
    /// The bucket's name in Redis.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::User(id) => write!(f, "user:{}", id.0),
            ClientKey::Ip(ip) => write!(f, "ip:{ip}"),
        }
    }
}

impl Handler<Release> for StreamLimiter {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Self::Context) {
        self.release(msg.client);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const RATE: f64 = 2.0;
    const BURST: f64 = 3.0;

    #[test]
    fn burst_then_empty_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(BURST, t0);
        for _ in 0..3 {
            assert!(b.try_take(t0, RATE, BURST).is_ok());
        }
        let wait = b.try_take(t0, RATE, BURST).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a token after 250 ms: still refused, and the wait shrinks accordingly.
        let wait = b.try_take(t0 + Duration::from_millis(250), RATE, BURST).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        assert!(b.try_take(t0 + Duration::from_millis(500), RATE, BURST).is_ok());
    }

    #[test]
    fn refill_stops_at_the_burst_and_ignores_time_going_back() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(BURST, t0);
        b.try_take(t0, RATE, BURST).unwrap();
        assert!(!b.is_idle(t0, RATE, BURST));
        let later = t0 + Duration::from_secs(60);
        assert!(b.is_idle(later, RATE, BURST));
        b.try_take(later, RATE, BURST).unwrap();
        assert_eq!(b.tokens(), BURST - 1.0);
        // An older "now" neither refills nor rewinds the clock.
        b.try_take(t0, RATE, BURST).unwrap();
        assert_eq!(b.tokens(), BURST - 2.0);
    }

    #[test]
    fn zero_rate_never_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, t0);
        b.try_take(t0, 0.0, 1.0).unwrap();
        let wait = b.try_take(t0 + Duration::from_secs(99), 0.0, 1.0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(MAX_RETRY_SECS));
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let r = |ms| Rejected { retry_after: Duration::from_millis(ms), reason: Reason::Rate };
        assert_eq!(r(0).retry_after_secs(), 1);
        assert_eq!(r(20).retry_after_secs(), 1);
        assert_eq!(r(1001).retry_after_secs(), 2);
    }

    #[test]
    fn slots_are_global_and_buckets_per_client() {
        let cfg = LimiterConfig { rate: 1.0, burst: 2.0, max_streams: 2, max_per_client: 2 };
        let mut l = StreamLimiter::new(cfg);
        let now = Instant::now();
        let a = ClientKey::Ip("10.0.0.1".parse().unwrap());
        let b = ClientKey::Ip("10.0.0.2".parse().unwrap());
        l.acquire(a, now).unwrap();
        l.acquire(b, now).unwrap();
        assert_eq!(l.acquire(a, now).unwrap_err().reason, Reason::Slots);
        l.release(a);
        l.release(b);
        // `a` spent its second token on the refused request: every request costs a token.
        assert_eq!(l.acquire(a, now).unwrap_err().reason, Reason::Rate);
        l.acquire(b, now).unwrap();
    }

    #[test]
    fn one_client_cannot_hold_more_than_its_share_of_slots() {
        let cfg = LimiterConfig { rate: 1.0, burst: 100.0, max_streams: 10, max_per_client: 3 };
        let mut l = StreamLimiter::new(cfg);
        let now = Instant::now();
        let greedy = ClientKey::User(UserId(1));
        let other = ClientKey::User(UserId(2));
        for _ in 0..3 {
            l.acquire(greedy, now).unwrap();
        }
        assert_eq!(l.acquire(greedy, now).unwrap_err().reason, Reason::ClientSlots);
        l.acquire(other, now).unwrap();
        l.release(greedy);
        l.acquire(greedy, now).unwrap();
        for _ in 0..3 {
            l.release(greedy);
        }
        l.release(other);
        assert_eq!(l.active, 0);
        assert!(l.held.is_empty(), "clients without slots are forgotten");
    }

    #[test]
    fn idle_buckets_are_swept() {
        let cfg = LimiterConfig { rate: 10.0, burst: 5.0, max_streams: 10, max_per_client: 1 };
        let mut l = StreamLimiter::new(cfg);
        let now = Instant::now();
        for i in 0..100u8 {
            let client = ClientKey::Ip(IpAddr::from([10, 0, 0, i]));
            l.acquire(client, now).unwrap();
            l.release(client);
        }
        assert_eq!(l.buckets.len(), 100);
        l.sweep(now);
        assert_eq!(l.buckets.len(), 100, "a bucket short of a token is kept");
        l.sweep(now + Duration::from_secs(1));
        assert!(l.buckets.is_empty());
    }
}
