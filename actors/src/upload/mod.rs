//! Uploads as one domain operation. [`Uploads::begin`] decides who may upload what and takes the
//! video's single writer; [`Upload::push`] counts, sniffs and hashes the bytes on their way to
//! the blob store; [`Upload::commit`] makes the file durable and visible, then the row ready —
//! and removes the file again if the row refuses it, so a file never outlives its row. Dropping
//! an [`Upload`] at any point discards what was written and frees the video for a retry.
//!
//! Direct uploads, straight from the client to the object store, are the same operation's
//! other door ([`direct`]): a ticket, then a check of the object as strict as [`Upload::push`]'s;
//! what they leave behind is reconciled by [`leftovers`].
//!
//! The HTTP side only parses the body (raw or multipart) and maps [`UploadError`] to statuses.

pub mod direct;
pub mod leftovers;
pub mod sniff;

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};

use actix::Addr;
use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::blob::{BlobStore, BlobWriter, Blobs};
use crate::error::StoreError;
use crate::model::{BlobLocation, UserId, Video, VideoFile, VideoId};
use crate::store::{GetVideo, MarkReady, VideoStore};
use sniff::{SNIFF_LEN, sniff};

/// Bytes gathered before one write: few, large writes keep the upload near disk speed.
const WRITE_BUF: usize = 1 << 20;
/// Blocks queued for the writer task beyond the one it is writing: with 1 MiB blocks, a few MiB
/// of memory per upload buys slack for the disk and the hash.
const DEPTH: usize = 4;

/// Why an upload was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No such video, someone else's pending one, deleted meanwhile; or a store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The video is ready already.
    #[error("video file already uploaded")]
    AlreadyUploaded,
    /// Another upload of the same video is being written right now.
    #[error("an upload of this video is already in progress")]
    InProgress,
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
    /// The first bytes are not a known video container.
    #[error("not a recognised video container")]
    NotAVideo,
    /// Writing or committing the file failed, or the object store did (not the client's fault).
    #[error("writing the upload: {0}")]
    Io(#[source] io::Error),
    /// A direct upload, but the blob store is a local directory.
    #[error("direct uploads need the object store")]
    NoObjectStore,
    /// `complete`, but the store has no object for the video.
    #[error("nothing was uploaded for this video")]
    NothingUploaded,
}

/// Starts uploads; one per stream service, shared by its workers.
#[derive(Debug, Clone)]
pub struct Uploads {
    store: Addr<VideoStore>,
    blobs: Blobs,
    max_bytes: u64,
    /// Videos with an upload in progress in this process: two uploads of one video would both
    /// commit, and the file could change under a reader.
    busy: Arc<Mutex<HashSet<VideoId>>>,
}

/// One video's place in [`Uploads::busy`], given back when the upload ends in any way (dropped
/// included), at once: a retry right after a refused upload must not find the video busy.
#[derive(Debug)]
struct Claim {
    busy: Arc<Mutex<HashSet<VideoId>>>,
    video: VideoId,
}

fn lock(busy: &Mutex<HashSet<VideoId>>) -> std::sync::MutexGuard<'_, HashSet<VideoId>> {
    // Every critical section is one insert or remove, so a poisoned set is still consistent.
    busy.lock().unwrap_or_else(|p| p.into_inner())
}

impl Claim {
    fn take(busy: &Arc<Mutex<HashSet<VideoId>>>, video: VideoId) -> Option<Claim> {
        lock(busy).insert(video).then(|| Claim { busy: busy.clone(), video })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.busy).remove(&self.video);
    }
}

impl Uploads {
    pub fn new(store: Addr<VideoStore>, blobs: Blobs, max_bytes: u64) -> Self {
        Self { store, blobs, max_bytes, busy: Arc::default() }
    }

