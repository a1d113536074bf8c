//! Minimum transfer rates: a peer that stalls, or trickles, while we wait on it loses its
//! connection instead of holding a stream slot, a socket and a worker's attention for ever.
//!
//! One rule serves both directions. From the moment the peer first holds a transfer up (our write
//! to its socket cannot proceed; the body we are reading has nothing new), it has one `window` to
//! move at least `bytes_per_sec × window` bytes (and at least one); then it is judged afresh from
//! its next hold-up. A connection where we, not the peer, are the slow side is never judged, and
//! an idle keep-alive connection holds nothing up.
//!
//! [`PacedIo`] applies the rule to every write of a connection (playback bodies, and any other
//! answer a client refuses to read); [`Paced`] applies it to a request body (uploads).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The least a peer must move per window once it holds a transfer up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub window: Duration,
    pub bytes_per_sec: u64,
}

impl MinRate {
    /// Bytes owed per window: at least one, so a rate of zero still ends a total stall.
    fn owed(&self) -> u64 {
        let per_window = self.bytes_per_sec as f64 * self.window.as_secs_f64();
        (per_window as u64).max(1)
    }
}

/// The peer moved too little while it held the transfer up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer moved {moved} bytes in {window:?} while holding the transfer up ({owed} owed)")]
pub struct TooSlow {
    pub moved: u64,
    pub owed: u64,
    pub window: Duration,
}

/// The rule's state for one direction of one connection. Time is an argument, so the rule is
/// tested without clocks or sockets.
#[derive(Debug, Clone)]
pub struct Pace {
    rule: MinRate,
    /// When the window under judgement began (the first hold-up); meaningful while `held`.
    since: Instant,
    moved: u64,
    held: bool,
}

impl Pace {
    pub fn new(rule: MinRate, now: Instant) -> Self {
        Self { rule, since: now, moved: 0, held: false }
    }

    /// Judges a window that has run its course; a window that passes ends the hold.
    fn judge(&mut self, now: Instant) -> Result<(), TooSlow> {
        if self.held && now >= self.since + self.rule.window {
            let owed = self.rule.owed();
            if self.moved < owed {
                return Err(TooSlow { moved: self.moved, owed, window: self.rule.window });
            }
            self.held = false;
        }
        Ok(())
    }

    /// `n` bytes moved at `now`.
    pub fn moved(&mut self, n: usize, now: Instant) -> Result<(), TooSlow> {
        if self.held {
            self.moved += n as u64;
        }
        self.judge(now)
    }

    /// The peer holds the transfer up at `now`; returns when to judge if it still does then.
    pub fn held_up(&mut self, now: Instant) -> Result<Instant, TooSlow> {
        self.judge(now)?;
        if !self.held {
            self.held = true;
            self.since = now;
            self.moved = 0;
        }
        Ok(self.since + self.rule.window)
    }
}

/// Arms `timer` for `deadline` and polls it; `Err` once the window it guards has failed.
fn watch(
    pace: &mut Pace,
    timer: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Result<(), TooSlow> {
    loop {
        let deadline = pace.held_up(Instant::now())?;
        match timer {
            Some(t) if t.deadline() == deadline => {}
            Some(t) => t.as_mut().reset(deadline),
            None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        // Set just above, so present.
        let Some(t) = timer.as_mut() else { return Ok(()) };
        if t.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        // The window ran out while held: `held_up` judges it on the next turn (and either fails
        // or opens the next window with a new deadline).
    }
}

fn timed_out(e: TooSlow) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, e)
}

