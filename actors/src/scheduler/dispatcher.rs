//! `Dispatcher`: the producer. On `Tick` (the timer) or `Wake` (a job was just queued) it
//! claims a bounded batch of due jobs of each kind and sends one `Execute` per job to the
//! executor, never more of a kind in flight than configured for it: a slow probe never holds
//! up a removal. Its claims name this run of the scheduler (its incarnation), which every
//! `Tick` keeps alive: see `store/claims.rs`. Every `Tick` also looks for ffmpeg while it is
//! missing, and releases the probe jobs that waited for it once it is found.

mod pass;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::fut::LocalBoxActorFuture;
use actix::prelude::*;
use time::OffsetDateTime;

use super::SchedulerMetrics;
use super::executor::Executor;
use super::reconcile::{ReconcileReport, reconcile};
use crate::blob::BlobStore;
use crate::error::StoreError;
use crate::media::MediaTools;
use crate::model::{JobKind, VideoId};
use crate::store::{
    EnqueueDeletion, Heartbeat, Incarnation, JobQueueStats, Liveness, ReleaseWaiting,
    SchedulerNode, VideoStore,
};
use crate::upload::Uploads;
use crate::upload::leftovers::LeftoverReport;

/// How the dispatcher paces the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Jobs claimed by one pass at most.
    pub batch: u32,
    /// Removals being executed at once, all passes together.
    pub max_in_flight: usize,
    /// Probes (an ffprobe and an ffmpeg each) running at once: each takes a core while it
    /// decodes, so a small number keeps the site's own requests fast.
    pub max_probes: usize,
    /// How long a claim hides a record from this dispatcher's own later passes: it runs out
    /// only when the outcome of a run could not be recorded, so it is far longer than any
    /// removal takes. Other schedulers never take a live one's claims, lease or not.
    pub lease: Duration,
    /// How long one heartbeat (sent on every `Tick`) or claim keeps this scheduler alive to
    /// the others; past it, its claims are free. A few timer periods (see the runner).
    pub alive_for: Duration,
    /// Start the next pass at once when a pass found a full batch (the queue is draining);
    /// off in tests that count what one `Tick` does.
    pub follow_up: bool,
    /// Pause before such a follow-up pass, to bound the drain rate. Zero by default: measured
    /// with `bench/scheduler.sh`, a 10 ms pace (about 2,000 removals/s) did not lower the api's
    /// p99 during a drain, it only made the drain last longer.
    pub pace: Duration,
    /// A video still pending this long after creation is an upload that never came.
    pub stale_pending_after: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            // Measured with bench/scheduler.sh (bench/results/scheduler.md): 8 at once drained
            // 10,000 in ~5 s, 32 in ~2 s, 128 in ~1.5 s; the api's p99 during the drain was no
            // better with 8 (2.4-2.6x) than with 32 (2.3-2.7x) and worse with 128 (4.5x).
            max_in_flight: 32,
            // Measured with bench/media.sh on 2 cores (README, "media"): beside 20 queued
            // probes the api's p99 was 1.1-1.5x its idle p99 with one at a time and 2.3-4.2x
            // with two, for 20 probes done in 16.5 s instead of 13.6 s.
            max_probes: 1,
            lease: Duration::from_secs(60),
            alive_for: Duration::from_secs(10),
            follow_up: true,
            pace: Duration::ZERO,
            stale_pending_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl DispatcherConfig {
    /// Jobs of `kind` being executed at once at most.
    pub fn max_in_flight(&self, kind: JobKind) -> usize {
        match kind {
            JobKind::RemoveVideo => self.max_in_flight,
            JobKind::ProbeVideo => self.max_probes,
        }
    }
}

/// Runs one dispatch pass of each kind now; replies when the jobs it claimed have been
/// executed.
/// Also refreshes the queue metrics and sends this scheduler's heartbeat (see
/// [`DispatcherConfig::alive_for`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<PassReport, StoreError>")]
pub struct Tick;

