//! The S3 backend: one object per video under `videos/<id>` in one bucket, path-style, on any
//! S3-compatible store (Garage in the tests). rusty-s3 signs each request (sans-IO), hyper sends
//! it. An object appears only when its upload completes: one PUT for a small file, a multipart
//! upload otherwise, aborted if the writer is dropped before `commit`.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use url::Url;

use super::{BlobReader, BlobStore, BlobWriter, MediaInput};
use crate::model::VideoId;

mod admin;
mod http;
mod policy;
mod transfer;

pub use admin::PendingUpload;
pub use http::S3Error;
pub use policy::PostPolicy;

use http::Http;
use transfer::{S3Reader, S3Writer};

/// Where video objects live in the bucket; anything else in the bucket is not ours.
const PREFIX: &str = "videos/";
/// Where posters are: beside the videos, under a prefix of their own so that listing the
/// videos never meets one.
const POSTER_PREFIX: &str = "posters/";
/// Lifetime of the signature of a request this node sends itself (not of URLs handed out).
const REQUEST_TTL: Duration = Duration::from_secs(15 * 60);

/// Where the object store is and how to sign for it.
#[derive(Clone)]
pub struct S3Config {
    /// The endpoint this node reaches the store at, e.g. `http://127.0.0.1:3900`.
    pub endpoint: Url,
    /// The endpoint browsers reach the store at: presigned URLs and POST policies name it
    /// (it is part of what is signed). Usually the same as `endpoint`.
    pub public_endpoint: Url,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    /// Never printed: `Debug` shows it as `<redacted>`.
    pub secret_access_key: String,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint.as_str())
            .field("public_endpoint", &self.public_endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// What the store says about one object: enough to read it consistently and to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len: u64,
    /// The store's strong validator of these exact bytes, quotes included.
    pub etag: String,
}

/// Video objects in one bucket of an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    inner: Arc<Inner>,
}

/// Shared by the store, its readers and its writers (a dropped writer's abort outlives it).
#[derive(Debug)]
struct Inner {
    /// The bucket on the endpoint this node uses.
    bucket: Bucket,
    /// The same bucket on the public endpoint, for URLs handed to browsers.
    public: Bucket,
    /// rusty-s3's `Debug` shows the key id only.
    credentials: Credentials,
    http: Http,
}

impl S3Blobs {
    /// A client for `config`; no request is sent (see [`S3Blobs::check`]). Blocking: it reads
    /// the system's root certificates, so call it at start-up, not on an executor thread.
    pub fn new(config: S3Config) -> Result<Self, S3Error> {
        let bucket = |endpoint: Url| {
            Bucket::new(endpoint, UrlStyle::Path, config.bucket.clone(), config.region.clone())
                .map_err(|e| S3Error::Setup(e.to_string()))
        };
        let http = Http::new(config.endpoint.scheme() == "https")?;
        let inner = Inner {
            bucket: bucket(config.endpoint)?,
            public: bucket(config.public_endpoint)?,
            credentials: Credentials::new(config.access_key_id, config.secret_access_key),
            http,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The object key of `video`'s file.
    pub fn key_of(video: VideoId) -> String {
        format!("{PREFIX}{video}")
    }

    /// The object key of `video`'s poster.
    pub fn poster_key_of(video: VideoId) -> String {
        format!("{POSTER_PREFIX}{video}")
    }

    /// A reader of the object at `key`; `NotFound` when there is none.
    async fn open_key(&self, key: String) -> io::Result<Arc<dyn BlobReader>> {
        let meta =
            self.inner.head(&key).await?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no object {key}"))
            })?;
        Ok(Arc::new(S3Reader::new(self.inner.clone(), key, meta)))
    }

    /// The video whose file `key` is, if it is one.
    pub fn video_of(key: &str) -> Option<VideoId> {
        key.strip_prefix(PREFIX)?.parse().ok()
    }

