//! The `probe_video` job: ffprobe reads a ready video's duration, size and codecs, ffmpeg takes
//! its poster, the poster is stored beside the video's file (same backend), and both are
//! recorded on the video. A file the programs cannot read fails the job, never the video: it
//! stays ready and playable, without a poster.

use actix::Addr;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::RetryPolicy;
use super::executor::{Outcome, fail};
use crate::blob::Blobs;
use crate::error::StoreError;
use crate::media::{self, MediaTools, ProbeError, ProbeLimits};
use crate::model::{JobKind, JobRecord, Poster};
use crate::store::{DropProbe, ProbeTarget, RecordProbe, VideoStore, WaitForTool};

/// How long a job that found no ffmpeg waits before it looks again, unless a scheduler finds
/// the programs first and releases it (see the dispatcher).
const RECHECK_MISSING_TOOL: std::time::Duration = std::time::Duration::from_secs(600);

/// What probe jobs need: the node's blob backends (a poster goes where its video is), the
/// programs, and their limits.
#[derive(Debug, Clone)]
pub struct MediaJobs {
    pub blobs: Blobs,
    pub tools: MediaTools,
    pub limits: ProbeLimits,
}

/// One step of the executor for a `probe_video` job, for tests to drive directly. `Err` only
/// when the outcome could not be recorded; the claim's lease then brings the job back.
pub async fn probe_one(
    store: &Addr<VideoStore>,
    media: &MediaJobs,
    policy: &RetryPolicy,
    record: JobRecord,
) -> Result<Outcome, StoreError> {
    probe_with(store, media, policy, record).await
}

pub(super) async fn probe_with(
    store: &Addr<VideoStore>,
    media: &MediaJobs,
    policy: &RetryPolicy,
    record: JobRecord,
) -> Result<Outcome, StoreError> {
    let video = record.video_id;
    let now = OffsetDateTime::now_utc();
    let Some(subject) = store.send(ProbeTarget { video }).await?? else {
        store.send(DropProbe { video }).await??;
        return Ok(Outcome::Dropped { kind: JobKind::ProbeVideo, video });
    };
    let Some(backend) = media.blobs.at(subject.location) else {
        let error = "the video is in the object store, which this scheduler is not given";
        return fail(store, policy, &record, error.into(), false, now).await;
    };
    let tools = match media.tools.found() {
        Some(found) => found,
        // Not looked for yet, or missing at the last look: look now (a few `stat`s).
        None => {
            let tools = media.tools.clone();
            match tokio::task::spawn_blocking(move || tools.locate()).await {
                Ok(Ok(found)) => found,
                Ok(Err(missing)) => return wait(store, &record, missing).await,
                Err(e) => return fail(store, policy, &record, e.to_string(), false, now).await,
            }
        }
    };
    let demuxer = media::demuxer_of(&subject.content_type);
    let run = async {
        let input = backend
            .media_input(video)
            .await
            .map_err(|e| ProbeError::Failed(format!("opening the file: {e}")))?;
        let probed = media::probe(&tools, &input, demuxer, media.limits).await?;
        // Sound only (or cover art): nothing to take a poster from.
        let image = if probed.video_codec.is_some() {
            media::poster(&tools, &input, demuxer, probed.duration_ms, media.limits).await?
        } else {
            None
        };
        Ok::<_, ProbeError>((probed, image))
    };
    let (mut media_info, image) = match run.await {
        Ok(found) => found,
        Err(ProbeError::Missing(tool)) => {
            media.tools.forget();
            return wait(store, &record, tool).await;
        }
        Err(ProbeError::Unreadable(e)) => {
            return fail(store, policy, &record, e, true, now).await;
        }
        Err(ProbeError::Failed(e)) => return fail(store, policy, &record, e, false, now).await,
    };
    media_info.poster = match image {
        Some(image) => {
            let poster = Poster {
                size: image.bytes.len() as u64,
                content_type: image.content_type.to_owned(),
                etag: hex(&Sha256::digest(&image.bytes)[..16]),
                made_at: OffsetDateTime::now_utc(),
            };
            if let Err(e) = backend.put_poster(video, image.bytes, image.content_type).await {
                let error = format!("storing the poster: {e}");
                return fail(store, policy, &record, error, false, now).await;
            }
            Some(poster)
        }
        None => None,
    };
    if store.send(RecordProbe { video, media: media_info.clone() }).await?? {
        return Ok(Outcome::Probed { video, media: media_info });
    }
    // Deleted while the probe ran: its removal may have run before the poster was stored.
    if media_info.poster.is_some()
        && let Err(e) = backend.remove_poster(video).await
    {
        log::warn!("removing the poster of deleted video {video}: {e}");
    }
    Ok(Outcome::Dropped { kind: JobKind::ProbeVideo, video })
}

async fn wait(
    store: &Addr<VideoStore>,
    record: &JobRecord,
    tool: String,
) -> Result<Outcome, StoreError> {
    let (kind, video) = (record.kind, record.video_id);
    let retry_at = OffsetDateTime::now_utc() + RECHECK_MISSING_TOOL;
    let claim = record.claimed_by;
    store.send(WaitForTool { kind, video, claim, tool: tool.clone(), retry_at }).await??;
    Ok(Outcome::Waiting { kind, video, tool })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
