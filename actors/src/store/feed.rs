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
use std::sync::Mutex;
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
        Self { ttl, pages: Mutex::new(Pages::default()), changes }
    }

    /// The feed's current version, as every process on the database sees it.
    pub fn version(&self, db: &mut Db<'_>) -> Result<u64, StoreError> {
        if !db.is_postgres() {
            return Ok(self.changes.version(Topic::Videos));
        }
        let v: i64 =
            db.query_one("SELECT version FROM change_counters WHERE topic = 1", &[], |r| r.get(0))?;
        Ok(v as u64)
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