    /// Whether the bucket answers with these credentials (a `HEAD` of the bucket).
    pub async fn check(&self) -> Result<(), S3Error> {
        let url = self.inner.bucket.head_bucket(Some(&self.inner.credentials)).sign(REQUEST_TTL);
        self.inner.http.send_ok(Method::HEAD, &url, &[], http::empty()).await.map(drop)
    }

    /// The size and validator of `video`'s object; `None` when there is none.
    pub async fn head(&self, video: VideoId) -> Result<Option<ObjectMeta>, S3Error> {
        self.inner.head(&Self::key_of(video)).await
    }

    /// Up to `len` bytes from `offset` of the object `meta` describes; [`S3Error::Changed`]
    /// when the object is no longer that one (e.g. the first bytes of a direct upload, to sniff).
    pub async fn read_range(
        &self,
        video: VideoId,
        meta: &ObjectMeta,
        offset: u64,
        len: usize,
    ) -> Result<Bytes, S3Error> {
        self.inner.read_range(&Self::key_of(video), meta, offset, len).await
    }

    /// A URL on the public endpoint that GETs `video`'s object (`Range` works) for `ttl`.
    pub fn presign_get(&self, video: VideoId, ttl: Duration) -> Url {
        let key = Self::key_of(video);
        self.inner.public.get_object(Some(&self.inner.credentials), &key).sign(ttl)
    }

    /// A browser form that uploads `video`'s object straight to the store: only that key, at
    /// most `max_bytes`, for `ttl` from now.
    pub fn post_policy(&self, video: VideoId, max_bytes: u64, ttl: Duration) -> PostPolicy {
        let signer = policy::Signer {
            access_key: self.inner.credentials.key(),
            secret: self.inner.credentials.secret(),
            region: self.inner.public.region(),
        };
        let key = Self::key_of(video);
        let grant = policy::Grant {
            bucket: self.inner.public.name(),
            key: &key,
            max_bytes,
            now: time::OffsetDateTime::now_utc(),
            ttl,
        };
        policy::sign_post_policy(&signer, self.inner.public.base_url().clone(), &grant)
    }
}

impl Inner {
    async fn delete(&self, key: &str) -> Result<(), S3Error> {
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(REQUEST_TTL);
        self.http.send_ok(Method::DELETE, &url, &[], http::empty()).await.map(drop)
    }

