//! Reading and writing one object: ranged GETs pinned to the object's ETag, and writes that
//! become visible only at `commit` (one PUT, or a multipart upload streamed part by part).

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use http_body_util::BodyExt as _;
use hyper::Method;
use hyper::body::Incoming;
use rusty_s3::S3Action as _;
use rusty_s3::actions::{CompleteMultipartUploadResponse, CreateMultipartUpload};

use super::http::{self, S3Error};
use super::{Inner, ObjectMeta, REQUEST_TTL};
use crate::blob::{BlobReader, BlobWriter};

/// Bytes gathered before a part is sent. S3 wants parts of at least 5 MiB (but the last);
/// 8 MiB is the AWS CLI's choice, and bounds a writer's memory to about one part.
pub(super) const PART_SIZE: usize = 8 << 20;
/// S3's limit on the parts of one upload (with 8 MiB parts: objects up to 78 GiB).
const MAX_PARTS: usize = 10_000;

/// One committed object, read by ranges.
#[derive(Debug)]
pub(super) struct S3Reader {
    inner: Arc<Inner>,
    key: String,
    meta: ObjectMeta,
}

impl S3Reader {
    pub(super) fn new(inner: Arc<Inner>, key: String, meta: ObjectMeta) -> Self {
        Self { inner, key, meta }
    }
}

#[async_trait]
impl BlobReader for S3Reader {
    fn len(&self) -> u64 {
        self.meta.len
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        Ok(self.inner.read_range(&self.key, &self.meta, offset, len).await?)
    }

    /// One ranged GET, its body passed on frame by frame as the consumer pulls (so a slow
    /// client slows the GET instead of filling memory).
    fn read_stream(
        self: Arc<Self>,
        offset: u64,
        len: u64,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let want = offset.saturating_add(len).min(self.meta.len).saturating_sub(offset);
        futures_util::stream::try_unfold(Pull::Open(self, offset, want), pull).boxed()
    }
}

/// Where a [`S3Reader::read_stream`] is.
enum Pull {
    /// Not sent yet: the reader, the offset and how many bytes.
    Open(Arc<S3Reader>, u64, u64),
    /// The answer's body and how many bytes it still owes.
    Body(Incoming, u64),
}

async fn pull(state: Pull) -> io::Result<Option<(Bytes, Pull)>> {
    let (mut body, left) = match state {
        Pull::Open(_, _, 0) | Pull::Body(_, 0) => return Ok(None),
        Pull::Open(r, offset, want) => {
            (r.inner.get_range(&r.key, &r.meta, offset, want).await?.into_body(), want)
        }
        Pull::Body(body, left) => (body, left),
    };
    loop {
        let frame = tokio::time::timeout(http::IO_TIMEOUT, body.frame())
            .await
            .map_err(|_| S3Error::Timeout(http::IO_TIMEOUT))?;
        // The answer ended before the bytes it announced.
        let Some(frame) = frame else { return Err(S3Error::Changed.into()) };
        let Ok(data) = frame.map_err(S3Error::Body)?.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        let Some(left) = left.checked_sub(data.len() as u64) else {
            return Err(S3Error::Protocol("more bytes than asked for".into()).into());
        };
        return Ok(Some((data, Pull::Body(body, left))));
    }
}

/// An object being written; see the module doc.
#[derive(Debug)]
pub(super) struct S3Writer {
    inner: Arc<Inner>,
    key: String,
    /// Appended chunks not sent yet, kept as received (no copy into one buffer).
    pending: Vec<Bytes>,
    pending_len: usize,
    /// The multipart upload, once the file outgrew one part; `None` again after `commit`.
    upload: Option<Multipart>,
    /// A request failed: the writer is unusable (and its upload is aborted when dropped).
    failed: bool,
}

#[derive(Debug)]
struct Multipart {
    id: String,
    /// The ETag of each part sent, in part-number order.
    etags: Vec<String>,
}

impl S3Writer {
    pub(super) fn new(inner: Arc<Inner>, key: String) -> Self {
        Self { inner, key, pending: Vec::new(), pending_len: 0, upload: None, failed: false }
    }

