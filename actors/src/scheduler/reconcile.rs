//! Reconciliation: what no peer does for us. Pending videos whose upload never came are queued
//! for removal; files on disk with no row are reported (never removed: a human should look).
//! With the object store, what uploads left there is reconciled too (`upload::leftovers`).

use std::collections::HashSet;

use actix::Addr;
use time::OffsetDateTime;

use crate::blob::BlobStore;
use crate::error::StoreError;
use crate::model::VideoId;
use crate::store::{KnownVideoIds, QueueStalePending, VideoStore};
use crate::upload::leftovers::LeftoverReport;

/// At most this many stale videos are queued per pass; the next pass takes the rest.
const STALE_PER_PASS: u32 = 1000;

/// What one reconciliation pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Pending videos created before the cut-off, now hidden and queued for removal.
    pub stale_queued: Vec<VideoId>,
    /// Committed files whose video has no row at all.
    pub orphan_files: Vec<VideoId>,
    /// Direct uploads and unfinished multipart uploads in the object store.
    pub direct: LeftoverReport,
}

/// One pass: queue removal of videos still `pending` that were created before `stale_before`,
/// and list committed files that have no row.
pub async fn reconcile(
    store: &Addr<VideoStore>,
    blobs: &dyn BlobStore,
    stale_before: OffsetDateTime,
) -> Result<ReconcileReport, StoreError> {
    let stale_queued =
        store.send(QueueStalePending { older_than: stale_before, limit: STALE_PER_PASS }).await??;

    let listing = |e: std::io::Error| StoreError::Internal(format!("listing video files: {e}"));
    // Rows are created before their file and removed after it, so a file listed before the
    // ids are read and still present after is an orphan for sure; either listing alone races
    // with uploads or removals in flight.
    let before: HashSet<VideoId> = blobs.list().await.map_err(listing)?.into_iter().collect();
    let known = store.send(KnownVideoIds).await??;
    let after: HashSet<VideoId> = blobs.list().await.map_err(listing)?.into_iter().collect();
    let mut orphan_files: Vec<VideoId> =
        before.intersection(&after).filter(|id| !known.contains(id)).copied().collect();
    orphan_files.sort();
    Ok(ReconcileReport { stale_queued, orphan_files, direct: LeftoverReport::default() })
}
