//! `GET`/`HEAD /videos/:vid-id`: preconditions, one byte range, and a body that reads the file
//! in windows on blocking threads, one window ahead of the socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use actors::blob::{BlobReader, BlobStore as _};
use actors::model::VideoId;
use actors::store::GetPlayable;
use bytes::Bytes;
use prometheus::IntCounter;
use serde_json::json;

use super::StreamState;
use super::range::{self, Selection, Validators};
use crate::error::AppError;

/// Bytes read from the file per blocking call: large enough to amortise the thread hop, small
/// enough that 64 connections hold little memory (two windows each at most).
const WINDOW: usize = 256 * 1024;
/// Bytes handed to the HTTP writer at a time: it copies each chunk into its write buffer, so
/// smaller chunks keep that buffer small.
const CHUNK: usize = 64 * 1024;
/// Uploaded files never change under their id; a year is the conventional "forever".
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The validators and caching headers every playback answer carries.
fn validated(status: StatusCode, v: &Validators) -> HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::ETAG, v.etag.as_str()))
        .insert_header((header::LAST_MODIFIED, httpdate::fmt_http_date(v.last_modified)))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    res
}

/// `GET`/`HEAD /videos/:vid-id`.
pub async fn play(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    // A malformed id is refused here, before any lookup or file access.
    let id: VideoId = path.parse()?;
    let video = state.store.send(GetPlayable { id }).await??;
    // `GetPlayable` returns only ready videos, and a ready video has its file.
    let file = video.file.ok_or(AppError::NotFound("video not uploaded"))?;
    let secs = u64::try_from(file.uploaded_at.unix_timestamp()).unwrap_or(0);
    let v = Validators {
        etag: format!("\"{}\"", file.sha256),
        last_modified: UNIX_EPOCH + Duration::from_secs(secs),
    };
    let headers = req.headers();

    let not_modified = match header_str(headers, header::IF_NONE_MATCH) {
        Some(inm) => range::none_match_hits(inm, &v),
        None => header_str(headers, header::IF_MODIFIED_SINCE)
            .is_some_and(|ims| range::not_modified_since(ims, &v)),
    };
    if not_modified {
        return Ok(validated(StatusCode::NOT_MODIFIED, &v).finish());
    }

    // Ranges are defined for GET only; HEAD describes the whole file.
    let selection = match header_str(headers, header::RANGE) {
        Some(r) if req.method() == Method::GET => {
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
            return Ok(validated(StatusCode::RANGE_NOT_SATISFIABLE, &v)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{}", file.size)))
                .json(json!({ "error": "range not satisfiable", "error_code": "001" })));
        }
    };

    let reader = state.blobs.open(id).await.map_err(|e| {
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
    let served = state.metrics.bytes_served.clone();
    let body = FileBody::new(reader, first, len, req.method() == Method::HEAD, served);
    Ok(res.body(body))
}

type Read = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// `len` bytes of a file from `offset`, read a window ahead of what the writer has taken.
/// For HEAD it announces the length and sends nothing.
struct FileBody {
    reader: Arc<dyn BlobReader>,
    /// The next offset to read from the file.
    next: u64,
    /// One past the last byte to send.
    end: u64,
    len: u64,
    /// Read but not yet handed to the writer.
    ready: Bytes,
    pending: Option<Read>,
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
        Self { reader, next: offset, end, len, ready: Bytes::new(), pending: None, served }
    }

    fn start_read(&mut self) {
        if self.pending.is_some() || self.next >= self.end {
            return;
        }
        let want = usize::try_from(self.end - self.next).map_or(WINDOW, |n| n.min(WINDOW));
        let (reader, offset) = (self.reader.clone(), self.next);
        self.next += want as u64;
        self.pending = Some(Box::pin(async move { reader.read_at(offset, want).await }));
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
            if !this.ready.is_empty() {
                let chunk = this.ready.split_to(CHUNK.min(this.ready.len()));
                this.served.inc_by(chunk.len() as u64);
                return Poll::Ready(Some(Ok(chunk)));
            }
            let Some(pending) = this.pending.as_mut() else {
                if this.next >= this.end {
                    return Poll::Ready(None);
                }
                this.start_read();
                continue;
            };
            match pending.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    this.next = this.end;
                    log::error!("reading a video file: {e}");
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(bytes)) => {
                    this.pending = None;
                    if bytes.is_empty() {
                        this.next = this.end;
                        let e = io::Error::new(io::ErrorKind::UnexpectedEof, "video file shrank");
                        return Poll::Ready(Some(Err(e)));
                    }
                    this.ready = bytes;
                    // Read the next window while this one goes out.
                    this.start_read();
                }
            }
        }
    }
}
