//! A raw `POST /upload/:id` of a declared length, its body read from the socket in large pieces
//! (actix-http reads 8 KiB at a time) into the same upload as actix-web's handler feeds.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use actix_web::ResponseError as _;
use actix_web::error::PayloadError;
use actix_web::rt::net::TcpStream;
use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use super::request::Head;
use super::{admit, log_answer, send_whole};
use crate::auth::{AuthState, authenticate};
use crate::pace::PacedIo;
use crate::stream::StreamState;
use crate::stream::upload::receive_body;

/// Bytes asked of the socket per read.
const READ: usize = 256 * 1024;

/// What the head says of the body.
pub struct Body {
    pub length: u64,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect: bool,
}

/// The upload `head` announces, its body the next `body.length` bytes: `buf`'s first, then the
/// socket's. Returns whether the connection may carry another request: not when the answer
/// came before the whole body (as actix-web, which then closes rather than drain it).
pub async fn respond(
    state: &StreamState,
    auth: &AuthState,
    io: &mut PacedIo<TcpStream>,
    peer: Option<SocketAddr>,
    head: &Head,
    body: Body,
    buf: &mut BytesMut,
) -> io::Result<bool> {
    let started = Instant::now();
    if body.expect {
        // As actix-http: at once, before anything is checked.
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let arrived = buf.len().min(usize::try_from(body.length).unwrap_or(usize::MAX));
    let read_first = buf.split_to(arrived).freeze();
    // Bytes of the body the upload has not taken: unless it took them all, the connection
    // closes after the answer, whether or not they have arrived (as actix-http does).
    let untaken = Rc::new(Cell::new(body.length));
    // The slot is held until the answer has been sent.
    let (answer, _slot) = match admit(state, head, peer).await {
        Err(refused) => (Err(refused), None),
        Ok(slot) => {
            let to_read = body.length - read_first.len() as u64;
            let payload = Box::pin(payload(io, read_first, to_read, untaken.clone()));
            let caller = authenticate(&head.method, &head.headers, auth);
            (receive_body(state, &head.id, caller, &head.headers, payload).await, Some(slot))
        }
    };
    let res = answer.unwrap_or_else(|refused| refused.error_response());
    let keep_alive = head.keep_alive && untaken.get() == 0;
    let (status, sent) = send_whole(state, io, head, res, keep_alive).await?;
    log_answer(peer, head, status, sent, started);
    Ok(keep_alive)
}

/// The body as the upload takes it: `read_first`, then `to_read` more bytes from the socket, in
/// pieces of up to `READ` bytes, each read into the same buffer once the upload is done with
/// the last. What it hands out comes off `untaken`.
fn payload(
    io: &mut PacedIo<TcpStream>,
    read_first: Bytes,
    to_read: u64,
    untaken: Rc<Cell<u64>>,
) -> impl Stream<Item = Result<Bytes, PayloadError>> + '_ {
    let first = futures_util::stream::iter(
        (!read_first.is_empty()).then_some(Ok::<_, PayloadError>(read_first)),
    );
    let state = (io, to_read, BytesMut::new());
    let rest = futures_util::stream::unfold(state, |(io, to_read, mut buf)| async move {
        let want = usize::try_from(to_read).unwrap_or(usize::MAX).min(READ);
        if want == 0 {
            return None;
        }
        buf.reserve(want);
        match io.read_buf(&mut (&mut buf).limit(want)).await {
            // The end of what it hands out: an error ends the upload.
            Ok(0) => Some((Err(PayloadError::Incomplete(None)), (io, 0, buf))),
            Err(e) => Some((Err(PayloadError::Io(e)), (io, 0, buf))),
            Ok(n) => Some((Ok(buf.split().freeze()), (io, to_read - n as u64, buf))),
        }
    });
    futures_util::StreamExt::chain(first, rest).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            untaken.set(untaken.get() - chunk.len() as u64);
        }
    })
}
