//! `Executor`: the consumer. Removes one video's file, then its comments, row and record;
//! a failure is written back with a later attempt time, or as given up.

use std::sync::Arc;

use actix::prelude::*;
use time::OffsetDateTime;

use super::{RetryPolicy, SchedulerMetrics};
use crate::blob::BlobStore;
use crate::error::StoreError;
use crate::model::{DeletionRecord, VideoId};
use crate::store::{Batcher, CompleteDeletion, FailDeletion, VideoStore};

/// Carries out one claimed deletion record.
#[derive(Debug, Message)]
#[rtype(result = "Result<Outcome, StoreError>")]
pub struct Execute {
    pub record: DeletionRecord,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// File, comments, row and record are gone; `file_existed` is false when the file was
    /// already missing (a repeated run, or a video never uploaded).
    Removed { video: VideoId, file_existed: bool },
    /// The removal failed and will be tried again at `next_attempt_at`.
    Retry { video: VideoId, attempts: u32, next_attempt_at: OffsetDateTime, error: String },
    /// The removal failed too often; the record stays in the listing marked failed.
    GaveUp { video: VideoId, attempts: u32, error: String },
}

/// The consumer actor. Stateless apart from its handles, so every `Execute` runs concurrently
/// with the others; the dispatcher bounds how many there are.
#[derive(Debug)]
pub struct Executor {
    store: Addr<VideoStore>,
    /// Completions go through group commit: a batch of removals shares one transaction.
    completions: Option<Recipient<CompleteDeletion>>,
    blobs: Arc<dyn BlobStore>,
    policy: RetryPolicy,
    metrics: SchedulerMetrics,
}

impl Executor {
    pub fn new(
        store: Addr<VideoStore>,
        blobs: Arc<dyn BlobStore>,
        policy: RetryPolicy,
        metrics: SchedulerMetrics,
    ) -> Self {
        Self { store, completions: None, blobs, policy, metrics }
    }
}

impl Actor for Executor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The dispatcher bounds what is in flight; the mailbox only needs to hold that much.
        ctx.set_mailbox_capacity(1024);
        self.completions =
            Some(Batcher::<CompleteDeletion>::new(self.store.clone()).start().recipient());
    }
}

impl Handler<Execute> for Executor {
    type Result = ResponseFuture<Result<Outcome, StoreError>>;

    fn handle(&mut self, msg: Execute, _: &mut Self::Context) -> Self::Result {
        let (store, blobs, policy, metrics) =
            (self.store.clone(), self.blobs.clone(), self.policy, self.metrics.clone());
        let complete = self.completions.clone().unwrap_or_else(|| store.clone().recipient());
        Box::pin(async move {
            let now = OffsetDateTime::now_utc();
            let outcome =
                execute_with(&complete, &store, &*blobs, &policy, msg.record, now).await?;
            match &outcome {
                Outcome::Removed { .. } => metrics.removals_done.inc(),
                Outcome::Retry { video, error, attempts, .. } => {
                    metrics.removals_failed.inc();
                    log::warn!("removing video {video} failed (attempt {attempts}): {error}");
                }
                Outcome::GaveUp { video, error, attempts } => {
                    metrics.removals_failed.inc();
                    log::error!(
                        "removing video {video} failed {attempts} times, giving up: {error}"
                    );
                }
            }
            Ok(outcome)
        })
    }
}

/// One step of the executor, for tests to drive directly: removes `record`'s file (a missing
/// file counts as removed, so running a record twice is harmless), then its comments, row and
/// record in one transaction. A failure is recorded with `policy`'s next attempt time after
/// `now`. `Err` only when even recording the failure failed; the claim's lease then brings
/// the record back.
pub async fn execute_one(
    store: &Addr<VideoStore>,
    blobs: &dyn BlobStore,
    policy: &RetryPolicy,
    record: DeletionRecord,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    execute_with(&store.clone().recipient(), store, blobs, policy, record, now).await
}

/// [`execute_one`] with the database part sent to `complete` (the store, or a batcher).
async fn execute_with(
    complete: &Recipient<CompleteDeletion>,
    store: &Addr<VideoStore>,
    blobs: &dyn BlobStore,
    policy: &RetryPolicy,
    record: DeletionRecord,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let video = record.video_id;
    // The file goes first: if the process dies after this, the rerun finds no file and
    // finishes the database part; the other order could leave a file nothing points at.
    let error = match blobs.remove(video).await {
        Ok(file_existed) => match complete.send(CompleteDeletion { video }).await? {
            Ok(()) => return Ok(Outcome::Removed { video, file_existed }),
            Err(e) => format!("database: {e}"),
        },
        Err(e) => format!("removing the file: {e}"),
    };
    let attempts = record.attempts.saturating_add(1);
    let (next_attempt_at, give_up) = policy.after_failure(attempts, now);
    let claim = record.claimed_by;
    store
        .send(FailDeletion { video, claim, error: error.clone(), next_attempt_at, give_up })
        .await??;
    Ok(if give_up {
        Outcome::GaveUp { video, attempts, error }
    } else {
        Outcome::Retry { video, attempts, next_attempt_at, error }
    })
}
