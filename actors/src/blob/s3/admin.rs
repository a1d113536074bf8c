//! Bucket-level requests rusty-s3 has no action for, signed with its `signing::sign`:
//! listing unfinished multipart uploads (to abort what a crash left), and the bucket's CORS rule
//! (so a browser on the site's origin may post its upload straight to the store).

use std::iter;

use base64::Engine as _;
use hyper::Method;
use instant_xml::{FromXml, ToXml};
use md5::{Digest as _, Md5};
use rusty_s3::S3Action as _;
use time::OffsetDateTime;
use url::Url;

use super::http::{self, S3Error};
use super::{Inner, PREFIX, REQUEST_TTL, S3Blobs};
use crate::model::VideoId;

const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    /// The video the key belongs to, if it is one of ours.
    pub video: Option<VideoId>,
    pub upload_id: String,
    /// When it was started, as the store says.
    pub initiated: Option<OffsetDateTime>,
}

#[derive(FromXml)]
#[xml(rename = "ListMultipartUploadsResult", ns(S3_NS))]
struct UploadsPage {
    #[xml(rename = "IsTruncated")]
    is_truncated: Option<bool>,
    #[xml(rename = "NextKeyMarker")]
    next_key_marker: Option<String>,
    #[xml(rename = "NextUploadIdMarker")]
    next_upload_id_marker: Option<String>,
    uploads: Vec<UploadEntry>,
}

#[derive(FromXml)]
#[xml(rename = "Upload", ns(S3_NS))]
struct UploadEntry {
    #[xml(rename = "Key")]
    key: String,
    #[xml(rename = "UploadId")]
    upload_id: String,
    #[xml(rename = "Initiated")]
    initiated: Option<String>,
}

#[derive(ToXml)]
#[xml(rename = "CORSConfiguration", ns(S3_NS))]
struct CorsConfiguration<'a> {
    rules: Vec<CorsRule<'a>>,
}

#[derive(ToXml)]
#[xml(rename = "CORSRule", ns(S3_NS))]
struct CorsRule<'a> {
    #[xml(rename = "AllowedOrigin")]
    origins: Vec<&'a str>,
    #[xml(rename = "AllowedMethod")]
    methods: Vec<&'a str>,
    #[xml(rename = "AllowedHeader")]
    headers: Vec<&'a str>,
    #[xml(rename = "ExposeHeader")]
    expose: Vec<&'a str>,
    #[xml(rename = "MaxAgeSeconds")]
    max_age: u32,
}

impl Inner {
    /// Signs a request to the bucket itself (not an object) with `query`, sorted by name.
    fn sign_bucket(&self, method: rusty_s3::Method, query: &[(&str, &str)]) -> Url {
        rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            method,
            self.bucket.base_url().clone(),
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            self.bucket.region(),
            REQUEST_TTL.as_secs(),
            query.iter().copied(),
            iter::empty(),
        )
    }

    pub(super) async fn abort(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let action = self.bucket.abort_multipart_upload(Some(&self.credentials), key, upload_id);
        let url = action.sign(REQUEST_TTL);
        self.http.send_ok(Method::DELETE, &url, &[], http::empty()).await.map(drop)
    }
}

impl S3Blobs {
    /// Every unfinished multipart upload under the videos' prefix, every page of them.
    pub async fn list_uploads(&self) -> Result<Vec<PendingUpload>, S3Error> {
        let inner = &self.inner;
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            // Sorted by name, as signing requires.
            let mut query = Vec::with_capacity(4);
            if let Some((key, _)) = &marker {
                query.push(("key-marker", key.as_str()));
            }
            query.push(("prefix", PREFIX));
            if let Some((_, id)) = &marker {
                query.push(("upload-id-marker", id.as_str()));
            }
            query.push(("uploads", ""));
            let url = inner.sign_bucket(rusty_s3::Method::Get, &query);
            let res = inner.http.send_ok(Method::GET, &url, &[], http::empty()).await?;
            let xml = http::read_xml(res).await?;
            let page: UploadsPage = instant_xml::from_str(&xml)
                .map_err(|e| S3Error::Protocol(format!("multipart upload listing: {e}")))?;
            out.extend(page.uploads.into_iter().map(|u| PendingUpload {
                video: S3Blobs::video_of(&u.key),
                initiated: u.initiated.as_deref().and_then(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                }),
                key: u.key,
                upload_id: u.upload_id,
            }));
            let next = (page.next_key_marker.filter(|k| !k.is_empty()))
                .zip(page.next_upload_id_marker.filter(|u| !u.is_empty()));
            match (page.is_truncated, next) {
                (Some(true), Some(next)) if marker.as_ref() != Some(&next) => marker = Some(next),
                (Some(true), _) => {
                    return Err(S3Error::Protocol("a truncated listing with no way on".into()));
                }
                _ => return Ok(out),
            }
        }
    }

    /// Aborts an unfinished multipart upload; one already gone counts as aborted.
    pub async fn abort_upload(&self, upload: &PendingUpload) -> Result<(), S3Error> {
        match self.inner.abort(&upload.key, &upload.upload_id).await {
            Err(S3Error::Status { code, .. }) if code == "NoSuchUpload" => Ok(()),
            other => other,
        }
    }

    /// Sets the bucket's CORS rules to one: `origin` may GET, HEAD and POST (the form upload
    /// and playback) with any request header, and read the `ETag`. Replaces earlier rules.
    pub async fn put_bucket_cors(&self, origin: &str) -> Result<(), S3Error> {
        let doc = CorsConfiguration {
            rules: vec![CorsRule {
                origins: vec![origin],
                methods: vec!["GET", "HEAD", "POST"],
                headers: vec!["*"],
                expose: vec!["ETag"],
                max_age: 3600,
            }],
        };
        let body = instant_xml::to_string(&doc)
            .map_err(|e| S3Error::Protocol(format!("CORS document: {e}")))?;
        // S3 requires the body's MD5 on this request (a guard against a truncated rule set).
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(body.as_bytes()));
        let url = self.inner.sign_bucket(rusty_s3::Method::Put, &[("cors", "")]);
        let headers = [("content-md5", md5.as_str()), ("content-type", "application/xml")];
        self.inner.http.send_ok(Method::PUT, &url, &headers, http::full(body)).await.map(drop)
    }
}
