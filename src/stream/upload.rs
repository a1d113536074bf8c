//! `POST /upload/:vid-id`: the owner streams the file (multipart field `file`, or the raw body)
//! to a temporary file while it is counted, sniffed and hashed; then it is made durable,
//! renamed into place, and the video becomes ready.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{FromRequest as _, HttpRequest, HttpResponse, web};
use actors::StoreError;
use actors::blob::{BlobStore as _, BlobWriter};
use actors::model::{VideoFile, VideoId};
use actors::store::{GetVideo, MarkReady};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use prometheus::IntCounter;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::StreamState;
use super::sniff::{SNIFF_LEN, sniff};
use crate::auth::Authenticated;
use crate::error::AppError;
use crate::json::VideoJson;

/// Bytes gathered before one write: few, large writes keep the upload near disk speed.
const WRITE_BUF: usize = 1 << 20;

/// `POST /upload/:vid-id`.
pub async fn upload(
    state: web::Data<StreamState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    // The id first: a malformed one is 400 whoever asks, and never reaches the file system.
    let id: VideoId = path.parse()?;
    let auth = Authenticated::extract(&req).await?;
    let video =
        state.store.send(GetVideo { id, author: None, viewer: Some(auth.user.id) }).await??;
    if video.author_id != auth.user.id {
        return Err(AppError::Forbidden("this video belongs to someone else"));
    }
    if video.file.is_some() {
        return Err(AppError::Conflict("video file already uploaded"));
    }
    let max = state.max_upload_bytes;
    let too_large = || AppError::TooLarge(format!("the file is larger than {max} bytes"));
    let essence = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let multipart = essence == "multipart/form-data";
    if !(multipart || essence.starts_with("video/") || essence == "application/octet-stream") {
        return Err(AppError::UnsupportedMedia(
            "send multipart/form-data, video/* or application/octet-stream",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if !multipart && declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }

    let writer = state.blobs.begin_write(id).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            AppError::Conflict("an upload of this video is already in progress")
        } else {
            log::error!("cannot start writing video {id}: {e}");
            AppError::Internal
        }
    })?;
    let mut sink = Sink::new(writer, max, state.metrics.bytes_uploaded.clone());
    if multipart {
        let mut form = Multipart::new(req.headers(), payload.into_inner());
        let mut found = false;
        while let Some(field) = form.next().await {
            let field = field.map_err(|e| AppError::BadRequest(format!("bad multipart: {e}")))?;
            if field.name() == Some("file") && !found {
                found = true;
                sink.pump(field.map(|r| r.map_err(|e| format!("{e}")))).await?;
            } else {
                // Other fields are read and ignored; the limit still bounds what is read.
                let mut field = field;
                while let Some(chunk) = field.next().await {
                    chunk.map_err(|e| AppError::BadRequest(format!("bad multipart: {e}")))?;
                }
            }
        }
        if !found {
            return Err(AppError::BadRequest("multipart body has no field named file".into()));
        }
    } else {
        sink.pump(payload.into_inner().map(|r| r.map_err(|e| format!("{e}")))).await?;
    }
    let file = sink.finish().await?;
    let size = file.size;
    match state.store.send(MarkReady { id, owner: auth.user.id, file }).await? {
        Ok(video) => {
            log::info!("video {id} uploaded: {size} bytes");
            Ok(HttpResponse::Created().json(VideoJson::from(video)))
        }
        Err(e) => {
            // Deleted (or taken away) while uploading: the file must not outlive the row. A
            // conflict means another process committed the same video: its file is the one.
            if !matches!(e, StoreError::Conflict(_)) {
                if let Err(err) = state.blobs.remove(id).await {
                    log::warn!("cannot remove the file of video {id}: {err}");
                }
            }
            Err(e.into())
        }
    }
}

/// Where the upload's bytes go: counted against the limit, sniffed, hashed, written in large
/// blocks. The hash and the write of one block run on blocking threads while the next block
/// arrives.
struct Sink {
    writer: Option<Box<dyn BlobWriter>>,
    hasher: Option<Sha256>,
    buf: BytesMut,
    total: u64,
    max: u64,
    content_type: Option<&'static str>,
    in_flight: Option<actix_web::rt::task::JoinHandle<Flushed>>,
    uploaded: IntCounter,
}

