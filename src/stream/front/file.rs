//! A range of a local file to the socket with `sendfile(2)`: from the page cache, never through
//! our memory. A worker thread must not wait on the disk, so each window is first looked up
//! with `cachestat(2)`; one that is not all in the page cache is read on a blocking thread first
//! (which puts it there), and only then sent.

use std::fs::File;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd as _;
use std::sync::Arc;

use actix_web::rt::net::TcpStream;
use actors::blob::{BlobReader, READ_BUF};
use prometheus::IntCounter;
use tokio::io::AsyncWriteExt as _;

use crate::pace::PacedIo;

/// Bytes offered to one `sendfile` call; the socket takes what fits in its buffer.
const WINDOW: u64 = 1 << 20;

/// Sends `head`, then bytes `first..first + len` of `file` (the file of `reader`).
///
/// Neither `TCP_CORK` (nginx's `tcp_nopush`) nor `MSG_MORE` on the head: both were measured
/// (`bench/results/stream.md`), and both made the server pay for the whole transmission at the
/// uncork instead of as the client reads, for the same throughput: 410–470 µs of CPU per 1 MiB
/// range against 270–330 µs without.
pub async fn send(
    io: &mut PacedIo<TcpStream>,
    head: &[u8],
    reader: &Arc<dyn BlobReader>,
    file: &File,
    (first, len): (u64, u64),
    served: &IntCounter,
) -> io::Result<()> {
    io.write_all(head).await?;
    send_range(io, reader, file, first, len, served).await
}

async fn send_range(
    io: &mut PacedIo<TcpStream>,
    reader: &Arc<dyn BlobReader>,
    file: &File,
    first: u64,
    len: u64,
    served: &IntCounter,
) -> io::Result<()> {
    let (mut at, end) = (first, first + len);
    while at < end {
        let mut count = (end - at).min(WINDOW);
        if cached(file, at, count) != Some(true) {
            count = count.min(READ_BUF as u64);
            // Read on a blocking thread into a pooled buffer, and so into the page cache.
            let read = reader.read_at(at, count as usize).await?;
            if (read.len() as u64) < count {
                return Err(shrank());
            }
        }
        let mut offset = at;
        let n = poll_fn(|cx| {
            io.poll_send(cx, |s| {
                rustix::fs::sendfile(s, file, Some(&mut offset), count as usize).map_err(Into::into)
            })
        })
        .await?;
        if n == 0 {
            return Err(shrank());
        }
        at += n as u64;
        served.inc_by(n as u64);
    }
    Ok(())
}

fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "video file shrank")
}

/// `struct cachestat_range` of `<linux/mman.h>`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of `<linux/mman.h>`.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// `cachestat(2)`'s number, the same on every architecture (Linux 6.5); not in `libc` yet.
const SYS_CACHESTAT: libc::c_long = 451;

/// Whether every page of `len` bytes of `file` from `offset` is in the page cache; `None` when
/// the kernel cannot say (older than 6.5, or a filter forbids the call), which counts as no.
/// A page evicted between this answer and the `sendfile` would be read on the worker thread:
/// a narrow race, taken knowingly.
#[allow(unsafe_code)]
fn cached(file: &File, offset: u64, len: u64) -> Option<bool> {
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: cachestat(2) reads one `cachestat_range` and writes one `cachestat`, both of the
    // kernel's layout and alive for the call; the descriptor is borrowed from an open file.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        return None;
    }
    let page = rustix::param::page_size() as u64;
    let pages = (offset + len).div_ceil(page) - offset / page;
    Some(stat.nr_cache >= pages)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn cachestat_tells_cached_pages_from_evicted_ones() {
        use std::os::unix::fs::FileExt as _;
        // In the crate's directory, not /tmp: tmpfs pages are never evicted.
        let mut f = tempfile::tempfile_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        f.write_all(&vec![7u8; 256 * 1024]).unwrap();
        // A kernel before 6.5 cannot say: the front then reads every window first.
        let Some(written) = cached(&f, 0, 256 * 1024) else { return };
        assert!(written, "just written, so in the page cache");
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        assert_eq!(cached(&f, 0, 256 * 1024), Some(false), "clean pages dropped from the cache");
        let mut start = [0u8; 8192];
        f.read_exact_at(&mut start, 0).unwrap();
        assert_eq!(cached(&f, 0, 8192), Some(true), "read back in");
        assert_eq!(cached(&f, 4096, 1), Some(true), "one byte of a cached page");
    }
}
