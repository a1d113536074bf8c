//! `FeedCache`: the first pages of the public feed, kept between requests. The feed is the
//! hottest read of the site and changes only when a video becomes ready or is deleted, so the
//! store answers it from memory until one of those writes happens — in this process or in
//! another on the same database — or until `ttl` has passed.
//!
//! Which version of the feed is current comes from where the writers share it: on SQLite the
//! [`Changes`] counter mapped by every process on the data dir (one memory load per read); on
//! PostgreSQL, whose nodes may be on several hosts, the `change_counters` row that each such
//! write bumps in its own transaction, read with one primary-key look-up before the cache is
//! consulted. Either way a page read before a change is never served after it.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Db;
use crate::changes::{Changes, Topic};
use crate::error::StoreError;
use crate::model::{Listing, Page, Video};

/// Pages are cached only this deep into the feed; older pages are read rarely.
const MAX_ENTRIES: usize = 64;

#[derive(Debug, Default)]
struct Pages {
    /// Bumped by every invalidation; a page read before one is not stored after it.
    generation: u64,
    /// The feed's version when the entries were last known current.
    seen: u64,
    entries: HashMap<(u32, Option<i64>), (Instant, Listing<Video>)>,
}

#[derive(Debug)]
pub struct FeedCache {
    ttl: Duration,
    pages: Mutex<Pages>,
    changes: Changes,
    /// PostgreSQL's version reads, shared by the store threads that want one at once.
    reads: VersionReads,
}

/// One read of a change counter on PostgreSQL (the feed's version, the count of logouts)
/// answers every request that arrived before it
/// was sent: a request may not be answered from a version read before it arrived (a deletion
/// committed in between would be missed), but any read sent after it arrived is as good as its
/// own. So a store thread that finds a read in flight waits for it and then for the next one,
/// which one of the waiting threads sends; under load most requests share a round trip.
#[derive(Debug, Default)]
pub(super) struct VersionReads {
    state: Mutex<Reads>,
    answered: Condvar,
}

#[derive(Debug, Default)]
struct Reads {
    /// Reads sent so far; the one in flight, if any, is the last.
    sent: u64,
    /// The last read answered, and its version.
    done: u64,
    version: u64,
    in_flight: bool,
}

impl VersionReads {
    /// The feed's version as of a read sent after this call began; `read` is the query.
    pub(super) fn current(
        &self,
        read: impl FnOnce() -> Result<u64, StoreError>,
    ) -> Result<u64, StoreError> {
        let poisoned = |_| StoreError::Internal("the feed's version lock is poisoned".into());
        let mut reads = self.state.lock().map_err(poisoned)?;
        let needed = reads.sent + 1;
        loop {
            if reads.done >= needed {
                return Ok(reads.version);
            }
            if !reads.in_flight {
                reads.in_flight = true;
                reads.sent += 1;
                let mine = reads.sent;
                drop(reads);
                let answer = read();
                let mut reads = self.state.lock().map_err(poisoned)?;
                reads.in_flight = false;
                if let Ok(version) = answer {
                    (reads.done, reads.version) = (mine, version);
                }
                self.answered.notify_all();
                return answer;
            }
            reads = self.answered.wait(reads).map_err(poisoned)?;
        }
    }
}

impl Pages {
    /// Forgets every page if the feed changed anywhere since they were read: `now` is its
    /// current version.
    fn follow(&mut self, now: u64) {
        if now != self.seen {
            self.entries.clear();
            self.generation += 1;
            self.seen = now;
        }
    }
}

impl FeedCache {
    pub fn new(ttl: Duration, changes: Changes) -> Self {
        Self { ttl, pages: Mutex::new(Pages::default()), changes, reads: VersionReads::default() }
    }

    /// The feed's current version, as every process on the database sees it.
    pub fn version(&self, db: &mut Db<'_>) -> Result<u64, StoreError> {
        if !db.is_postgres() {
            return Ok(self.changes.version(Topic::Videos));
        }
        self.reads.current(|| {
            let v: i64 =
                db.query_one("SELECT version FROM change_counters WHERE topic = 1", &[], |r| {
                    r.get(0)
                })?;
            Ok(v as u64)
        })
    }

    /// Take this, with the feed's `version`, before reading the database; hand it to
    /// [`FeedCache::put`].
    pub fn generation(&self, version: u64) -> u64 {
        let Ok(mut pages) = self.pages.lock() else { return u64::MAX };
        pages.follow(version);
        pages.generation
    }

    fn key(page: Page) -> (u32, Option<i64>) {
        (page.limit, page.after.map(|c| c.0))
    }

    pub fn get(&self, page: Page, version: u64) -> Option<Listing<Video>> {
        let mut pages = self.pages.lock().ok()?;
        pages.follow(version);
        let (at, listing) = pages.entries.get(&Self::key(page))?;
        (at.elapsed() < self.ttl).then(|| listing.clone())
    }

    /// Stores a page read from the database, unless a write invalidated the cache since
    /// `generation` was taken (the page may predate that write).
    pub fn put(&self, page: Page, listing: &Listing<Video>, generation: u64) {
        let Ok(mut pages) = self.pages.lock() else { return };
        if pages.generation != generation {
            return;
        }
        if pages.entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            pages.entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if pages.entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        pages.entries.insert(Self::key(page), (Instant::now(), listing.clone()));
    }

    /// Forgets every page, here and in every process on the database: called after any write
    /// that changes what the feed shows, once it has committed and before its reply. (On
    /// PostgreSQL the write itself told the other nodes, see [`feed_changed`].)
    pub fn invalidate(&self) {
        self.changes.bump(Topic::Videos);
        if let Ok(mut pages) = self.pages.lock() {
            pages.entries.clear();
            pages.generation += 1;
        }
    }
}

/// Tells every node's feed cache, inside the transaction of a write that changes the feed,
/// that the feed changed: on PostgreSQL by bumping the feed's version in the same commit. On
/// SQLite the shared counter is bumped after the commit instead ([`FeedCache::invalidate`]).
pub(super) fn feed_changed(db: &mut Db<'_>) -> Result<(), StoreError> {
    if db.is_postgres() {
        db.execute("UPDATE change_counters SET version = version + 1 WHERE topic = 1", &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};

    use super::*;

    /// Threads asking at once share reads, and none is answered by a read sent before it
    /// asked: each thread bumps the version before asking, so it must see its own bump.
    #[test]
    fn shared_version_reads_are_never_older_than_the_request() {
        let reads = Arc::new(VersionReads::default());
        let version = Arc::new(AtomicU64::new(0));
        let queries = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (reads, version, queries, start) =
                    (reads.clone(), version.clone(), queries.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..200 {
                        let mine = version.fetch_add(1, Ordering::SeqCst) + 1;
                        let seen = reads
                            .current(|| {
                                // The snapshot is taken when the read is sent.
                                queries.fetch_add(1, Ordering::SeqCst);
                                let v = version.load(Ordering::SeqCst);
                                std::thread::sleep(Duration::from_micros(50));
                                Ok(v)
                            })
                            .unwrap();
                        assert!(seen >= mine, "a read older than the request: {seen} < {mine}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let queries = queries.load(Ordering::SeqCst);
        assert!(queries < 1600, "{queries} reads for 1600 requests: none shared");
    }
}
