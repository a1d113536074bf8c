//! `FeedCache`: the first pages of the public feed, kept between requests. The feed is the
//! hottest read of the site and changes only when a video becomes ready or is deleted, so the
//! store answers it from memory until one of those writes happens here, or until `ttl` has
//! passed (writes made by another process on the same data dir become visible within `ttl`;
//! deletions are served by this process's api, so they are never late here).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{Listing, Page, Video};

/// Pages are cached only this deep into the feed; older pages are read rarely.
const MAX_ENTRIES: usize = 64;

#[derive(Debug, Default)]
struct Pages {
    /// Bumped by every invalidation; a page read before one is not stored after it.
    generation: u64,
    entries: HashMap<(u32, Option<i64>), (Instant, Listing<Video>)>,
}

#[derive(Debug)]
pub struct FeedCache {
    ttl: Duration,
    pages: Mutex<Pages>,
}

impl FeedCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, pages: Mutex::new(Pages::default()) }
    }

    /// Take this before reading the database; hand it to [`FeedCache::put`].
    pub fn generation(&self) -> u64 {
        self.pages.lock().map(|p| p.generation).unwrap_or(u64::MAX)
    }

    fn key(page: Page) -> (u32, Option<i64>) {
        (page.limit, page.after.map(|c| c.0))
    }

    pub fn get(&self, page: Page) -> Option<Listing<Video>> {
        let pages = self.pages.lock().ok()?;
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

    /// Forgets every page: called after any write that changes what the feed shows.
    pub fn invalidate(&self) {
        if let Ok(mut pages) = self.pages.lock() {
            pages.entries.clear();
            pages.generation += 1;
        }
    }
}
