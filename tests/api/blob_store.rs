//! The `BlobStore` contract, one suite run against both backends: a local directory and a real
//! Garage. Each test is written once over `&dyn BlobStore` plus a way to count what an
//! unfinished write left behind (temporary files, or unfinished multipart uploads).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::blob::{BlobStore, LocalBlobs, READ_BUF, ReadMode, S3Blobs};
use actors::model::VideoId;
use bytes::Bytes;
use futures_util::TryStreamExt as _;

use crate::garage_support::Garage;

/// One backend under test, and what it needs kept alive.
enum Backend {
    Local { blobs: Arc<LocalBlobs>, _dir: tempfile::TempDir },
    S3 { blobs: Arc<S3Blobs>, _garage: Garage },
}

impl Backend {
    fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path().join("videos"), ReadMode::Pread).unwrap();
        Backend::Local { blobs: Arc::new(blobs), _dir: dir }
    }

    async fn s3() -> Option<Self> {
        let garage = Garage::start().await?;
        Some(Backend::S3 { blobs: Arc::new(garage.blobs()), _garage: garage })
    }

    fn store(&self) -> Arc<dyn BlobStore> {
        match self {
            Backend::Local { blobs, .. } => blobs.clone(),
            Backend::S3 { blobs, .. } => blobs.clone(),
        }
    }

    /// What unfinished writes left behind right now.
    async fn leftovers(&self) -> usize {
        match self {
            Backend::Local { blobs, .. } => std::fs::read_dir(blobs.partial_dir()).unwrap().count(),
            Backend::S3 { blobs, .. } => blobs.list_uploads().await.unwrap().len(),
        }
    }

    /// Waits (a dropped writer cleans up in the background) until nothing is left behind.
    async fn assert_no_leftovers(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.leftovers().await > 0 {
            assert!(Instant::now() < deadline, "an unfinished write was left behind");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs `suite` against the local backend, then against Garage (when it is installed).
macro_rules! both_backends {
    ($local:ident, $s3:ident, $suite:ident) => {
        #[actix::test]
        async fn $local() {
            $suite(&Backend::local()).await;
        }

        #[actix::test]
        async fn $s3() {
            let Some(backend) = Backend::s3().await else { return };
            $suite(&backend).await;
        }
    };
}

both_backends!(
    write_commit_read_remove_local,
    write_commit_read_remove_s3,
    write_commit_read_remove
);
both_backends!(
    dropped_writer_leaves_nothing_local,
    dropped_writer_leaves_nothing_s3,
    dropped_writer
);
both_backends!(commit_replaces_a_leftover_local, commit_replaces_a_leftover_s3, replace_leftover);
both_backends!(empty_and_edge_reads_local, empty_and_edge_reads_s3, edge_reads);
both_backends!(list_names_every_committed_file_local, list_names_every_committed_file_s3, listing);
both_backends!(streams_ranges_in_order_local, streams_ranges_in_order_s3, streamed_ranges);

fn patterned(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed)) as u8).collect()
}

async fn write(store: &dyn BlobStore, video: VideoId, chunks: &[&[u8]]) {
    let mut w = store.begin_write(video).await.unwrap();
    for c in chunks {
        w.append(Bytes::copy_from_slice(c)).await.unwrap();
    }
    w.commit().await.unwrap();
}

async fn write_commit_read_remove(backend: &Backend) {
    let store = backend.store();
    let id = VideoId::new();
    let mut w = store.begin_write(id).await.unwrap();
    w.append(Bytes::from_static(b"hello ")).await.unwrap();
    w.append(Bytes::from_static(b"world")).await.unwrap();
    let err = store.open(id).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "invisible before commit: {err}");
    assert!(store.list().await.unwrap().is_empty(), "not listed before commit");
    w.commit().await.unwrap();

    let r = store.open(id).await.unwrap();
    assert_eq!(r.len(), 11);
    assert_eq!(&r.read_at(0, 5).await.unwrap()[..], b"hello");
    assert_eq!(&r.read_at(6, 100).await.unwrap()[..], b"world", "short only at the end");
    assert_eq!(store.list().await.unwrap(), vec![id]);
    backend.assert_no_leftovers().await;

    assert!(store.remove(id).await.unwrap(), "removed");
    assert!(!store.remove(id).await.unwrap(), "a missing file counts as removed");
    assert_eq!(store.open(id).await.unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(store.list().await.unwrap().is_empty());
}

