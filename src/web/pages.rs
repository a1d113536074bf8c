//! The page handlers: read the api over HTTP, map its JSON into view models, render.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use maud::Markup;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use views::{
    CommentView, ErrorPage, HomePage, Poster, UserHomePage, UserPage, VideoCard, VideoList,
    VideoState, Viewer, WatchPage, encode_component as enc,
};

use super::client::{self, Api, ApiFailure};
use super::{Clients, USER_COOKIE, WebState, session_of};
use crate::config::BlobStoreKind;
use crate::error::ErrorCode;

/// Cards per feed page: a phone screen or two.
const FEED_PAGE: u32 = 24;
const COMMENTS_PAGE: u32 = 20;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
}

fn list_query(limit: u32, cursor: Option<&str>) -> String {
    match cursor {
        Some(c) => format!("?limit={limit}&cursor={}", enc(c)),
        None => format!("?limit={limit}"),
    }
}

fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // Pages differ per visitor: never cached by anyone but the browser, which revalidates.
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .body(markup.into_string())
}

/// A failed api call as a friendly page with the api's status.
fn failure(viewer: Option<Viewer>, f: &ApiFailure) -> HttpResponse {
    let (title, message) = match f.code {
        ErrorCode::BadRequest | ErrorCode::NotFound => {
            ("Not found", "There is nothing here — it may have been deleted, or the link is wrong.")
        }
        ErrorCode::Unauthorized => {
            ("Please sign in", "Your session has ended. Sign in again to continue.")
        }
        ErrorCode::Forbidden => ("Not yours", "This belongs to someone else."),
        ErrorCode::RateLimited => {
            ("Slow down", "Too many requests at once. Wait a few seconds and reload.")
        }
        ErrorCode::Unavailable => {
            ("We are busy", "The site is overloaded or restarting. Please try again in a moment.")
        }
        _ => ("Something went wrong", "That is our fault, not yours. Please try again shortly."),
    };
    // A malformed id in a page's link is a page that does not exist.
    let status = if f.code == ErrorCode::BadRequest { 404 } else { f.status };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page =
        ErrorPage { viewer, status: status.as_u16(), title: title.into(), message: message.into() };
    html(status, views::error_page(&page))
}

fn not_found(viewer: Option<Viewer>) -> HttpResponse {
    failure(viewer, &ApiFailure { status: 404, code: ErrorCode::NotFound })
}

fn card(mut v: client::VideoJson) -> VideoCard {
    // The api's `poster_url` is a path on the site's origin, which this service serves (or
    // relays to the stream service wherever that runs).
    let poster = v.poster_url.take().map(|url| Poster::new(url, v.width.zip(v.height)));
    VideoCard {
        state: if v.status == "ready" { VideoState::Ready } else { VideoState::Pending },
        poster,
        duration_ms: v.duration_ms,
        id: v.id,
        name: v.name,
        author: v.author,
        date: v.display_ctime,
        datetime: v.create_time,
        size: v.size,
    }
}

fn cards(list: client::VideoList, next_href: impl Fn(&str) -> String) -> VideoList {
    VideoList {
        next_href: list.next.as_deref().map(next_href),
        videos: list.videos.into_iter().map(card).collect(),
    }
}

/// The api and the signed-in user for one page request. The `user` cookie only says whom to
/// ask about; the api confirms the session belongs to that user.
async fn context<'a>(
    req: &HttpRequest,
    state: &'a WebState,
    clients: &'a Clients,
    session: &'a Option<String>,
) -> (Api<'a>, Option<Viewer>) {
    let api = Api { http: &clients.api, base: &state.api, session: session.as_deref() };
    let viewer = match (session, req.cookie(USER_COOKIE)) {
        (Some(_), Some(user)) if !user.value().is_empty() => api
            .get::<client::UserJson>(&format!("/user/{}", enc(user.value())))
            .await
            .ok()
            .map(|u| Viewer { name: u.user_name }),
        _ => None,
    };
    (api, viewer)
}

