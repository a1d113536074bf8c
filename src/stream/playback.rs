//! `GET`/`HEAD /videos/:vid-id`: preconditions, one byte range, and a body that reads the file
//! in pooled windows on blocking threads, a few windows ahead of the socket.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use actix_web::body::{BodySize, MessageBody, SizedStream};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use actors::blob::{BlobReader, READ_BUF};
use actors::model::{self, BlobLocation, VideoId};
use actors::store::GetPlayable;
use bytes::Bytes;
use futures_util::StreamExt as _;
use prometheus::IntCounter;

use super::StreamState;
use super::range::{self, Selection, Validators};
use crate::config::Playback;
use crate::error::{AppError, ErrorCode};

/// Bytes read from the file per blocking call: one pooled buffer, so reads allocate nothing.
const WINDOW: usize = READ_BUF;
/// Windows read (or being read) ahead of the one going out: enough to keep the socket fed while
/// a blocking thread is busy, few enough that 64 connections hold little memory.
const AHEAD: usize = 2;
/// Bytes handed to the HTTP writer at a time: it copies each chunk into its write buffer, so
/// smaller chunks keep that buffer small (128 KiB chunks halved the throughput in a measurement).
const CHUNK: usize = 64 * 1024;
/// A video's bytes never change under its id, but the video can be deleted, and API.md says
/// that from the deletion's 204 on it is missing everywhere. So a cache may keep a copy but must
/// ask before each use (`no-cache`): an unchanged video costs a 304 without a body, a deleted
/// one answers 404 at once. A freshness lifetime (`max-age`, `immutable`) would let a deleted
/// video keep playing from a cache until it ran out.
const CACHE_CONTROL: &str = "no-cache";

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The validators and caching headers every playback answer carries.
pub(super) fn validated(status: StatusCode, v: &Validators) -> HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::ETAG, v.etag.as_str()))
        .insert_header((header::LAST_MODIFIED, httpdate::fmt_http_date(v.last_modified)))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    res
}

/// RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since (412 when it fails); then
/// If-None-Match, else If-Modified-Since (`Some(304)`). `None`: go on (If-Range is the
/// caller's, for ranges).
pub(super) fn preconditions(
    headers: &HeaderMap,
    v: &Validators,
) -> Result<Option<HttpResponse>, AppError> {
    let may_proceed = match header_str(headers, header::IF_MATCH) {
        Some(im) => range::match_holds(im, v),
        None => header_str(headers, header::IF_UNMODIFIED_SINCE)
            .is_none_or(|ius| range::unmodified_since_holds(ius, v)),
    };
    if !may_proceed {
        return Err(AppError::PreconditionFailed);
    }
    let not_modified = match header_str(headers, header::IF_NONE_MATCH) {
        Some(inm) => range::none_match_hits(inm, v),
        None => header_str(headers, header::IF_MODIFIED_SINCE)
            .is_some_and(|ims| range::not_modified_since(ims, v)),
    };
    Ok(not_modified.then(|| validated(StatusCode::NOT_MODIFIED, v).finish()))
}

/// How a playback request is answered.
pub(super) enum Answer {
    /// Whole, with no bytes of the video: 304, 302 or 416.
    Done(HttpResponse),
    /// Bytes of the video under `res`'s status and headers.
    Video(Video),
}

/// Bytes `first..first + len` of a video (announced but not sent for HEAD).
pub(super) struct Video {
    pub res: HttpResponseBuilder,
    pub reader: Arc<dyn BlobReader>,
    pub location: BlobLocation,
    pub first: u64,
    pub len: u64,
    pub head: bool,
}

/// `GET`/`HEAD /videos/:vid-id` on actix-web.
pub async fn play(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    Ok(match answer(&state, req.method(), req.headers(), &path).await? {
        Answer::Done(res) => res,
        Answer::Video(video) => video.into_response(&state.metrics.bytes_served),
    })
}

