//! The scheduler's Prometheus metrics; the binary registers them in its service's registry.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

use super::executor::Outcome;
use crate::model::JobKind;
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
    pub probe_queue_depth: IntGauge,
    pub probes_waiting_for_tool: IntGauge,
    pub probes_done: IntCounter,
    pub probes_failed: IntCounter,
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
            probe_queue_depth: gauge(
                "douyin_probe_queue_depth",
                "Videos waiting for their duration, size and poster (not given up on).",
            ),
            probes_waiting_for_tool: gauge(
                "douyin_probe_waiting_for_tool",
                "Probe jobs waiting because ffmpeg or ffprobe was not found.",
            ),
            probes_done: counter(
                "douyin_probes_total",
                "Videos probed: duration, size and codecs recorded, poster stored.",
            ),
            probes_failed: counter(
                "douyin_probe_failures_total",
                "Probe attempts that failed and were rescheduled or given up on.",
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
        registry.register(Box::new(self.probe_queue_depth.clone()))?;
        registry.register(Box::new(self.probes_waiting_for_tool.clone()))?;
        registry.register(Box::new(self.probes_done.clone()))?;
        registry.register(Box::new(self.probes_failed.clone()))?;
        Ok(())
    }

    /// Counts what became of one job.
    pub fn count(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Removed { .. } => self.removals_done.inc(),
            Outcome::Probed { .. } => self.probes_done.inc(),
            Outcome::Retry { kind, .. } | Outcome::GaveUp { kind, .. } => match kind {
                JobKind::RemoveVideo => self.removals_failed.inc(),
                JobKind::ProbeVideo => self.probes_failed.inc(),
            },
            Outcome::Dropped { .. } | Outcome::Waiting { .. } => {}
        }
    }

    /// Sets the probe queue's gauges from a fresh count.
    pub fn set_probe_queue(&self, stats: QueueStats) {
        self.probe_queue_depth.set(i64::try_from(stats.waiting).unwrap_or(i64::MAX));
        self.probes_waiting_for_tool.set(i64::try_from(stats.needs_tool).unwrap_or(i64::MAX));
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
