//! Change counters shared by every process on one data dir, so that a cache in one process
//! learns at once of a write made by another: a logout (the session caches) or a video that
//! became ready or was deleted (the feed caches). API.md, "Guarantees across nodes": a logout
//! anywhere is a 401 everywhere at the next request, and a deleted video is gone from every
//! node's answers from its 204 on.
//!
//! A writer commits to the database, then bumps the counter, then replies; a cached read first
//! loads the counter and trusts its entry only if the counter has not moved since the entry was
//! read from the database. So from the reply on, every process sees the bump.
//!
//! The counters are a few bytes of `<database>-changes`, beside the SQLite file (as its `-shm`
//! is), mapped shared into every process, read
//! and bumped with atomic instructions: a check costs one memory load, not a database round
//! trip on every cached request. That reaches exactly as far as SQLite does (one host, one file
//! system); nodes on several hosts share their counters through Redis instead.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A session was revoked.
    Sessions = 0,
    /// A video became ready or was deleted: the feed changed.
    Videos = 1,
}

/// Bytes of the counter file: one page, of which the first counters are used.
const FILE_LEN: u64 = 4096;

/// The counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct Changes {
    counters: Arc<Counters>,
}

#[derive(Debug)]
enum Counters {
    /// Shared with the other processes on the data dir.
    Mapped(memmap2::MmapRaw),
    /// This process only (tests and tools without a data dir).
    Local([AtomicU64; 2]),
}

impl Changes {
    /// Maps the counter file at `path`, creating it (owner-only) when missing. Blocking.
    pub fn open(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        // Processes starting together may both extend it: to the same length, with zeros.
        if file.metadata()?.len() < FILE_LEN {
            file.set_len(FILE_LEN)?;
        }
        let map = memmap2::MmapOptions::new().len(FILE_LEN as usize).map_raw(&file)?;
        Ok(Self { counters: Arc::new(Counters::Mapped(map)) })
    }

    /// Counters seen by this process only.
    pub fn in_process() -> Self {
        Self { counters: Arc::new(Counters::Local([AtomicU64::new(0), AtomicU64::new(0)])) }
    }

    /// The counter of `topic` now.
    pub fn version(&self, topic: Topic) -> u64 {
        self.counter(topic).load(Ordering::SeqCst)
    }

    /// Records a change of `topic`, after its write committed and before its reply.
    pub fn bump(&self, topic: Topic) {
        self.counter(topic).fetch_add(1, Ordering::SeqCst);
    }

    fn counter(&self, topic: Topic) -> &AtomicU64 {
        let index = topic as usize;
        match &*self.counters {
            Counters::Local(counters) => &counters[index],
            Counters::Mapped(map) => {
                // SAFETY: the map is `FILE_LEN` bytes long and page-aligned, so the 8 bytes at
                // `8 * index` (index ≤ 1) are in bounds and aligned for an `AtomicU64`; it lives
                // as long as `self.counters`, which the returned reference borrows. Other
                // processes touch those bytes only through atomic instructions too, and nothing
                // ever shrinks the file (it is only ever extended, to the same length).
                #[allow(unsafe_code)]
                unsafe {
                    &*map.as_mut_ptr().add(8 * index).cast::<AtomicU64>()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_maps_of_one_file_see_each_others_bumps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes");
        let a = Changes::open(&path).unwrap();
        let b = Changes::open(&path).unwrap();
        assert_eq!(b.version(Topic::Sessions), 0);
        a.bump(Topic::Sessions);
        assert_eq!(b.version(Topic::Sessions), 1);
        assert_eq!(b.version(Topic::Videos), 0, "topics are apart");
        b.bump(Topic::Videos);
        assert_eq!(a.version(Topic::Videos), 1);
        // Reopening keeps the counts (a restarted process must not go back in time).
        drop((a, b));
        assert_eq!(Changes::open(&path).unwrap().version(Topic::Sessions), 1);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn in_process_counters_count() {
        let c = Changes::in_process();
        c.bump(Topic::Videos);
        c.clone().bump(Topic::Videos);
        assert_eq!(c.version(Topic::Videos), 2);
        assert_eq!(c.version(Topic::Sessions), 0);
    }
}