    fn usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write to the object store failed"));
        }
        Ok(())
    }

    /// Takes what is pending, with its length as a header value.
    fn take_pending(&mut self) -> (Vec<Bytes>, String) {
        let len = std::mem::take(&mut self.pending_len).to_string();
        (std::mem::take(&mut self.pending), len)
    }

    /// Sends what is pending as the next part, starting the multipart upload if needed.
    async fn send_part(&mut self) -> Result<(), S3Error> {
        let inner = self.inner.clone();
        let (chunks, len) = self.take_pending();
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => self.upload.insert(start_upload(&inner, &self.key).await?),
        };
        let number = upload.etags.len() + 1;
        let number = u16::try_from(number)
            .ok()
            .filter(|&n| usize::from(n) <= MAX_PARTS)
            .ok_or_else(|| S3Error::Protocol(format!("more than {MAX_PARTS} parts")))?;
        let url = inner.bucket.upload_part(Some(&inner.credentials), &self.key, number, &upload.id);
        let url = url.sign(REQUEST_TTL);
        let headers = [("content-length", len.as_str())];
        let res = inner.http.send_ok(Method::PUT, &url, &headers, http::chunks(chunks)).await?;
        let etag = http::header(res.headers(), "etag")
            .ok_or_else(|| S3Error::Protocol("a part without an ETag".into()))?;
        upload.etags.push(etag.to_owned());
        Ok(())
    }

    /// Makes the object visible: one PUT of everything, or the last part and the completion.
    async fn finish(&mut self) -> Result<(), S3Error> {
        let inner = self.inner.clone();
        let Some(upload) = self.upload.as_ref() else {
            let url = inner.bucket.put_object(Some(&inner.credentials), &self.key);
            let url = url.sign(REQUEST_TTL);
            let (chunks, len) = self.take_pending();
            let headers = [("content-length", len.as_str())];
            inner.http.send_ok(Method::PUT, &url, &headers, http::chunks(chunks)).await?;
            return Ok(());
        };
        if self.pending_len > 0 || upload.etags.is_empty() {
            self.send_part().await?;
        }
        let Some(upload) = self.upload.as_ref() else {
            return Err(S3Error::Protocol("the multipart upload vanished".into()));
        };
        let action = inner.bucket.complete_multipart_upload(
            Some(&inner.credentials),
            &self.key,
            &upload.id,
            upload.etags.iter().map(String::as_str),
        );
        let url = action.sign(REQUEST_TTL);
        let body = action.body();
        let res = inner.http.send_ok(Method::POST, &url, &[], http::full(body)).await?;
        // A 200 can still carry an error document: only a completion result is success.
        let xml = http::read_xml(res).await?;
        CompleteMultipartUploadResponse::parse(&xml)
            .map_err(|e| S3Error::Protocol(format!("multipart upload completion: {e}")))?;
        // Completed: nothing left to abort.
        self.upload = None;
        Ok(())
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn append(&mut self, data: Bytes) -> io::Result<()> {
        self.usable()?;
        if data.is_empty() {
            return Ok(());
        }
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= PART_SIZE {
            self.send_part().await.inspect_err(|_| self.failed = true)?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> io::Result<()> {
        self.usable()?;
        // On failure `self` is dropped here, which aborts the multipart upload.
        Ok(self.finish().await?)
    }
}

/// Starts a multipart upload of `key`.
async fn start_upload(inner: &Inner, key: &str) -> Result<Multipart, S3Error> {
    let url = inner.bucket.create_multipart_upload(Some(&inner.credentials), key);
    let res = inner.http.send_ok(Method::POST, &url.sign(REQUEST_TTL), &[], http::empty()).await?;
    let created = CreateMultipartUpload::parse_response(&http::read_xml(res).await?)
        .map_err(|e| S3Error::Protocol(format!("multipart upload start: {e}")))?;
    Ok(Multipart { id: created.upload_id().to_owned(), etags: Vec::new() })
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else { return };
        // `Drop` cannot wait: the abort runs on its own. Without a runtime (or if it stops
        // first) the upload stays unfinished until reconciliation aborts it.
        let inner = self.inner.clone();
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(async move {
                match inner.abort(&key, &upload.id).await {
                    Ok(()) => log::info!("aborted unfinished upload of {key}"),
                    Err(e) => log::warn!("cannot abort the unfinished upload of {key}: {e}"),
                }
            })),
            Err(_) => log::warn!("no runtime to abort the unfinished upload of {key}"),
        }
    }
}
