//! The web service: maud pages, `/api` forwarding and the stream proxy, on one origin.

use actix_web::web;

/// The web service's routes (health and metrics are added by the server builder).
pub fn routes(_cfg: &mut web::ServiceConfig) {}
