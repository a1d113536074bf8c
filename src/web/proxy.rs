//! `/videos/:vid` and its poster proxied to the stream service with awc, and what both stream
//! proxies share (the upload's is in `upload.rs`). Bodies stream through chunk by chunk, so a video is never
//! held whole; the stream's status and headers (206, 304, 416, 429 + Retry-After …) pass
//! through.

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};

use super::{Clients, WebState, session_of};
use crate::auth::SESSION_HEADER;
use crate::error::AppError;
use crate::headers::content_length;
use actors::model::VideoId;

/// Request headers a browser sends that matter to the stream service.
const PLAYBACK_HEADERS: [HeaderName; 7] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::ACCEPT,
];

/// Response headers that describe one hop, not the resource; the proxy sets its own.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "date"
    )
}

/// The video id from the path, checked before it reaches another URL.
pub(super) fn video_id(req: &HttpRequest) -> Result<VideoId, AppError> {
    Ok(req.match_info().get("vid").unwrap_or_default().parse()?)
}

/// The client as the stream's limiter should see it: the peer appended to any forwarded chain
/// (the stream service only believes the chain from trusted proxies such as this one).
pub(super) fn forwarded_for(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip().to_string();
    match req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(chain) if !chain.trim().is_empty() => Some(format!("{chain}, {peer}")),
        _ => Some(peer),
    }
}

/// A request to the stream service on the browser's behalf: the `pass` headers as they are,
/// the session from the cookie, and the forwarded-for chain.
pub(super) fn outgoing(
    req: &HttpRequest,
    clients: &Clients,
    url: String,
    pass: &[HeaderName],
) -> awc::ClientRequest {
    let mut out = clients.stream.request(req.method().clone(), url).no_decompress();
    for name in pass {
        for value in req.headers().get_all(name) {
            out = out.append_header((name.clone(), value.clone()));
        }
    }
    if let Some(session) = session_of(req) {
        out = out.insert_header((SESSION_HEADER, session));
    }
    if let Some(xff) = forwarded_for(req) {
        out = out.insert_header(("x-forwarded-for", xff));
    }
    out
}

/// The stream's answer as ours: status and end-to-end headers as they are, the body streamed
/// with its length kept (so the browser sees `Content-Length`, and HEAD stays bodiless).
pub(super) struct Relay {
    out: HttpResponseBuilder,
    len: Option<u64>,
    bodiless: bool,
}

impl Relay {
    /// The answer's head, taken before its body is handed over.
    pub(super) fn new(status: StatusCode, headers: &header::HeaderMap) -> Self {
        let mut out = HttpResponse::build(status);
        for (name, value) in headers {
            if !hop_by_hop(name.as_str()) {
                out.append_header((name.clone(), value.clone()));
            }
        }
        let bodiless = status == StatusCode::NOT_MODIFIED || status == StatusCode::NO_CONTENT;
        Relay { out, len: content_length(headers), bodiless }
    }

    pub(super) fn body<S, E>(mut self, body: S) -> HttpResponse
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin + 'static,
        E: Into<Box<dyn std::error::Error>> + 'static,
    {
        match (self.bodiless, self.len) {
            (true, _) => self.out.finish(),
            (false, Some(len)) => self.out.body(SizedStream::new(len, Coalesce::new(body))),
            (false, None) => self.out.body(BodyStream::new(Coalesce::new(body))),
        }
    }
}

/// The most a relayed chunk grows to before it is passed on. On a quiet machine 64 KiB gave a
/// proxy/direct ratio of 0.51–0.64 (two runs), 256 KiB 0.57 and 32 KiB 0.47 (one run each,
/// noise about ±0.1); 64 KiB is also the chunk size the stream service's own writer does best
/// with, since actix-http copies each chunk into its write buffer.
const CHUNK: usize = 64 * 1024;

/// Joins the upstream socket's small reads (a few KiB each) into chunks of up to [`CHUNK`]
/// while more is already at hand, so that each write to the browser carries more bytes;
/// never waits for data to join, so nothing is delayed.
struct Coalesce<S> {
    inner: S,
    buf: bytes::BytesMut,
    done: bool,
}

impl<S> Coalesce<S> {
    fn new(inner: S) -> Self {
        Coalesce { inner, buf: bytes::BytesMut::new(), done: false }
    }
}

impl<S, E> futures_util::Stream for Coalesce<S>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    type Item = Result<bytes::Bytes, E>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        while !this.done {
            match std::pin::Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if this.buf.is_empty() && chunk.len() >= CHUNK {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    this.buf.extend_from_slice(&chunk);
                    if this.buf.len() >= CHUNK {
                        return Poll::Ready(Some(Ok(this.buf.split().freeze())));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.done = true,
                Poll::Pending if this.buf.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Some(Ok(this.buf.split().freeze()))),
            }
        }
        if this.buf.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Ok(this.buf.split().freeze())))
        }
    }
}

pub(super) fn unreachable_stream(e: awc::error::SendRequestError) -> AppError {
    log::warn!("stream service unreachable: {e}");
    AppError::Unavailable
}

/// `GET`/`HEAD /videos/:vid`: playback with Range and conditional requests.
pub async fn playback(
    req: HttpRequest,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> Result<HttpResponse, AppError> {
    relay(&req, &state, &clients, "").await
}

/// `GET`/`HEAD /videos/:vid/poster`: the video's poster image, relayed as playback is, so
/// that its validators and 304, its 404 while there is none, and the limiter's
/// 429 reach the browser unchanged.
pub async fn poster(
    req: HttpRequest,
    state: web::Data<WebState>,
    clients: web::Data<Clients>,
) -> Result<HttpResponse, AppError> {
    relay(&req, &state, &clients, "/poster").await
}

/// `/videos/:vid<rest>` of the stream service, as the browser asked for it.
async fn relay(
    req: &HttpRequest,
    state: &WebState,
    clients: &Clients,
    rest: &str,
) -> Result<HttpResponse, AppError> {
    let vid = video_id(req)?;
    let url = format!("{}/videos/{vid}{rest}", state.stream);
    let res =
        outgoing(req, clients, url, &PLAYBACK_HEADERS).send().await.map_err(unreachable_stream)?;
    Ok(Relay::new(res.status(), res.headers()).body(res))
}
