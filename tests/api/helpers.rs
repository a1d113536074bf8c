//! The test node and a small HTTP client around it.

use std::path::PathBuf;
use std::time::Duration;

use awc::http::{Method, StatusCode};
use douyin_club::{Config, Node};
use serde_json::{Value, json};

use crate::garage_support::Garage;

/// Where a test node keeps its video files: API.md's `--blob-store file` or `s3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Files,
    /// A real Garage started for the test.
    S3,
}

/// Runs each named test body, an `async fn name(backend: Backend)` of the calling module, once
/// per blob backend: as `files::name` and as `s3::name` (so `cargo test s3::` runs every test
/// against Garage).
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod files {
            $(
                #[actix::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Files).await;
                }
            )+
        }
        mod s3 {
            $(
                #[actix::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::S3).await;
                }
            )+
        }
    };
}

/// A running node on ephemeral ports, with its temporary data directory.
#[allow(dead_code)] // Each test module uses the parts it needs.
pub struct TestApp {
    pub node: Node,
    pub dir: tempfile::TempDir,
    pub api: String,
    pub stream: String,
    pub scheduler: String,
    pub web: String,
    pub client: awc::Client,
    /// The object store of an `s3` node; dropped (stopped) after the node.
    pub garage: Option<Garage>,
    /// The node's `--database-url`, when it has one.
    pub database_url: Option<String>,
}

/// A reply: status, headers and the body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
    pub raw: bytes::Bytes,
}

impl Reply {
    /// Asserts the status and, for errors, API.md's error body with this code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error_code"], code, "body: {}", self.body);
        assert!(self.body["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", self.body);
        let ct = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(ct, "application/json; charset=utf-8");
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

/// A registered, signed-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub session: String,
}

/// Keeps a node on its data dir's SQLite file even when the suite runs on PostgreSQL
/// (`DOUYIN_TEST_DATABASE=postgres`): for the tests about that file, or about processes that
/// share it.
pub fn pin_sqlite(cfg: &mut Config) {
    let url = format!("sqlite://{}", cfg.data_dir.join("douyin.sqlite3").display());
    cfg.database_url = Some(url.parse().expect("any text"));
}

pub fn test_config(dir: PathBuf) -> Config {
    let mut cfg = Config::defaults_for(dir);
    let any = "127.0.0.1:0".parse().expect("a valid socket address");
    cfg.api_addr = any;
    cfg.stream_addr = any;
    cfg.scheduler_addr = any;
    cfg.web_addr = any;
    cfg
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a node on `backend` (for `s3`, a Garage of its own) whose configuration `tweak`
    /// may change first; `None` when the test must skip (Garage missing outside CI).
    pub async fn on(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        let garage = match backend {
            Backend::Files => None,
            Backend::S3 => Some(Garage::start().await?),
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cfg = test_config(dir.path().to_path_buf());
        if let Some(garage) = &garage {
            garage.configure(&mut cfg);
        }
        tweak(&mut cfg);
        let mut app = Self::spawn_config(cfg, dir).await;
        app.garage = garage;
        Some(app)
    }

    /// Starts a node whose configuration `tweak` may change first.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cfg = test_config(dir.path().to_path_buf());
        tweak(&mut cfg);
        Self::spawn_config(cfg, dir).await
    }

    pub async fn spawn_config(mut cfg: Config, dir: tempfile::TempDir) -> Self {
        // `DOUYIN_TEST_DATABASE=postgres cargo test` runs every node of the suite on a fresh
        // PostgreSQL database instead of its data dir's SQLite file (tests that open that file
        // themselves stay on SQLite).
        if cfg.database_url.is_none()
            && std::env::var("DOUYIN_TEST_DATABASE").as_deref() == Ok("postgres")
        {
            let url = crate::pg_support::fresh_database().await.expect("PostgreSQL for the suite");
            cfg.database_url = Some(url.parse().expect("any text"));
        }
        let database_url = cfg.database_url.as_ref().map(|u| u.expose().to_owned());
        let mut node = Node::start(cfg).await.expect("the node starts");
        node.spawn();
        let client =
            awc::Client::builder().timeout(Duration::from_secs(30)).disable_redirects().finish();
        TestApp {
            api: node.urls.api.clone(),
            stream: node.urls.stream.clone(),
            scheduler: node.urls.scheduler.clone(),
            web: node.urls.public_origin.clone(),
            node,
            dir,
            client,
            garage: None,
            database_url,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Store actors of their own over the node's database: what another process on the same
    /// database sees.
    pub fn side_store(&self) -> actix::Addr<actors::store::VideoStore> {
        use actors::store::VideoStore;
        let url = self.database_url.clone();
        let file = self.data_dir().join("douyin.sqlite3");
        // On a thread of its own: the PostgreSQL client may not connect on the test's runtime.
        let pool = std::thread::spawn(move || match url.as_deref() {
            Some(url) if url.starts_with("postgres") => VideoStore::open_postgres(url, 2),
            Some(url) => VideoStore::open(std::path::Path::new(&url["sqlite://".len()..]), 2),
            None => VideoStore::open(&file, 2),
        })
        .join()
        .expect("the store opens")
        .expect("the database opens");
        VideoStore::start(pool, 1)
    }

    /// Sends a request to the api service with an optional session header and JSON body.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let url = format!("{}{}", self.api, path);
        self.send(method, &url, session.map(|s| ("X-Session-Id", s.to_owned())), body).await
    }

    /// Sends any request; `header` is one extra header.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        header: Option<(&str, String)>,
        body: Option<Value>,
    ) -> Reply {
        send_with(&self.client, method, url, header, body).await
    }

    /// Registers `name` with a fixed password and returns the signed-in user.
    pub async fn register(&self, name: &str) -> TestUser {
        let r = self
            .api(Method::POST, "/user", None, Some(json!({"user_name": name, "pwd": "password1"})))
            .await;
        let body = r.assert_status(201);
        TestUser {
            name: name.to_owned(),
            session: body["session_id"].as_str().expect("session_id").to_owned(),
        }
    }

    /// Creates a pending video for `user` and returns its id.
    pub async fn create_video(&self, user: &TestUser, name: &str) -> String {
        let path = format!("/user/{}/videos", enc(&user.name));
        let r =
            self.api(Method::POST, &path, Some(&user.session), Some(json!({"name": name}))).await;
        r.assert_status(201)["id"].as_str().expect("id").to_owned()
    }
}

/// [`TestApp::send`] with any client (a test driving processes rather than a `TestApp`).
pub async fn send_with(
    client: &awc::Client,
    method: Method,
    url: &str,
    header: Option<(&str, String)>,
    body: Option<Value>,
) -> Reply {
    let mut req = client.request(method, url);
    if let Some((k, v)) = header {
        req = req.insert_header((k, v));
    }
    let res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    };
    read_reply(res.expect("the request reaches the server")).await
}

pub async fn read_reply<S>(mut res: awc::ClientResponse<S>) -> Reply
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let raw = res.body().limit(64 << 20).await.expect("the body arrives");
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply { status: res.status(), headers: res.headers().clone(), body, raw }
}

/// Percent-encodes a path segment (user names may be any Unicode letters).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
