//! douyin_club: a self-hosted short-video site. Four services (api, stream, scheduler, web)
//! over one actor system; see `README.md` for the map.

pub mod api;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod headers;
pub mod json;
pub mod pace;
pub mod relocate;
pub mod scheduler;
pub mod server;
pub mod startup;
pub mod stream;
pub mod web;

pub use config::Config;
pub use startup::Node;
