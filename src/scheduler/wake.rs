//! Waking the scheduler after a delete: by message when it runs in this process, by the
//! internal REST call when it runs in another. Never blocks or fails the user's 204.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use actix::Addr;
use actors::model::VideoId;
use actors::scheduler::{Dispatcher, Wake};

use super::WakeScheduler;

/// How long a remote wake may take; the timer covers a slow or absent scheduler anyway.
const REMOTE_WAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning per this many seconds when the remote scheduler cannot be reached: a
/// stopped scheduler must not flood the log with one line per delete.
const WARN_EVERY_SECS: i64 = 30;

/// The dispatcher in this process.
#[derive(Clone)]
pub struct LocalWake(pub Addr<Dispatcher>);

impl WakeScheduler for LocalWake {
    fn wake(&self, video: VideoId) {
        // `try_send` never waits: a full mailbox already holds wakes, which are coalesced.
        if let Err(e) = self.0.try_send(Wake { video }) {
            log::debug!("wake for {video} dropped ({e}); the timer will pick it up");
        }
    }
}

/// A scheduler in another process, reached at `--scheduler-url`.
#[derive(Clone)]
pub struct RemoteWake {
    base: Arc<str>,
    token: Arc<str>,
    last_warned: Arc<AtomicI64>,
}

impl RemoteWake {
    pub fn new(scheduler_url: &str, token: Arc<str>) -> Self {
        Self {
            base: scheduler_url.trim_end_matches('/').into(),
            token,
            last_warned: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    fn warn(&self, video: VideoId, why: &str) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let last = self.last_warned.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_SECS
            && self
                .last_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "could not wake the scheduler at {} for {video}: {why}; its timer will pick \
                 the deletion up",
                self.base
            );
        }
    }
}

thread_local! {
    // awc's client is not Send; one per worker thread keeps its connection pool warm.
    static CLIENT: awc::Client = awc::Client::builder().timeout(REMOTE_WAKE_TIMEOUT).finish();
}

impl WakeScheduler for RemoteWake {
    fn wake(&self, video: VideoId) {
        let this = self.clone();
        let request = CLIENT.with(|c| {
            c.post(format!("{}/video-delete-record/{video}", this.base)).bearer_auth(&this.token)
        });
        // Called from a request handler, so on an actix worker where spawning is possible;
        // the 204 does not wait for the scheduler.
        actix_web::rt::spawn(async move {
            match request.send().await {
                Ok(res) if res.status().is_success() => {}
                Ok(res) => this.warn(video, &format!("it answered {}", res.status())),
                Err(e) => this.warn(video, &e.to_string()),
            }
        });
    }
}