impl Video {
    /// The answer with a body that reads the file a few windows ahead of the socket (or relays
    /// one ranged GET of the object).
    fn into_response(self, served: &IntCounter) -> HttpResponse {
        let Video { mut res, reader, location, first, len, head } = self;
        let served = served.clone();
        match location {
            BlobLocation::File => res.body(FileBody::new(reader, first, len, head, served)),
            // One ranged GET to the store, relayed as it arrives (a round trip per window would
            // cost more than the bytes).
            BlobLocation::ObjectStore if head => {
                res.body(SizedStream::new(len, futures_util::stream::empty::<io::Result<Bytes>>()))
            }
            BlobLocation::ObjectStore => {
                let chunks = reader.read_stream(first, len).inspect(move |chunk| {
                    if let Ok(chunk) = chunk {
                        served.inc_by(chunk.len() as u64);
                    }
                });
                res.body(SizedStream::new(len, chunks))
            }
        }
    }
}

/// The answer to a `method` (GET or HEAD) request for the video `raw_id` with `headers`: the
/// one decision both fronts (actix-web's handler, and `super::front`) send out.
pub(super) async fn answer(
    state: &StreamState,
    method: &Method,
    headers: &HeaderMap,
    raw_id: &str,
) -> Result<Answer, AppError> {
    let video = look_up(state, raw_id).await?;
    answer_for(state, method, headers, video).await
}

/// The ready video `raw_id` names. A malformed id is refused here, before any lookup or file
/// access.
pub(super) async fn look_up(state: &StreamState, raw_id: &str) -> Result<model::Video, AppError> {
    let id: VideoId = raw_id.parse()?;
    Ok(state.store.send(GetPlayable { id }).await??)
}

/// [`answer`] once the video has been looked up.
pub(super) async fn answer_for(
    state: &StreamState,
    method: &Method,
    headers: &HeaderMap,
    video: model::Video,
) -> Result<Answer, AppError> {
    let id = video.id;
    // `GetPlayable` returns only ready videos, and a ready video has its file.
    let file = video.file.ok_or(AppError::NotFound("video not uploaded"))?;
    let secs = u64::try_from(file.uploaded_at.unix_timestamp()).unwrap_or(0);
    let v = Validators {
        etag: format!("\"{}\"", file.sha256),
        last_modified: UNIX_EPOCH + Duration::from_secs(secs),
    };
    if let Some(done) = preconditions(headers, &v)? {
        return Ok(Answer::Done(done));
    }
    // Redirected playback: the visibility check and the limiter's token are behind us, so a
    // GET goes to a signed URL of the object and its bytes flow from the store; a HEAD is
    // answered here below, since a signed GET URL does not serve HEAD.
    let location = file.location;
    if let (Playback::Redirect, BlobLocation::ObjectStore, Some(s3)) =
        (state.playback, location, state.blobs.s3())
        && method == Method::GET
    {
        let url = s3.presign_get(id, state.signed_url_ttl);
        return Ok(Answer::Done(
            HttpResponse::Found()
                .insert_header((header::LOCATION, url.as_str()))
                // The URL expires; nobody may keep the redirect.
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish(),
        ));
    }

    // Ranges are defined for GET only; HEAD describes the whole file.
    let selection = match header_str(headers, header::RANGE) {
        Some(r) if method == Method::GET => {
            let if_range = header_str(headers, header::IF_RANGE);
            if if_range.is_none_or(|ir| range::if_range_matches(ir, &v)) {
                range::select(r, file.size)
            } else {
                Selection::Full
            }
        }
        _ => Selection::Full,
    };
    let (status, first, last) = match selection {
        Selection::Full => (StatusCode::OK, 0, file.size.saturating_sub(1)),
        Selection::Partial { first, last } => (StatusCode::PARTIAL_CONTENT, first, last),
        Selection::Unsatisfiable => {
            return Ok(Answer::Done(
                validated(StatusCode::RANGE_NOT_SATISFIABLE, &v)
                    .insert_header((header::CONTENT_RANGE, format!("bytes */{}", file.size)))
                    .json(AppError::body("range not satisfiable", ErrorCode::BadRequest)),
            ));
        }
    };

    // Each video from where its bytes are: a site moving to the object store has both.
    let Some(blobs) = state.blobs.at(location) else {
        log::error!("video {id} is in the object store, but this node runs without one");
        return Err(AppError::Internal);
    };
    let reader = blobs.open(id).await.map_err(|e| {
        // A ready video whose file is gone: removed by the scheduler after a delete that
        // raced this request, or lost on disk.
        log::warn!("video {id} is ready but its file cannot be opened: {e}");
        if e.kind() == io::ErrorKind::NotFound {
            AppError::NotFound("no such video")
        } else {
            AppError::Internal
        }
    })?;
    if reader.len() != file.size {
        log::error!("video {id}: file has {} bytes, database says {}", reader.len(), file.size);
        return Err(AppError::Internal);
    }

    let mut res = validated(status, &v);
    res.insert_header((header::CONTENT_TYPE, file.content_type.as_str()));
    if status == StatusCode::PARTIAL_CONTENT {
        res.insert_header((header::CONTENT_RANGE, format!("bytes {first}-{last}/{}", file.size)));
    }
    let len = if file.size == 0 { 0 } else { last - first + 1 };
    let head = method == Method::HEAD;
    Ok(Answer::Video(Video { res, reader, location, first, len, head }))
}