    /// The largest file accepted.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The blob backend the files go to.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Whether `uploader` may give `video` its file: someone else's pending video is invisible
    /// (`NotFound`), their ready one `Forbidden`, one's own ready one `AlreadyUploaded`.
    pub(crate) async fn may_upload(
        &self,
        video: VideoId,
        uploader: UserId,
    ) -> Result<(), UploadError> {
        let query = GetVideo { id: video, author: None, viewer: Some(uploader) };
        let found = self.store.send(query).await.map_err(StoreError::from)??;
        if found.author_id != uploader {
            return Err(StoreError::Forbidden.into());
        }
        if found.file.is_some() {
            return Err(UploadError::AlreadyUploaded);
        }
        Ok(())
    }

    /// `uploader` starts uploading `video`'s file. Only the owner of a pending video may, and
    /// only one upload of a video runs at a time. `declared` is the file's size when the client
    /// announced it (a raw body's `Content-Length`): too large is refused before any byte.
    pub async fn begin(
        &self,
        video: VideoId,
        uploader: UserId,
        declared: Option<u64>,
    ) -> Result<Upload, UploadError> {
        self.may_upload(video, uploader).await?;
        if declared.is_some_and(|n| n > self.max_bytes) {
            return Err(UploadError::TooLarge { max: self.max_bytes });
        }
        let claim = Claim::take(&self.busy, video).ok_or(UploadError::InProgress)?;
        let writer = self.blobs.store().begin_write(video).await.map_err(UploadError::Io)?;
        Ok(Upload {
            _claim: claim,
            video,
            uploader,
            store: self.store.clone(),
            blobs: self.blobs.store(),
            location: self.blobs.location(),
            sink: Sink::new(writer, self.max_bytes),
        })
    }
}

/// One upload in progress. See the module docs.
#[derive(Debug)]
pub struct Upload {
    /// Held until the upload is committed (the row says ready) or dropped.
    _claim: Claim,
    video: VideoId,
    uploader: UserId,
    store: Addr<VideoStore>,
    blobs: Arc<dyn BlobStore>,
    /// Where `blobs` is, recorded with the file.
    location: BlobLocation,
    sink: Sink,
}

impl Upload {
    /// The next bytes of the file.
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        self.sink.push(chunk).await
    }

    /// Bytes of the file received so far.
    pub fn received(&self) -> u64 {
        self.sink.total
    }

    /// The whole file has arrived: check it, make it durable and visible, make the video ready.
    pub async fn commit(self) -> Result<Video, UploadError> {
        let Upload { _claim, video, uploader, store, blobs, location, sink } = self;
        let file = sink.finish(location).await?;
        let size = file.size;
        let marked = store.send(MarkReady { id: video, owner: uploader, file }).await;
        match marked.unwrap_or_else(|e| Err(e.into())) {
            Ok(ready) => {
                log::info!("video {video} uploaded: {size} bytes");
                Ok(ready)
            }
            // Another process made the same video ready: its file is the one in place now.
            Err(StoreError::Conflict(_)) => Err(UploadError::AlreadyUploaded),
            Err(e) => {
                // Deleted (or taken away) while uploading, or the store failed: the file must
                // not outlive the row.
                if let Err(err) = blobs.remove(video).await {
                    log::warn!("cannot remove the file of video {video}: {err}");
                }
                Err(e.into())
            }
        }
    }
}

/// What the writer task hands back: the writer and the hash of every block, or the first error.
type Written = Result<(Box<dyn BlobWriter>, Sha256), io::Error>;

/// Where the upload's bytes go: counted against the limit, sniffed, and gathered into large
/// blocks that a writer task hashes and writes (on blocking threads) while later blocks arrive.
/// Up to `DEPTH` blocks queue between the two, so a slow write or hash does not stall the
/// socket until that much has piled up.
#[derive(Debug)]
struct Sink {
    buf: BytesMut,
    total: u64,
    max: u64,
    content_type: Option<&'static str>,
    /// Blocks for the writer task; `None` once closed.
    blocks: Option<mpsc::Sender<Bytes>>,
    /// Blocks the writer task is done with, to be filled again: a fresh 1 MiB block per MiB
    /// received cost a page fault per 4 KiB (the allocator returns freed memory at once), a
    /// tenth of the upload's CPU.
    spent: mpsc::UnboundedReceiver<Bytes>,
    writer: Option<JoinHandle<Written>>,
}