/// `GET /`.
pub async fn home(
    req: HttpRequest,
    q: web::Query<PageQuery>,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> HttpResponse {
    let session = session_of(&req);
    let (api, viewer) = context(&req, &state, &clients, &session).await;
    let path = format!("/videos{}", list_query(FEED_PAGE, q.cursor.as_deref()));
    match api.get::<client::VideoList>(&path).await {
        Ok(list) => {
            let feed = cards(list, |c| format!("/?cursor={}", enc(c)));
            html(StatusCode::OK, views::home(&HomePage { viewer, feed }))
        }
        Err(f) => failure(viewer, &f),
    }
}

/// `GET /userhome`: 303 to `/` when signed out.
pub async fn user_home(
    req: HttpRequest,
    q: web::Query<PageQuery>,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> HttpResponse {
    let session = session_of(&req);
    let (api, viewer) = context(&req, &state, &clients, &session).await;
    let Some(viewer) = viewer else {
        return HttpResponse::SeeOther().insert_header((header::LOCATION, "/")).finish();
    };
    let path =
        format!("/user/{}/videos{}", enc(&viewer.name), list_query(FEED_PAGE, q.cursor.as_deref()));
    match api.get::<client::VideoList>(&path).await {
        Ok(list) => {
            let videos = cards(list, |c| format!("/userhome?cursor={}", enc(c)));
            let page = UserHomePage {
                viewer,
                videos,
                max_upload_bytes: state.max_upload_bytes,
                direct_upload: state.blob_store == BlobStoreKind::S3,
            };
            html(StatusCode::OK, views::user_home(&page))
        }
        Err(f) => failure(Some(viewer), &f),
    }
}

/// `GET /u/:username`: only ready videos, whoever looks (the page is the public view).
pub async fn user(
    req: HttpRequest,
    name: web::Path<String>,
    q: web::Query<PageQuery>,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> HttpResponse {
    let session = session_of(&req);
    let (_, viewer) = context(&req, &state, &clients, &session).await;
    let public = Api { http: &clients.api, base: &state.api, session: None };
    let path = format!("/user/{}/videos{}", enc(&name), list_query(FEED_PAGE, q.cursor.as_deref()));
    match public.get::<client::VideoList>(&path).await {
        Ok(list) => {
            let base = views::user_href(&name);
            let videos = cards(list, |c| format!("{base}?cursor={}", enc(c)));
            html(
                StatusCode::OK,
                views::user_page(&UserPage { viewer, user: name.into_inner(), videos }),
            )
        }
        Err(f) => failure(viewer, &f),
    }
}

/// Finds a video by id as the viewer may see it (owners see their pending videos).
async fn find_video(api: &Api<'_>, vid: &str) -> Result<Option<client::VideoJson>, ApiFailure> {
    match api.get::<client::VideoJson>(&format!("/videos/{vid}")).await {
        Ok(v) => Ok(Some(v)),
        Err(f) if matches!(f.code, ErrorCode::NotFound | ErrorCode::BadRequest) => Ok(None),
        Err(f) => Err(f),
    }
}

fn comment_time(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .map(crate::json::display_time)
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// `GET /watch/:vid`.
pub async fn watch(
    req: HttpRequest,
    vid: web::Path<String>,
    q: web::Query<PageQuery>,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> HttpResponse {
    let session = session_of(&req);
    let (api, viewer) = context(&req, &state, &clients, &session).await;
    if vid.parse::<actors::model::VideoId>().is_err() {
        return not_found(viewer);
    }
    let video = match find_video(&api, &vid).await {
        Ok(Some(v)) => card(v),
        Ok(None) => return not_found(viewer),
        Err(f) => return failure(viewer, &f),
    };
    let path = format!("/videos/{vid}/comments{}", list_query(COMMENTS_PAGE, q.cursor.as_deref()));
    let list = match api.get::<client::CommentList>(&path).await {
        Ok(list) => list,
        Err(f) => return failure(viewer, &f),
    };
    let me = viewer.as_ref().map(|v| v.name.as_str());
    let is_owner = me == Some(video.author.as_str());
    let comments = list
        .comments
        .into_iter()
        .map(|c| CommentView {
            can_delete: is_owner || me == Some(c.author.as_str()),
            date: comment_time(&c.time),
            datetime: c.time,
            id: c.id,
            author: c.author,
            content: c.content,
        })
        .collect();
    let base = views::watch_href(&video.id, &video.author);
    let page = WatchPage {
        src: format!("/videos/{}", video.id),
        more_comments_href: list.next.map(|c| format!("{base}&cursor={}", enc(&c))),
        viewer,
        video,
        comments,
        is_owner,
    };
    html(StatusCode::OK, views::watch(&page))
}