type Read = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// One window of the file: being read on a blocking thread, or read.
enum Window {
    Reading(Read),
    Done(io::Result<Bytes>),
}

/// `len` bytes of a file from `offset`, read up to `AHEAD` windows ahead of what the writer has
/// taken. For HEAD it announces the length and sends nothing.
struct FileBody {
    reader: Arc<dyn BlobReader>,
    /// The next offset to read from the file.
    next: u64,
    /// One past the last byte to send.
    end: u64,
    len: u64,
    /// Read but not yet handed to the writer.
    ready: Bytes,
    /// Windows after `ready`, in file order.
    ahead: VecDeque<Window>,
    served: IntCounter,
}

impl FileBody {
    fn new(
        reader: Arc<dyn BlobReader>,
        offset: u64,
        len: u64,
        head: bool,
        served: IntCounter,
    ) -> Self {
        let end = if head { offset } else { offset + len };
        let ahead = VecDeque::with_capacity(AHEAD);
        Self { reader, next: offset, end, len, ready: Bytes::new(), ahead, served }
    }

    /// Starts reads until `AHEAD` windows are on their way or the range is covered.
    fn fill(&mut self) {
        while self.ahead.len() < AHEAD && self.next < self.end {
            let want = usize::try_from(self.end - self.next).map_or(WINDOW, |n| n.min(WINDOW));
            let (reader, offset) = (self.reader.clone(), self.next);
            self.next += want as u64;
            let read: Read = Box::pin(async move { reader.read_at(offset, want).await });
            self.ahead.push_back(Window::Reading(read));
        }
    }

    /// Polls every read in flight: a read's blocking work starts only when it is first polled,
    /// so the windows ahead must be polled while earlier bytes go out, not when they are due.
    fn poll_reads(&mut self, cx: &mut Context<'_>) {
        for w in &mut self.ahead {
            if let Window::Reading(read) = w
                && let Poll::Ready(r) = read.as_mut().poll(cx)
            {
                *w = Window::Done(r);
            }
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Bytes, io::Error>>> {
        self.next = self.end;
        self.ahead.clear();
        log::error!("reading a video file: {e}");
        Poll::Ready(Some(Err(e)))
    }
}

impl MessageBody for FileBody {
    type Error = io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, io::Error>>> {
        let this = self.get_mut();
        loop {
            this.fill();
            this.poll_reads(cx);
            if !this.ready.is_empty() {
                let chunk = this.ready.split_to(CHUNK.min(this.ready.len()));
                this.served.inc_by(chunk.len() as u64);
                return Poll::Ready(Some(Ok(chunk)));
            }
            let read = match this.ahead.front_mut() {
                None => return Poll::Ready(None),
                Some(Window::Reading(_)) => return Poll::Pending,
                Some(Window::Done(read)) => std::mem::replace(read, Ok(Bytes::new())),
            };
            this.ahead.pop_front();
            match read {
                Err(e) => return this.fail(e),
                Ok(bytes) if bytes.is_empty() => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "video file shrank");
                    return this.fail(e);
                }
                Ok(bytes) => this.ready = bytes,
            }
        }
    }
}