/// Writes and hashes blocks in order until the channel closes. The task owns the writer: should
/// the upload be dropped (client gone), the channel closes, the task ends and drops the writer,
/// which discards the temporary file and frees the video.
async fn write_blocks(
    mut writer: Box<dyn BlobWriter>,
    mut blocks: mpsc::Receiver<Bytes>,
    spent: mpsc::UnboundedSender<Bytes>,
) -> Written {
    let mut hasher = Sha256::new();
    while let Some(block) = blocks.recv().await {
        let hashed = block.clone();
        let hash = tokio::task::spawn_blocking(move || {
            hasher.update(&hashed);
            (hasher, hashed)
        });
        let (written, hashed) = futures_util::join!(writer.append(block), hash);
        written?;
        // The hashing closure cannot panic; a cancelled runtime is shutting down anyway.
        let block;
        (hasher, block) = hashed.map_err(io::Error::other)?;
        // Back to the sink, which fills it again if the writer kept no reference to it.
        let _ = spent.send(block);
    }
    Ok((writer, hasher))
}

fn internal(what: &str) -> UploadError {
    UploadError::Io(io::Error::other(what.to_owned()))
}

impl Sink {
    fn new(writer: Box<dyn BlobWriter>, max: u64) -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        let (spent_tx, spent) = mpsc::unbounded_channel();
        Self {
            buf: BytesMut::with_capacity(WRITE_BUF),
            total: 0,
            max,
            content_type: None,
            blocks: Some(tx),
            spent,
            writer: Some(tokio::task::spawn(write_blocks(writer, rx, spent_tx))),
        }
    }

    async fn push(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        self.total += chunk.len() as u64;
        if self.total > self.max {
            return Err(UploadError::TooLarge { max: self.max });
        }
        self.buf.extend_from_slice(&chunk);
        if self.content_type.is_none() && self.buf.len() >= SNIFF_LEN {
            self.sniff()?;
        }
        if self.buf.len() >= WRITE_BUF {
            self.flush().await?;
        }
        Ok(())
    }

    fn sniff(&mut self) -> Result<(), UploadError> {
        let head = &self.buf[..self.buf.len().min(SNIFF_LEN)];
        self.content_type = Some(sniff(head).ok_or(UploadError::NotAVideo)?);
        Ok(())
    }

    /// Queues the buffered block for the writer task, waiting only while `DEPTH` are queued.
    async fn flush(&mut self) -> Result<(), UploadError> {
        let next = match self.spent.try_recv().map(Bytes::try_into_mut) {
            Ok(Ok(mut spent)) => {
                spent.clear();
                spent
            }
            _ => BytesMut::with_capacity(WRITE_BUF),
        };
        let block = std::mem::replace(&mut self.buf, next).freeze();
        let Some(blocks) = &self.blocks else {
            return Err(internal("the upload's block channel is closed"));
        };
        if blocks.send(block).await.is_err() {
            // The writer task has stopped: its result says why.
            return Err(self.settle().await.err().unwrap_or_else(|| internal("writer stopped")));
        }
        Ok(())
    }

    /// Closes the channel and waits for the writer task to write everything queued.
    async fn settle(&mut self) -> Result<(Box<dyn BlobWriter>, Sha256), UploadError> {
        self.blocks = None;
        let task = self.writer.take().ok_or_else(|| internal("writer missing"))?;
        task.await.map_err(|e| UploadError::Io(io::Error::other(e)))?.map_err(UploadError::Io)
    }

    /// Writes what is left, checks the container, makes the file durable and visible.
    async fn finish(mut self, location: BlobLocation) -> Result<VideoFile, UploadError> {
        if self.content_type.is_none() {
            self.sniff()?;
        }
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        let (writer, hasher) = self.settle().await?;
        writer.commit().await.map_err(UploadError::Io)?;
        let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(VideoFile {
            size: self.total,
            // `sniff` succeeded above or returned.
            content_type: self.content_type.unwrap_or("application/octet-stream").to_owned(),
            sha256,
            uploaded_at: OffsetDateTime::now_utc(),
            location,
        })
    }
}