/// A job was just queued: run a pass of each kind unless one is running (then it runs again
/// after).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Wake {
    pub video: VideoId,
}

/// Hides a video (if it still exists), queues its removal durably, and wakes the dispatcher.
/// Idempotent.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct QueueDeletion {
    pub video: VideoId,
}

/// Runs one reconciliation pass at `now` (see [`reconcile`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<ReconcileReport, StoreError>")]
pub struct Reconcile {
    pub now: OffsetDateTime,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs claimed and handed to the executor.
    pub claimed: usize,
    pub removed: usize,
    pub probed: usize,
    /// Jobs with nothing left to do (a probe of a video deleted meanwhile).
    pub dropped: usize,
    /// Jobs waiting for a missing program.
    pub waiting: usize,
    /// Jobs that failed and were rescheduled or given up on.
    pub failed: usize,
    /// Executions whose outcome could not be recorded (their lease brings them back).
    pub errors: usize,
}

impl std::ops::Add for PassReport {
    type Output = PassReport;

    fn add(self, o: PassReport) -> PassReport {
        PassReport {
            claimed: self.claimed + o.claimed,
            removed: self.removed + o.removed,
            probed: self.probed + o.probed,
            dropped: self.dropped + o.dropped,
            waiting: self.waiting + o.waiting,
            failed: self.failed + o.failed,
            errors: self.errors + o.errors,
        }
    }
}

/// Reconciliation of direct uploads (see `upload::leftovers`): the node's uploads, whose claims
/// it shares, and how long after its ticket a direct upload is looked at.
#[derive(Debug, Clone)]
pub struct DirectUploads {
    pub uploads: Uploads,
    pub grace: Duration,
}

/// The producer actor.
pub struct Dispatcher {
    store: Addr<VideoStore>,
    executor: Addr<Executor>,
    blobs: Arc<dyn BlobStore>,
    config: DispatcherConfig,
    metrics: SchedulerMetrics,
    /// Set where uploads can leave things in the store to reconcile.
    direct: Option<DirectUploads>,
    /// This run of the scheduler, named by its claims and kept alive by its heartbeats.
    incarnation: Incarnation,
    /// A later run of the same node has started; told once in the log.
    superseded: bool,
    /// The passes of each kind.
    lanes: HashMap<JobKind, Lane>,
    /// The programs probes run; looked for on every tick while missing.
    tools: MediaTools,
    /// The last look found no ffmpeg: look again on every tick, and release the waiting
    /// probes once it is found.
    tools_missing: bool,
    /// Whether a look has been made yet (the first one that fails warns).
    tools_looked: bool,
}

/// The passes of one kind of job.
#[derive(Debug, Default)]
struct Lane {
    /// Jobs being executed: a job whose lease ran out while it still runs is not handed out
    /// a second time.
    in_flight: HashSet<VideoId>,
    /// Slots promised to passes still waiting for their claim; counted with `in_flight` so
    /// that two overlapping passes never overrun the kind's limit across the await.
    reserved: usize,
    passes_running: usize,
    /// A wake came while passes were running or no slot was free: run again when one ends.
    woken: bool,
    /// The last claim filled every slot it asked for: more jobs are probably due.
    more: bool,
}

impl Dispatcher {
    pub fn new(
        store: Addr<VideoStore>,
        executor: Addr<Executor>,
        blobs: Arc<dyn BlobStore>,
        tools: MediaTools,
        config: DispatcherConfig,
        metrics: SchedulerMetrics,
    ) -> Self {
        Self {
            store,
            executor,
            blobs,
            incarnation: Incarnation::start(SchedulerNode::unique(), config.alive_for),
            superseded: false,
            config,
            metrics,
            direct: None,
            lanes: HashMap::new(),
            tools,
            tools_missing: false,
            tools_looked: false,
        }
    }

    /// The passes of `kind`.
    fn lane(&mut self, kind: JobKind) -> &mut Lane {
        self.lanes.entry(kind).or_default()
    }