type Flushed = (Box<dyn BlobWriter>, Sha256, std::io::Result<()>);

fn internal(e: impl std::fmt::Display) -> AppError {
    log::error!("writing an upload: {e}");
    AppError::Internal
}

impl Sink {
    fn new(writer: Box<dyn BlobWriter>, max: u64, uploaded: IntCounter) -> Self {
        Self {
            writer: Some(writer),
            hasher: Some(Sha256::new()),
            buf: BytesMut::with_capacity(WRITE_BUF),
            total: 0,
            max,
            content_type: None,
            in_flight: None,
            uploaded,
        }
    }

    async fn pump(
        &mut self,
        mut body: impl Stream<Item = Result<Bytes, String>> + Unpin,
    ) -> Result<(), AppError> {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| AppError::BadRequest(format!("upload cut off: {e}")))?;
            self.total += chunk.len() as u64;
            self.uploaded.inc_by(chunk.len() as u64);
            if self.total > self.max {
                return Err(AppError::TooLarge(format!(
                    "the file is larger than {} bytes",
                    self.max
                )));
            }
            self.buf.extend_from_slice(&chunk);
            if self.content_type.is_none() && self.buf.len() >= SNIFF_LEN {
                self.sniff()?;
            }
            if self.buf.len() >= WRITE_BUF {
                self.flush().await?;
            }
        }
        Ok(())
    }

    fn sniff(&mut self) -> Result<(), AppError> {
        let head = &self.buf[..self.buf.len().min(SNIFF_LEN)];
        self.content_type = Some(
            sniff(head).ok_or(AppError::UnsupportedMedia("not a recognised video container"))?,
        );
        Ok(())
    }

    /// Waits for the previous block, then hands the buffered one to a background task.
    async fn flush(&mut self) -> Result<(), AppError> {
        self.settle().await?;
        let data = self.buf.split().freeze();
        self.buf.reserve(WRITE_BUF);
        let (Some(mut writer), Some(mut hasher)) = (self.writer.take(), self.hasher.take()) else {
            return Err(internal("writer missing after a failed write"));
        };
        // The task owns the writer while it runs: should this request be dropped (client
        // gone), the task still ends and drops the writer, which discards the temporary file.
        self.in_flight = Some(actix_web::rt::spawn(async move {
            let hashed = data.clone();
            let hash = tokio::task::spawn_blocking(move || {
                hasher.update(&hashed);
                hasher
            });
            let (written, hasher) = futures_util::join!(writer.append(data), hash);
            match hasher {
                Ok(h) => (writer, h, written),
                // The hashing closure cannot panic; a cancelled runtime is shutting down anyway.
                Err(e) => (writer, Sha256::new(), Err(std::io::Error::other(e))),
            }
        }));
        Ok(())
    }

    async fn settle(&mut self) -> Result<(), AppError> {
        if let Some(task) = self.in_flight.take() {
            let (writer, hasher, written) = task.await.map_err(internal)?;
            written.map_err(internal)?;
            self.writer = Some(writer);
            self.hasher = Some(hasher);
        }
        Ok(())
    }

    /// Writes what is left, checks the container, makes the file durable and visible.
    async fn finish(mut self) -> Result<VideoFile, AppError> {
        if self.content_type.is_none() {
            self.sniff()?;
        }
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        self.settle().await?;
        let (Some(writer), Some(hasher)) = (self.writer.take(), self.hasher.take()) else {
            return Err(internal("writer missing after a failed write"));
        };
        writer.commit().await.map_err(internal)?;
        let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(VideoFile {
            size: self.total,
            // `sniff` succeeded above or returned.
            content_type: self.content_type.unwrap_or("application/octet-stream").to_owned(),
            sha256,
            uploaded_at: OffsetDateTime::now_utc(),
        })
    }
}
