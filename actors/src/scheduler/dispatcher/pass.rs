//! One dispatch pass over the jobs of one kind, as three steps with one owner each: **claim**
//! (reserve free slots of that kind, claim that many due jobs from the store), **dispatch**
//! (one `Execute` per job to the executor, all at once) and **record** (release the slots,
//! count the outcomes, start a follow-up pass while the queue drains). Only `reserve`, `claimed` and `record` touch the
//! dispatcher's counters, each synchronously between two awaits, so no count is held across one.

use actix::fut::LocalBoxActorFuture;
use actix::prelude::*;
use futures_util::future::join_all;
use time::OffsetDateTime;

use super::{Continue, Dispatcher, PassReport};
use crate::error::StoreError;
use crate::model::{JobKind, JobRecord, VideoId};
use crate::scheduler::executor::{Execute, Outcome};
use crate::store::ClaimJobs;

/// What a claim handed to this pass: the jobs to run, and whether it filled every slot it
/// asked for (then more jobs are probably due).
struct Claimed {
    records: Vec<JobRecord>,
    full: bool,
}

/// The executor's answer for each dispatched job.
type Executed = Vec<(VideoId, Result<Result<Outcome, StoreError>, MailboxError>)>;

impl Dispatcher {
    /// One pass over `kind`: claim up to its free slots, execute them all, release the slots.
    pub(super) fn pass(
        &mut self,
        kind: JobKind,
    ) -> LocalBoxActorFuture<Self, Result<PassReport, StoreError>> {
        let Some(slots) = self.reserve(kind) else {
            // Every slot is taken: the pass that frees them runs again.
            self.lane(kind).woken = true;
            return fut::ready(Ok(PassReport::default())).boxed_local();
        };
        self.claim(kind, slots)
            .into_actor(self)
            .then(move |claimed, act, ctx| {
                let me = ctx.address();
                let dispatched =
                    act.claimed(kind, slots, claimed).map(|c| (c.full, act.dispatch(kind, c, me)));
                async move {
                    let (full, executing) = dispatched?;
                    Ok::<_, StoreError>((full, executing.await))
                }
                .into_actor(act)
            })
            .map(move |executed, act, ctx| {
                let (full, executed) = executed?;
                Ok(act.record(kind, full, executed, ctx))
            })
            .boxed_local()
    }

    /// How many jobs of `kind` this pass may claim, or `None` when no slot is free. The slots
    /// are reserved until the claim returns, so that an overlapping pass cannot promise them.
    fn reserve(&mut self, kind: JobKind) -> Option<usize> {
        let (max, batch) = (self.config.max_in_flight(kind), self.config.batch as usize);
        let lane = self.lane(kind);
        let free = max.saturating_sub(lane.in_flight.len() + lane.reserved);
        let slots = free.min(batch);
        if slots == 0 {
            return None;
        }
        lane.reserved += slots;
        lane.passes_running += 1;
        Some(slots)
    }

    /// Step 1: claims up to `slots` due jobs of `kind` for this incarnation (see
    /// `store::claims`).
    fn claim(
        &self,
        kind: JobKind,
        slots: usize,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + use<> {
        let claim = self.store.send(ClaimJobs {
            kind,
            claimer: self.incarnation.clone(),
            now: OffsetDateTime::now_utc(),
            // `slots` is at most `batch`, a u32.
            limit: u32::try_from(slots).unwrap_or(u32::MAX),
            lease: self.config.lease,
        });
        async move { claim.await? }
    }

    /// The claim returned: its reservation becomes `in_flight` entries. A job still running
    /// from an earlier claim (its lease ran out meanwhile) is dropped here rather than run
    /// twice. A failed claim ends the pass.
    fn claimed(
        &mut self,
        kind: JobKind,
        slots: usize,
        claimed: Result<Vec<JobRecord>, StoreError>,
    ) -> Result<Claimed, StoreError> {
        let lane = self.lane(kind);
        lane.reserved -= slots;
        let records = claimed.inspect_err(|_| lane.passes_running -= 1)?;
        let full = records.len() == slots;
        lane.more = full;
        let records = records.into_iter().filter(|r| lane.in_flight.insert(r.video_id)).collect();
        Ok(Claimed { records, full })
    }

    /// Step 2: sends one `Execute` per job, all at once (the slots bound how many); resolves
    /// when every one has answered. Each answer also tells the dispatcher (`me`) at once, so
    /// that a job's slot is taken again as soon as it is free, not when the slowest job of its
    /// pass ends (a long probe beside a short one).
    fn dispatch(
        &self,
        kind: JobKind,
        claimed: Claimed,
        me: Addr<Dispatcher>,
    ) -> impl Future<Output = Executed> + use<> {
        let replies: Vec<_> = claimed
            .records
            .into_iter()
            .map(|record| {
                let video = record.video_id;
                let reply = self.executor.send(Execute { record });
                let me = me.clone();
                async move {
                    let reply = reply.await;
                    // Ignores the mailbox's bound: a slot must never stay taken.
                    me.do_send(Finished { kind, video });
                    (video, reply)
                }
            })
            .collect();
        join_all(replies)
    }

    /// Step 3: releases the slots, counts the outcomes, and starts the next pass when the
    /// queue is draining (`full`) or a wake came while this one ran.
    fn record(
        &mut self,
        kind: JobKind,
        full: bool,
        executed: Executed,
        ctx: &mut Context<Self>,
    ) -> PassReport {
        let mut report = PassReport { claimed: executed.len(), ..PassReport::default() };
        let (follow_up, pace) = (self.config.follow_up, self.config.pace);
        let lane = self.lane(kind);
        for (video, result) in executed {
            lane.in_flight.remove(&video);
            match result {
                Ok(Ok(Outcome::Removed { .. })) => report.removed += 1,
                Ok(Ok(Outcome::Probed { .. })) => report.probed += 1,
                Ok(Ok(Outcome::Dropped { .. })) => report.dropped += 1,
                Ok(Ok(Outcome::Waiting { .. })) => report.waiting += 1,
                Ok(Ok(Outcome::Retry { .. } | Outcome::GaveUp { .. })) => report.failed += 1,
                Ok(Err(e)) => {
                    report.errors += 1;
                    log::error!("recording the outcome of {kind} for {video}: {e}");
                }
                Err(e) => {
                    report.errors += 1;
                    log::error!("executor unreachable for {kind} of {video}: {e}");
                }
            }
        }
        lane.passes_running -= 1;
        if follow_up && (full || lane.woken) {
            lane.woken = false;
            ctx.notify_later(Continue { kind }, pace);
        }
        report
    }
}

/// One job's answer came (internal): its slot is free.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct Finished {
    kind: JobKind,
    video: VideoId,
}

impl Handler<Finished> for Dispatcher {
    type Result = ();

    /// Frees the job's slot, and fills it at once while more jobs of its kind are due (the
    /// last claim filled every slot it asked for) or a wake came meanwhile.
    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        let follow_up = self.config.follow_up;
        let lane = self.lane(msg.kind);
        if lane.in_flight.remove(&msg.video) && follow_up && (lane.more || lane.woken) {
            lane.woken = false;
            self.spawn_pass(msg.kind, ctx);
        }
    }
}
