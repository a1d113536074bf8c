//! `Executor`: the consumer. Runs one claimed job by its kind: `remove_video` removes a video's
//! file and poster, then its comments, row and jobs; `probe_video` is in `probe.rs`. A failure
//! is written back with a later attempt time, or as given up.

use std::sync::Arc;

use actix::prelude::*;
use time::OffsetDateTime;

use super::probe::{MediaJobs, probe_with};
use super::{RetryPolicy, SchedulerMetrics};
use crate::blob::BlobStore;
use crate::error::StoreError;
use crate::model::{JobKind, JobRecord, MediaInfo, VideoId};
use crate::store::{Batcher, CompleteDeletion, FailJob, VideoStore};

/// Carries out one claimed job.
#[derive(Debug, Message)]
#[rtype(result = "Result<Outcome, StoreError>")]
pub struct Execute {
    pub record: JobRecord,
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// File, poster, comments, row and jobs are gone; `file_existed` is false when the file
    /// was already missing (a repeated run, or a video never uploaded).
    Removed { video: VideoId, file_existed: bool },
    /// The video's media is recorded (and its poster stored, when it has a picture).
    Probed { video: VideoId, media: MediaInfo },
    /// The job had nothing to do (its video was deleted meanwhile) and is gone.
    Dropped { kind: JobKind, video: VideoId },
    /// A program the job needs is missing here; the job waits for it, its attempts uncounted.
    Waiting { kind: JobKind, video: VideoId, tool: String },
    /// The job failed and will be tried again at `next_attempt_at`.
    Retry {
        kind: JobKind,
        video: VideoId,
        attempts: u32,
        next_attempt_at: OffsetDateTime,
        error: String,
    },
    /// The job failed too often, or in a way no retry changes; it stays in the listing
    /// marked failed.
    GaveUp { kind: JobKind, video: VideoId, attempts: u32, error: String },
}

/// The consumer actor. Stateless apart from its handles, so every `Execute` runs concurrently
/// with the others; the dispatcher bounds how many of each kind there are.
#[derive(Debug)]
pub struct Executor {
    store: Addr<VideoStore>,
    /// Completions go through group commit: a batch of removals shares one transaction.
    completions: Option<Recipient<CompleteDeletion>>,
    /// Where removals remove from (every backend the node has).
    blobs: Arc<dyn BlobStore>,
    media: MediaJobs,
    policy: RetryPolicy,
    metrics: SchedulerMetrics,
}

impl Executor {
    pub fn new(
        store: Addr<VideoStore>,
        blobs: Arc<dyn BlobStore>,
        media: MediaJobs,
        policy: RetryPolicy,
        metrics: SchedulerMetrics,
    ) -> Self {
        Self { store, completions: None, blobs, media, policy, metrics }
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
        let media = self.media.clone();
        Box::pin(async move {
            let now = OffsetDateTime::now_utc();
            let outcome = match msg.record.kind {
                JobKind::RemoveVideo => {
                    execute_with(&complete, &store, &*blobs, &policy, msg.record, now).await?
                }
                JobKind::ProbeVideo => probe_with(&store, &media, &policy, msg.record).await?,
            };
            metrics.count(&outcome);
            log_outcome(&outcome);
            Ok(outcome)
        })
    }
}

/// Tells the log what went wrong: once per failed attempt, louder when it gives up.
fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Retry { kind, video, error, attempts, .. } => {
            log::warn!("{kind} of video {video} failed (attempt {attempts}): {error}");
        }
        Outcome::GaveUp { kind, video, error, attempts } => {
            log::error!("{kind} of video {video} failed {attempts} times, giving up: {error}");
        }
        Outcome::Waiting { kind, video, tool } => {
            // The start-up warning said it once; one line per job would flood the log.
            log::debug!("{kind} of video {video} waits for {tool}");
        }
        Outcome::Removed { .. } | Outcome::Probed { .. } | Outcome::Dropped { .. } => {}
    }
}

/// Writes a failed attempt of `record` at `now` back (see [`FailJob`]) and says what it
/// became: tried again later, or given up on (after `policy`'s attempts, or at once when
/// `final_`).
pub(super) async fn fail(
    store: &Addr<VideoStore>,
    policy: &RetryPolicy,
    record: &JobRecord,
    error: String,
    final_: bool,
    now: OffsetDateTime,
) -> Result<Outcome, StoreError> {
    let (kind, video) = (record.kind, record.video_id);
    let attempts = record.attempts.saturating_add(1);
    let (next_attempt_at, give_up) = policy.after_failure(attempts, now);
    let give_up = give_up || final_;
    let claim = record.claimed_by;
    store
        .send(FailJob { kind, video, claim, error: error.clone(), next_attempt_at, give_up })
        .await??;
    Ok(if give_up {
        Outcome::GaveUp { kind, video, attempts, error }
    } else {
        Outcome::Retry { kind, video, attempts, next_attempt_at, error }
    })
}

/// One step of the executor for a `remove_video` job, for tests to drive directly: removes
/// `record`'s file and poster (a missing file counts as removed, so running a job twice is
/// harmless), then its comments, row and jobs in one transaction. A failure is recorded with `policy`'s next attempt time after
/// `now`. `Err` only when even recording the failure failed; the claim's lease then brings
/// the record back.
pub async fn execute_one(
    store: &Addr<VideoStore>,
    blobs: &dyn BlobStore,
    policy: &RetryPolicy,
    record: JobRecord,
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
    record: JobRecord,
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
    fail(store, policy, &record, error, false, now).await
}
