//! `POST /upload/:vid`, proxied to the stream service with hyper's HTTP/1 client. awc writes
//! the whole request body before it reads any answer, so the stream's early refusals (401, 404,
//! 409, 413, 415) reached the browser as 503 when the stream closed, or only after the whole
//! file; hyper reads the answer while the body is still being written. The body streams through
//! chunk by chunk, never held whole; once the answer is there the proxy stops taking the
//! browser's body and relays the answer at once.

use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::rt::net::TcpStream;
use actix_web::{HttpRequest, HttpResponse, dev, web};
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::{Either, select};
use http_body_util::{BodyDataStream, BodyExt as _};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::proxy::{Relay, forwarded_for, video_id};
use super::{WebState, session_of};
use crate::auth::SESSION_HEADER;
use crate::error::AppError;
use crate::headers::content_length;
use actors::model::VideoId;

/// How long reaching the stream service may take; the same as the playback proxy's connector.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Chunks queued between the browser's body and hyper: enough for hyper to write one while the
/// next is read, few enough that a slow stream service holds the browser back at once.
const IN_FLIGHT: usize = 2;

/// Request headers of the browser's upload that matter to the stream service.
const UPLOAD_HEADERS: [HeaderName; 2] = [header::CONTENT_TYPE, header::ACCEPT];

/// The browser's body failed midway (it went away, or broke the framing).
#[derive(Debug)]
struct Cut(String);

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the upload was cut off: {}", self.0)
    }
}

impl std::error::Error for Cut {}

/// The upload body as hyper writes it: the chunks the handler reads from the browser, through a
/// channel so that the handler decides when reading stops. An error ends it unfinished, so
/// the stream service sees a cut-off upload, never a short one that looks complete.
struct Feed {
    chunks: mpsc::Receiver<Result<Bytes, Cut>>,
    len: Option<u64>,
}

impl Body for Feed {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        self.chunks.poll_recv(cx).map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.len.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// Where the stream service is: the socket address to dial, the `Host` it expects, and the
/// path prefix its routes sit under.
struct Upstream {
    dial: String,
    host: String,
    prefix: String,
}

impl Upstream {
    fn parse(base: &str) -> Result<Self, AppError> {
        let url = url::Url::parse(base).ok().filter(|u| u.scheme() == "http");
        let Some((url, name)) = url.as_ref().and_then(|u| Some((u, u.host_str()?))) else {
            log::error!("the stream URL {base:?} is not an http:// URL; uploads cannot reach it");
            return Err(AppError::Unavailable);
        };
        let host = url.port().map_or_else(|| name.to_owned(), |port| format!("{name}:{port}"));
        // `host_str` keeps an IPv6 address in brackets, as `host:port` needs it.
        let dial = format!("{name}:{}", url.port().unwrap_or(80));
        Ok(Upstream { dial, host, prefix: url.path().trim_end_matches('/').to_owned() })
    }

    /// A fresh connection for one upload. Uploads are few and long, so a connection each costs
    /// nothing next to the body, and none is left half-used after an early answer.
    async fn connect(&self) -> Result<SendRequest<Feed>, AppError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            log::warn!("stream service unreachable at {}: {e}", self.dial);
            AppError::Unavailable
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.dial))
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        // Small writes (the head, a short last chunk) should not wait for an acknowledgement.
        let _ = tcp.set_nodelay(true);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| unreachable(&e))?;
        // The connection runs beside the handler on this worker; it ends when the exchange
        // does, or when the handler drops its side.
        actix_web::rt::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("upload connection to the stream service ended: {e}");
            }
        });
        send.ready().await.map_err(|e| unreachable(&e))?;
        Ok(send)
    }
}

