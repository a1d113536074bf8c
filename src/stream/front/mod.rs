//! The stream port's own HTTP/1.1 front: playback of local files with `sendfile(2)`, from the
//! page cache to the socket, and raw uploads read in large pieces, on connections it owns;
//! everything else goes to actix-web.
//!
//! actix-http copies every body chunk into its write buffer and cannot hand a file to a socket,
//! and reads request bodies 8 KiB at a time (`bench/results/stream.md`). So each connection to
//! the stream port meets this front first. It reads request heads with `httparse` and answers
//! `GET`/`HEAD /videos/:id` and a raw `POST /upload/:id` of a declared length itself, with the
//! same limiter and session look-up as the actix-web middleware (`super::limit`), the same code
//! (`super::playback::answer`, `super::upload::receive_body`) and therefore the same statuses,
//! headers and error bodies, written as actix-http writes them (`response`). At the first
//! request it does not answer — any other path or method, a form or chunked body, an upgrade, a
//! head it cannot parse or that is too long — it hands the connection, with the bytes it has
//! read, to actix-web for good, which answers that request (400, 431, a form upload, …) as it
//! always has.
//!
//! Its timeouts are actix-http's: the first head must be in within 5 s of the connection (a
//! later one within 5 s of its first byte), else 408 and close; an idle keep-alive connection
//! closes after 5 s; and every write keeps to the send pace (`PacedIo`), so a client that stops
//! reading loses the connection and the slot.

mod file;
mod request;
mod response;
mod upload;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::ResponseError as _;
use actix_web::http::{Method, StatusCode};
use actix_web::rt::net::TcpStream;
use actix_web::{HttpResponse, web};
use actors::model::BlobLocation;
use actors::session::ResolveSession;
use bytes::{Buf as _, BufMut as _, BytesMut};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use self::request::{Head, Parsed};
use super::StreamState;
use super::limit::{self, Slot};
use super::playback::{self, Answer, Video};
use crate::auth::{AuthState, presented_token};
use crate::error::AppError;
use crate::pace::PacedIo;
use crate::server::{Front, HEAD_TIMEOUT, HandOff, KEEP_ALIVE, add_common_headers};

/// The front of a stream service with `state`, whose callers sign in through `auth`.
pub fn front(state: web::Data<StreamState>, auth: web::Data<AuthState>) -> Front {
    Arc::new(move |io, peer| Box::pin(serve(state.clone(), auth.clone(), io, peer)))
}

/// Why no request head came.
enum Stop {
    /// The client closed, went quiet between requests, or the connection failed.
    Closed,
    /// A head did not arrive in time.
    TimedOut,
}

/// Answers the connection's requests; `Some` hands it to actix-web.
async fn serve(
    state: web::Data<StreamState>,
    auth: web::Data<AuthState>,
    mut io: PacedIo<TcpStream>,
    peer: Option<SocketAddr>,
) -> Option<HandOff> {
    let mut buf = BytesMut::with_capacity(2048);
    let mut first = true;
    loop {
        let next = next_head(&mut io, &mut buf, first).await;
        first = false;
        let answered = match next {
            Ok(Parsed::Playback(req)) => {
                buf.advance(req.len);
                respond(&state, &mut io, peer, &req).await.map(|()| req.keep_alive)
            }
            Ok(Parsed::Upload { head, length, expect }) => {
                buf.advance(head.len);
                let body = upload::Body { length, expect };
                upload::respond(&state, &auth, &mut io, peer, &head, body, &mut buf).await
            }
            Ok(Parsed::Other) => return Some((io, buf.freeze())),
            Err(Stop::Closed) => return None,
            Err(Stop::TimedOut) => {
                let _ = io.write_all(&response::request_timeout()).await;
                return None;
            }
        };
        match answered {
            Ok(true) => {}
            Ok(false) => {
                let _ = io.shutdown().await;
                return None;
            }
            Err(e) => {
                log::debug!("connection from {peer:?} ended: {e}");
                return None;
            }
        }
    }
}

/// Reads until `buf` starts with a whole head. The first head must arrive within
/// `HEAD_TIMEOUT` of the connection; a later one may be awaited for `KEEP_ALIVE`, then has
/// `HEAD_TIMEOUT` from its first byte.
async fn next_head(
    io: &mut PacedIo<TcpStream>,
    buf: &mut BytesMut,
    first: bool,
) -> Result<Parsed, Stop> {
    let mut deadline = (first || !buf.is_empty()).then(|| Instant::now() + HEAD_TIMEOUT);
    let mut scanned = 0;
    loop {
        if !buf.is_empty()
            && let Some(parsed) = request::parse(buf, &mut scanned)
        {
            return Ok(parsed);
        }
        let wait = deadline.unwrap_or_else(|| Instant::now() + KEEP_ALIVE);
        // Never more than a head's worth: what is past it is actix-http's to read, in its own
        // pieces (a head still unended at 32 KiB is refused there as it always was).
        let want = request::MAX_HEAD.saturating_sub(buf.len()).max(1);
        buf.reserve(want.min(4096));
        let mut room = (&mut *buf).limit(want);
        match tokio::time::timeout_at(wait, io.read_buf(&mut room)).await {
            Err(_) if deadline.is_some() => return Err(Stop::TimedOut),
            Err(_) | Ok(Ok(0) | Err(_)) => return Err(Stop::Closed),
            Ok(Ok(_)) => {
                deadline.get_or_insert_with(|| Instant::now() + HEAD_TIMEOUT);
            }
        }
    }
}

