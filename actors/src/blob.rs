//! Video files behind a small trait: a local directory now, an S3-compatible store later.
//! Files are immutable once committed, so readers never see a partial file: an upload is written
//! to a temporary file, made durable, then renamed into place.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::model::VideoId;

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
    /// the writer discards what was written. `AlreadyExists` while another write of the same
    /// video is in progress.
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

/// Files in one local directory: `<root>/<video-id>`, temporary files under `<root>/.partial/`.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
    /// Videos with a write in progress: two concurrent uploads of one video would otherwise both
    /// rename into place and the file could change under a reader.
    writing: Arc<Mutex<HashSet<VideoId>>>,
}

const PARTIAL: &str = ".partial";

impl LocalBlobs {
    /// Uses `root` (created when missing) and removes temporary files a crash left behind, so
    /// call it once at start-up, before any upload. Blocking.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let partial = root.join(PARTIAL);
        std::fs::create_dir_all(&partial)?;
        for entry in std::fs::read_dir(&partial)? {
            let path = entry?.path();
            match std::fs::remove_file(&path) {
                Ok(()) => log::info!("removed stale partial upload {}", path.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
            }
        }
        Ok(Self { root, writing: Arc::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The committed file of `video`. The id is a parsed UUID, so the path cannot escape `root`.
    pub fn path_of(&self, video: VideoId) -> PathBuf {
        self.root.join(video.to_string())
    }

    /// The directory temporary upload files are written in (same file system as `root`, so the
    /// final rename is atomic).
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join(PARTIAL)
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, HashSet<VideoId>> {
        // A panic while holding this lock cannot leave the set inconsistent (single insert or
        // remove), so a poisoned lock is still usable.
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs blocking file work off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn remove(&self, video: VideoId) -> io::Result<bool> {
        let path = self.path_of(video);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self) -> io::Result<Vec<VideoId>> {
        let mut out = Vec::new();
        let mut dir = tokio::fs::read_dir(&self.root).await?;
        while let Some(entry) = dir.next_entry().await? {
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    async fn open(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        let path = self.path_of(video);
        let (file, len) = blocking(move || {
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await?;
        Ok(Arc::new(LocalReader { file: Arc::new(file), len }))
    }

    async fn begin_write(&self, video: VideoId) -> io::Result<Box<dyn BlobWriter>> {
        if !self.writing().insert(video) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "upload in progress"));
        }
        // From here the guard owns the registration, so every early return releases it.
        let guard = WriteGuard { blobs: self.clone(), video, temp: None };
        let temp = self.partial_dir().join(format!("{video}.{:016x}", rand::random::<u64>()));
        let path = temp.clone();
        let file =
            blocking(move || std::fs::OpenOptions::new().write(true).create_new(true).open(path))
                .await?;
        let mut guard = guard;
        guard.temp = Some(temp);
        Ok(Box::new(LocalWriter { file: Some(file), target: self.path_of(video), guard }))
    }
}

/// A committed local file, shared by the reads of one response.
#[derive(Debug)]
struct LocalReader {
    file: Arc<std::fs::File>,
    len: u64,
}

#[async_trait]
impl BlobReader for LocalReader {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = len.min(self.len.saturating_sub(offset).try_into().unwrap_or(usize::MAX));
        let file = self.file.clone();
        blocking(move || {
            use std::os::unix::fs::FileExt as _;
            let mut buf = BytesMut::zeroed(len);
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if filled < len {
                // Committed files never shrink; a short read means someone else touched it.
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "video file shrank"));
            }
            Ok(buf.freeze())
        })
        .await
    }
}

/// Releases a video's write registration and removes its temporary file unless committed.
#[derive(Debug)]
struct WriteGuard {
    blobs: LocalBlobs,
    video: VideoId,
    temp: Option<PathBuf>,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Removing one file is quick, but it is still file work: keep it off the executor
            // when there is one (a cancelled upload drops its writer on an async thread).
            let remove = move || match std::fs::remove_file(&temp) {
                Ok(()) => log::info!("discarded partial upload {}", temp.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove {}: {e}", temp.display()),
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(remove)),
                Err(_) => remove(),
            }
        }
        self.blobs.writing().remove(&self.video);
    }
}

/// A temporary local file on its way to `target`.
#[derive(Debug)]
struct LocalWriter {
    /// `None` only while a write is in flight on a blocking thread (or after it failed).
    file: Option<std::fs::File>,
    target: PathBuf,
    guard: WriteGuard,
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn append(&mut self, data: Bytes) -> io::Result<()> {
        use std::io::Write as _;
        let mut file = self.file.take().ok_or_else(|| io::Error::other("earlier write failed"))?;
        let file = blocking(move || file.write_all(&data).map(|()| file)).await?;
        self.file = Some(file);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> io::Result<()> {
        let file = self.file.take().ok_or_else(|| io::Error::other("earlier write failed"))?;
        let temp = self.guard.temp.clone().ok_or_else(|| io::Error::other("no temporary file"))?;
        let target = self.target.clone();
        blocking(move || {
            // Data first, then the name: after a crash the file is either complete or absent.
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temp, &target)?;
            if let Some(dir) = target.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await?;
        // Renamed: nothing left for the guard to remove.
        self.guard.temp = None;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[actix::test]
    async fn write_commit_read_and_discard() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(PARTIAL)).unwrap();
        std::fs::write(dir.path().join(PARTIAL).join("stale"), b"x").unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(blobs.partial_dir()).unwrap().count(), 0, "stale removed");

        let id = VideoId::new();
        let mut w = blobs.begin_write(id).await.unwrap();
        let second = blobs.begin_write(id).await.unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::AlreadyExists);
        w.append(Bytes::from_static(b"hello ")).await.unwrap();
        w.append(Bytes::from_static(b"world")).await.unwrap();
        assert!(blobs.open(id).await.is_err(), "invisible before commit");
        w.commit().await.unwrap();
        let r = blobs.open(id).await.unwrap();
        assert_eq!(r.len(), 11);
        assert_eq!(&r.read_at(6, 100).await.unwrap()[..], b"world");
        assert_eq!(blobs.list().await.unwrap(), vec![id]);

        let other = VideoId::new();
        let mut w = blobs.begin_write(other).await.unwrap();
        w.append(Bytes::from_static(b"partial")).await.unwrap();
        drop(w);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(std::fs::read_dir(blobs.partial_dir()).unwrap().count(), 0, "discarded");
        assert!(blobs.begin_write(other).await.is_ok(), "registration released");
        assert!(blobs.remove(id).await.unwrap());
        assert!(!blobs.remove(id).await.unwrap());
    }
}
