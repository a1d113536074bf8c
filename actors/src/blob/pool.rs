//! Read buffers recycled across requests, so that reading a window of a video costs no allocation.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Size of the pooled read buffers: a read of at most this many bytes costs no allocation.
/// Playback reads windows of exactly this size. 128 KiB measured best on a quiet machine
/// (`bench/results/stream.md`): 64 KiB spent a third of the time handing windows between
/// threads, 256 KiB held more memory for no more speed.
pub const READ_BUF: usize = 128 * 1024;
/// Idle buffers kept for reuse (4 MiB at most); more are freed. The pool only ever holds what
/// was in use at once, so this bounds memory left behind by a burst, not throughput.
const POOL_MAX: usize = 32;
/// Idle buffers kept while no reader holds one: a quiet server gives the rest back.
const IDLE_KEEP: usize = 2;

/// Read buffers recycled across requests. Without it every window was a fresh allocation on
/// whichever blocking thread read it and was freed on the HTTP worker, and the allocator kept
/// per-thread slack for each of those threads: the process grew to hundreds of MiB under load.
#[derive(Debug, Default)]
pub(super) struct BufPool {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: Vec<Vec<u8>>,
    /// Buffers handed out and not yet given back.
    lent: usize,
}

impl BufPool {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Only pushes, pops and counts happen under the lock, so a poisoned one is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A zero-initialised (or previously used) buffer of exactly `READ_BUF` bytes.
    pub(super) fn take(&self) -> Vec<u8> {
        let mut state = self.state();
        state.lent += 1;
        let reused = state.free.pop();
        drop(state);
        reused.unwrap_or_else(|| vec![0; READ_BUF])
    }

    /// The first `len` bytes of `buf` (taken from `pool`), which goes back to the pool when
    /// the last `Bytes` slice of it is dropped.
    pub(super) fn bytes(pool: &Arc<Self>, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Pooled { buf, len, pool: pool.clone() })
    }

    /// Takes a buffer back. When it was the last one lent, the pool shrinks to `IDLE_KEEP`:
    /// buffers are worth keeping while playback runs, not while the server is idle.
    fn give(&self, buf: Vec<u8>) {
        let mut state = self.state();
        state.lent = state.lent.saturating_sub(1);
        if state.free.len() < POOL_MAX {
            state.free.push(buf);
        }
        let keep = IDLE_KEEP.min(state.free.len());
        let spare = if state.lent == 0 { state.free.split_off(keep) } else { Vec::new() };
        // Freed outside the lock.
        drop(state);
        drop(spare);
    }
}

/// The first `len` bytes of a pooled buffer; the buffer goes back to the pool when the last
/// `Bytes` slice of it is dropped (after the HTTP writer has copied it out).
struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_buffers_while_lent_and_shrinks_when_idle() {
        let pool = Arc::new(BufPool::default());
        let held: Vec<Bytes> = (0..8).map(|_| BufPool::bytes(&pool, pool.take(), 10)).collect();
        let mut held = held.into_iter();
        for b in held.by_ref().take(7) {
            drop(b);
        }
        assert_eq!(pool.state().free.len(), 7, "kept while a reader still holds a buffer");
        drop(held);
        assert_eq!(pool.state().free.len(), IDLE_KEEP, "shrunk once nobody holds one");
        assert_eq!(pool.state().lent, 0);
    }
}
