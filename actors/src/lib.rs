//! douyin_club's actors: each owns one piece of state and talks in typed messages.
//!
//! - [`store::VideoStore`]: the only SQL in the project (a `SyncArbiter` over an r2d2 pool).
//! - [`session::Session`]: the session cache, written through to a [`session::SessionStore`].
//! - [`accounts::Accounts`]: registration and sign-in, the sign-in throttle, password hashing.
//! - [`limiter::StreamLimiter`]: per-client token buckets and the global stream slots.
//! - [`upload::Uploads`]: an upload as one operation (begin, push, commit) over the blob store.
//! - [`scheduler::Dispatcher`] → [`scheduler::Executor`]: the deletion queue's producer and consumer.
//!
//! No actix-web and no HTML here: the binary maps replies to HTTP.

pub mod accounts;
pub mod blob;
pub mod cache;
pub mod changes;
pub mod clock;
pub mod error;
pub mod limiter;
pub mod media;
pub mod model;
pub mod relocate;
pub mod scheduler;
pub mod session;
pub mod store;
pub mod text;
pub mod upload;

pub use error::StoreError;
