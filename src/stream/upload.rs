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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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

/// Where the upload's bytes go: counted against the limit, sniffed, and gathered into large
/// blocks that a writer task hashes and writes (on blocking threads) while later blocks arrive.
/// Up to `DEPTH` blocks queue between the two, so a slow write or hash does not stall the
/// socket until that much has piled up.
struct Sink {
    buf: BytesMut,
    total: u64,
    max: u64,
    content_type: Option<&'static str>,
    /// Blocks for the writer task; `None` once closed.
    blocks: Option<mpsc::Sender<Bytes>>,
    writer: Option<JoinHandle<Written>>,
    uploaded: IntCounter,
}

/// Blocks queued for the writer task beyond the one it is writing: with 1 MiB blocks, a few MiB
/// of memory per upload buys slack for the disk and the hash.
const DEPTH: usize = 4;

/// What the writer task hands back: the writer and the hash of every block, or the first error.
type Written = Result<(Box<dyn BlobWriter>, Sha256), std::io::Error>;

fn internal(e: impl std::fmt::Display) -> AppError {
    log::error!("writing an upload: {e}");
    AppError::Internal
}

/// Writes and hashes blocks in order until the channel closes. The task owns the writer: should
/// the request be dropped (client gone), the channel closes, the task ends and drops the
/// writer, which discards the temporary file.
async fn write_blocks(
    mut writer: Box<dyn BlobWriter>,
    mut blocks: mpsc::Receiver<Bytes>,
) -> Written {
    let mut hasher = Sha256::new();
    while let Some(block) = blocks.recv().await {
        let hashed = block.clone();
        let hash = tokio::task::spawn_blocking(move || {
            hasher.update(&hashed);
            hasher
        });
        let (written, hashed) = futures_util::join!(writer.append(block), hash);
        written?;
        // The hashing closure cannot panic; a cancelled runtime is shutting down anyway.
        hasher = hashed.map_err(std::io::Error::other)?;
    }
    Ok((writer, hasher))
}

impl Sink {
    fn new(writer: Box<dyn BlobWriter>, max: u64, uploaded: IntCounter) -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        Self {
            buf: BytesMut::with_capacity(WRITE_BUF),
            total: 0,
            max,
            content_type: None,
            blocks: Some(tx),
            writer: Some(actix_web::rt::spawn(write_blocks(writer, rx))),
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

    /// Queues the buffered block for the writer task, waiting only while `DEPTH` are queued.
    async fn flush(&mut self) -> Result<(), AppError> {
        let block = self.buf.split().freeze();
        self.buf.reserve(WRITE_BUF);
        let Some(blocks) = &self.blocks else {
            return Err(internal("the upload's block channel is closed"));
        };
        if blocks.send(block).await.is_err() {
            // The writer task has stopped: its result says why.
            self.blocks = None;
            return Err(self.settle().await.err().unwrap_or_else(|| internal("writer stopped")));
        }
        Ok(())
    }

    /// Closes the channel and waits for the writer task to write everything queued.
    async fn settle(&mut self) -> Result<(Box<dyn BlobWriter>, Sha256), AppError> {
        self.blocks = None;
        let task = self.writer.take().ok_or_else(|| internal("writer missing"))?;
        task.await.map_err(internal)?.map_err(internal)
    }

    /// Writes what is left, checks the container, makes the file durable and visible.
    async fn finish(mut self) -> Result<VideoFile, AppError> {
        if self.content_type.is_none() {
            self.sniff()?;
        }
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        let (writer, hasher) = self.settle().await?;
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
