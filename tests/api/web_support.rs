//! What the web tests share: `/api` calls as a browser makes them, cookies, pages, marking a
//! video ready without the stream service, stand-in stream and api services for the proxy and
//! the pages, and waiting for the scheduler to probe an upload.

use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use awc::http::Method;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, TestUser, enc, read_reply};

/// A browser's cookies for the site: `session` and `user`.
#[derive(Debug, Clone, Default)]
pub struct Jar {
    pub session: Option<String>,
    pub user: Option<String>,
}

impl Jar {
    pub fn header(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(s) = &self.session {
            parts.push(format!("session={s}"));
        }
        if let Some(u) = &self.user {
            parts.push(format!("user={u}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The `Set-Cookie` lines of a reply.
pub fn set_cookies(r: &Reply) -> Vec<String> {
    r.headers.get_all("set-cookie").filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
}

/// `POST /api` with `envelope`, the jar's cookies and an optional `Origin`.
pub async fn call(app: &TestApp, jar: &Jar, origin: Option<&str>, envelope: Value) -> Reply {
    let mut req = app.client.post(format!("{}/api", app.web));
    if let Some(c) = jar.header() {
        req = req.insert_header(("Cookie", c));
    }
    if let Some(o) = origin {
        req = req.insert_header(("Origin", o));
    }
    read_reply(req.send_json(&envelope).await.expect("the web service answers")).await
}

/// Registers through the web service as a browser does; returns the jar the reply set.
pub async fn browser_register(app: &TestApp, name: &str) -> (Jar, Reply) {
    let env = json!({"url": "/user", "method": "POST",
                     "req_body": {"user_name": name, "pwd": "password1"}});
    let r = call(app, &Jar::default(), Some(&app.web), env).await;
    let mut jar = Jar::default();
    for c in set_cookies(&r) {
        let pair = c.split(';').next().unwrap_or_default();
        if let Some(v) = pair.strip_prefix("session=") {
            jar.session = Some(v.to_owned());
        } else if let Some(v) = pair.strip_prefix("user=") {
            jar.user = Some(v.to_owned());
        }
    }
    (jar, r)
}

/// A jar for a user registered directly at the api.
pub fn jar_of(user: &TestUser) -> Jar {
    Jar { session: Some(user.session.clone()), user: Some(enc(&user.name)) }
}

/// `GET <web><path>` with the jar; the status and the body as text.
pub async fn page(app: &TestApp, jar: &Jar, path: &str) -> (u16, String, Reply) {
    let mut req = app.client.get(format!("{}{path}", app.web));
    if let Some(c) = jar.header() {
        req = req.insert_header(("Cookie", c));
    }
    let r = read_reply(req.send().await.expect("the web service answers")).await;
    (r.status.as_u16(), String::from_utf8_lossy(&r.raw).into_owned(), r)
}

/// Marks a pending video ready as a finished upload would, through a second store actor on
/// the node's database (the stream service is not needed for page tests).
pub async fn mark_ready(app: &TestApp, user: &TestUser, vid: &str) {
    use actors::model::{UserId, VideoFile};
    let r = app
        .api(Method::GET, &format!("/user/{}", enc(&user.name)), Some(&user.session), None)
        .await;
    let owner = UserId(r.assert_status(200)["id"].as_i64().expect("id"));
    let store = app.side_store();
    let file = VideoFile {
        size: 1234,
        content_type: "video/webm".into(),
        sha256: "0".repeat(64),
        uploaded_at: time::OffsetDateTime::now_utc(),
        location: actors::model::BlobLocation::File,
    };
    let id = vid.parse().expect("a video id");
    store
        .send(actors::store::MarkReady { id, owner, file })
        .await
        .expect("the store answers")
        .expect("the video becomes ready");
}

/// A ready video of `user` called `name`.
pub async fn ready_video(app: &TestApp, user: &TestUser, name: &str) -> String {
    let vid = app.create_video(user, name).await;
    mark_ready(app, user, &vid).await;
    vid
}

/// What the fake stream service saw of the last request.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The path the request was for.
    pub path: Option<String>,
    pub session: Option<String>,
    pub forwarded_for: Option<String>,
    pub cookie: Option<String>,
    pub upload_len: usize,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
}

/// The bytes the fake stream service plays: every byte value, many times over.
pub fn clip_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// The poster the fake stream service serves: a WebP's RIFF header, then bytes that differ
/// at every offset.
pub fn poster_bytes() -> Vec<u8> {
    let mut b = b"RIFF\x00\x00\x00\x00WEBPVP8 ".to_vec();
    b.extend((0..20_000u32).map(|i| (i * 11 % 241) as u8));
    b
}

/// The fake poster's validators.
pub const POSTER_ETAG: &str = "\"poster-1\"";
pub const POSTER_MODIFIED: &str = "Tue, 01 Dec 2026 10:00:00 GMT";

/// A stand-in stream service on 127.0.0.1:0: single-range playback of [`clip_bytes`], the
/// poster [`poster_bytes`] with its validators, uploads counted as they stream in, 429 for the
/// nil-ish id `…0429` and, for the poster, 404 for `…0404`.
pub fn fake_stream() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let data = web::Data::new(clip_bytes());
    let s = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(web::Data::new(s.clone()))
            .route("/videos/{vid}", web::get().to(fake_play))
            .route("/videos/{vid}", web::head().to(fake_play))
            .route("/videos/{vid}/poster", web::get().to(fake_poster))
            .route("/videos/{vid}/poster", web::head().to(fake_poster))
            .route("/upload/{vid}", web::post().to(fake_upload))
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .disable_signals()
    .run();
    actix_web::rt::spawn(server);
    (url, seen)
}

fn remember(req: &HttpRequest, seen: &Mutex<Seen>) {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut s = seen.lock().expect("not poisoned");
    s.path = Some(req.path().to_owned());
    s.session = h("x-session-id");
    s.forwarded_for = h("x-forwarded-for");
    s.cookie = h("cookie");
    s.content_type = h("content-type");
    s.content_length = h("content-length");
}

async fn fake_play(
    req: HttpRequest,
    data: web::Data<Vec<u8>>,
    seen: web::Data<Arc<Mutex<Seen>>>,
) -> HttpResponse {
    remember(&req, &seen);
    if req.path().ends_with("0429") {
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "7"))
            .json(json!({"error": "slow down", "error_code": "010"}));
    }
    if req.headers().get("if-none-match").is_some_and(|v| v == "\"abc\"") {
        return HttpResponse::NotModified().insert_header(("ETag", "\"abc\"")).finish();
    }
    let len = data.len();
    let range = req.headers().get("range").and_then(|v| v.to_str().ok()).and_then(|r| {
        let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
        let a: usize = a.parse().ok()?;
        let b: usize = if b.is_empty() { len - 1 } else { b.parse().ok()? };
        Some((a, b.min(len - 1)))
    });
    let mut res = match range {
        Some((a, _)) if a >= len => {
            return HttpResponse::RangeNotSatisfiable()
                .insert_header(("Content-Range", format!("bytes */{len}")))
                .finish();
        }
        Some((a, b)) => {
            let mut r = HttpResponse::PartialContent();
            r.insert_header(("Content-Range", format!("bytes {a}-{b}/{len}")));
            (r, a, b)
        }
        None => (HttpResponse::Ok(), 0, len - 1),
    };
    res.0.insert_header(("Accept-Ranges", "bytes")).insert_header(("ETag", "\"abc\""));
    res.0.content_type("video/webm");
    let body = data[res.1..=res.2].to_vec();
    // Sent in small chunks so the proxy has to stream rather than receive one buffer.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        body.chunks(8192).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    res.0.body(actix_web::body::SizedStream::new(
        body.len() as u64,
        futures_util::stream::iter(chunks),
    ))
}

