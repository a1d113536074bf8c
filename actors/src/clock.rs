//! Time as a value the actors are given: the real clock in production, a hand-moved one in
//! tests, so that expiry, revalidation and back-off are tested without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for durations measured inside this process.
    fn now(&self) -> Instant;
    /// Wall-clock unix milliseconds, for times stored in the database.
    fn wall_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_ms(&self) -> i64 {
        crate::store::now_ms()
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it; both readings move
/// together, as they would in real time.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    wall_start_ms: i64,
    elapsed_ms: AtomicU64,
}

impl ManualClock {
    /// Starts at the real time of its creation.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            wall_start_ms: crate::store::now_ms(),
            elapsed_ms: AtomicU64::new(0),
        }
    }

    /// Moves time forward by `by` (whole milliseconds).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX / 2);
        self.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn wall_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.elapsed().as_millis()).unwrap_or(i64::MAX / 2);
        self.wall_start_ms.saturating_add(elapsed)
    }
}

/// A clock to hand to actors and to put in a configuration: cheap to clone, the real clock by
/// default.
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self(clock)
    }

    pub fn now(&self) -> Instant {
        self.0.now()
    }

    pub fn wall_ms(&self) -> i64 {
        self.0.wall_ms()
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        Self(Arc::new(SystemClock))
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedClock")
    }
}

impl From<Arc<ManualClock>> for SharedClock {
    fn from(clock: Arc<ManualClock>) -> Self {
        Self(clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_both_readings_only_when_told() {
        let clock = ManualClock::new();
        let (t0, w0) = (clock.now(), clock.wall_ms());
        assert_eq!((clock.now(), clock.wall_ms()), (t0, w0));
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now() - t0, Duration::from_millis(1500));
        assert_eq!(clock.wall_ms() - w0, 1500);
    }
}