/// A token and a slot for the client of `req`, as the actix-web middleware takes them: a
/// session that cannot be resolved counts as none.
async fn admit(
    state: &StreamState,
    req: &Head,
    peer: Option<SocketAddr>,
) -> Result<Slot, AppError> {
    let user = match presented_token(&req.headers) {
        None => None,
        Some(token) => {
            state.sessions.send(ResolveSession { token }).await.ok().and_then(Result::ok)
        }
    };
    let client = limit::client_key(user.flatten().map(|u| u.id), peer, &req.headers, state);
    limit::admit(state, client).await
}

/// One playback request: its client's token and slot, the answer, and the access-log line.
async fn respond(
    state: &StreamState,
    io: &mut PacedIo<TcpStream>,
    peer: Option<SocketAddr>,
    req: &Head,
) -> io::Result<()> {
    let started = Instant::now();
    // The limiter and the database are asked at once: the worker waits for both answers in one
    // go instead of one after the other (a read only: a refused request changes nothing). The
    // answer is the one the middleware gives, which asks them in turn.
    let (admitted, video) =
        futures_util::join!(admit(state, req, peer), playback::look_up(state, &req.id));
    // The slot is held until the answer has been sent.
    let (answer, _slot) = match (admitted, video) {
        (Err(refused), _) => (Err(refused), None),
        (Ok(slot), Err(e)) => (Err(e), Some(slot)),
        (Ok(slot), Ok(video)) => {
            (playback::answer_for(state, &req.method, &req.headers, video).await, Some(slot))
        }
    };
    let (status, sent) = match answer {
        Ok(Answer::Video(video)) => send_video(state, io, req, video).await?,
        Ok(Answer::Done(res)) => send_whole(state, io, req, res, req.keep_alive).await?,
        Err(e) => send_whole(state, io, req, e.error_response(), req.keep_alive).await?,
    };
    log_answer(peer, req, status, sent, started);
    Ok(())
}

/// Counts an answer in the front's metric, as it goes out: by the time its client has read it,
/// the count includes it.
fn count(state: &StreamState, status: StatusCode) {
    state.metrics.front_requests.with_label_values(&[status.as_str()]).inc();
}

/// actix-web's access-log line, under its logger's name, so that one filter governs both.
fn log_answer(
    peer: Option<SocketAddr>,
    req: &Head,
    status: StatusCode,
    sent: u64,
    started: Instant,
) {
    log::info!(
        target: "actix_web::middleware::logger",
        "{} \"{} {} {:?}\" {} {} {:.6}ms",
        peer.map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
        req.method,
        req.target,
        req.version,
        status.as_u16(),
        sent,
        started.elapsed().as_secs_f64() * 1000.0,
    );
}

/// An answer made whole by actix-web's types (an error, 304, 302, 416, an upload's 201): its
/// head and body in one write, the connection to stay open after it if `keep_alive`. Returns
/// the status and the body bytes sent.
async fn send_whole(
    state: &StreamState,
    io: &mut PacedIo<TcpStream>,
    req: &Head,
    res: HttpResponse,
    keep_alive: bool,
) -> io::Result<(StatusCode, u64)> {
    let (mut res, body) = res.into_parts();
    add_common_headers(res.headers_mut());
    let body =
        actix_web::body::to_bytes(body).await.map_err(|e| io::Error::other(e.to_string()))?;
    let mut out =
        response::head(req.version, res.status(), res.headers(), body.len() as u64, keep_alive);
    let sent = if req.method == Method::HEAD || !response::has_body(res.status()) {
        0
    } else {
        body.len()
    };
    out.extend_from_slice(&body[..sent]);
    count(state, res.status());
    io.write_all(&out).await?;
    Ok((res.status(), sent as u64))
}

/// Video bytes: the head, then the range with `sendfile(2)` when it is a local file (else the
/// reader's chunks, as actix-web would relay them).
async fn send_video(
    state: &StreamState,
    io: &mut PacedIo<TcpStream>,
    req: &Head,
    video: Video,
) -> io::Result<(StatusCode, u64)> {
    let Video { mut res, reader, location, first, len, head } = video;
    let mut res = res.finish();
    add_common_headers(res.headers_mut());
    let status = res.status();
    let out = response::head(req.version, status, res.headers(), len, req.keep_alive);
    count(state, status);
    if head || len == 0 {
        io.write_all(&out).await?;
        return Ok((status, 0));
    }
    let served = &state.metrics.bytes_served;
    if let (BlobLocation::File, Some(file)) = (location, reader.local_file()) {
        file::send(io, &out, &reader, file, (first, len), served).await?;
        return Ok((status, len));
    }
    io.write_all(&out).await?;
    let mut chunks = reader.clone().read_stream(first, len);
    let mut sent = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        io.write_all(&chunk).await?;
        served.inc_by(chunk.len() as u64);
        sent += chunk.len() as u64;
    }
    if sent < len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the object ended early"));
    }
    Ok((status, len))
}
