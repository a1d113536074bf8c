//! The HTTP side of the S3 backend: one pooled hyper client (rustls for `https` endpoints) that
//! sends requests rusty-s3 has signed, and S3's error answers as a typed error.
//!
//! hyper rather than actix's `awc`: the [`BlobStore`](super::super::BlobStore) futures must be
//! `Send`, and `awc`'s are not.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_xml::FromXml;
use url::Url;

/// A request body: empty, one buffer, or the chunks of a part as they were received.
pub(super) type Body = BoxBody<Bytes, Infallible>;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may wait for its answer's head (an uploaded part included) and then for
/// each frame of its body. Generous: a part is at most a few MiB, and the store may be far.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest non-object body read (XML listings and error answers).
const XML_LIMIT: usize = 16 << 20;

/// What can go wrong talking to the object store. Never holds a URL: a signed URL is a
/// credential for as long as it is valid.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("cannot reach the object store: {0}")]
    Transport(#[source] hyper_util::client::legacy::Error),
    #[error("reading the object store's answer failed: {0}")]
    Body(#[source] hyper::Error),
    #[error("the object store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the object store answered {status} {code}: {message}")]
    Status { status: StatusCode, code: String, message: String },
    #[error("the object store's answer makes no sense: {0}")]
    Protocol(String),
    #[error("the object changed while it was read")]
    Changed,
    #[error("cannot set up the object store client: {0}")]
    Setup(String),
}

impl S3Error {
    /// Whether the store said there is no such object (a missing bucket is not that).
    pub fn is_missing_object(&self) -> bool {
        matches!(self, S3Error::Status { status: StatusCode::NOT_FOUND, code, .. }
            if code.is_empty() || code == "NoSuchKey")
    }
}

impl From<S3Error> for io::Error {
    fn from(e: S3Error) -> Self {
        let kind = match &e {
            e if e.is_missing_object() => io::ErrorKind::NotFound,
            S3Error::Timeout(_) => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// S3's error document: `<Error><Code>…</Code><Message>…</Message>…</Error>`.
#[derive(FromXml)]
#[xml(rename = "Error")]
struct ErrorDoc {
    #[xml(rename = "Code")]
    code: Option<String>,
    #[xml(rename = "Message")]
    message: Option<String>,
}

/// A pooled HTTP/1.1 client for one object store.
#[derive(Clone, Debug)]
pub(super) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl Http {
    /// A client trusting the system's root certificates. Without any (a minimal container),
    /// only a plain `http` endpoint still works, so that is an error only for `https`.
    pub(super) fn new(https: bool) -> Result<Self, S3Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = match HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(builder) => builder,
            Err(e) if https => return Err(S3Error::Setup(format!("no trusted certificates: {e}"))),
            Err(_) => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| S3Error::Setup(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = tls.https_or_http().enable_http1().wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client })
    }

    /// Sends one request and waits for its answer's head; any status is returned.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Response<Incoming>, S3Error> {
        let mut req = Request::builder().method(method).uri(url.as_str());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body).map_err(|e| S3Error::Protocol(e.to_string()))?;
        tokio::time::timeout(IO_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| S3Error::Timeout(IO_TIMEOUT))?
            .map_err(S3Error::Transport)
    }

    /// [`Http::send`], then an error status becomes [`S3Error::Status`].
    pub(super) async fn send_ok(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Response<Incoming>, S3Error> {
        ok(self.send(method, url, headers, body).await?).await
    }
}

/// Passes a successful answer; reads an error answer's document into [`S3Error::Status`].
pub(super) async fn ok(res: Response<Incoming>) -> Result<Response<Incoming>, S3Error> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let body = read_body(res, 64 << 10).await.unwrap_or_default();
    let doc =
        std::str::from_utf8(&body).ok().and_then(|s| instant_xml::from_str::<ErrorDoc>(s).ok());
    let (code, message) = doc.map(|d| (d.code, d.message)).unwrap_or_default();
    Err(S3Error::Status {
        status,
        code: code.unwrap_or_default(),
        message: message.unwrap_or_default(),
    })
}

/// Reads a whole answer body of at most `limit` bytes.
pub(super) async fn read_body(res: Response<Incoming>, limit: usize) -> Result<Bytes, S3Error> {
    let hint = res.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    let hint = hint.and_then(|v| v.parse::<usize>().ok()).unwrap_or(0).min(limit);
    let mut body = res.into_body();
    let mut out = BytesMut::with_capacity(hint);
    loop {
        let frame = tokio::time::timeout(IO_TIMEOUT, body.frame())
            .await
            .map_err(|_| S3Error::Timeout(IO_TIMEOUT))?;
        let Some(frame) = frame else { return Ok(out.freeze()) };
        if let Ok(data) = frame.map_err(S3Error::Body)?.into_data() {
            if out.len() + data.len() > limit {
                return Err(S3Error::Protocol(format!("answer larger than {limit} bytes")));
            }
            out.extend_from_slice(&data);
        }
    }
}

/// Reads an XML answer as text.
pub(super) async fn read_xml(res: Response<Incoming>) -> Result<String, S3Error> {
    let body = read_body(res, XML_LIMIT).await?;
    String::from_utf8(body.into()).map_err(|_| S3Error::Protocol("XML that is not UTF-8".into()))
}

/// A header's value as text, if present and printable.
pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn empty() -> Body {
    Empty::new().boxed()
}

pub(super) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

/// The chunks of a part, sent as they are (no copy into one buffer).
pub(super) fn chunks(parts: Vec<Bytes>) -> Body {
    StreamBody::new(futures_util::stream::iter(
        parts.into_iter().map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ))
    .boxed()
}
