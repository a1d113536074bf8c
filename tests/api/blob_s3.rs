//! What only the S3 backend has, on a real Garage: multipart uploads (aborted when dropped,
//! listed and aborted after a crash), byte-exact large objects, reads pinned to the object,
//! presigned GETs with Range and a TTL, POST policies, the bucket's CORS rule.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actors::blob::{BlobStore as _, READ_BUF, S3Blobs, S3Config};
use actors::model::VideoId;
use awc::http::StatusCode;
use bytes::Bytes;
use futures_util::TryStreamExt as _;

use crate::garage_support::Garage;

const MIB: usize = 1 << 20;

fn patterned(len: usize, seed: u32) -> Vec<u8> {
    let start = seed.wrapping_mul(0x9e37_79b9);
    (0..len as u32)
        .map(|i| (i.wrapping_add(start).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(60)).disable_redirects().finish()
}

/// Waits until no multipart upload is unfinished (a dropped writer aborts in the background).
async fn assert_uploads_drain(blobs: &S3Blobs) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = blobs.list_uploads().await.unwrap();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "unfinished uploads left: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn dropped_multipart_writer_is_aborted() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let id = VideoId::new();
    let mut w = blobs.begin_write(id).await.unwrap();
    for _ in 0..9 {
        w.append(Bytes::from(patterned(MIB, 1))).await.unwrap();
    }
    let uploads = blobs.list_uploads().await.unwrap();
    assert_eq!(uploads.len(), 1, "past one part, the write is a multipart upload");
    assert_eq!(uploads[0].video, Some(id));
    assert_eq!(uploads[0].key, S3Blobs::key_of(id));
    assert!(uploads[0].initiated.is_some());
    drop(w);
    assert_uploads_drain(&blobs).await;
    assert!(blobs.head(id).await.unwrap().is_none(), "no object");
}

#[actix::test]
async fn large_write_is_multipart_and_byte_exact() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let id = VideoId::new();
    let data = patterned(40 * MIB, 7);
    let mut w = blobs.begin_write(id).await.unwrap();
    for (i, chunk) in data.chunks(MIB).enumerate() {
        w.append(Bytes::copy_from_slice(chunk)).await.unwrap();
        if i == 20 {
            assert_eq!(blobs.list_uploads().await.unwrap().len(), 1, "multipart midway");
            assert!(blobs.head(id).await.unwrap().is_none(), "invisible before commit");
        }
    }
    w.commit().await.unwrap();
    assert!(blobs.list_uploads().await.unwrap().is_empty(), "completed, not left over");

    let meta = blobs.head(id).await.unwrap().unwrap();
    assert_eq!(meta.len, data.len() as u64);
    // S3's multipart ETag ends with the part count: 40 MiB in 8 MiB parts.
    assert!(meta.etag.ends_with("-5\""), "a multipart object: {}", meta.etag);

    let r = blobs.open(id).await.unwrap();
    let part = 8 * MIB as u64;
    for (off, len) in [
        (0, 10),
        (part - 5, 10),
        (2 * part - 1, 2),
        (4 * part, 3 * MIB),
        (40 * MIB as u64 - 7, 100),
    ] {
        let got = r.read_at(off, len).await.unwrap();
        let end = (off as usize + len).min(data.len());
        assert!(got[..] == data[off as usize..end], "bytes at {off}+{len}");
    }

    // The whole object twice: in playback-sized `read_at` windows (a GET each), then as one
    // streamed GET; the time of each is printed, the bytes must match.
    let started = Instant::now();
    let mut back = Vec::with_capacity(data.len());
    while back.len() < data.len() {
        back.extend_from_slice(&r.read_at(back.len() as u64, READ_BUF).await.unwrap());
    }
    let windows = started.elapsed();
    assert!(back == data, "read back byte for byte in windows");
    let started = Instant::now();
    let chunks: Vec<Bytes> = r.clone().read_stream(0, u64::MAX).try_collect().await.unwrap();
    let streamed = started.elapsed();
    assert!(chunks.concat() == data, "streamed back byte for byte");
    eprintln!("40 MiB from Garage: {windows:?} in 128 KiB read_at windows, {streamed:?} streamed");
}

#[actix::test]
async fn reader_fails_when_the_object_is_replaced() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let id = VideoId::new();
    for (seed, keep) in [(1, true), (2, false)] {
        let mut w = blobs.begin_write(id).await.unwrap();
        w.append(Bytes::from(patterned(4096, seed))).await.unwrap();
        w.commit().await.unwrap();
        if keep {
            let r = blobs.open(id).await.unwrap();
            assert_eq!(r.read_at(0, 10).await.unwrap().len(), 10);
            // Replaced below: the reader must not serve the new object's bytes.
            let mut w = blobs.begin_write(id).await.unwrap();
            w.append(Bytes::from(patterned(4096, 9))).await.unwrap();
            w.commit().await.unwrap();
            let err = r.read_at(0, 10).await.unwrap_err();
            assert!(err.to_string().contains("changed"), "{err}");
            let streamed: Result<Vec<Bytes>, _> =
                r.clone().read_stream(0, 4096).try_collect().await;
            let err = streamed.unwrap_err();
            assert!(err.to_string().contains("changed"), "{err}");
        }
    }
}

#[actix::test]
async fn crashed_upload_is_listed_and_aborted() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let id = VideoId::new();
    let mut w = blobs.begin_write(id).await.unwrap();
    w.append(Bytes::from(patterned(9 * MIB, 3))).await.unwrap();
    // A process killed mid-upload never runs the writer's drop.
    std::mem::forget(w);
    let uploads = blobs.list_uploads().await.unwrap();
    assert_eq!(uploads.len(), 1);
    blobs.abort_upload(&uploads[0]).await.unwrap();
    assert!(blobs.list_uploads().await.unwrap().is_empty());
    blobs.abort_upload(&uploads[0]).await.unwrap();
    assert!(blobs.head(id).await.unwrap().is_none());
}

