//! What uploads leave behind in the object store, found by the scheduler's reconciliation: a
//! direct upload whose `complete` never came (checked like `complete` would, once a grace
//! period has passed since its ticket), and the unfinished multipart uploads of a node that
//! died mid-upload (aborted once they are old enough that no live writer can own them).

use std::time::Duration;

use time::OffsetDateTime;

use super::direct::{Checked, s3_error, validator};
use super::{Claim, UploadError, Uploads, lock};
use crate::blob::{BlobStore as _, S3Blobs};
use crate::error::StoreError;
use crate::model::VideoId;
use crate::store::{
    DueTickets, EnqueueDeletion, ForgetTicket, LookupVideo, TicketRecord, VideoRow,
};

/// Tickets looked at per pass at most; the next pass takes the rest.
const TICKETS_PER_PASS: u32 = 500;

/// An unfinished multipart upload started this long ago belongs to a writer that is gone: an
/// upload through the server of the largest file at 25 KiB/s takes half a day (and a video
/// still pending after a day is removed anyway). The ones of this process are never aborted,
/// whatever their age; a slower one on another node would be cut off and have to be retried.
pub const STALE_MULTIPART_AFTER: Duration = Duration::from_secs(12 * 3600);

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftoverReport {
    /// Direct uploads whose object was checked and made ready.
    pub made_ready: Vec<VideoId>,
    /// Objects removed: over the limit, not a video, or of a deleted video.
    pub removed: Vec<VideoId>,
    /// Ready videos whose checked object was replaced with another through a ticket that was
    /// still valid: their bytes were never checked, so the video is queued for removal.
    pub replaced: Vec<VideoId>,
    /// Tickets forgotten: expired, nothing more to look at.
    pub forgotten: usize,
    /// Unfinished multipart uploads aborted.
    pub aborted: usize,
}

impl Uploads {
    /// One pass at `now`: the tickets issued more than `grace` ago, then the store's unfinished
    /// multipart uploads. Nothing to do with a local directory.
    pub async fn reconcile_direct(
        &self,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<LeftoverReport, UploadError> {
        let mut report = LeftoverReport::default();
        let Some(s3) = self.blobs.s3().cloned() else { return Ok(report) };
        let due = DueTickets { issued_before: now - grace, limit: TICKETS_PER_PASS };
        for ticket in self.store.send(due).await.map_err(StoreError::from)?? {
            // One video's failure (the store briefly down) leaves its ticket for the next pass.
            if let Err(e) = self.settle(&s3, &ticket, now, &mut report).await {
                log::warn!("reconciling the direct upload of video {}: {e}", ticket.video);
            }
        }
        report.aborted = self.abort_stale_multipart(&s3, now).await?;
        Ok(report)
    }

    /// Looks at one ticket's video and object; forgets the ticket once it has expired, since
    /// from then on nothing can write the object any more.
    async fn settle(
        &self,
        s3: &S3Blobs,
        ticket: &TicketRecord,
        now: OffsetDateTime,
        report: &mut LeftoverReport,
    ) -> Result<(), UploadError> {
        let video = ticket.video;
        let expired = ticket.expires_at <= now;
        let row = self.store.send(LookupVideo { id: video }).await.map_err(StoreError::from)??;
        match row {
            // A file never outlives its row, even one posted after the deletion.
            VideoRow::Missing | VideoRow::Deleted => {
                if s3.remove(video).await.map_err(UploadError::Io)? {
                    report.removed.push(video);
                }
            }
            VideoRow::Live(v) if v.file.is_none() => {
                // An upload of it is under way in this process: the next pass looks again.
                let Some(_claim) = Claim::take(&self.busy, video) else { return Ok(()) };
                match self.check(s3, video).await? {
                    Checked::Missing => {}
                    Checked::Refused(why) => {
                        log::info!("removed the direct upload of video {video}: {why}");
                        report.removed.push(video);
                    }
                    Checked::Valid(file) => {
                        match self.mark_direct_ready(video, v.author_id, file).await {
                            Ok(_) => report.made_ready.push(video),
                            // A `complete` or another scheduler recorded it first.
                            Err(UploadError::AlreadyUploaded) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            // Ready: until its ticket expires the form can still replace the object, so the
            // comparison waits for the expiry.
            VideoRow::Live(_) if !expired => {}
            VideoRow::Live(_) => {
                if let Some(verified) = &ticket.verified_etag
                    && self.replaced(s3, video, verified).await?
                {
                    log::warn!("the checked object of video {video} was replaced: removing it");
                    let queue = EnqueueDeletion { video };
                    self.store.send(queue).await.map_err(StoreError::from)??;
                    report.replaced.push(video);
                }
            }
        }
        if expired {
            let forget = ForgetTicket { video, issued_at: ticket.issued_at };
            self.store.send(forget).await.map_err(StoreError::from)??;
            report.forgotten += 1;
        }
        Ok(())
    }

    /// Whether `video`'s object is no longer the one whose ETag was `verified`.
    async fn replaced(
        &self,
        s3: &S3Blobs,
        video: VideoId,
        verified: &str,
    ) -> Result<bool, UploadError> {
        match s3.head(video).await.map_err(s3_error)? {
            Some(meta) => Ok(!validator(&meta).is_ok_and(|now| now == verified)),
            // Gone: its deletion is under way (the row says ready only until it runs).
            None => Ok(false),
        }
    }

    /// Aborts the multipart uploads started before `now - STALE_MULTIPART_AFTER` that are not
    /// this process's own; returns how many.
    async fn abort_stale_multipart(
        &self,
        s3: &S3Blobs,
        now: OffsetDateTime,
    ) -> Result<usize, UploadError> {
        let before = now - STALE_MULTIPART_AFTER;
        let mut aborted = 0;
        for upload in s3.list_uploads().await.map_err(s3_error)? {
            // Without a start time an upload cannot be aged: left alone.
            let stale = upload.initiated.is_some_and(|t| t < before);
            let ours = upload.video.is_some_and(|v| lock(&self.busy).contains(&v));
            if !stale || ours {
                continue;
            }
            match s3.abort_upload(&upload).await {
                Ok(()) => {
                    log::info!("aborted an unfinished multipart upload of {}", upload.key);
                    aborted += 1;
                }
                Err(e) => log::warn!("cannot abort the multipart upload of {}: {e}", upload.key),
            }
        }
        Ok(aborted)
    }
}
