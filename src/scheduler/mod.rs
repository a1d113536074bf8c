//! The scheduler service: the internal deletion-queue API, the timer and the
//! Dispatcher → Executor runner, and how the api wakes it.

mod http;
mod runner;
mod wake;

use actix_web::web;
use actors::model::VideoId;

pub use http::SchedulerState;
pub use runner::{Runner, RunnerError, node_identity};
pub use wake::{LocalWake, RemoteWake};

/// Tells a scheduler that a job was queued, so it runs now rather than at the next tick.
/// Best effort by design: the queue row is already durable and the timer is the safety net.
pub trait WakeScheduler: Send + Sync + std::fmt::Debug + 'static {
    fn wake(&self, video: VideoId);
}

/// No wake: the scheduler's next tick finds the job (`--delete-every-secs`). For a job queued
/// where no message reaches the scheduler directly.
#[derive(Debug)]
pub struct NextTick;

impl WakeScheduler for NextTick {
    fn wake(&self, _: VideoId) {}
}

/// The scheduler's routes (health and metrics are added by the server builder); needs a
/// [`SchedulerState`] as app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/video-delete-record").get(http::list))
        .service(web::resource("/jobs").get(http::jobs))
        .service(web::resource("/video-delete-record/{vid}").post(http::queue));
}