#[actix::test]
async fn presigned_get_serves_ranges_until_it_expires() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let id = VideoId::new();
    let data = patterned(MIB, 5);
    let mut w = blobs.begin_write(id).await.unwrap();
    w.append(Bytes::from(data.clone())).await.unwrap();
    w.commit().await.unwrap();

    let url = blobs.presign_get(id, Duration::from_secs(2));
    let signed_at = Instant::now();
    let mut res = client()
        .get(url.as_str())
        .insert_header(("Range", "bytes=1000-1999"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let range = res.headers().get("content-range").unwrap().to_str().unwrap();
    assert_eq!(range, format!("bytes 1000-1999/{}", data.len()));
    assert_eq!(&res.body().await.unwrap()[..], &data[1000..2000]);

    // The signature's time has whole seconds: 2 s after signing, plus a margin, it has expired.
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(signed_at.elapsed())).await;
    let mut res =
        client().get(url.as_str()).insert_header(("Range", "bytes=0-9")).send().await.unwrap();
    let body = String::from_utf8_lossy(&res.body().await.unwrap()).into_owned();
    assert_refused(res.status(), &body, "an expired URL");
}

/// The store refused the request. AWS answers 403 and Garage 400 (`InvalidRequest`, with the
/// reason) to a failed policy condition or an expired signature; either is a refusal.
fn assert_refused(status: StatusCode, body: &str, what: &str) {
    assert!(
        matches!(status, StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN),
        "{what} must be refused: {status} {body}"
    );
    assert!(body.contains("<Error>"), "{what}: an S3 error document: {body}");
    eprintln!("{what}: refused with {status}: {body}");
}

/// A `multipart/form-data` body: the fields, then the file (S3 wants the file last).
fn form(fields: &BTreeMap<String, String>, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----douyinS3Boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp4\"\r\n\
             Content-Type: video/mp4\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(
    url: &str,
    fields: &BTreeMap<String, String>,
    file: &[u8],
) -> (StatusCode, String) {
    let (content_type, body) = form(fields, file);
    let mut res = client()
        .post(url)
        .insert_header(("Content-Type", content_type))
        .send_body(body)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&res.body().await.unwrap()).into_owned();
    (res.status(), text)
}

#[actix::test]
async fn post_policy_uploads_only_the_signed_key_size_and_time() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    let id = VideoId::new();
    let other = VideoId::new();
    let file = patterned(1000, 6);
    let ticket = blobs.post_policy(id, 1000, Duration::from_secs(60));
    let url = ticket.url.as_str();

    let mut swapped = ticket.fields.clone();
    swapped.insert("key".into(), S3Blobs::key_of(other));
    let (status, body) = post_form(url, &swapped, &file).await;
    assert_refused(status, &body, "another key");

    let mut tampered = ticket.fields.clone();
    let policy = tampered["policy"].replacen('e', "f", 1);
    tampered.insert("policy".into(), policy);
    let (status, body) = post_form(url, &tampered, &file).await;
    assert_refused(status, &body, "a changed policy");

    let (status, body) = post_form(url, &ticket.fields, &patterned(1001, 6)).await;
    assert_refused(status, &body, "a file over content-length-range");
    assert!(blobs.head(id).await.unwrap().is_none() && blobs.head(other).await.unwrap().is_none());

    let (status, body) = post_form(url, &ticket.fields, &file).await;
    assert!(status.is_success(), "the signed upload: {status} {body}");
    let meta = blobs.head(id).await.unwrap().expect("the object");
    assert_eq!(meta.len, 1000);
    let first = blobs.read_range(id, &meta, 0, 16).await.unwrap();
    assert_eq!(&first[..], &file[..16], "its first bytes, to sniff");

    let short = blobs.post_policy(other, 1000, Duration::from_secs(1));
    let signed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(signed_at.elapsed())).await;
    let (status, body) = post_form(short.url.as_str(), &short.fields, &file).await;
    assert_refused(status, &body, "an expired policy");
    assert!(blobs.head(other).await.unwrap().is_none());
}

#[actix::test]
async fn cors_rule_lets_the_site_origin_post() {
    let Some(garage) = Garage::start().await else { return };
    let blobs = garage.blobs();
    blobs.put_bucket_cors("http://site.example:8080").await.unwrap();
    let bucket = format!("{}/{}/", garage.endpoint, crate::garage_support::BUCKET);
    let preflight = |origin: &'static str| {
        client()
            .request(awc::http::Method::OPTIONS, &bucket)
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .send()
    };
    let res = preflight("http://site.example:8080").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let allowed = res.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap());
    assert!(matches!(allowed, Some("http://site.example:8080" | "*")), "{allowed:?}");

    let res = preflight("http://evil.example").await.unwrap();
    assert!(
        !res.status().is_success() || res.headers().get("access-control-allow-origin").is_none(),
        "another origin is not allowed"
    );
}

#[test]
fn secret_never_in_debug_output() {
    let config = S3Config {
        endpoint: "http://127.0.0.1:1".parse().unwrap(),
        public_endpoint: "https://s3.example".parse().unwrap(),
        bucket: "b".into(),
        region: "r".into(),
        access_key_id: "GKaccess".into(),
        secret_access_key: "s3cr3t-value-never-printed".into(),
    };
    assert!(!format!("{config:?}").contains("s3cr3t"));
    let blobs = S3Blobs::new(config).unwrap();
    let shown = format!("{blobs:?}");
    assert!(shown.contains("GKaccess") && !shown.contains("s3cr3t"), "{shown}");
}
