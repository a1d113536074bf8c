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

use crate::model::{BlobLocation, VideoId};

mod local;
mod pool;
pub mod s3;

pub use local::{LocalBlobs, ReadMode};
pub use pool::READ_BUF;
pub use s3::{S3Blobs, S3Config};

/// The blob backends a node runs with, chosen once at start-up: each service gets this one
/// typed value, and what only the object store can do (sign a URL, a POST policy) is asked of
/// it. The local directory is always there: it is the backend with `--blob-store file`, and
/// with `s3` it still holds the files of a site that started with files until they are moved
/// (`relocate`). Each ready video records which of the two has its bytes.
#[derive(Debug, Clone)]
pub struct Blobs {
    files: Arc<LocalBlobs>,
    s3: Option<Arc<S3Blobs>>,
}

impl Blobs {
    /// Files only (`--blob-store file`).
    pub fn files_only(files: Arc<LocalBlobs>) -> Self {
        Blobs { files, s3: None }
    }

    /// New files go to the object store; `files` holds the ones not moved yet.
    pub fn object_store(s3: Arc<S3Blobs>, files: Arc<LocalBlobs>) -> Self {
        Blobs { files, s3: Some(s3) }
    }

    /// Where new files go.
    pub fn location(&self) -> BlobLocation {
        match self.s3 {
            Some(_) => BlobLocation::ObjectStore,
            None => BlobLocation::File,
        }
    }

    /// The backend new files go to, as the common trait.
    pub fn store(&self) -> Arc<dyn BlobStore> {
        match &self.s3 {
            Some(s3) => s3.clone(),
            None => self.files.clone(),
        }
    }

    /// The backend that holds files at `location`; `None` for the object store on a node
    /// without one.
    pub fn at(&self, location: BlobLocation) -> Option<Arc<dyn BlobStore>> {
        match location {
            BlobLocation::File => Some(self.files.clone()),
            BlobLocation::ObjectStore => self.s3.clone().map(|s3| s3 as Arc<dyn BlobStore>),
        }
    }

    /// Both backends as one, for whoever removes and reconciles files wherever they are: a
    /// removal removes from each, a listing lists both.
    pub fn everywhere(&self) -> Arc<dyn BlobStore> {
        match &self.s3 {
            Some(s3) => Arc::new(Everywhere { files: self.files.clone(), s3: s3.clone() }),
            None => self.files.clone(),
        }
    }

    /// The poster of a video whose bytes are at `location`: beside them, or in the directory
    /// for a video moved to the object store after its probe (posters are not moved).
    pub async fn open_poster(
        &self,
        video: VideoId,
        location: BlobLocation,
    ) -> io::Result<Arc<dyn BlobReader>> {
        let missing = || io::Error::new(io::ErrorKind::NotFound, "no poster");
        let beside = self.at(location).ok_or_else(missing)?.open_poster(video).await;
        match beside {
            Err(e) if e.kind() == io::ErrorKind::NotFound && location != BlobLocation::File => {
                self.files.open_poster(video).await
            }
            found => found,
        }
    }

    /// The object store, when the node has one.
    pub fn s3(&self) -> Option<&Arc<S3Blobs>> {
        self.s3.as_ref()
    }

    /// The local directory.
    pub fn files(&self) -> &Arc<LocalBlobs> {
        &self.files
    }

    /// Whether the backend new files go to answers: the directory can be read, or the bucket
    /// answers a `HEAD`.
    pub async fn check(&self) -> io::Result<()> {
        match &self.s3 {
            Some(s3) => s3.check().await.map_err(io::Error::other),
            None => self.files.check().await,
        }
    }
}

/// The local directory and the object store together (see [`Blobs::everywhere`]). Writes go to
/// the object store, as every new file does.
#[derive(Debug)]
struct Everywhere {
    files: Arc<LocalBlobs>,
    s3: Arc<S3Blobs>,
}

