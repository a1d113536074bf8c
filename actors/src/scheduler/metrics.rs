//! The scheduler's Prometheus metrics; the binary registers them in its service's registry.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

use crate::store::QueueStats;

/// Queue depth, age of the oldest record, removals done and failed, reconciliation findings.
/// Cloning shares the underlying metrics.
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    pub queue_depth: IntGauge,
    pub failed_records: IntGauge,
    pub oldest_record_age_seconds: IntGauge,
    pub removals_done: IntCounter,
    pub removals_failed: IntCounter,
    pub orphan_files: IntGauge,
    pub stale_pending_queued: IntCounter,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    // Only an invalid metric name or help text fails; these are fixed literals that are valid.
    IntGauge::with_opts(Opts::new(name, help)).expect("a valid metric name")
}

fn counter(name: &str, help: &str) -> IntCounter {
    // As above: fixed, valid names.
    IntCounter::with_opts(Opts::new(name, help)).expect("a valid metric name")
}

impl SchedulerMetrics {
    pub fn new() -> Self {
        Self {
            queue_depth: gauge(
                "douyin_deletion_queue_depth",
                "Deletion records waiting to run (not given up on).",
            ),
            failed_records: gauge(
                "douyin_deletion_queue_failed",
                "Deletion records given up on after too many failed attempts.",
            ),
            oldest_record_age_seconds: gauge(
                "douyin_deletion_queue_oldest_age_seconds",
                "Age of the oldest waiting deletion record (0 when the queue is empty).",
            ),
            removals_done: counter(
                "douyin_deletion_removals_total",
                "Videos whose file, comments and row were removed.",
            ),
            removals_failed: counter(
                "douyin_deletion_failures_total",
                "Removal attempts that failed and were rescheduled or given up on.",
            ),
            orphan_files: gauge(
                "douyin_orphan_video_files",
                "Video files on disk with no database row, at the last reconciliation.",
            ),
            stale_pending_queued: counter(
                "douyin_stale_pending_videos_queued_total",
                "Pending videos never uploaded within the limit, queued for removal.",
            ),
        }
    }

    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.queue_depth.clone()))?;
        registry.register(Box::new(self.failed_records.clone()))?;
        registry.register(Box::new(self.oldest_record_age_seconds.clone()))?;
        registry.register(Box::new(self.removals_done.clone()))?;
        registry.register(Box::new(self.removals_failed.clone()))?;
        registry.register(Box::new(self.orphan_files.clone()))?;
        registry.register(Box::new(self.stale_pending_queued.clone()))?;
        Ok(())
    }

    /// Sets the queue gauges from a fresh count taken at `now`.
    pub fn set_queue(&self, stats: QueueStats, now: time::OffsetDateTime) {
        self.queue_depth.set(i64::try_from(stats.waiting).unwrap_or(i64::MAX));
        self.failed_records.set(i64::try_from(stats.failed).unwrap_or(i64::MAX));
        let age = stats.oldest_queued_at.map_or(0, |t| (now - t).whole_seconds().max(0));
        self.oldest_record_age_seconds.set(age);
    }
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
