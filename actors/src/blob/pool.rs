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

/// Read buffers recycled across requests. Without it every window was a fresh allocation on
/// whichever blocking thread read it and was freed on the HTTP worker, and the allocator kept
/// per-thread slack for each of those threads: the process grew to hundreds of MiB under load.
#[derive(Debug, Default)]
pub(super) struct BufPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // Only push and pop happen under the lock, so a poisoned one is still consistent.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A zero-initialised (or previously used) buffer of exactly `READ_BUF` bytes.
    pub(super) fn take(&self) -> Vec<u8> {
        self.free().pop().unwrap_or_else(|| vec![0; READ_BUF])
    }

    /// The first `len` bytes of `buf` (taken from `pool`), which goes back to the pool when
    /// the last `Bytes` slice of it is dropped.
    pub(super) fn bytes(pool: &Arc<Self>, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Pooled { buf, len, pool: pool.clone() })
    }

    fn give(&self, buf: Vec<u8>) {
        let mut free = self.free();
        if free.len() < POOL_MAX {
            free.push(buf);
        }
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
