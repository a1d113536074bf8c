//! The local-directory backend: one file per video. An upload is written to a temporary file,
//! made durable, then renamed into place, so a file is either complete or absent.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::pool::{BufPool, READ_BUF};
use super::{BlobReader, BlobStore, BlobWriter, MediaInput};
use crate::model::VideoId;

/// Files in one local directory: `<root>/<video-id>`, temporary files under `<root>/.partial/`.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
    /// How committed files are read; see [`ReadMode`].
    read_mode: ReadMode,
    /// Read buffers shared by every reader of this store.
    pool: Arc<BufPool>,
    /// Files opened lately, shared by every clone of this store.
    open: Arc<OpenFiles>,
}

/// Committed files opened in the last [`OPEN_TTL`], kept open: a video played by many clients
/// costs one `open` on a blocking thread, not one per request (nginx's `open_file_cache`).
/// Sound because playback asks the database whether the video is ready before it asks for the
/// file, and a ready video's file is never replaced (only an unfinished upload's is, by a new
/// commit). [`BlobStore::remove`] and a commit forget a file at once; one removed or replaced by
/// another process stays open here for `OPEN_TTL` at most.
#[derive(Debug, Default)]
struct OpenFiles(Mutex<HashMap<VideoId, (Instant, Arc<LocalReader>)>>);

const OPEN_TTL: Duration = Duration::from_secs(10);
const OPEN_MAX: usize = 1024;

impl OpenFiles {
    fn get(&self, video: VideoId) -> Option<Arc<LocalReader>> {
        let files = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (opened, reader) = files.get(&video)?;
        (opened.elapsed() < OPEN_TTL).then(|| reader.clone())
    }

    fn put(&self, video: VideoId, reader: Arc<LocalReader>) {
        let mut files = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if files.len() >= OPEN_MAX {
            files.retain(|_, (opened, _)| opened.elapsed() < OPEN_TTL);
            if files.len() >= OPEN_MAX {
                files.clear();
            }
        }
        files.insert(video, (Instant::now(), reader));
    }

    fn forget(&self, video: VideoId) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&video);
    }
}

const PARTIAL: &str = ".partial";
/// Posters, one file per video named by its id; their temporary files end in [`TEMP`].
const POSTERS: &str = ".posters";
const TEMP: &str = ".tmp";
/// A temporary poster older than this was left by a crash (writing one takes milliseconds).
const STALE_POSTER_TEMP: Duration = Duration::from_secs(600);

/// How a [`LocalBlobs`] reads committed files. `bench/stream.sh` measures both; positioned
/// reads are the default (see `bench/results/stream.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// `pread` into a fresh buffer on a blocking thread.
    Pread,
    /// A populated read-only map of the window on a blocking thread, handed out without a copy.
    /// Sound only because committed files are never modified or truncated in place.
    Mmap,
}