    /// Runs as `node` (the default is an identity no other run shares): a later dispatcher
    /// with the same node takes this one's claims back as soon as it starts.
    pub fn with_node(mut self, node: SchedulerNode) -> Self {
        self.incarnation = Incarnation::start(node, self.config.alive_for);
        self
    }

    /// Reconciles direct uploads and unfinished multipart uploads too (a node with the object
    /// store; with files every pass there would find nothing).
    pub fn with_direct_uploads(mut self, direct: DirectUploads) -> Self {
        self.direct = Some(direct);
        self
    }

    /// Tells the store this incarnation is alive, without holding up the tick.
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let beat = self.store.send(Heartbeat {
            incarnation: self.incarnation.clone(),
            now: OffsetDateTime::now_utc(),
        });
        ctx.spawn(async move { beat.await? }.into_actor(self).map(|r, act, _| match r {
            Ok(Liveness::Alive) => {}
            Ok(Liveness::Superseded) => {
                if !act.superseded {
                    act.superseded = true;
                    log::error!(
                        "another scheduler started as {}: this one claims nothing any more",
                        act.incarnation.node.as_str()
                    );
                }
            }
            Err(e) => log::warn!("scheduler heartbeat: {e}"),
        }));
    }

    fn spawn_pass(&mut self, kind: JobKind, ctx: &mut Context<Self>) {
        ctx.spawn(self.pass(kind).map(move |r, _, _| {
            if let Err(e) = r {
                log::error!("{kind} pass: {e}");
            }
        }));
    }

    /// A pass of each kind, removals first (they are quick), the reports added up.
    fn passes(&mut self) -> LocalBoxActorFuture<Self, Result<PassReport, StoreError>> {
        self.pass(JobKind::RemoveVideo)
            .then(|removals, act, _| {
                act.pass(JobKind::ProbeVideo).map(move |probes, _, _| Ok(removals? + probes?))
            })
            .boxed_local()
    }

    /// While ffmpeg is missing, looks for it again (on a blocking thread); the first look
    /// that misses warns once, and the look that finds it releases the probes that waited.
    fn look_for_tools(&mut self, ctx: &mut Context<Self>) {
        if self.tools_looked && !self.tools_missing && self.tools.found().is_some() {
            return;
        }
        let tools = self.tools.clone();
        let looked = tokio::task::spawn_blocking(move || tools.locate());
        ctx.spawn(looked.into_actor(self).map(|r, act, ctx| {
            let Ok(found) = r else { return };
            let first = !act.tools_looked;
            act.tools_looked = true;
            match found {
                Err(missing) => {
                    if first {
                        log::warn!(
                            "{missing} not found: uploads work, but videos get no duration, \
                             size or poster until it is installed (the probe jobs wait for it)"
                        );
                    }
                    act.tools_missing = true;
                }
                Ok(found) => {
                    if act.tools_missing {
                        log::info!("found {}: probing the videos that waited", act.tools.names());
                    }
                    log::debug!("media tools: {found:?}");
                    act.tools_missing = false;
                    let release = act.store.send(ReleaseWaiting {
                        kind: JobKind::ProbeVideo,
                        now: OffsetDateTime::now_utc(),
                    });
                    ctx.spawn(release.into_actor(act).map(|r, act, ctx| match r {
                        Ok(Ok(n)) if n > 0 => act.spawn_pass(JobKind::ProbeVideo, ctx),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => log::warn!("releasing waiting probes: {e}"),
                        Err(e) => log::warn!("releasing waiting probes: {e}"),
                    }));
                }
            }
        }));
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Wakes are coalesced, so a burst of deletes needs little room; `try_send` from the
        // api drops a wake when it is full and the timer picks the record up.
        ctx.set_mailbox_capacity(256);
    }
}

/// The next pass of a draining queue (internal).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Continue {
    kind: JobKind,
}

impl Handler<Continue> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: Continue, ctx: &mut Self::Context) {
        self.spawn_pass(msg.kind, ctx);
    }
}

