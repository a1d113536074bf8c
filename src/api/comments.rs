//! `/videos/:vid/comments` and `/videos/:vid/comment/:cid`.

use actix_web::{HttpResponse, web};
use actors::model::{CommentId, CommentText, VideoId};
use actors::store::{CreateComment, DeleteComment, ListComments};
use serde::Deserialize;

use super::{ApiState, PageQuery};
use crate::auth::{Authenticated, MaybeUser};
use crate::error::AppError;
use crate::json::{CommentJson, CommentList};

#[derive(Debug, Deserialize)]
pub struct CreateBody {
    content: String,
}

/// `GET /videos/:vid/comments`: newest first.
pub async fn list(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
    viewer: MaybeUser,
) -> Result<HttpResponse, AppError> {
    let video: VideoId = path.parse()?;
    let page = query.page()?;
    let listing = state.store.send(ListComments { video, viewer: viewer.id(), page }).await??;
    Ok(HttpResponse::Ok().json(CommentList::from(listing)))
}

/// `POST /videos/:vid/comments`.
pub async fn create(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    auth: Authenticated,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let video: VideoId = path.parse()?;
    let content: CommentText = body.content.parse()?;
    let comment =
        state.comments.send(CreateComment { video, author: auth.user, content }).await??;
    Ok(HttpResponse::Created().json(CommentJson::from(comment)))
}

/// `DELETE /videos/:vid/comment/:cid`: by the comment's author or the video's owner.
pub async fn delete(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    auth: Authenticated,
) -> Result<HttpResponse, AppError> {
    let (vid, cid) = path.into_inner();
    let video: VideoId = vid.parse()?;
    let comment: CommentId = cid.parse()?;
    state.store.send(DeleteComment { video, comment, by: auth.user.id }).await??;
    Ok(HttpResponse::NoContent().finish())
}
