//! The site's job runner: a [`Dispatcher`] (producer) claims due jobs from the durable queue
//! and sends typed [`Execute`] messages to an [`Executor`] (consumer), with the mailboxes as the
//! channel. Jobs are typed ([`JobKind`](crate::model::JobKind)): `remove_video` (a deleted
//! video's file, poster, comments and row) and `probe_video` (duration, size, codecs and
//! poster of a ready video, see [`probe`]), each an idempotent one-step function with the same
//! leases, backoff and give-up. Nothing here knows about timers or HTTP: whoever owns the clock
//! sends [`Tick`].

mod dispatcher;
mod executor;
mod metrics;
pub mod probe;
mod reconcile;

use std::time::Duration;

use time::OffsetDateTime;

pub use dispatcher::{
    DirectUploads, Dispatcher, DispatcherConfig, PassReport, QueueDeletion, Reconcile, Tick, Wake,
};
pub use executor::{Execute, Executor, Outcome, execute_one};
pub use metrics::SchedulerMetrics;
pub use probe::{MediaJobs, probe_one};
pub use reconcile::{ReconcileReport, reconcile};

/// When a failed removal is tried again, and when the queue gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure; each further failure doubles it.
    pub base: Duration,
    /// The longest delay between two attempts.
    pub cap: Duration,
    /// After this many failed attempts the record is marked failed and kept for a human.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 5 s, 10 s, 20 s … capped at 1 h: a full disk or a permission slip gets fixed within
        // the day, and ten attempts spread over about four hours cover that without retrying
        // a hopeless record forever.
        Self { base: Duration::from_secs(5), cap: Duration::from_secs(3600), max_attempts: 10 }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt once `attempts` attempts (≥ 1) have failed.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// What to record after a failure at `now` that brings the count to `attempts`:
    /// the next attempt time, and whether to give up.
    pub fn after_failure(&self, attempts: u32, now: OffsetDateTime) -> (OffsetDateTime, bool) {
        (now + self.delay(attempts), attempts >= self.max_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_gives_up_after_max_attempts() {
        let p = RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(10),
            max_attempts: 4,
        };
        let delays: Vec<u64> = (1..=5).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 10, 10]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(10));
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(p.after_failure(1, now), (now + Duration::from_secs(2), false));
        assert!(p.after_failure(4, now).1);
    }
}