impl Handler<Tick> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<PassReport, StoreError>>;

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) -> Self::Result {
        self.heartbeat(ctx);
        self.look_for_tools(ctx);
        self.passes()
            .then(|report, act, _| {
                let removals = act.store.send(JobQueueStats { kind: JobKind::RemoveVideo });
                let probes = act.store.send(JobQueueStats { kind: JobKind::ProbeVideo });
                async move { (report, removals.await, probes.await) }.into_actor(act)
            })
            .map(|(report, removals, probes), act, _| {
                if let Err(e) = &report {
                    // The timer drops the reply, so the failure is told here.
                    log::error!("job pass: {e}");
                }
                match removals.map_err(StoreError::from).and_then(|r| r) {
                    Ok(stats) => act.metrics.set_queue(stats, OffsetDateTime::now_utc()),
                    Err(e) => log::warn!("reading the deletion queue size: {e}"),
                }
                match probes.map_err(StoreError::from).and_then(|r| r) {
                    Ok(stats) => act.metrics.set_probe_queue(stats),
                    Err(e) => log::warn!("reading the probe queue size: {e}"),
                }
                report
            })
            .boxed_local()
    }
}

impl Handler<Wake> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        for kind in JobKind::ALL {
            let lane = self.lane(kind);
            if lane.passes_running > 0 {
                lane.woken = true;
            } else {
                self.spawn_pass(kind, ctx);
            }
        }
    }
}

impl Handler<QueueDeletion> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<(), StoreError>>;

    fn handle(&mut self, msg: QueueDeletion, _: &mut Self::Context) -> Self::Result {
        let queued = self.store.send(EnqueueDeletion { video: msg.video });
        async move { queued.await? }
            .into_actor(self)
            .map(move |r, _, ctx| {
                r?;
                ctx.notify(Wake { video: msg.video });
                Ok(())
            })
            .boxed_local()
    }
}

impl Handler<Reconcile> for Dispatcher {
    type Result = ResponseActFuture<Self, Result<ReconcileReport, StoreError>>;

    fn handle(&mut self, msg: Reconcile, _: &mut Self::Context) -> Self::Result {
        let (store, blobs) = (self.store.clone(), self.blobs.clone());
        let stale_before = msg.now - self.config.stale_pending_after;
        let direct = self.direct.clone();
        async move {
            let mut report = reconcile(&store, &*blobs, stale_before).await?;
            if let Some(DirectUploads { uploads, grace }) = direct {
                // The object store failing leaves the rest of the pass standing.
                match uploads.reconcile_direct(msg.now, grace).await {
                    Ok(direct) => report.direct = direct,
                    Err(e) => log::error!("reconciling uploads in the object store: {e}"),
                }
            }
            Ok(report)
        }
        .into_actor(self)
        .map(|r: Result<ReconcileReport, StoreError>, act, ctx| {
            let report = r?;
            act.metrics.orphan_files.set(report.orphan_files.len().try_into().unwrap_or(0));
            act.metrics.stale_pending_queued.inc_by(report.stale_queued.len() as u64);
            if !report.orphan_files.is_empty() {
                let shown: Vec<String> =
                    report.orphan_files.iter().take(20).map(ToString::to_string).collect();
                log::warn!(
                    "{} video files have no database row (first: {})",
                    report.orphan_files.len(),
                    shown.join(", ")
                );
            }
            if let Some(first) = report.stale_queued.first() {
                log::info!(
                    "queued {} videos never uploaded for removal",
                    report.stale_queued.len()
                );
                ctx.notify(Wake { video: *first });
            }
            let d = &report.direct;
            if *d != LeftoverReport::default() {
                log::info!(
                    "direct uploads: {} made ready, {} objects removed, {} replaced videos \
                     queued for removal, {} tickets forgotten, {} multipart uploads aborted",
                    d.made_ready.len(),
                    d.removed.len(),
                    d.replaced.len(),
                    d.forgotten,
                    d.aborted
                );
            }
            if let Some(first) = d.replaced.first() {
                ctx.notify(Wake { video: *first });
            }
            Ok(report)
        })
        .boxed_local()
    }
}