async fn dropped_writer(backend: &Backend) {
    let store = backend.store();
    let id = VideoId::new();
    let mut w = store.begin_write(id).await.unwrap();
    // Past one 8 MiB part, so that on S3 a multipart upload is under way when it is dropped.
    for _ in 0..9 {
        w.append(Bytes::from(patterned(1 << 20, 1))).await.unwrap();
    }
    assert!(backend.leftovers().await > 0, "the unfinished write is somewhere");
    drop(w);
    backend.assert_no_leftovers().await;
    assert_eq!(store.open(id).await.unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(store.list().await.unwrap().is_empty());
}

/// A video that never became ready may have a file from an earlier attempt; a new commit
/// replaces it, and a reader of the old file never gets bytes of the new one.
async fn replace_leftover(backend: &Backend) {
    let store = backend.store();
    let id = VideoId::new();
    let old = patterned(300_000, 2);
    write(&*store, id, &[&old]).await;
    let old_reader = store.open(id).await.unwrap();

    let new = patterned(200_000, 3);
    write(&*store, id, &[&new[..100_000], &new[100_000..]]).await;
    let r = store.open(id).await.unwrap();
    assert_eq!(r.len(), new.len() as u64);
    assert_eq!(&r.read_at(0, new.len()).await.unwrap()[..], &new[..]);
    assert_eq!(store.list().await.unwrap(), vec![id]);

    // The old reader either still reads the old file (a local file lives on while open) or
    // fails (an object is pinned to its ETag); it never mixes in the new bytes.
    match old_reader.read_at(1000, 5000).await {
        Ok(bytes) => assert_eq!(&bytes[..], &old[1000..6000]),
        Err(e) => eprintln!("the old reader fails cleanly: {e}"),
    }
}

async fn edge_reads(backend: &Backend) {
    let store = backend.store();
    let empty = VideoId::new();
    write(&*store, empty, &[]).await;
    let r = store.open(empty).await.unwrap();
    assert!(r.is_empty());
    assert!(r.read_at(0, 10).await.unwrap().is_empty());

    let id = VideoId::new();
    let data = patterned(70_000, 4);
    write(&*store, id, &[&data[..1], &[], &data[1..]]).await;
    let r = store.open(id).await.unwrap();
    assert_eq!(&r.read_at(69_999, 10).await.unwrap()[..], &data[69_999..]);
    assert!(r.read_at(70_000, 10).await.unwrap().is_empty(), "at the end");
    assert!(r.read_at(1 << 40, 10).await.unwrap().is_empty(), "past the end");
    assert!(r.read_at(5, 0).await.unwrap().is_empty(), "nothing asked");
    assert_eq!(&r.read_at(0, 70_000).await.unwrap()[..], &data[..], "the whole file");
}

async fn listing(backend: &Backend) {
    let store = backend.store();
    let mut ids: Vec<VideoId> = (0..5).map(|_| VideoId::new()).collect();
    for (i, id) in ids.iter().enumerate() {
        write(&*store, *id, &[format!("file {i}").as_bytes()]).await;
    }
    let mut listed = store.list().await.unwrap();
    listed.sort_by_key(|v| v.to_string());
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(listed, ids);
}

async fn streamed_ranges(backend: &Backend) {
    let store = backend.store();
    let id = VideoId::new();
    let data = patterned(3 * READ_BUF + 1234, 5);
    write(&*store, id, &[&data]).await;
    let r = store.open(id).await.unwrap();
    let size = data.len() as u64;
    let buf = READ_BUF as u64;
    for (off, len) in
        [(0, size), (1, 10), (buf - 1, buf + 2), (size - 5, 100), (size, 10), (7, 0), (0, u64::MAX)]
    {
        let chunks: Vec<Bytes> = r.clone().read_stream(off, len).try_collect().await.unwrap();
        let end = off.saturating_add(len).min(size) as usize;
        assert!(chunks.iter().all(|c| !c.is_empty()), "no empty chunk at {off}+{len}");
        assert!(chunks.concat() == data[off as usize..end], "bytes at {off}+{len}");
    }
}
