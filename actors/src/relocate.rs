//! Moving a site that started with files to the object store, without stopping it (API.md,
//! "Object storage"; the `move-to-object-store` command). Each ready video on a local file is
//! copied to the store while its SHA-256 is computed, read back and hashed again, and only when
//! both hashes are the one recorded at upload is its row switched to the store — in one
//! conditional update, so a video deleted or replaced meanwhile is not switched, and its copy
//! is removed again. The local file goes a little later ([`Relocation::linger`]): a request that
//! read the row just before the switch still finds the file it was told of.
//!
//! Every step is safe to cut off, so the move is resumed by running it again: a copy not yet
//! switched is made again (the object is simply replaced), a switched video whose local file
//! was left is cleaned up at the start, and the unfinished multipart upload of a copy cut off
//! mid-way is aborted (no live node writes a ready video's object, so no one else owns it).

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::blob::{BlobReader, BlobStore as _, BlobWriter, LocalBlobs, S3Blobs};
use crate::error::StoreError;
use crate::model::{BlobLocation, VideoId};
use crate::store::{FileToMove, FilesToMove, SwitchToObjectStore, VideoStore, WhereaboutsOf};

/// Videos asked of the store per batch.
const BATCH: u32 = 100;

/// What the move did, as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The video now plays from the object store.
    Moved { video: VideoId, bytes: u64 },
    /// The video stays on its file, for the reason given; a later run tries again.
    Skipped { video: VideoId, why: String },
    /// A local copy of a video already in the object store was removed.
    Removed { video: VideoId },
    /// An unfinished multipart upload left by a move that was cut off was aborted.
    Aborted { key: String },
}

/// What a whole run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub moved: usize,
    pub bytes: u64,
    pub removed: usize,
    pub aborted: usize,
    pub skipped: Vec<(VideoId, String)>,
}

impl Report {
    fn note(&mut self, event: &Event) {
        match event {
            Event::Moved { bytes, .. } => {
                self.moved += 1;
                self.bytes += bytes;
            }
            Event::Skipped { video, why } => self.skipped.push((*video, why.clone())),
            Event::Removed { .. } => self.removed += 1,
            Event::Aborted { .. } => self.aborted += 1,
        }
    }
}

