//! The api service: users, sessions, videos and comments as a JSON REST API (API.md's api
//! table). Handlers only parse, send a message to an actor, and map the reply.

mod comments;
mod users;
mod videos;

use std::net::IpAddr;
use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use actors::accounts::Accounts;
use actors::model::Page;
use actors::session::Session;
use actors::store::{CommentBatcher, VideoStore};
use serde::Deserialize;

use crate::error::AppError;
use crate::scheduler::WakeScheduler;

/// What the api handlers need, handed to them as app data.
#[derive(Clone)]
pub struct ApiState {
    pub store: Addr<VideoStore>,
    pub sessions: Addr<Session>,
    /// Registration and sign-in: the throttle and the password hashing pool.
    pub accounts: Addr<Accounts>,
    /// Peers whose `X-Forwarded-For` is believed, for the sign-in throttle's client address.
    pub trusted_proxies: Vec<IpAddr>,
    /// Comments go through group commit: many posts, one transaction.
    pub comments: Addr<CommentBatcher>,
    /// Told about each deletion so that it is carried out at once rather than at the next tick.
    pub scheduler: Arc<dyn WakeScheduler>,
}

/// The api's routes (health and metrics are added by the server builder). Grouped in scopes by
/// their static prefix: actix-router matches each dynamic pattern with a regex, so a request
/// should only be tried against the few patterns that can match it.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/user")
            .service(web::resource("").post(users::register))
            .service(
                web::resource("/{username}")
                    .post(users::sign_in)
                    .get(users::get_user)
                    .delete(users::sign_out),
            )
            .service(
                web::resource("/{username}/videos").post(videos::create).get(videos::list_by_user),
            )
            .service(
                web::resource("/{username}/videos/{vid}").get(videos::get).delete(videos::delete),
            ),
    )
    .service(
        web::scope("/videos")
            .service(web::resource("").get(videos::feed))
            // Not in API.md's table: one video by id alone, for clients (the web's watch page)
            // that have a link without its author. Same visibility rules as the other reads.
            .service(web::resource("/{vid}").get(videos::get_by_id))
            .service(web::resource("/{vid}/comments").get(comments::list).post(comments::create))
            // The singular `comment` is the original design's path and stays as written.
            .service(web::resource("/{vid}/comment/{cid}").delete(comments::delete)),
    );
}

/// `?limit=&cursor=` as sent; validated into a [`Page`].
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl PageQuery {
    fn page(&self) -> Result<Page, AppError> {
        Ok(Page::parse(self.limit.as_deref(), self.cursor.as_deref())?)
    }
}
