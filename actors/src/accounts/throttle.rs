//! The sign-in throttle: failures counted per account (by name key) and per client address,
//! each with a few free failures and then an exponentially growing wait. Time is an argument,
//! so it is tested without clocks or actors.
//!
//! The numbers ([`ThrottleConfig::default`]):
//! - account: 5 failures free, then 1 s, 2 s, 4 s … capped at 30 s after each further failure.
//!   A stranger can make the owner wait at most 30 s at a time; the owner's success clears
//!   the account's count.
//! - address: 30 failures free (a shared NAT, a family), then 1 s doubling to a 60 s cap. A
//!   success does not clear it (an attacker could otherwise reset it with an account of their
//!   own); IPv6 clients are counted per /64, since one host usually has the whole prefix.
//! - a count is forgotten 15 minutes after its last failure.
//!
//! An attempt is counted as a failure when it starts and refunded if it succeeds, so that any
//! number of concurrent attempts cannot slip past the count while their passwords are checked.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Free failures, then `base` doubling per failure up to `cap`; forgotten after `forget_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub free: u32,
    pub base: Duration,
    pub cap: Duration,
    pub forget_after: Duration,
}

impl BackoffPolicy {
    /// How long to wait after the `count`-th failure in a row.
    fn wait_after(&self, count: u32) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).min(20);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// Both policies and the bound on tracked keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub account: BackoffPolicy,
    pub address: BackoffPolicy,
    /// Accounts and addresses tracked at most (each map); past it new ones are turned away
    /// until a sweep frees room, so memory stays bounded under a flood of names.
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        let forget_after = Duration::from_secs(15 * 60);
        Self {
            account: BackoffPolicy {
                free: 5,
                base: Duration::from_secs(1),
                cap: Duration::from_secs(30),
                forget_after,
            },
            address: BackoffPolicy {
                free: 30,
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
                forget_after,
            },
            max_tracked: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// One policy's counts.
#[derive(Debug)]
struct Counter<K> {
    policy: BackoffPolicy,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(policy: BackoffPolicy) -> Self {
        Self { policy, map: HashMap::new() }
    }

    /// How long `key` must still wait at `now` (zero when it may try).
    fn wait(&mut self, key: &K, now: Instant) -> Duration {
        let Some(f) = self.map.get(key).copied() else { return Duration::ZERO };
        if now.saturating_duration_since(f.last) >= self.policy.forget_after {
            self.map.remove(key);
            return Duration::ZERO;
        }
        (f.last + self.policy.wait_after(f.count)).saturating_duration_since(now)
    }

    fn count(&mut self, key: &K, now: Instant) {
        let f = self.map.entry(key.clone()).or_insert(Failures { count: 0, last: now });
        f.count = f.count.saturating_add(1);
        f.last = f.last.max(now);
    }

    fn refund(&mut self, key: &K) {
        if let Some(f) = self.map.get_mut(key) {
            f.count = f.count.saturating_sub(1);
            if f.count == 0 {
                self.map.remove(key);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let forget = self.policy.forget_after;
        self.map.retain(|_, f| now.saturating_duration_since(f.last) < forget);
    }
}

/// A started attempt, to be closed with [`SignInThrottle::succeeded`], `failed` or `abandoned`.
#[derive(Debug)]
#[must_use = "an attempt must be closed"]
pub struct Attempt {
    account: String,
    address: IpAddr,
}

/// The throttle's state. Owned by the `Accounts` actor.
#[derive(Debug)]
pub struct SignInThrottle {
    accounts: Counter<String>,
    addresses: Counter<IpAddr>,
    max_tracked: usize,
}

/// IPv6 clients are counted per /64 prefix.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl SignInThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            accounts: Counter::new(config.account),
            addresses: Counter::new(config.address),
            max_tracked: config.max_tracked,
        }
    }

    /// Starts an attempt on the account `name_key` from `client`, counted as a failure until
    /// it succeeds; or how long to wait first.
    pub fn begin(
        &mut self,
        name_key: &str,
        client: IpAddr,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        let (account, address) = (name_key.to_owned(), address_key(client));
        let wait = self.accounts.wait(&account, now).max(self.addresses.wait(&address, now));
        if !wait.is_zero() {
            return Err(wait);
        }
        if !self.has_room(&account, &address) {
            self.sweep(now);
            if !self.has_room(&account, &address) {
                return Err(Duration::from_secs(10));
            }
        }
        self.accounts.count(&account, now);
        self.addresses.count(&address, now);
        Ok(Attempt { account, address })
    }

    /// Whether the attempt's keys are tracked already or fit under the bound.
    fn has_room(&self, account: &String, address: &IpAddr) -> bool {
        let fits = |len: usize, known: bool| known || len < self.max_tracked;
        fits(self.accounts.map.len(), self.accounts.map.contains_key(account))
            && fits(self.addresses.map.len(), self.addresses.map.contains_key(address))
    }

    /// The password was right: the account starts afresh, the address gets its count back.
    pub fn succeeded(&mut self, attempt: Attempt) {
        self.accounts.map.remove(&attempt.account);
        self.addresses.refund(&attempt.address);
    }

    /// The password was wrong (or the user unknown): the failure stays counted.
    pub fn failed(&mut self, attempt: Attempt) {
        let _ = attempt;
    }

    /// Nothing was decided (the database or the hashing pool failed): not the client's fault.
    pub fn abandoned(&mut self, attempt: Attempt) {
        self.accounts.refund(&attempt.account);
        self.addresses.refund(&attempt.address);
    }

    /// Forgets counts whose last failure is old enough.
    pub fn sweep(&mut self, now: Instant) {
        self.accounts.sweep(now);
        self.addresses.sweep(now);
    }

    /// Accounts and addresses tracked now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.accounts.map.len(), self.addresses.map.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(t: &mut SignInThrottle, key: &str, from: IpAddr, now: Instant) -> Result<(), Duration> {
        let a = t.begin(key, from, now)?;
        t.failed(a);
        Ok(())
    }

    #[test]
    fn an_account_gets_five_free_failures_then_a_doubling_wait_capped_at_30_s() {
        let mut t = SignInThrottle::new(ThrottleConfig::default());
        let (me, t0) = (ip("10.0.0.1"), Instant::now());
        for _ in 0..5 {
            fail(&mut t, "alice", me, t0).unwrap();
        }
        assert_eq!(t.begin("alice", me, t0).unwrap_err(), SECOND);
        let mut now = t0;
        for expected in [1, 2, 4, 8, 16, 30, 30] {
            let wait = t.begin("alice", me, now).unwrap_err();
            assert_eq!(wait, Duration::from_secs(expected));
            now += wait;
            fail(&mut t, "alice", me, now).unwrap();
        }
        // Waiting never lengthens the wait: refused attempts are not failures.
        for _ in 0..10 {
            assert_eq!(t.begin("alice", me, now).unwrap_err(), 30 * SECOND);
        }
        assert!(t.begin("alice", me, now + 30 * SECOND).is_ok(), "the owner gets a turn");
    }

    #[test]
    fn a_success_clears_the_account_and_refunds_the_address() {
        let mut t = SignInThrottle::new(ThrottleConfig::default());
        let (me, now) = (ip("10.0.0.1"), Instant::now());
        for _ in 0..4 {
            fail(&mut t, "alice", me, now).unwrap();
        }
        let ok = t.begin("alice", me, now).unwrap();
        t.succeeded(ok);
        for _ in 0..4 {
            fail(&mut t, "alice", me, now).unwrap();
        }
        assert!(t.begin("alice", me, now).is_ok(), "four failures since the success");
        assert_eq!(t.addresses.map[&me].count, 9, "8 failures and the attempt in flight");
    }

    #[test]
    fn other_accounts_work_from_the_same_address_until_its_budget_is_spent() {
        let mut t = SignInThrottle::new(ThrottleConfig::default());
        let (me, now) = (ip("10.0.0.1"), Instant::now());
        for i in 0..30 {
            fail(&mut t, &format!("user{}", i / 5), me, now).unwrap();
        }
        assert_eq!(t.begin("someone-new", me, now).unwrap_err(), SECOND);
        assert!(t.begin("someone-new", ip("10.0.0.2"), now).is_ok(), "other addresses are fine");
    }

    #[test]
    fn concurrent_attempts_are_counted_when_they_start() {
        let mut t = SignInThrottle::new(ThrottleConfig::default());
        let (me, now) = (ip("10.0.0.1"), Instant::now());
        let in_flight: Vec<_> = (0..5).map(|_| t.begin("alice", me, now).unwrap()).collect();
        assert!(t.begin("alice", me, now).is_err(), "a sixth cannot start before they end");
        for a in in_flight {
            t.abandoned(a);
        }
        assert_eq!(t.tracked(), (0, 0), "abandoned attempts are not failures");
    }

    #[test]
    fn counts_are_forgotten_and_ipv6_is_counted_per_64() {
        let mut t = SignInThrottle::new(ThrottleConfig::default());
        let now = Instant::now();
        for i in 0..30 {
            fail(&mut t, &format!("u{i}"), ip(&format!("2001:db8::{i:x}")), now).unwrap();
        }
        assert!(t.begin("x", ip("2001:db8::ffff"), now).is_err(), "one /64, one budget");
        assert!(t.begin("x", ip("2001:db9::1"), now).is_ok());
        t.sweep(now + Duration::from_secs(15 * 60));
        assert_eq!(t.tracked(), (0, 0));
    }

    #[test]
    fn the_number_of_tracked_keys_is_bounded() {
        let cfg = ThrottleConfig { max_tracked: 3, ..ThrottleConfig::default() };
        let mut t = SignInThrottle::new(cfg);
        let now = Instant::now();
        for i in 0..3 {
            fail(&mut t, &format!("u{i}"), ip(&format!("10.0.0.{i}")), now).unwrap();
        }
        assert!(t.begin("u9", ip("10.0.0.9"), now).is_err());
        assert!(t.begin("u0", ip("10.0.0.0"), now).is_ok(), "known keys still count");
    }
}
