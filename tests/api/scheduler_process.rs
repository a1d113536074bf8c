//! The real binary as a child process: a queued deletion survives `kill -9`, and an idle
//! server does not spin.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::http::Method;
use actors::model::{UserId, VideoId};
use actors::store::VideoStore;
use serde_json::json;

use crate::helpers::read_reply;
use crate::scheduler_support::{assert_gone, eventually, make_ready, records, remnants};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    l.local_addr().expect("bound").port()
}

/// The binary on four fresh loopback ports; killed when dropped.
struct Proc {
    child: Child,
    api: String,
}

impl Proc {
    async fn start(data: &Path, role: &str, extra: &[&str]) -> Proc {
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let api_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_douyin_club"))
            .args(["--role", role, "--data-dir"])
            .arg(data)
            .args(["--api-addr", &addr(api_port), "--stream-addr", &addr(free_port())])
            .args(["--scheduler-addr", &addr(free_port()), "--web-addr", &addr(free_port())])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let p = Proc { child, api: format!("http://{}", addr(api_port)) };
        let client = awc::Client::default();
        let up = eventually(Duration::from_secs(20), || {
            let req = client.get(format!("{}/healthz", p.api));
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        assert!(up, "the {role} process answers /healthz");
        p
    }

    fn kill9(&mut self) {
        // SIGKILL: no shutdown code runs, as in a crash or a power cut.
        self.child.kill().expect("killed");
        self.child.wait().expect("reaped");
    }

    /// utime + stime of the process, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc is readable");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn a_queued_deletion_survives_kill_9_and_completes_after_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    // First run: the api alone, no scheduler anywhere (its wake goes to a closed port).
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut api = Proc::start(&data, "api", &["--scheduler-url", &nowhere]).await;
    let client = awc::Client::default();
    let call =
        |method: Method, path: &str, session: Option<&str>, body: Option<serde_json::Value>| {
            let mut req = client.request(method, format!("{}{path}", api.api));
            if let Some(s) = session {
                req = req.insert_header(("X-Session-Id", s.to_owned()));
            }
            async move {
                let res = match body {
                    Some(b) => req.send_json(&b).await,
                    None => req.send().await,
                };
                read_reply(res.expect("the api answers")).await
            }
        };
    let r =
        call(Method::POST, "/user", None, Some(json!({"user_name": "dora", "pwd": "password1"})))
            .await;
    let session = r.assert_status(201)["session_id"].as_str().expect("session").to_owned();
    let r = call(Method::POST, "/user/dora/videos", Some(&session), Some(json!({"name": "clip"})))
        .await;
    let video: VideoId = r.assert_status(201)["id"].as_str().expect("id").parse().expect("uuid");
    let r = call(Method::GET, "/user/dora", Some(&session), None).await;
    let owner = UserId(r.assert_status(200)["id"].as_i64().expect("id"));

    // The test opens the same database beside the process (WAL allows it) to upload.
    let pool = VideoStore::open(&data.join("douyin.sqlite3"), 2).expect("the store opens");
    let store = VideoStore::start(pool, 1);
    let blobs = actors::blob::LocalBlobs::open(data.join("videos"), actors::blob::ReadMode::Pread)
        .expect("blob dir");
    make_ready(&store, &blobs, owner, video).await;
    let comments = format!("/videos/{video}/comments");
    call(Method::POST, &comments, Some(&session), Some(json!({"content": "hi"})))
        .await
        .assert_status(201);

    let started = std::time::Instant::now();
    let path = format!("/user/dora/videos/{video}");
    call(Method::DELETE, &path, Some(&session), None).await.assert_status(204);
    assert!(started.elapsed() < Duration::from_secs(1), "204 at once without a scheduler");
    call(Method::GET, &path, Some(&session), None).await.assert_error(404, "006");
    api.kill9();

    assert_eq!(records(&store).await.len(), 1, "the record outlived the process");
    assert!(blobs.path_of(video).exists() && remnants(&store, video).await.comments == 1);

    // Second run: everything, scheduler included, on the same data dir.
    let _all = Proc::start(&data, "all", &["--delete-every-secs", "1"]).await;
    let done = eventually(Duration::from_secs(10), || {
        let store = store.clone();
        async move { records(&store).await.is_empty() }
    })
    .await;
    assert!(done, "the restarted scheduler drained the queue");
    assert_gone(&store, &blobs, video).await;
}

#[actix_web::test]
async fn an_idle_server_uses_almost_no_cpu() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let p = Proc::start(&dir.path().join("data"), "all", &["--delete-every-secs", "1"]).await;
    // Let start-up work (migrations, the first tick and reconciliation) finish first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = p.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = p.cpu_ticks() - before;
    // Clock ticks are 1/100 s: 15 ticks in 3 s is 5 % of one core; a spinning loop is 300.
    assert!(used <= 15, "an idle server used {used} ticks of CPU in 3 s");
}
