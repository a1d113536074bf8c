//! Direct uploads, API.md's patterns 2 and 3: [`Uploads::ticket`] hands the owner the store's
//! POST policy for exactly the video's key (at most `max_bytes`, for a TTL), so the browser
//! sends the file straight to the object store; [`Uploads::complete`] then checks the object as
//! strictly as an upload through the server is checked — its size against the limit, its first
//! bytes against the known containers — and makes the video ready, or removes the object.
//!
//! The validator recorded is the object's ETag, which the store computes over the bytes it
//! holds: the node never reads the whole file, so it cannot hash it as it does in pattern 1.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::sniff::{SNIFF_LEN, sniff};
use super::{Claim, UploadError, Uploads};
use crate::blob::S3Blobs;
use crate::blob::s3::{ObjectMeta, PostPolicy, S3Error};
use crate::error::StoreError;
use crate::model::{BlobLocation, UserId, Video, VideoFile, VideoId};
use crate::store::{LookupVideo, MarkDirectReady, RecordTicket, VideoRow};

/// A ticket as handed to the owner.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The form to post: where, its fields, until when.
    pub policy: PostPolicy,
    /// The largest file the store accepts with it.
    pub max_bytes: u64,
}

/// What a check of a video's object found.
#[derive(Debug)]
pub(super) enum Checked {
    /// No object (yet).
    Missing,
    /// Too large or not a video; the object has been removed.
    Refused(UploadError),
    /// A video within the limit: the file to record.
    Valid(VideoFile),
}

impl Uploads {
    fn s3(&self) -> Result<&Arc<S3Blobs>, UploadError> {
        self.blobs.s3().ok_or(UploadError::NoObjectStore)
    }

    /// A ticket for `owner` to upload `video`'s file straight to the store, valid for `ttl`.
    /// Refused as [`Uploads::begin`] refuses: someone else's pending video is invisible
    /// (`NotFound`), their ready one is `Forbidden`, one's own ready one `AlreadyUploaded`.
    pub async fn ticket(
        &self,
        video: VideoId,
        owner: UserId,
        ttl: Duration,
    ) -> Result<Ticket, UploadError> {
        let s3 = self.s3()?;
        self.may_upload(video, owner).await?;
        let issued_at = OffsetDateTime::now_utc();
        let policy = s3.post_policy(video, self.max_bytes, ttl);
        // Durable before the ticket leaves: reconciliation must know of every ticket out there.
        let record = RecordTicket { video, issued_at, expires_at: policy.expires_at };
        self.store.send(record).await.map_err(StoreError::from)??;
        Ok(Ticket { policy, max_bytes: self.max_bytes })
    }

    /// `owner` says the file of `video` is in the store: check it and make the video ready.
    pub async fn complete(&self, video: VideoId, owner: UserId) -> Result<Video, UploadError> {
        let s3 = self.s3()?.clone();
        match self.store.send(LookupVideo { id: video }).await.map_err(StoreError::from)?? {
            VideoRow::Missing | VideoRow::Deleted => {
                // A file never outlives its row: an object posted with the ticket of a video
                // deleted since goes now (reconciliation would find it later otherwise).
                self.discard(video).await;
                return Err(StoreError::NotFound.into());
            }
            // Someone else's pending video is invisible to the caller; a ready one is not.
            VideoRow::Live(v) if v.author_id != owner && v.file.is_none() => {
                return Err(StoreError::NotFound.into());
            }
            VideoRow::Live(v) if v.author_id != owner => return Err(StoreError::Forbidden.into()),
            VideoRow::Live(v) if v.file.is_some() => return Err(UploadError::AlreadyUploaded),
            VideoRow::Live(_) => {}
        }
        // The same claim as an upload through the server: of two racing, one is refused here,
        // so the object cannot be rewritten between this check and the row.
        let _claim = Claim::take(&self.busy, video).ok_or(UploadError::InProgress)?;
        match self.check(&s3, video).await? {
            Checked::Missing => Err(UploadError::NothingUploaded),
            Checked::Refused(why) => Err(why),
            Checked::Valid(file) => self.mark_direct_ready(video, owner, file).await,
        }
    }

