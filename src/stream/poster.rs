//! `GET`/`HEAD /videos/:vid-id/poster`: a ready video's poster image, with the video's
//! visibility (a deleted video has none), validators and 304s, behind the same limiter. Served
//! by the stream service whatever `--playback` says: a poster is tens of KiB and a 304 most of
//! the time, not worth a redirect; `douyin_stream_bytes_served_total` counts video bytes only.

use std::io;
use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::StreamState;
use super::playback::{look_up, preconditions, validated};
use super::range::Validators;
use crate::error::AppError;

pub async fn poster(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let video = look_up(&state, &path).await?;
    let (Some(file), Some(poster)) = (video.file, video.media.and_then(|m| m.poster)) else {
        return Err(AppError::NotFound("this video has no poster yet"));
    };
    let secs = u64::try_from(poster.made_at.unix_timestamp()).unwrap_or(0);
    let v = Validators {
        etag: format!("\"{}\"", poster.etag),
        last_modified: UNIX_EPOCH + Duration::from_secs(secs),
    };
    if let Some(not_modified) = preconditions(req.headers(), &v)? {
        return Ok(not_modified);
    }
    let id = video.id;
    let opened = state.blobs.open_poster(id, file.location).await;
    let reader = opened.map_err(|e| {
        log::warn!("the poster of video {id} cannot be opened: {e}");
        match e.kind() {
            io::ErrorKind::NotFound => AppError::NotFound("this video has no poster yet"),
            _ => AppError::Internal,
        }
    })?;
    // A poster is tens of KiB (at most 2 MiB): one read.
    let len = usize::try_from(reader.len()).map_err(|_| AppError::Internal)?;
    let bytes = reader.read_at(0, len).await.map_err(|e| {
        log::warn!("reading the poster of video {id}: {e}");
        AppError::Internal
    })?;
    Ok(validated(StatusCode::OK, &v)
        .insert_header((header::ACCEPT_RANGES, "none"))
        .insert_header((header::CONTENT_TYPE, poster.content_type))
        .body(bytes))
}