/// A connection whose writes must keep pace with [`MinRate`]: a write held up too long fails
/// with `TimedOut`, which makes the HTTP server drop the connection and with it the response
/// (and the stream slot the response holds). Reads pass through untouched: slow request heads
/// and idle keep-alive connections have their own timeouts in the HTTP server.
#[derive(Debug)]
pub struct PacedIo<T> {
    io: T,
    pace: Pace,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> PacedIo<T> {
    pub fn new(io: T, rule: MinRate) -> Self {
        Self { io, pace: Pace::new(rule, Instant::now()), timer: None }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    fn paced(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                self.pace.moved(n, Instant::now()).map_err(timed_out)?;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                watch(&mut self.pace, &mut self.timer, cx).map_err(timed_out)?;
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl PacedIo<TcpStream> {
    /// A write the socket does itself (`sendfile`, `send` with `MSG_MORE`): `op` runs when the
    /// socket is writable, and is paced like every other write.
    pub fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let r = match self.io.poll_write_ready(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => match self.io.try_io(Interest::WRITABLE, || op(&self.io)) {
                    // The readiness was stale: wait for the next.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => Poll::Ready(r),
                },
            };
            return self.paced(cx, r);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PacedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PacedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.paced(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.paced(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Why a paced request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client stopped sending or sent too slowly.
    #[error(transparent)]
    TooSlow(#[from] TooSlow),
    /// The body could not be read (cut off, malformed chunking, …).
    #[error("the request body could not be read: {0}")]
    Broken(String),
}

/// A request body that must keep pace with [`MinRate`] whenever we wait for it.
pub struct Paced<S> {
    body: S,
    pace: Pace,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Paced<S> {
    pub fn new(body: S, rule: MinRate) -> Self {
        Self { body, pace: Pace::new(rule, Instant::now()), timer: None }
    }
}

impl<S, E> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.pace.moved(chunk.len(), Instant::now())?;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Broken(e.to_string())))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                watch(&mut this.pace, &mut this.timer, cx)?;
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    const RULE: MinRate = MinRate { window: Duration::from_secs(10), bytes_per_sec: 100 };

    #[test]
    fn a_peer_that_never_holds_anything_up_is_never_judged() {
        let t0 = Instant::now();
        let mut p = Pace::new(RULE, t0);
        for s in 0..100 {
            p.moved(1, t0 + Duration::from_secs(s)).unwrap();
        }
    }

    #[test]
    fn a_stall_fails_one_window_after_it_began() {
        let t0 = Instant::now();
        let mut p = Pace::new(RULE, t0);
        p.moved(5000, t0).unwrap();
        let t1 = t0 + Duration::from_secs(25);
        let deadline = p.held_up(t1).unwrap();
        assert_eq!(deadline, t1 + RULE.window, "the window starts at the hold-up, not before");
        assert_eq!(p.held_up(t1 + Duration::from_secs(9)).unwrap(), deadline);
        let e = p.held_up(deadline).unwrap_err();
        assert_eq!((e.moved, e.owed), (0, 1000));
    }

    #[test]
    fn a_trickle_below_the_rate_fails_and_one_above_it_passes() {
        let t0 = Instant::now();
        let mut slow = Pace::new(RULE, t0);
        let mut fine = Pace::new(RULE, t0);
        for s in 0..10 {
            let now = t0 + Duration::from_secs(s);
            slow.held_up(now).unwrap();
            slow.moved(99, now).unwrap();
            fine.held_up(now).unwrap();
            fine.moved(101, now).unwrap();
        }
        let end = t0 + RULE.window;
        assert!(slow.moved(0, end).is_err());
        fine.moved(0, end).unwrap();
        // Judged afresh from the next hold-up.
        assert_eq!(fine.held_up(end).unwrap(), end + RULE.window);
    }

    #[test]
    fn a_zero_rate_still_ends_a_total_stall() {
        let rule = MinRate { window: Duration::from_secs(1), bytes_per_sec: 0 };
        let t0 = Instant::now();
        let mut p = Pace::new(rule, t0);
        p.held_up(t0).unwrap();
        assert!(p.held_up(t0 + Duration::from_secs(1)).is_err());
        let mut q = Pace::new(rule, t0);
        q.held_up(t0).unwrap();
        q.moved(1, t0).unwrap();
        q.held_up(t0 + Duration::from_secs(1)).unwrap();
    }
}
