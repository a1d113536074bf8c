//! One dispatch pass, as three steps with one owner each: **claim** (reserve free slots, claim
//! that many due records from the store), **dispatch** (one `Execute` per record to the
//! executor, all at once) and **record** (release the slots, count the outcomes, start a
//! follow-up pass while the queue drains). Only `reserve`, `claimed` and `record` touch the
//! dispatcher's counters, each synchronously between two awaits, so no count is held across one.

use actix::fut::LocalBoxActorFuture;
use actix::prelude::*;
use futures_util::future::join_all;
use time::OffsetDateTime;

use super::{Continue, Dispatcher, PassReport};
use crate::error::StoreError;
use crate::model::{DeletionRecord, VideoId};
use crate::scheduler::executor::{Execute, Outcome};
use crate::store::ClaimDeletions;

/// What a claim handed to this pass: the records to run, and whether it filled every slot it
/// asked for (then more records are probably due).
struct Claimed {
    records: Vec<DeletionRecord>,
    full: bool,
}

/// The executor's answer for each dispatched record.
type Executed = Vec<(VideoId, Result<Result<Outcome, StoreError>, MailboxError>)>;

impl Dispatcher {
    /// One pass: claim up to the free slots, execute them all, release the slots.
    pub(super) fn pass(&mut self) -> LocalBoxActorFuture<Self, Result<PassReport, StoreError>> {
        let Some(slots) = self.reserve() else {
            // Every slot is taken: the pass that frees them runs again.
            self.woken = true;
            return fut::ready(Ok(PassReport::default())).boxed_local();
        };
        self.claim(slots)
            .into_actor(self)
            .then(move |claimed, act, _| {
                let dispatched = act.claimed(slots, claimed).map(|c| (c.full, act.dispatch(c)));
                async move {
                    let (full, executing) = dispatched?;
                    Ok::<_, StoreError>((full, executing.await))
                }
                .into_actor(act)
            })
            .map(|executed, act, ctx| {
                let (full, executed) = executed?;
                Ok(act.record(full, executed, ctx))
            })
            .boxed_local()
    }

    /// How many records this pass may claim, or `None` when no slot is free. The slots are
    /// reserved until the claim returns, so that an overlapping pass cannot promise them too.
    fn reserve(&mut self) -> Option<usize> {
        let free = self.config.max_in_flight.saturating_sub(self.in_flight.len() + self.reserved);
        let slots = free.min(self.config.batch as usize);
        if slots == 0 {
            return None;
        }
        self.reserved += slots;
        self.passes_running += 1;
        Some(slots)
    }

    /// Step 1: claims up to `slots` due records for this incarnation (see `store::claims`).
    fn claim(
        &self,
        slots: usize,
    ) -> impl Future<Output = Result<Vec<DeletionRecord>, StoreError>> + use<> {
        let claim = self.store.send(ClaimDeletions {
            claimer: self.incarnation.clone(),
            now: OffsetDateTime::now_utc(),
            // `slots` is at most `batch`, a u32.
            limit: u32::try_from(slots).unwrap_or(u32::MAX),
            lease: self.config.lease,
        });
        async move { claim.await? }
    }

    /// The claim returned: its reservation becomes `in_flight` entries. A record still running
    /// from an earlier claim (its lease ran out meanwhile) is dropped here rather than run
    /// twice. A failed claim ends the pass.
    fn claimed(
        &mut self,
        slots: usize,
        claimed: Result<Vec<DeletionRecord>, StoreError>,
    ) -> Result<Claimed, StoreError> {
        self.reserved -= slots;
        let records = claimed.inspect_err(|_| self.passes_running -= 1)?;
        let full = records.len() == slots;
        let records = records.into_iter().filter(|r| self.in_flight.insert(r.video_id)).collect();
        Ok(Claimed { records, full })
    }

    /// Step 2: sends one `Execute` per record, all at once (the slots bound how many); resolves
    /// when every one has answered.
    fn dispatch(&self, claimed: Claimed) -> impl Future<Output = Executed> + use<> {
        let replies: Vec<_> = claimed
            .records
            .into_iter()
            .map(|record| {
                let video = record.video_id;
                let reply = self.executor.send(Execute { record });
                async move { (video, reply.await) }
            })
            .collect();
        join_all(replies)
    }

    /// Step 3: releases the slots, counts the outcomes, and starts the next pass when the
    /// queue is draining (`full`) or a wake came while this one ran.
    fn record(&mut self, full: bool, executed: Executed, ctx: &mut Context<Self>) -> PassReport {
        let mut report = PassReport { claimed: executed.len(), ..PassReport::default() };
        for (video, result) in executed {
            self.in_flight.remove(&video);
            match result {
                Ok(Ok(Outcome::Removed { .. })) => report.removed += 1,
                Ok(Ok(_)) => report.failed += 1,
                Ok(Err(e)) => {
                    report.errors += 1;
                    log::error!("recording the removal of {video}: {e}");
                }
                Err(e) => {
                    report.errors += 1;
                    log::error!("executor unreachable for {video}: {e}");
                }
            }
        }
        self.passes_running -= 1;
        if self.config.follow_up && (full || self.woken) {
            self.woken = false;
            ctx.notify_later(Continue, self.config.pace);
        }
        report
    }
}