#[async_trait]
impl BlobStore for Everywhere {
    async fn remove(&self, video: VideoId) -> io::Result<bool> {
        let (file, object) = futures_util::join!(self.files.remove(video), self.s3.remove(video));
        Ok(file? | object?)
    }

    async fn list(&self) -> io::Result<Vec<VideoId>> {
        let (files, objects) = futures_util::join!(self.files.list(), self.s3.list());
        let mut all = files?;
        all.extend(objects?);
        all.sort();
        all.dedup();
        Ok(all)
    }

    async fn open(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        match self.s3.open(video).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.files.open(video).await,
            found => found,
        }
    }

    async fn begin_write(&self, video: VideoId) -> io::Result<Box<dyn BlobWriter>> {
        self.s3.begin_write(video).await
    }

    async fn media_input(&self, video: VideoId) -> io::Result<MediaInput> {
        match self.s3.media_input(video).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.files.media_input(video).await,
            found => found,
        }
    }

    async fn put_poster(&self, video: VideoId, image: Bytes, content_type: &str) -> io::Result<()> {
        self.s3.put_poster(video, image, content_type).await
    }

    async fn open_poster(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        match self.s3.open_poster(video).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.files.open_poster(video).await,
            found => found,
        }
    }

    async fn remove_poster(&self, video: VideoId) -> io::Result<()> {
        let (file, object) =
            futures_util::join!(self.files.remove_poster(video), self.s3.remove_poster(video));
        file.and(object)
    }
}

/// Where a program started by the node (ffmpeg) reads a committed file from: the file itself
/// or a short-lived URL that serves it with ranges, never a copy.
#[derive(Clone, PartialEq, Eq)]
pub enum MediaInput {
    Path(std::path::PathBuf),
    /// Signed: a secret for its lifetime, so it is never logged (`Debug` hides it).
    Url(String),
}

impl fmt::Debug for MediaInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaInput::Path(p) => f.debug_tuple("Path").field(p).finish(),
            MediaInput::Url(_) => f.write_str("Url(<signed>)"),
        }
    }
}

/// Where committed video files, and each video's poster beside its file, live.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Removes a video's file and its poster; `Ok(false)` when there was no file (already
    /// removed).
    async fn remove(&self, video: VideoId) -> io::Result<bool>;

    /// Every video id that has a committed file (for reconciliation with the database).
    async fn list(&self) -> io::Result<Vec<VideoId>>;

    /// Opens a committed file for reading; `NotFound` when there is none.
    async fn open(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>>;

    /// Starts writing `video`'s file. Nothing is visible until [`BlobWriter::commit`]; dropping
    /// the writer discards what was written. One write per video at a time is the caller's rule
    /// (see `upload::Uploads`).
    async fn begin_write(&self, video: VideoId) -> io::Result<Box<dyn BlobWriter>>;

    /// Where ffmpeg can read `video`'s committed file; `NotFound` when there is none.
    async fn media_input(&self, video: VideoId) -> io::Result<MediaInput>;

    /// Stores `image` (small: a poster is tens of KiB) as `video`'s poster, durably, replacing
    /// the one there was; readers see the old one or the new one, never a part.
    async fn put_poster(&self, video: VideoId, image: Bytes, content_type: &str) -> io::Result<()>;

    /// Opens `video`'s poster; `NotFound` when it has none.
    async fn open_poster(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>>;

    /// Removes `video`'s poster alone (a probe that finished after its video was deleted);
    /// removing none is not an error.
    async fn remove_poster(&self, video: VideoId) -> io::Result<()>;
}

/// Random access to one committed, immutable file.
#[async_trait]
pub trait BlobReader: Send + Sync + fmt::Debug + 'static {
    /// The file's size in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open file, when the bytes are a local file: the stream's front sends it to the
    /// socket with `sendfile(2)` instead of reading it.
    fn local_file(&self) -> Option<&std::fs::File> {
        None
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
