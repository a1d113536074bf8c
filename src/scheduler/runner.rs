//! Starting the runner: Executor, Dispatcher, and the tokio-cron-scheduler timer that only
//! sends them messages.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};
use actors::blob::BlobStore;
use actors::scheduler::{
    Dispatcher, DispatcherConfig, Executor, Reconcile, RetryPolicy, SchedulerMetrics, Tick,
};
use actors::store::VideoStore;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

/// How often reconciliation runs (stale pending videos, files without rows).
const RECONCILE_EVERY: Duration = Duration::from_secs(15 * 60);

/// The running scheduler of this node.
#[derive(Clone)]
pub struct Runner {
    pub dispatcher: Addr<Dispatcher>,
    pub metrics: SchedulerMetrics,
    /// Kept so the timer lives as long as the node.
    _timer: JobScheduler,
}

/// Why the timer could not start.
#[derive(Debug, thiserror::Error)]
#[error("starting the scheduler timer: {0}")]
pub struct RunnerError(#[from] JobSchedulerError);

impl Runner {
    /// Starts the executor and dispatcher, then the timer: a `Tick` every `every`, a
    /// `Reconcile` every [`RECONCILE_EVERY`], and one of each right away so a queue left by a
    /// previous run drains without waiting for the first period.
    pub async fn start(
        store: Addr<VideoStore>,
        blobs: Arc<dyn BlobStore>,
        every: Duration,
    ) -> Result<Runner, RunnerError> {
        let metrics = SchedulerMetrics::new();
        let executor =
            Executor::new(store.clone(), blobs.clone(), RetryPolicy::default(), metrics.clone())
                .start();
        let dispatcher =
            Dispatcher::new(store, executor, blobs, DispatcherConfig::default(), metrics.clone())
                .start();

        let timer = JobScheduler::new().await?;
        let d = dispatcher.clone();
        timer
            .add(Job::new_repeated_async(every, move |_, _| {
                let d = d.clone();
                Box::pin(async move { send_tick(&d) })
            })?)
            .await?;
        let d = dispatcher.clone();
        timer
            .add(Job::new_repeated_async(RECONCILE_EVERY, move |_, _| {
                let d = d.clone();
                Box::pin(async move { send_reconcile(&d) })
            })?)
            .await?;
        timer.start().await?;
        send_tick(&dispatcher);
        send_reconcile(&dispatcher);
        Ok(Runner { dispatcher, metrics, _timer: timer })
    }
}

/// The timer's whole job: hand over a `Tick` without waiting; a full mailbox means passes are
/// already queued, so dropping this one loses nothing.
fn send_tick(d: &Addr<Dispatcher>) {
    if let Err(e) = d.try_send(Tick) {
        log::warn!("scheduler tick not delivered: {e}");
    }
}

fn send_reconcile(d: &Addr<Dispatcher>) {
    if let Err(e) = d.try_send(Reconcile { now: time::OffsetDateTime::now_utc() }) {
        log::warn!("reconciliation not started: {e}");
    }
}