    /// Checks `video`'s object: size, then container; a refused object is removed.
    pub(super) async fn check(&self, s3: &S3Blobs, video: VideoId) -> Result<Checked, UploadError> {
        let Some(meta) = s3.head(video).await.map_err(s3_error)? else {
            return Ok(Checked::Missing);
        };
        if meta.len > self.max_bytes {
            self.remove_refused(video).await?;
            return Ok(Checked::Refused(UploadError::TooLarge { max: self.max_bytes }));
        }
        // Pinned to the ETag just seen, so the bytes sniffed are the object recorded.
        let head = match s3.read_range(video, &meta, 0, SNIFF_LEN).await {
            Ok(head) => head,
            Err(e) if e.is_missing_object() => return Ok(Checked::Missing),
            Err(e) => return Err(s3_error(e)),
        };
        let Some(content_type) = sniff(&head) else {
            self.remove_refused(video).await?;
            return Ok(Checked::Refused(UploadError::NotAVideo));
        };
        Ok(Checked::Valid(VideoFile {
            size: meta.len,
            content_type: content_type.to_owned(),
            sha256: validator(&meta)?,
            uploaded_at: OffsetDateTime::now_utc(),
            location: BlobLocation::ObjectStore,
        }))
    }

    /// Records a checked object: the video becomes ready. A row deleted meanwhile takes the
    /// object with it.
    pub(super) async fn mark_direct_ready(
        &self,
        video: VideoId,
        owner: UserId,
        file: VideoFile,
    ) -> Result<Video, UploadError> {
        let size = file.size;
        let marked = self.store.send(MarkDirectReady { id: video, owner, file }).await;
        match marked.unwrap_or_else(|e| Err(e.into())) {
            Ok(ready) => {
                log::info!("video {video} uploaded straight to the object store: {size} bytes");
                Ok(ready)
            }
            Err(StoreError::Conflict(_)) => Err(UploadError::AlreadyUploaded),
            Err(StoreError::NotFound) => {
                self.discard(video).await;
                Err(StoreError::NotFound.into())
            }
            // The object is sound; a later `complete` or reconciliation records it.
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a refused object; the answer promises it is gone, so a failure is an error.
    async fn remove_refused(&self, video: VideoId) -> Result<(), UploadError> {
        self.blobs.store().remove(video).await.map(drop).map_err(UploadError::Io)
    }

    /// Removes the object of a video that has no live row; a failure is left to
    /// reconciliation, which still has the ticket.
    pub(super) async fn discard(&self, video: VideoId) {
        match self.blobs.store().remove(video).await {
            Ok(true) => log::info!("removed the object of video {video}, which has no row"),
            Ok(false) => {}
            Err(e) => log::warn!("cannot remove the object of video {video}: {e}"),
        }
    }
}

/// An object store failure; one that changed the object while it was checked means an upload
/// of it is under way.
pub(super) fn s3_error(e: S3Error) -> UploadError {
    match e {
        S3Error::Changed => UploadError::InProgress,
        e => UploadError::Io(e.into()),
    }
}

/// The validator recorded for an object: its ETag without the quotes, which playback puts
/// back, so a redirected GET (answered by the store) and the stream's own answers carry the
/// same `ETag`. Only characters an entity tag may hold pass (RFC 9110 `etagc`).
pub(super) fn validator(meta: &ObjectMeta) -> Result<String, UploadError> {
    let inner = meta.etag.strip_prefix('"').and_then(|e| e.strip_suffix('"'));
    match inner {
        Some(tag)
            if !tag.is_empty() && tag.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b)) =>
        {
            Ok(tag.to_owned())
        }
        _ => Err(UploadError::Io(std::io::Error::other(format!(
            "the object store's ETag {:?} is not a strong entity tag",
            meta.etag
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(etag: &str) -> ObjectMeta {
        ObjectMeta { len: 1, etag: etag.to_owned() }
    }

    #[test]
    fn validator_is_the_etag_between_its_quotes() {
        let md5 = "\"9e107d9d372bb6826bd81d3542a419d6\"";
        assert_eq!(validator(&meta(md5)).ok().as_deref(), Some(md5.trim_matches('"')));
        let multipart = "\"d41d8cd98f00b204e9800998ecf8427e-5\"";
        assert!(validator(&meta(multipart)).is_ok());
        for bad in ["", "\"\"", "abc", "\"a\"b\"", "\"a b\"", "W/\"abc\""] {
            assert!(validator(&meta(bad)).is_err(), "{bad:?}");
        }
    }
}
