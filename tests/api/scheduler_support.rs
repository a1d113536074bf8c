//! What the scheduler tests share: a store and blob directory without a node, ready videos
//! with files and comments, and a blob store that counts and slows its removals.

use crate::db_support::TestDb;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use actors::blob::{BlobReader, BlobStore, BlobWriter, Blobs, LocalBlobs, MediaInput};
use actors::media::{MediaTools, ProbeLimits};
use actors::model::{
    CommentText, JobKind, JobRecord, PwdHash, User, UserId, UserName, VideoFile, VideoId,
};
use actors::scheduler::MediaJobs;
use actors::store::{
    CreateComment, CreateVideo, DeleteVideo, InsertUser, ListJobs, MarkReady, Remnants,
    VideoRemnants, VideoStore,
};
use time::OffsetDateTime;

/// A store over a temporary database and a temporary video directory.
pub struct Fixture {
    /// The database; kept so that it lives as long as the test.
    pub db: TestDb,
    _dir: tempfile::TempDir,
    pub store: Addr<VideoStore>,
    pub blobs: Arc<LocalBlobs>,
    pub user: User,
}

impl Fixture {
    /// Over `db`.
    pub async fn on(db: TestDb) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = VideoStore::start(db.pool(6), 2);
        let blobs = Arc::new(
            LocalBlobs::open(dir.path().join("videos"), actors::blob::ReadMode::Pread)
                .expect("blob dir"),
        );
        let user = store
            .send(InsertUser {
                name: "owner".parse::<UserName>().expect("valid"),
                // Nobody signs in here: any PHC-shaped string does.
                pwd_hash: PwdHash::from_phc("$argon2id$unused".into()),
            })
            .await
            .expect("store reachable")
            .expect("user created");
        Fixture { db, _dir: dir, store, blobs, user }
    }

    /// A ready video with a file and `comments` comments.
    pub async fn ready_video(&self, comments: usize) -> VideoId {
        let video = self
            .store
            .send(CreateVideo { author: self.user.clone(), name: "clip".into() })
            .await
            .expect("store reachable")
            .expect("video created")
            .id;
        make_ready(&self.store, &self.blobs, self.user.id, video).await;
        for i in 0..comments {
            self.store
                .send(CreateComment {
                    video,
                    author: self.user.clone(),
                    content: format!("comment {i}").parse::<CommentText>().expect("valid"),
                })
                .await
                .expect("store reachable")
                .expect("comment created");
        }
        video
    }

    /// A ready video with a file and two comments, deleted the way the api deletes it.
    pub async fn deleted_video(&self) -> VideoId {
        let video = self.ready_video(2).await;
        self.store
            .send(DeleteVideo { id: video, owner: self.user.id })
            .await
            .expect("store reachable")
            .expect("video deleted");
        video
    }

    /// What probe jobs run with over this fixture: its files, ffmpeg from `PATH`.
    pub fn media_jobs(&self) -> MediaJobs {
        MediaJobs {
            blobs: Blobs::files_only(self.blobs.clone()),
            tools: MediaTools::default(),
            limits: ProbeLimits::default(),
        }
    }

    pub async fn records(&self) -> Vec<JobRecord> {
        records(&self.store).await
    }

    pub async fn remnants(&self, video: VideoId) -> Remnants {
        remnants(&self.store, video).await
    }
}

/// Puts a small file in place for `video` and marks it ready, as an upload would.
pub async fn make_ready(
    store: &Addr<VideoStore>,
    blobs: &LocalBlobs,
    owner: UserId,
    video: VideoId,
) {
    std::fs::write(blobs.path_of(video), b"\x00\x00\x00\x18ftypmp42 test clip").expect("write");
    store
        .send(MarkReady {
            id: video,
            owner,
            file: VideoFile {
                size: 24,
                content_type: "video/mp4".into(),
                sha256: "0".repeat(64),
                uploaded_at: OffsetDateTime::now_utc(),
                location: actors::model::BlobLocation::File,
            },
        })
        .await
        .expect("store reachable")
        .expect("marked ready");
}

pub async fn records(store: &Addr<VideoStore>) -> Vec<JobRecord> {
    store
        .send(ListJobs { kind: Some(JobKind::RemoveVideo) })
        .await
        .expect("store reachable")
        .expect("listing")
}

pub async fn remnants(store: &Addr<VideoStore>, video: VideoId) -> Remnants {
    store.send(VideoRemnants { video }).await.expect("store reachable").expect("remnants")
}

/// Nothing of the video is left: no file, no row, no comments, no record.
pub async fn assert_gone(store: &Addr<VideoStore>, blobs: &LocalBlobs, video: VideoId) {
    assert!(!blobs.path_of(video).exists(), "the file of {video} is still there");
    let left = remnants(store, video).await;
    assert_eq!(left, Remnants { row: false, comments: 0, record: false }, "{video}");
}

/// Polls `check` every 50 ms for up to `within`; for waiting on a real timer or process,
/// never for something a test could drive with a message.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Local files whose removals are slowed down and counted: how often each video was removed
/// and how many removals ran at once at most.
#[derive(Debug)]
pub struct CountingBlobs {
    pub inner: LocalBlobs,
    pub delay: Duration,
    pub calls: Mutex<HashMap<VideoId, u32>>,
    running: AtomicUsize,
    pub peak: AtomicUsize,
}

impl CountingBlobs {
    pub fn new(inner: LocalBlobs, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            calls: Mutex::default(),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    pub fn calls_of(&self, video: VideoId) -> u32 {
        self.calls.lock().expect("not poisoned").get(&video).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl BlobStore for CountingBlobs {
    async fn remove(&self, video: VideoId) -> io::Result<bool> {
        *self.calls.lock().expect("not poisoned").entry(video).or_default() += 1;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let r = self.inner.remove(video).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        r
    }

    async fn list(&self) -> io::Result<Vec<VideoId>> {
        self.inner.list().await
    }

    async fn open(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        self.inner.open(video).await
    }

    async fn begin_write(&self, video: VideoId) -> io::Result<Box<dyn BlobWriter>> {
        self.inner.begin_write(video).await
    }

    async fn media_input(&self, video: VideoId) -> io::Result<MediaInput> {
        self.inner.media_input(video).await
    }

    async fn put_poster(&self, video: VideoId, image: bytes::Bytes, kind: &str) -> io::Result<()> {
        self.inner.put_poster(video, image, kind).await
    }

    async fn open_poster(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        self.inner.open_poster(video).await
    }

    async fn remove_poster(&self, video: VideoId) -> io::Result<()> {
        self.inner.remove_poster(video).await
    }
}
