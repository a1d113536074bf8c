//! Video files behind a small trait, with two backends: a local directory ([`LocalBlobs`]) and
//! an S3-compatible object store ([`S3Blobs`]). Files are immutable once committed, and a file
//! is visible only once complete, so readers never see a partial file.

use std::fmt;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use crate::model::VideoId;

mod local;
mod pool;
pub mod s3;

pub use local::{LocalBlobs, ReadMode};
pub use pool::READ_BUF;
pub use s3::{S3Blobs, S3Config};

/// The blob backend a node runs with, chosen once at start-up: each service gets this one typed
/// value, and what only one backend can do (sign a URL, a POST policy) is asked of its variant.
#[derive(Debug, Clone)]
pub enum Blobs {
    /// A local directory.
    Files(Arc<LocalBlobs>),
    /// An S3-compatible object store.
    S3(Arc<S3Blobs>),
}

impl Blobs {
    /// The backend as the common trait.
    pub fn store(&self) -> Arc<dyn BlobStore> {
        match self {
            Blobs::Files(files) => files.clone(),
            Blobs::S3(s3) => s3.clone(),
        }
    }

    /// The object store, when that is the backend.
    pub fn s3(&self) -> Option<&Arc<S3Blobs>> {
        match self {
            Blobs::S3(s3) => Some(s3),
            Blobs::Files(_) => None,
        }
    }

    /// Whether the backend answers: the directory can be read, or the bucket answers a `HEAD`.
    pub async fn check(&self) -> io::Result<()> {
        match self {
            Blobs::Files(files) => files.check().await,
            Blobs::S3(s3) => s3.check().await.map_err(io::Error::other),
        }
    }

    /// The local directory, when that is the backend.
    pub fn files(&self) -> Option<&Arc<LocalBlobs>> {
        match self {
            Blobs::Files(files) => Some(files),
            Blobs::S3(_) => None,
        }
    }
}

/// Where committed video files live.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Removes a video's file; `Ok(false)` when there was none (already removed).
    async fn remove(&self, video: VideoId) -> io::Result<bool>;

    /// Every video id that has a committed file (for reconciliation with the database).
    async fn list(&self) -> io::Result<Vec<VideoId>>;

    /// Opens a committed file for reading; `NotFound` when there is none.
    async fn open(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>>;

    /// Starts writing `video`'s file. Nothing is visible until [`BlobWriter::commit`]; dropping
    /// the writer discards what was written. One write per video at a time is the caller's rule
    /// (see `upload::Uploads`).
    async fn begin_write(&self, video: VideoId) -> io::Result<Box<dyn BlobWriter>>;
}

/// Random access to one committed, immutable file.
#[async_trait]
pub trait BlobReader: Send + Sync + fmt::Debug + 'static {
    /// The file's size in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `len` bytes from `offset` (fewer only at the end of the file).
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;

    /// The bytes `offset..offset + len` (clamped to the file) as chunks in order, for sending a
    /// range on. The default reads [`READ_BUF`] windows with [`BlobReader::read_at`]; the S3
    /// reader overrides it with one ranged GET, since there every `read_at` is a round trip
    /// (and Garage reads a whole 1 MiB block for each).
    fn read_stream(
        self: Arc<Self>,
        offset: u64,
        len: u64,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let end = offset.saturating_add(len).min(self.len());
        futures_util::stream::try_unfold((self, offset), move |(reader, pos)| async move {
            if pos >= end {
                return Ok(None);
            }
            let want = usize::try_from(end - pos).unwrap_or(usize::MAX).min(READ_BUF);
            let chunk = reader.read_at(pos, want).await?;
            if chunk.is_empty() {
                // Committed files never shrink: someone else touched this one.
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ended early"));
            }
            let next = pos + chunk.len() as u64;
            Ok(Some((chunk, (reader, next))))
        })
        .boxed()
    }
}

/// A file being written.
#[async_trait]
pub trait BlobWriter: Send + fmt::Debug {
    /// Appends `data`.
    async fn append(&mut self, data: Bytes) -> io::Result<()>;

    /// Makes the file durable and visible under its video id, replacing a leftover file of a
    /// video that never became ready.
    async fn commit(self: Box<Self>) -> io::Result<()>;
}
