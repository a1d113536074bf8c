//! The stream service: Range playback and streaming upload behind the StreamLimiter.

use actix_web::web;

/// The stream's routes (health and metrics are added by the server builder).
pub fn routes(_cfg: &mut web::ServiceConfig) {}
