//! Waking the scheduler after a delete: by message when it runs in this process, by the
//! internal REST call when it runs in another. Never blocks or fails the user's 204.

use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler, Message, WrapFuture as _,
};
use actors::model::VideoId;
use actors::scheduler::{Dispatcher, Wake};

use super::WakeScheduler;

/// How long a remote wake may take; the timer covers a slow or absent scheduler anyway.
const REMOTE_WAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning per this many seconds when the remote scheduler cannot be reached: a
/// stopped scheduler must not flood the log with one line per delete.
const WARN_EVERY_SECS: i64 = 30;
/// Remote wakes under way at once at most; more would only repeat what those say.
const MAX_WAKES_IN_FLIGHT: usize = 8;

/// The dispatcher in this process.
#[derive(Debug, Clone)]
pub struct LocalWake(pub Addr<Dispatcher>);

impl WakeScheduler for LocalWake {
    fn wake(&self, video: VideoId) {
        // `try_send` never waits: a full mailbox already holds wakes, which are coalesced.
        if let Err(e) = self.0.try_send(Wake { video }) {
            log::debug!("wake for {video} dropped ({e}); the timer will pick it up");
        }
    }
}

/// A scheduler in another process, reached at `--scheduler-url`. A handle to the
/// [`WakeSender`] actor that owns the HTTP client: `wake` only drops a message in its mailbox.
#[derive(Debug, Clone)]
pub struct RemoteWake(Addr<WakeSender>);

impl RemoteWake {
    /// Starts the sender on the current arbiter; call it inside the actix system (start-up).
    pub fn start(scheduler_url: &str, token: Arc<str>) -> Self {
        RemoteWake(
            WakeSender {
                client: awc::Client::builder().timeout(REMOTE_WAKE_TIMEOUT).finish(),
                base: scheduler_url.trim_end_matches('/').into(),
                token,
                in_flight: 0,
                last_warned: None,
            }
            .start(),
        )
    }
}

impl WakeScheduler for RemoteWake {
    fn wake(&self, video: VideoId) {
        // Never waits: a full mailbox holds wakes enough, and the timer is the safety net.
        if let Err(e) = self.0.try_send(SendWake { video }) {
            log::debug!("remote wake for {video} dropped ({e}); the timer will pick it up");
        }
    }
}

/// Sends wakes to the remote scheduler's internal API. It owns its HTTP client: awc's is not
/// `Send`, so it lives on the one arbiter this actor runs on, and its connection pool stays
/// warm across wakes. Requests run concurrently, at most [`MAX_WAKES_IN_FLIGHT`] at once.
pub struct WakeSender {
    client: awc::Client,
    base: Arc<str>,
    token: Arc<str>,
    in_flight: usize,
    /// When the last "cannot reach" warning was logged (unix seconds).
    last_warned: Option<i64>,
}

/// Wake the remote scheduler for a deletion just queued.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct SendWake {
    video: VideoId,
}

impl Actor for WakeSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Room for a burst of deletes; past it `try_send` drops wakes, which lose nothing.
        ctx.set_mailbox_capacity(256);
    }
}

impl WakeSender {
    fn warn(&mut self, video: VideoId, why: &str) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if self.last_warned.is_some_and(|last| now.saturating_sub(last) < WARN_EVERY_SECS) {
            return;
        }
        self.last_warned = Some(now);
        log::warn!(
            "could not wake the scheduler at {} for {video}: {why}; its timer will pick the \
             deletion up",
            self.base
        );
    }
}

impl Handler<SendWake> for WakeSender {
    type Result = ();

    fn handle(&mut self, msg: SendWake, ctx: &mut Self::Context) {
        let video = msg.video;
        if self.in_flight >= MAX_WAKES_IN_FLIGHT {
            // A wake sent after this record was queued is still on its way, and any pass it
            // starts sees the record: this one would add nothing.
            log::debug!("remote wake for {video} skipped: {} in flight", self.in_flight);
            return;
        }
        self.in_flight += 1;
        let request = self
            .client
            .post(format!("{}/video-delete-record/{video}", self.base))
            .bearer_auth(&self.token);
        // Spawned, not awaited in the handler: the mailbox keeps taking wakes meanwhile.
        let sending = async move { request.send().await.map(|res| res.status()) }
            .into_actor(self)
            .map(move |sent, act, _| {
                act.in_flight -= 1;
                match sent {
                    Ok(status) if status.is_success() => {}
                    Ok(status) => act.warn(video, &format!("it answered {status}")),
                    Err(e) => act.warn(video, &e.to_string()),
                }
            });
        ctx.spawn(sending);
    }
}