impl LocalBlobs {
    /// Uses `root` (created when missing) and removes temporary files a crash left behind. A
    /// temporary file is locked (advisory `flock`) for as long as it is written, so only
    /// unlocked ones are removed: another process on the same data directory keeps its
    /// uploads in progress. Blocking.
    pub fn open(root: impl Into<PathBuf>, read_mode: ReadMode) -> io::Result<Self> {
        let root = root.into();
        let partial = root.join(PARTIAL);
        std::fs::create_dir_all(&partial)?;
        for entry in std::fs::read_dir(&partial)? {
            remove_if_stale(&entry?.path());
        }
        let posters = root.join(POSTERS);
        std::fs::create_dir_all(&posters)?;
        for entry in std::fs::read_dir(&posters)? {
            let entry = entry?;
            let old = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
            if entry.file_name().to_string_lossy().ends_with(TEMP) && old > STALE_POSTER_TEMP {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self { root, read_mode, pool: Arc::default(), open: Arc::default() })
    }

    /// Whether the directory is there and readable (for `/healthz`).
    pub async fn check(&self) -> io::Result<()> {
        tokio::fs::read_dir(&self.root).await.map(drop)
    }

    /// The committed file of `video`. The id is a parsed UUID, so the path cannot escape `root`.
    pub fn path_of(&self, video: VideoId) -> PathBuf {
        self.root.join(video.to_string())
    }

    /// Opens the committed file at `path` for reading, on a blocking thread.
    async fn open_reader(&self, path: PathBuf) -> io::Result<Arc<LocalReader>> {
        let (file, len) = blocking(move || {
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await?;
        Ok(Arc::new(LocalReader {
            file: Arc::new(file),
            len,
            mode: self.read_mode,
            pool: self.pool.clone(),
        }))
    }

    /// The poster of `video` (see [`LocalBlobs::path_of`]).
    pub fn poster_path_of(&self, video: VideoId) -> PathBuf {
        self.root.join(POSTERS).join(video.to_string())
    }

    /// The directory temporary upload files are written in (same file system as `root`, so the
    /// final rename is atomic).
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join(PARTIAL)
    }
}

/// Removes the temporary file at `path` unless its writer (in any process) still holds its lock.
/// The lock is held across the removal, so a writer cannot take the file over meanwhile.
fn remove_if_stale(path: &Path) {
    use fs4::fs_std::FileExt as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => return log::warn!("cannot open {}: {e}", path.display()),
    };
    match file.try_lock_exclusive() {
        Ok(true) => {}
        Ok(false) => return log::info!("kept partial upload in progress {}", path.display()),
        Err(e) => return log::warn!("cannot lock {}: {e}", path.display()),
    }
    match std::fs::remove_file(path) {
        Ok(()) => log::info!("removed stale partial upload {}", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Creates a fresh temporary file in `dir` for `video` and locks it for as long as it is open.
/// A start-up cleanup in another process may lock and remove the file between its creation and
/// our lock; then the name no longer leads to our file, and we start over with a new name.
fn create_locked(dir: &Path, video: VideoId) -> io::Result<(PathBuf, std::fs::File)> {
    use fs4::fs_std::FileExt as _;
    use std::os::unix::fs::MetadataExt as _;
    for _ in 0..8 {
        let path = dir.join(format!("{video}.{:016x}", rand::random::<u64>()));
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        if file.try_lock_exclusive()? {
            let ours = file.metadata()?;
            match std::fs::metadata(&path) {
                Ok(named) if named.dev() == ours.dev() && named.ino() == ours.ino() => {
                    return Ok((path, file));
                }
                Ok(_) | Err(_) => {}
            }
        } else {
            // Locked by a cleanup that is about to remove it; the name is not ours any more.
            drop(file);
        }
    }
    Err(io::Error::other("temporary upload files keep being removed under us"))
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
        self.open.forget(video);
        // The poster first: once the file is gone nothing would find a poster left behind.
        self.remove_poster(video).await?;
        let path = self.path_of(video);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn media_input(&self, video: VideoId) -> io::Result<MediaInput> {
        let path = self.path_of(video);
        let checked = path.clone();
        blocking(move || std::fs::metadata(checked).map(drop)).await?;
        Ok(MediaInput::Path(path))
    }

    async fn put_poster(&self, video: VideoId, image: Bytes, _: &str) -> io::Result<()> {
        let target = self.poster_path_of(video);
        blocking(move || {
            use std::io::Write as _;
            let temp = target.with_extension(format!("{:016x}{TEMP}", rand::random::<u64>()));
            let written = (|| {
                let mut file = std::fs::File::create_new(&temp)?;
                file.write_all(&image)?;
                // Data, then the name, then the name's directory: complete or absent.
                file.sync_all()?;
                std::fs::rename(&temp, &target)?;
                if let Some(dir) = target.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            written
        })
        .await
    }

    async fn open_poster(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        Ok(self.open_reader(self.poster_path_of(video)).await?)
    }

    async fn remove_poster(&self, video: VideoId) -> io::Result<()> {
        match tokio::fs::remove_file(self.poster_path_of(video)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
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
        if let Some(reader) = self.open.get(video) {
            return Ok(reader);
        }
        let reader = self.open_reader(self.path_of(video)).await?;
        self.open.put(video, reader.clone());
        Ok(reader)
    }

    async fn begin_write(&self, video: VideoId) -> io::Result<Box<dyn BlobWriter>> {
        let dir = self.partial_dir();
        let (temp, file) = blocking(move || create_locked(&dir, video)).await?;
        let guard = TempFile(Some(temp));
        Ok(Box::new(LocalWriter {
            file: Some(file),
            target: self.path_of(video),
            guard,
            open: self.open.clone(),
            video,
            written: 0,
        }))
    }
}

/// A committed local file, shared by the reads of one response.
#[derive(Debug)]
struct LocalReader {
    file: Arc<std::fs::File>,
    len: u64,
    mode: ReadMode,
    pool: Arc<BufPool>,
}

/// Fills `buf` from `offset`; a short read is an error (committed files never shrink).
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            // Committed files never shrink; a short read means someone else touched it.
            io::Error::new(io::ErrorKind::UnexpectedEof, "video file shrank")
        } else {
            e
        }
    })
}

/// Maps `len` bytes of `file` from `offset`, faulted in up front (so the page-cache or disk
/// work happens here, on a blocking thread, not later on the executor).
#[allow(unsafe_code)]
fn map_window(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Bytes> {
    const PAGE: u64 = 4096;
    let aligned = offset - offset % PAGE;
    let lead = (offset - aligned) as usize;
    // SAFETY: the map is read-only and committed video files are immutable: they are only ever
    // created by rename and removed by unlink, never written or truncated in place, so the
    // mapped bytes cannot change or vanish while the map lives.
    let map = unsafe {
        memmap2::MmapOptions::new().offset(aligned).len(lead + len).populate().map(file)?
    };
    Ok(Bytes::from_owner(map).slice(lead..))
}

#[async_trait]
impl BlobReader for LocalReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn local_file(&self) -> Option<&std::fs::File> {
        Some(&self.file)
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = len.min(self.len.saturating_sub(offset).try_into().unwrap_or(usize::MAX));
        let file = self.file.clone();
        if self.mode == ReadMode::Mmap && len > 0 {
            return blocking(move || map_window(&file, offset, len)).await;
        }
        if len <= READ_BUF {
            // The blocking thread only reads: taking the buffer and wrapping it happen here, so
            // that thread never allocates. Each thread that allocates gets its own allocator
            // segment, which costs resident memory (a 2 MiB huge page with THP) per thread.
            let mut buf = self.pool.take();
            let buf = blocking(move || read_exact_at(&file, &mut buf[..len], offset).map(|()| buf))
                .await?;
            return Ok(BufPool::bytes(&self.pool, buf, len));
        }
        blocking(move || {
            let mut buf = BytesMut::zeroed(len);
            read_exact_at(&file, &mut buf, offset)?;
            Ok(buf.freeze())
        })
        .await
    }
}

/// Removes a temporary upload file unless it was committed (then it holds `None`).
#[derive(Debug)]
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(temp) = self.0.take() {
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
    }
}

/// A temporary local file on its way to `target`.
#[derive(Debug)]
struct LocalWriter {
    /// `None` only while a write is in flight on a blocking thread (or after it failed). Holds
    /// the temporary file's lock (see [`LocalBlobs::open`]) until it is closed.
    file: Option<std::fs::File>,
    target: PathBuf,
    guard: TempFile,
    /// The store's open files, which must not keep the file this one replaces.
    open: Arc<OpenFiles>,
    video: VideoId,
    /// Bytes appended so far.
    written: u64,
}

/// Asks the kernel to start writing `len` bytes of `file` at `offset` to disk now, without
/// waiting for it (`SYNC_FILE_RANGE_WRITE`): the disk works while the rest of the upload
/// arrives, and the commit's `fsync` finds most of the file written instead of all of it. A
/// hint: when the call fails, the `fsync` does the work as before.
#[allow(unsafe_code)]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: sync_file_range(2) takes a descriptor, a range and flags; the descriptor is
    // borrowed from an open file for the call, and no memory is passed.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn append(&mut self, data: Bytes) -> io::Result<()> {
        use std::io::Write as _;
        let mut file = self.file.take().ok_or_else(|| io::Error::other("earlier write failed"))?;
        let (offset, len) = (self.written, data.len() as u64);
        let file = blocking(move || {
            file.write_all(&data)?;
            start_writeback(&file, offset, len);
            Ok(file)
        })
        .await?;
        self.written += len;
        self.file = Some(file);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> io::Result<()> {
        let file = self.file.take().ok_or_else(|| io::Error::other("earlier write failed"))?;
        let temp = self.guard.0.clone().ok_or_else(|| io::Error::other("no temporary file"))?;
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
        self.guard.0 = None;
        self.open.forget(self.video);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    // The contract both backends share (write, commit, read, list, remove, discard) is tested
    // on both in `tests/api/blob_store.rs`; these are the local directory's own details.

    #[actix::test]
    async fn start_up_removes_stale_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(PARTIAL)).unwrap();
        std::fs::write(dir.path().join(PARTIAL).join("stale"), b"x").unwrap();
        let blobs = LocalBlobs::open(dir.path(), ReadMode::Pread).unwrap();
        assert_eq!(std::fs::read_dir(blobs.partial_dir()).unwrap().count(), 0, "stale removed");
        assert!(blobs.list().await.unwrap().is_empty(), "the partial directory is no video");
    }