/// Why a run stopped before the end: the database or the object store failed. What was done
/// stays done; run it again.
#[derive(Debug, thiserror::Error)]
pub enum RelocateError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("object store: {0}")]
    ObjectStore(#[from] crate::blob::s3::S3Error),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// One move of a site's files to the object store.
#[derive(Debug, Clone)]
pub struct Relocation {
    pub store: Addr<VideoStore>,
    pub files: Arc<LocalBlobs>,
    pub s3: Arc<S3Blobs>,
    /// How long a local file stays after its video was switched.
    pub linger: Duration,
    /// Bytes per second read from the disk at most (copy and read-back together), so that a
    /// live site's playback keeps its disk; `None` for no limit.
    pub max_rate: Option<u64>,
}

/// Local files waiting out the linger after their switch.
struct Lingering {
    due: std::collections::VecDeque<(Instant, VideoId)>,
}

/// Keeps reads under a byte rate.
struct Pace {
    start: Instant,
    bytes: u64,
    rate: Option<u64>,
}

impl Pace {
    async fn took(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        let Some(rate) = self.rate.filter(|r| *r > 0) else { return };
        let due = self.start + Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
    }
}

impl Relocation {
    /// Moves every video still on a local file, telling `on` of each step.
    pub async fn run(&self, mut on: impl FnMut(&Event)) -> Result<Report, RelocateError> {
        let mut report = Report::default();
        let mut tell = |event: Event| {
            report.note(&event);
            on(&event);
        };
        self.abort_cut_off_copies(&mut tell).await?;
        self.remove_switched_files(&mut tell).await?;

        let mut lingering = Lingering { due: Default::default() };
        let mut pace = Pace { start: Instant::now(), bytes: 0, rate: self.max_rate };
        let mut after_seq = 0;
        loop {
            let batch = FilesToMove { after_seq, limit: BATCH };
            let batch = self.store.send(batch).await.map_err(StoreError::from)??;
            let Some(last) = batch.last() else { break };
            after_seq = last.seq;
            for file in batch {
                self.remove_due(&mut lingering, false, &mut tell).await;
                let video = file.id;
                match self.move_one(&file, &mut pace).await {
                    Ok(true) => {
                        lingering.due.push_back((Instant::now() + self.linger, video));
                        tell(Event::Moved { video, bytes: file.size });
                    }
                    Ok(false) => tell(Event::Skipped {
                        video,
                        why: "deleted or replaced during the move".into(),
                    }),
                    Err(Skip(why)) => tell(Event::Skipped { video, why }),
                }
            }
        }
        self.remove_due(&mut lingering, true, &mut tell).await;
        Ok(report)
    }

    /// Copies, verifies and switches one video; `Ok(false)` when its row changed meanwhile
    /// (the copy is removed again).
    async fn move_one(&self, file: &FileToMove, pace: &mut Pace) -> Result<bool, Skip> {
        let video = file.id;
        let local = self.files.open(video).await.map_err(|e| Skip::io("opening the file", e))?;
        if local.len() != file.size {
            return Err(Skip(format!(
                "the file has {} bytes, the database says {}",
                local.len(),
                file.size
            )));
        }
        // The copy, hashed on the way: a file that is not what was uploaded is not moved.
        let mut writer =
            self.s3.begin_write(video).await.map_err(|e| Skip::io("starting the copy", e))?;
        let copied = hash(local, pace, Some(&mut writer)).await?;
        if copied != file.sha256 {
            // Dropping the writer aborts the multipart upload.
            return Err(Skip("the local file does not match the SHA-256 of its upload".into()));
        }
        writer.commit().await.map_err(|e| Skip::io("finishing the copy", e))?;
        // Read back: what the store holds, not what was sent, is what will be played.
        let object = self.s3.open(video).await.map_err(|e| Skip::io("reading the copy", e))?;
        let read_back = hash(object, pace, None).await?;
        if read_back != file.sha256 {
            self.remove_copy(video).await;
            return Err(Skip("the object store's copy does not match the file".into()));
        }
        let switch = SwitchToObjectStore { id: video, sha256: file.sha256.clone() };
        let switched = self.store.send(switch).await.map_err(StoreError::from);
        match switched.and_then(|r| r) {
            Ok(true) => Ok(true),
            Ok(false) => {
                // Deleted (its removal may have run before the copy existed) or switched by
                // someone else: a copy no row points to must not stay.
                if !self.is_in_object_store(video).await? {
                    self.remove_copy(video).await;
                }
                Ok(false)
            }
            Err(e) => Err(Skip(format!("switching the row: {e}"))),
        }
    }

    async fn is_in_object_store(&self, video: VideoId) -> Result<bool, Skip> {
        let rows = self.store.send(WhereaboutsOf { ids: vec![video] }).await;
        let rows = rows.map_err(StoreError::from).and_then(|r| r);
        let rows = rows.map_err(|e| Skip(format!("reading the row: {e}")))?;
        Ok(rows.get(&video).is_some_and(|w| w.location == Some(BlobLocation::ObjectStore)))
    }

    async fn remove_copy(&self, video: VideoId) {
        if let Err(e) = self.s3.remove(video).await {
            log::warn!("cannot remove the copy of video {video}: {e}");
        }
    }

    /// Removes the local files whose linger is over (all of them when `all`, waiting for the
    /// last). A file that cannot be removed is left for the next run's clean-up.
    async fn remove_due(&self, lingering: &mut Lingering, all: bool, tell: &mut impl FnMut(Event)) {
        while let Some(&(due, video)) = lingering.due.front() {
            if due > Instant::now() {
                if !all {
                    return;
                }
                tokio::time::sleep_until(due).await;
            }
            lingering.due.pop_front();
            match self.files.remove(video).await {
                Ok(_) => tell(Event::Removed { video }),
                Err(e) => log::warn!("cannot remove the local file of video {video}: {e}"),
            }
        }
    }

    /// A move cut off after switching a video leaves its local file: removed now, once the
    /// object is confirmed to be there, after the linger (the switch may be that recent).
    async fn remove_switched_files(
        &self,
        tell: &mut impl FnMut(Event),
    ) -> Result<(), RelocateError> {
        let on_disk = self.files.list().await.map_err(|source| RelocateError::Io {
            what: "listing the local files".into(),
            source,
        })?;
        let rows = self.store.send(WhereaboutsOf { ids: on_disk }).await;
        let rows = rows.map_err(StoreError::from)??;
        let mut switched: Vec<VideoId> = rows
            .into_iter()
            .filter(|(_, w)| w.location == Some(BlobLocation::ObjectStore))
            .map(|(id, _)| id)
            .collect();
        switched.sort();
        let mut confirmed = Vec::new();
        for video in switched {
            if self.s3.head(video).await?.is_some() {
                confirmed.push(video);
            } else {
                log::error!("video {video} is recorded in the object store, which lacks it");
            }
        }
        if confirmed.is_empty() {
            return Ok(());
        }
        let due = Instant::now() + self.linger;
        let mut lingering = Lingering { due: confirmed.into_iter().map(|v| (due, v)).collect() };
        self.remove_due(&mut lingering, true, tell).await;
        Ok(())
    }

    /// Aborts the unfinished multipart uploads of ready videos: a copy cut off mid-way. Uploads
    /// of pending videos may be a live node's and are left to the scheduler's reconciliation.
    async fn abort_cut_off_copies(
        &self,
        tell: &mut impl FnMut(Event),
    ) -> Result<(), RelocateError> {
        let uploads = self.s3.list_uploads().await?;
        let ids: Vec<VideoId> = uploads.iter().filter_map(|u| u.video).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let rows = self.store.send(WhereaboutsOf { ids }).await.map_err(StoreError::from)??;
        for upload in uploads {
            if upload.video.and_then(|v| rows.get(&v)).is_some_and(|w| w.ready) {
                self.s3.abort_upload(&upload).await?;
                tell(Event::Aborted { key: upload.key });
            }
        }
        Ok(())
    }
}

/// Why one video was not moved.
#[derive(Debug)]
struct Skip(String);

impl Skip {
    fn io(what: &str, e: std::io::Error) -> Self {
        Skip(format!("{what}: {e}"))
    }
}

/// Reads the whole of `reader` in order, appending each chunk to `copy` if given, and returns
/// the SHA-256 of what was read (hex). The hashing runs on this command's own runtime, which
/// serves nothing else.
async fn hash(
    reader: Arc<dyn BlobReader>,
    pace: &mut Pace,
    mut copy: Option<&mut Box<dyn BlobWriter>>,
) -> Result<String, Skip> {
    let len = reader.len();
    let mut chunks = reader.read_stream(0, len);
    let mut hasher = Sha256::new();
    let mut read = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| Skip::io("reading", e))?;
        hasher.update(&chunk);
        read += chunk.len() as u64;
        let n = chunk.len();
        if let Some(writer) = copy.as_deref_mut() {
            writer.append(chunk).await.map_err(|e| Skip::io("copying", e))?;
        }
        pace.took(n).await;
    }
    if read != len {
        return Err(Skip(format!("read {read} of {len} bytes")));
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
