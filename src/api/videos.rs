//! `/user/:username/videos…` and `/videos`: create, read, list, delete videos.

use actix_web::{HttpResponse, web};
use actors::model::{Listing, UserName, Video, VideoId, VideoName};
use actors::store::{CreateVideo, DeleteVideo, GetVideo, ListVideos};
use serde::Deserialize;

use super::users::require_self;
use super::{ApiState, PageQuery};
use crate::auth::{Authenticated, MaybeUser};
use crate::error::AppError;
use crate::json::{VideoJson, VideoList};

#[derive(Debug, Deserialize)]
pub struct CreateBody {
    name: String,
}

fn video_list(listing: Listing<Video>) -> HttpResponse {
    HttpResponse::Ok().json(VideoList::from(listing))
}

/// `POST /user/:username/videos`: a new pending video, owner only.
pub async fn create(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    auth: Authenticated,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let name: UserName = path.parse()?;
    require_self(&auth, &name)?;
    let title: VideoName = body.name.parse()?;
    let video =
        state.store.send(CreateVideo { author: auth.user, name: title.into_inner() }).await??;
    Ok(HttpResponse::Created().json(VideoJson::from(video)))
}

/// `GET /user/:username/videos`: their ready videos, and pending ones to the owner.
pub async fn list_by_user(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
    viewer: MaybeUser,
) -> Result<HttpResponse, AppError> {
    let author: UserName = path.parse()?;
    let page = query.page()?;
    let listing =
        state.store.send(ListVideos { author: Some(author), viewer: viewer.id(), page }).await??;
    Ok(video_list(listing))
}

/// `GET /videos`: the public feed, every user's ready videos.
pub async fn feed(
    state: web::Data<ApiState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = query.page()?;
    let listing = state.store.send(ListVideos { author: None, viewer: None, page }).await??;
    Ok(video_list(listing))
}

/// `GET /user/:username/videos/:vid`.
pub async fn get(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    viewer: MaybeUser,
) -> Result<HttpResponse, AppError> {
    let (author, vid) = path.into_inner();
    let author: UserName = author.parse()?;
    let id: VideoId = vid.parse()?;
    let video =
        state.store.send(GetVideo { id, author: Some(author), viewer: viewer.id() }).await??;
    Ok(HttpResponse::Ok().json(VideoJson::from(video)))
}

/// `GET /videos/:vid`: the same video object, found by id alone.
pub async fn get_by_id(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    viewer: MaybeUser,
) -> Result<HttpResponse, AppError> {
    let id: VideoId = path.parse()?;
    let video = state.store.send(GetVideo { id, author: None, viewer: viewer.id() }).await??;
    Ok(HttpResponse::Ok().json(VideoJson::from(video)))
}

/// `DELETE /user/:username/videos/:vid`: hidden at once, removed by the scheduler soon after.
pub async fn delete(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    auth: Authenticated,
) -> Result<HttpResponse, AppError> {
    let (author, vid) = path.into_inner();
    let author: UserName = author.parse()?;
    let id: VideoId = vid.parse()?;
    require_self(&auth, &author)?;
    state.store.send(DeleteVideo { id, owner: auth.user.id }).await??;
    state.scheduler.wake(id);
    Ok(HttpResponse::NoContent().finish())
}