/// The upstream request: the browser's content headers, its session from the cookie, and the
/// forwarded-for chain; nothing else of the browser's reaches the stream service.
fn outgoing(
    req: &HttpRequest,
    up: &Upstream,
    vid: &VideoId,
    body: Feed,
) -> Result<hyper::Request<Feed>, AppError> {
    let mut out = hyper::Request::post(format!("{}/upload/{vid}", up.prefix))
        .header(hyper::header::HOST, &up.host);
    for name in &UPLOAD_HEADERS {
        for value in req.headers().get_all(name) {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some(session) = session_of(req) {
        out = out.header(SESSION_HEADER, session);
    }
    if let Some(xff) = forwarded_for(req) {
        out = out.header("x-forwarded-for", xff);
    }
    if let Some(len) = body.len {
        // Kept, so that the stream service can refuse an oversized file before reading it.
        out = out.header(hyper::header::CONTENT_LENGTH, len);
    }
    out.body(body).map_err(|e| {
        // Every part was a valid header of the browser's request or one built here.
        log::error!("cannot build the upload request: {e}");
        AppError::Internal
    })
}

/// How passing the browser's body on ended.
enum Pumped {
    /// All of it went to hyper.
    Done,
    /// The browser's body failed; hyper was told, so the upstream request is aborted.
    Cut(String),
    /// hyper stopped taking it: the connection is over, and the answer says why.
    Closed,
}

/// Passes the browser's body to hyper chunk by chunk, waiting whenever hyper is behind.
async fn pump(payload: &mut dev::Payload, chunks: mpsc::Sender<Result<Bytes, Cut>>) -> Pumped {
    while let Some(chunk) = payload.next().await {
        let failed = chunk.as_ref().err().map(ToString::to_string);
        if chunks.send(chunk.map_err(|e| Cut(e.to_string()))).await.is_err() {
            return Pumped::Closed;
        }
        if let Some(why) = failed {
            return Pumped::Cut(why);
        }
    }
    Pumped::Done
}

/// The stream's answer body, holding both exchanges as they are while it is read: upstream,
/// the request body must not end (and make hyper abort the connection) before the answer is
/// through; downstream, the browser's unread body is what makes actix-http close after it.
struct Answer {
    body: BodyDataStream<Incoming>,
    _send: SendRequest<Feed>,
    _chunks: Option<mpsc::Sender<Result<Bytes, Cut>>>,
    _browser: dev::Payload,
}

impl futures_util::Stream for Answer {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// `POST /upload/:vid`: the body goes on as it arrives, and the stream's answer comes back as
/// soon as it is given, whether or not the body is through (the stream refuses a session, a
/// video, a type or a size early).
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebState>,
) -> Result<HttpResponse, AppError> {
    state.check_origin(&req)?;
    let vid = video_id(&req)?;
    let up = Upstream::parse(&state.stream)?;
    let (chunks, rx) = mpsc::channel(IN_FLIGHT);
    let request =
        outgoing(&req, &up, &vid, Feed { chunks: rx, len: content_length(req.headers()) })?;
    let mut send = up.connect().await?;
    let mut payload = payload.into_inner();
    // Held until the answer is relayed: while a sender lives, the body has not ended.
    let mut hold = Some(chunks.clone());
    let answer = {
        let answer = pin!(send.send_request(request));
        let pumped = pin!(pump(&mut payload, chunks));
        match select(answer, pumped).await {
            // The answer came first, early or just as the body ended: stop reading the
            // browser's body. It stays held, unread, until the answer is relayed, so that
            // actix-http sees an unfinished body and answers `Connection: close` (lingering
            // for `client_disconnect_timeout`, then closing) rather than draining a chunked
            // body for as long as the client cares to send it.
            Either::Left((answer, _)) => answer,
            Either::Right((Pumped::Done | Pumped::Closed, answer)) => {
                hold = None;
                answer.await
            }
            Either::Right((Pumped::Cut(why), _)) => {
                log::info!("upload of video {vid} cut off by the client: {why}");
                return Err(AppError::BadRequest(format!("the upload was cut off: {why}")));
            }
        }
    };
    let res = answer.map_err(|e| {
        log::warn!("stream service failed during the upload of video {vid}: {e}");
        AppError::Unavailable
    })?;
    // hyper speaks `http` 1, actix-web `http` 0.2: the same status and header rules, so nothing
    // valid is lost in the conversion.
    let (head, body) = res.into_parts();
    let status = StatusCode::from_u16(head.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for (name, value) in &head.headers {
        let name = HeaderName::from_bytes(name.as_str().as_bytes());
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_bytes(value.as_bytes())) {
            headers.append(name, value);
        }
    }
    let body =
        Answer { body: body.into_data_stream(), _send: send, _chunks: hold, _browser: payload };
    Ok(Relay::new(status, &headers).body(body))
}