    fn sign_get(&self, key: &str) -> Url {
        self.bucket.get_object(Some(&self.credentials), key).sign(REQUEST_TTL)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, S3Error> {
        let url = self.bucket.head_object(Some(&self.credentials), key).sign(REQUEST_TTL);
        let res = match self.http.send_ok(Method::HEAD, &url, &[], http::empty()).await {
            Ok(res) => res,
            Err(e) if e.is_missing_object() => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = http::header(res.headers(), "content-length").and_then(|v| v.parse().ok());
        let etag = http::header(res.headers(), "etag").filter(|e| !e.starts_with("W/"));
        match (len, etag) {
            (Some(len), Some(etag)) => Ok(Some(ObjectMeta { len, etag: etag.to_owned() })),
            _ => Err(S3Error::Protocol("HEAD without a length or a strong ETag".into())),
        }
    }

    /// A ranged GET conditional on the object still being `meta` (`If-Match`), so a replaced
    /// object fails the read instead of mixing bytes of two objects.
    async fn read_range(
        &self,
        key: &str,
        meta: &ObjectMeta,
        offset: u64,
        len: usize,
    ) -> Result<Bytes, S3Error> {
        let want = (len as u64).min(meta.len.saturating_sub(offset));
        if want == 0 {
            return Ok(Bytes::new());
        }
        let res = self.get_range(key, meta, offset, want).await?;
        let body = http::read_body(res, want as usize).await?;
        if body.len() as u64 != want {
            return Err(S3Error::Changed);
        }
        Ok(body)
    }

    /// Sends the GET of `want` (> 0) bytes from `offset`, pinned to `meta`; returns the answer
    /// once it is known to carry exactly those bytes of that object.
    async fn get_range(
        &self,
        key: &str,
        meta: &ObjectMeta,
        offset: u64,
        want: u64,
    ) -> Result<hyper::Response<hyper::body::Incoming>, S3Error> {
        let range = format!("bytes={offset}-{}", offset + want - 1);
        let headers = [("range", range.as_str()), ("if-match", meta.etag.as_str())];
        let res = self.http.send(Method::GET, &self.sign_get(key), &headers, http::empty()).await?;
        let status = res.status();
        if status == StatusCode::PRECONDITION_FAILED {
            return Err(S3Error::Changed);
        }
        let res = http::ok(res).await?;
        // A 200 is the whole object: only right when the whole object was asked for.
        let whole = status == StatusCode::OK && offset == 0 && want == meta.len;
        if status != StatusCode::PARTIAL_CONTENT && !whole {
            return Err(S3Error::Protocol(format!("{status} to a ranged GET")));
        }
        Ok(res)
    }

    /// Keys under [`PREFIX`], every page of them.
    async fn list_keys(&self) -> Result<Vec<String>, S3Error> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            action.with_prefix(PREFIX);
            if let Some(token) = &token {
                action.with_continuation_token(token.clone());
            }
            let url = action.sign(REQUEST_TTL);
            let res = self.http.send_ok(Method::GET, &url, &[], http::empty()).await?;
            let page = ListObjectsV2::parse_response(&http::read_xml(res).await?)
                .map_err(|e| S3Error::Protocol(format!("object listing: {e}")))?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(keys),
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    /// A `HEAD` first, since S3's `DELETE` answers the same whether or not the object was
    /// there; two removers racing may both see `true`, which the deletion job tolerates.
    async fn remove(&self, video: VideoId) -> io::Result<bool> {
        // The poster first: once the file is gone nothing would find a poster left behind.
        self.remove_poster(video).await?;
        let key = Self::key_of(video);
        if self.inner.head(&key).await?.is_none() {
            return Ok(false);
        }
        self.inner.delete(&key).await?;
        Ok(true)
    }

    /// A signed GET of the object on the store's own endpoint (the node's, not the browsers'),
    /// valid as long as a probe may take; ffmpeg reads it with ranges.
    async fn media_input(&self, video: VideoId) -> io::Result<MediaInput> {
        let key = Self::key_of(video);
        if self.inner.head(&key).await?.is_none() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no object for {video}")));
        }
        Ok(MediaInput::Url(self.inner.sign_get(&key).to_string()))
    }

    async fn put_poster(&self, video: VideoId, image: Bytes, content_type: &str) -> io::Result<()> {
        let key = Self::poster_key_of(video);
        let url = self.inner.bucket.put_object(Some(&self.inner.credentials), &key);
        let url = url.sign(REQUEST_TTL);
        let length = image.len().to_string();
        let headers = [("content-type", content_type), ("content-length", length.as_str())];
        // One PUT: the store shows the whole object or the one before, never a part.
        self.inner.http.send_ok(Method::PUT, &url, &headers, http::full(image)).await?;
        Ok(())
    }

    async fn open_poster(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        self.open_key(Self::poster_key_of(video)).await
    }

    async fn remove_poster(&self, video: VideoId) -> io::Result<()> {
        // S3 answers a DELETE of a missing key with 204 as well.
        Ok(self.inner.delete(&Self::poster_key_of(video)).await?)
    }

    async fn list(&self) -> io::Result<Vec<VideoId>> {
        let keys = self.inner.list_keys().await?;
        Ok(keys.iter().filter_map(|k| Self::video_of(k)).collect())
    }

    async fn open(&self, video: VideoId) -> io::Result<Arc<dyn BlobReader>> {
        self.open_key(Self::key_of(video)).await
    }

    async fn begin_write(&self, video: VideoId) -> io::Result<Box<dyn BlobWriter>> {
        Ok(Box::new(S3Writer::new(self.inner.clone(), Self::key_of(video))))
    }
}
