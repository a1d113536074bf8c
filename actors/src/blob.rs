//! Video files behind a small trait: a local directory now, an S3-compatible store later.
//! Files are immutable once committed, so readers never see a partial file.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::model::VideoId;

/// Where committed video files live.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Removes a video's file; `Ok(false)` when there was none (already removed).
    async fn remove(&self, video: VideoId) -> io::Result<bool>;

    /// Every video id that has a committed file (for reconciliation with the database).
    async fn list(&self) -> io::Result<Vec<VideoId>>;
}

/// Files in one local directory: `<root>/<video-id>`, temporary files under `<root>/.partial/`.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Uses `root` (created when missing). Blocking: call at start-up.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join(".partial"))?;
        Ok(Self { root })
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
        self.root.join(".partial")
    }
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
}
