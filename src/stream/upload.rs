//! `POST /upload/:vid-id`: the owner streams the file — the raw body, or the field `file` of a
//! `multipart/form-data` body — into an [`Upload`]. Every body ends in an answer as soon as what
//! is wrong with it is known: truncated, malformed, too slow, too large, not a video; the upload
//! is dropped with it, which discards the partial file and frees the video for a retry.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest as _, HttpRequest, HttpResponse, web};
use actors::model::VideoId;
use actors::upload::Upload;
use bytes::Bytes;
use futures_util::future::{Either, select};
use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;

use super::StreamState;
use crate::auth::Authenticated;
use crate::error::AppError;
use crate::headers::{content_length, media_type};
use crate::json::VideoJson;
use crate::pace::{BodyError, Paced};

/// What a form may carry beside the file (other fields, part headers, boundaries).
const FORM_OVERHEAD: u64 = 1 << 20;

/// How the file travels in the request body.
enum BodyKind {
    Raw,
    Multipart { boundary: String },
}

impl BodyKind {
    fn of(headers: &HeaderMap) -> Result<Self, AppError> {
        let essence = media_type(headers);
        if essence == "multipart/form-data" {
            let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
            let boundary = multer::parse_boundary(ct.unwrap_or_default())
                .map_err(|e| AppError::BadRequest(format!("bad multipart Content-Type: {e}")))?;
            return Ok(BodyKind::Multipart { boundary });
        }
        if essence.starts_with("video/") || essence == "application/octet-stream" {
            return Ok(BodyKind::Raw);
        }
        Err(AppError::UnsupportedMedia(
            "send multipart/form-data, video/* or application/octet-stream",
        ))
    }
}

/// `POST /upload/:vid-id`. A refusal holds the request body, unread, until its answer has
/// been sent: actix-http then sees a body still being received and closes the connection after
/// the answer (`Connection: close`), where a body whose reader had gone would be drained — a
/// chunked one for as long as the client cares to send it.
pub async fn upload(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let body = Held(Rc::new(RefCell::new(payload.into_inner())));
    let hold = body.clone();
    match receive(state, req, path, body).await {
        Ok(created) => created,
        Err(refused) => actix_web::ResponseError::error_response(&refused)
            .map_body(|_, answer| Holding { answer, _body: hold })
            .map_into_boxed_body(),
    }
}

/// The request body, shared between the upload that reads it and the refusal that holds it.
#[derive(Clone)]
struct Held(Rc<RefCell<actix_web::dev::Payload>>);

impl Stream for Held {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.borrow_mut().poll_next_unpin(cx)
    }
}

/// A refusal's body, with the request body it keeps from being dropped until it is sent.
struct Holding<B> {
    answer: B,
    _body: Held,
}

impl<B: MessageBody + Unpin> MessageBody for Holding<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.answer).poll_next(cx)
    }
}

async fn receive(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: Held,
) -> Result<HttpResponse, AppError> {
    receive_body(&state, &path, Authenticated::extract(&req), req.headers(), payload).await
}

/// The upload of video `raw_id` by the caller `auth` resolves to, with `headers` and the
/// request body `payload`: what both fronts (actix-web's handler, and `super::front` for a raw
/// body) run.
pub(super) async fn receive_body<E: std::fmt::Display>(
    state: &StreamState,
    raw_id: &str,
    auth: impl Future<Output = Result<Authenticated, AppError>>,
    headers: &HeaderMap,
    payload: impl Stream<Item = Result<Bytes, E>> + Unpin,
) -> Result<HttpResponse, AppError> {
    // The id first: a malformed one is 400 whoever asks, and never reaches the file system.
    let id: VideoId = raw_id.parse()?;
    let auth = auth.await?;
    let kind = BodyKind::of(headers)?;
    let declared = match kind {
        BodyKind::Raw => content_length(headers),
        BodyKind::Multipart { .. } => None,
    };
    let mut upload = state.uploads.begin(id, auth.user.id, declared).await?;
    let counter = state.metrics.bytes_uploaded.clone();
    let body = Paced::new(payload, state.receive_pace).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counter.inc_by(chunk.len() as u64);
        }
    });
    match kind {
        BodyKind::Raw => feed_raw(body, &mut upload).await?,
        BodyKind::Multipart { boundary } => {
            let limit = state.uploads.max_bytes().saturating_add(FORM_OVERHEAD);
            feed_form(body, boundary, limit, &mut upload).await?;
        }
    }
    let video = upload.commit().await?;
    // Its probe was queued with the commit: run it now rather than at the next tick.
    state.scheduler.wake(id);
    Ok(HttpResponse::Created().json(VideoJson::from(video)))
}

async fn feed_raw(
    mut body: impl Stream<Item = Result<Bytes, BodyError>> + Unpin,
    upload: &mut Upload,
) -> Result<(), AppError> {
    while let Some(chunk) = body.next().await {
        upload.push(chunk?).await?;
    }
    Ok(())
}

/// Feeds the form's `file` field into `upload`; other fields are read and dropped. The whole
/// form, the closing boundary included, must arrive: a body that ends early is 400.
async fn feed_form(
    body: impl Stream<Item = Result<Bytes, BodyError>> + Unpin,
    boundary: String,
    limit: u64,
    upload: &mut Upload,
) -> Result<(), AppError> {
    // The parser (multer) wants a `Send` stream and the request body is not one, so the body is
    // relayed through a channel by a second future polled in this same task.
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, BodyError>>(2);
    let relay = async move {
        let mut body = body;
        while let Some(item) = body.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        // Dropping `tx` tells the parser where the body ended.
    };
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let parse = async move {
        let mut found = false;
        while let Some(mut field) = form.next_field().await.map_err(form_error)? {
            let wanted = !found && field.name() == Some("file");
            found |= wanted;
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                if wanted {
                    upload.push(chunk).await?;
                }
            }
        }
        if found {
            Ok(())
        } else {
            Err(AppError::BadRequest("multipart body has no field named file".into()))
        }
    };
    // The parse decides: when it ends first (an error, or a complete form), the relay is dropped
    // and the rest of the body is never read.
    match select(pin!(parse), pin!(relay)).await {
        Either::Left((parsed, _)) => parsed,
        Either::Right(((), parse)) => parse.await,
    }
}

/// A parser error as the client's answer; a failure to read the body keeps its own meaning.
fn form_error(e: multer::Error) -> AppError {
    match e {
        multer::Error::StreamReadFailed(source) => match source.downcast::<BodyError>() {
            Ok(body) => AppError::from(*body),
            Err(other) => AppError::BadRequest(format!("bad multipart body: {other}")),
        },
        multer::Error::StreamSizeExceeded { limit } => {
            AppError::TooLarge(format!("the form is larger than {limit} bytes"))
        }
        other => AppError::BadRequest(format!("bad multipart body: {other}")),
    }
}
