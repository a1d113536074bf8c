//! `FeedCache`: the first pages of the public feed, kept between requests. The feed is the
//! hottest read of the site and changes only when a video becomes ready or is deleted, so the
//! store answers it from memory until one of those writes happens — in this process or in
//! another on the same database, which the shared [`Changes`] counter tells — or until `ttl`
//! has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::changes::{Changes, Topic};
use crate::model::{Listing, Page, Video};

/// Pages are cached only this deep into the feed; older pages are read rarely.
const MAX_ENTRIES: usize = 64;

#[derive(Debug, Default)]
struct Pages {
    /// Bumped by every invalidation; a page read before one is not stored after it.
    generation: u64,
    /// The shared counter when the entries were last known current.
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
    /// Forgets every page if the feed changed anywhere since they were read.
    fn follow(&mut self, changes: &Changes) {
        let now = changes.version(Topic::Videos);
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

    /// Take this before reading the database; hand it to [`FeedCache::put`].
    pub fn generation(&self) -> u64 {
        let Ok(mut pages) = self.pages.lock() else { return u64::MAX };
        pages.follow(&self.changes);
        pages.generation
    }

    fn key(page: Page) -> (u32, Option<i64>) {
        (page.limit, page.after.map(|c| c.0))
    }

    pub fn get(&self, page: Page) -> Option<Listing<Video>> {
        let mut pages = self.pages.lock().ok()?;
        pages.follow(&self.changes);
        let (at, listing) = pages.entries.get(&Self::key(page))?;
        (at.elapsed() < self.ttl).then(|| listing.clone())
    }

    /// Stores a page read from the database, unless a write invalidated the cache since
    /// `generation` was taken (the page may predate that write).
    pub fn put(&self, page: Page, listing: &Listing<Video>, generation: u64) {
        let Ok(mut pages) = self.pages.lock() else { return };
        // A change anywhere since `generation` was taken moves it on here.
        pages.follow(&self.changes);
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
    /// that changes what the feed shows, once it has committed and before its reply.
    pub fn invalidate(&self) {
        self.changes.bump(Topic::Videos);
        if let Ok(mut pages) = self.pages.lock() {
            pages.follow(&self.changes);
        }
    }
}