async fn fake_poster(req: HttpRequest, seen: web::Data<Arc<Mutex<Seen>>>) -> HttpResponse {
    remember(&req, &seen);
    let vid = req.match_info().get("vid").unwrap_or_default();
    if vid.ends_with("0429") {
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "7"))
            .json(json!({"error": "slow down", "error_code": "010"}));
    }
    if vid.ends_with("0404") {
        return HttpResponse::NotFound().json(json!({"error": "no poster", "error_code": "006"}));
    }
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let validators = [("ETag", POSTER_ETAG), ("Last-Modified", POSTER_MODIFIED)];
    if h("if-none-match") == POSTER_ETAG || h("if-modified-since") == POSTER_MODIFIED {
        let mut r = HttpResponse::NotModified();
        for v in validators {
            r.insert_header(v);
        }
        return r.finish();
    }
    let mut r = HttpResponse::Ok();
    for v in validators {
        r.insert_header(v);
    }
    r.insert_header(("Cache-Control", "public, max-age=60")).content_type("image/webp");
    let body = poster_bytes();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        body.chunks(4096).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    r.body(actix_web::body::SizedStream::new(body.len() as u64, futures_util::stream::iter(chunks)))
}

/// A stand-in api on 127.0.0.1:0 whose every list (the feed, any user's videos) is `videos`,
/// every video id finds the video of that id, every session belongs to the user asked about,
/// and no video has comments: what the pages need to show videos the real api cannot make
/// without the scheduler's probe.
pub fn fake_api(videos: Vec<Value>) -> String {
    let videos = web::Data::new(videos);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    let server = actix_web::HttpServer::new(move || {
        let list = |v: web::Data<Vec<Value>>| async move {
            HttpResponse::Ok().json(json!({"videos": v.as_slice(), "next": null}))
        };
        let one = |v: web::Data<Vec<Value>>, vid: web::Path<String>| async move {
            match v.iter().find(|x| x["id"] == vid.as_str()) {
                Some(x) => HttpResponse::Ok().json(x),
                None => HttpResponse::NotFound().json(json!({"error": "no", "error_code": "006"})),
            }
        };
        let user = |name: web::Path<String>| async move {
            HttpResponse::Ok().json(json!({"id": 1, "user_name": name.as_str()}))
        };
        let comments = || async { HttpResponse::Ok().json(json!({"comments": [], "next": null})) };
        actix_web::App::new()
            .app_data(videos.clone())
            .route("/videos", web::get().to(list))
            .route("/user/{name}/videos", web::get().to(list))
            .route("/user/{name}", web::get().to(user))
            .route("/videos/{vid}", web::get().to(one))
            .route("/videos/{vid}/comments", web::get().to(comments))
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .disable_signals()
    .run();
    actix_web::rt::spawn(server);
    url
}

/// Polls the api (never a fixed sleep) until the scheduler has probed the ready video `vid`
/// of `owner` and the video object names its poster; returns that object.
pub async fn wait_for_poster(app: &TestApp, owner: &str, vid: &str) -> Value {
    let path = format!("/user/{}/videos/{vid}", enc(owner));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = app.api(Method::GET, &path, None, None).await;
        let v = r.assert_status(200).clone();
        assert!(v.get("poster_url").is_some(), "no poster_url at all (issue 12's core?): {v}");
        if !v["poster_url"].is_null() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "no poster after 60 s: {v}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn fake_upload(
    req: HttpRequest,
    mut payload: web::Payload,
    seen: web::Data<Arc<Mutex<Seen>>>,
) -> HttpResponse {
    remember(&req, &seen);
    let mut n = 0;
    while let Some(chunk) = payload.next().await {
        n += chunk.expect("the upload arrives").len();
    }
    seen.lock().expect("not poisoned").upload_len = n;
    HttpResponse::Created().json(json!({"received": n}))
}
