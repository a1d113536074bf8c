//! Starting the runner: Executor, Dispatcher, and the tokio-cron-scheduler timer that only
//! sends them messages.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use actix::{Actor as _, Addr};
use actors::media::{MediaTools, ProbeLimits};
use actors::scheduler::{
    DirectUploads, Dispatcher, DispatcherConfig, Executor, MediaJobs, Reconcile, RetryPolicy,
    SchedulerMetrics, Tick,
};
use actors::store::{SchedulerNode, VideoStore};
use actors::upload::Uploads;
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
    /// Starts the executor and dispatcher, running as `node` (see [`node_identity`]), then the
    /// timer: a `Tick` every `every`, a `Reconcile` every [`RECONCILE_EVERY`], and one of each
    /// right away, so a queue left by a previous run (its claims included) drains without
    /// waiting for the first period. `uploads` are the node's (reconciliation shares their
    /// claims); a direct upload is reconciled `direct_grace` after its ticket. Probes run
    /// `tools` (looked for at the first tick, which warns once when they are missing),
    /// `max_probes` at once.
    pub async fn start(
        store: Addr<VideoStore>,
        uploads: Uploads,
        every: Duration,
        node: SchedulerNode,
        direct_grace: Duration,
        tools: MediaTools,
        max_probes: usize,
    ) -> Result<Runner, RunnerError> {
        // Files are removed wherever they are: a moving site has both.
        let blobs = uploads.blobs().everywhere();
        let metrics = SchedulerMetrics::new();
        let media = MediaJobs {
            blobs: uploads.blobs().clone(),
            tools: tools.clone(),
            limits: ProbeLimits::default(),
        };
        let executor = Executor::new(
            store.clone(),
            blobs.clone(),
            media,
            RetryPolicy::default(),
            metrics.clone(),
        )
        .start();
        let config =
            DispatcherConfig { alive_for: alive_for(every), max_probes, ..Default::default() };
        let dispatcher = Dispatcher::new(store, executor, blobs, tools, config, metrics.clone())
            .with_node(node)
            .with_direct_uploads(DirectUploads { uploads, grace: direct_grace })
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

/// How long one heartbeat keeps this scheduler alive to the others: three timer periods, so a
/// late tick is not taken for death, and never under 10 s, since a heartbeat may wait up to
/// SQLite's 5 s `busy_timeout` for the write lock. Past it, another scheduler takes its claims.
fn alive_for(every: Duration) -> Duration {
    (every * 3).max(Duration::from_secs(10))
}

/// This scheduler's stable identity: a restart with the same identity takes the claims of the
/// previous run back at once, a different one only once the previous run's heartbeat is
/// stale. Host name, the bound scheduler address and the data dir: two live schedulers never
/// share them (one address cannot be bound twice on a host), while a restart of the same
/// configuration does. With an ephemeral port (`:0`) every run is a new node. Blocking
/// (reads the host name, resolves the path): call it on a blocking thread.
pub fn node_identity(addr: SocketAddr, data_dir: &Path) -> SchedulerNode {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let data = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    SchedulerNode::new(&host, addr, &data)
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