    #[actix::test]
    async fn start_up_keeps_partial_files_still_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path(), ReadMode::Pread).unwrap();
        let mut w = blobs.begin_write(VideoId::new()).await.unwrap();
        w.append(Bytes::from_static(b"in progress")).await.unwrap();
        std::fs::write(blobs.partial_dir().join("crashed"), b"x").unwrap();

        // Another process starting on the same data directory (a second open takes its own
        // lock, which conflicts with the writer's just as another process's would).
        let other = LocalBlobs::open(dir.path(), ReadMode::Pread).unwrap();
        let left: Vec<_> = std::fs::read_dir(other.partial_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 1, "only the stale file is removed: {left:?}");
        assert_ne!(left[0], "crashed");

        // The upload in progress still commits.
        w.append(Bytes::from_static(b", done")).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(other.list().await.unwrap().len(), 1);
        assert_eq!(std::fs::read_dir(other.partial_dir()).unwrap().count(), 0);
    }

    #[actix::test]
    async fn mapped_reads_match_positioned_reads() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        for mode in [ReadMode::Pread, ReadMode::Mmap] {
            let file = Arc::new(std::fs::File::open(&path).unwrap());
            let r = LocalReader { file, len: data.len() as u64, mode, pool: Arc::default() };
            for (off, len) in
                [(0, 10), (4095, 2), (5000, 9000), (99_990, 100), (0, 65_536), (1000, 90_000)]
            {
                let got = r.read_at(off, len).await.unwrap();
                let end = (off as usize + len).min(data.len());
                assert_eq!(&got[..], &data[off as usize..end], "{mode:?} {off} {len}");
            }
        }
    }
}
