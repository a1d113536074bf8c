//! The one integration-test binary: every test starts a real node on 127.0.0.1:0 over a
//! temporary data directory, built by the same `Node::start` production uses.

// Tests state their expectations with unwrap; a failure is the test's answer.
#![allow(clippy::unwrap_used)]

mod cluster_support;
#[macro_use]
mod db_support;
mod direct_support;
mod garage_support;
#[macro_use]
mod helpers;
mod media_support;
mod pg_support;
mod process_support;
mod redis_support;

mod api_accounts;
mod api_auth;
mod api_comments;
mod api_users;
mod api_videos;
mod blob_s3;
mod blob_store;
mod browser;
mod browser_s3;
mod browser_support;
mod cluster_deploy;
mod cluster_load;
mod media_jobs;
mod move_to_s3;
mod postgres_node;
mod redis_sessions;
mod s3_secrets;
mod scheduler_actors;
mod scheduler_claims;
mod scheduler_http;
mod scheduler_process;
mod scheduler_s3;
mod scheduler_support;
mod security;
mod startup_flags;
mod store_accounts;
mod store_actors;
mod stream_direct;
mod stream_direct_reconcile;
mod stream_front;
mod stream_hostile;
mod stream_limiter;
mod stream_playback;
mod stream_redirect;
mod stream_support;
mod stream_upload;
mod two_processes;
mod web_direct;
mod web_forward;
mod web_pages;
mod web_proxy;
mod web_support;
mod web_upload;
