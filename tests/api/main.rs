//! The one integration-test binary: every test starts a real node on 127.0.0.1:0 over a
//! temporary data directory, built by the same `Node::start` production uses.

mod helpers;

mod api_auth;
mod api_comments;
mod api_users;
mod api_videos;
mod scheduler_actors;
mod scheduler_http;
mod scheduler_process;
mod scheduler_support;
mod store_actors;
