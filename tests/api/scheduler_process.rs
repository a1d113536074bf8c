//! The real binary as a child process: a queued deletion survives `kill -9`, and an idle
//! server does not spin.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix::Addr;
use actix_web::http::Method;
use actors::model::{JobKind, UserId, VideoId};
use actors::store::{JobQueueStats, VideoStore};
use serde_json::json;
use time::OffsetDateTime;

use crate::helpers::read_reply;
use crate::scheduler_support::{assert_gone, eventually, make_ready, records, remnants};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    l.local_addr().expect("bound").port()
}

/// Loopback addresses of the four services; the same ones again make a restart the same node.
#[derive(Debug, Clone)]
struct Ports {
    api: String,
    stream: String,
    scheduler: String,
    web: String,
}

impl Ports {
    fn fresh() -> Ports {
        let addr = || format!("127.0.0.1:{}", free_port());
        Ports { api: addr(), stream: addr(), scheduler: addr(), web: addr() }
    }
}

/// The binary on four loopback ports; killed when dropped.
struct Proc {
    child: Child,
    api: String,
}

impl Proc {
    /// Starts the binary on fresh ports and waits until it answers.
    async fn start(data: &Path, role: &str, extra: &[&str]) -> Proc {
        Proc::start_on(data, role, &Ports::fresh(), extra).await
    }

    /// Starts the binary on `ports` and waits until its api answers.
    async fn start_on(data: &Path, role: &str, ports: &Ports, extra: &[&str]) -> Proc {
        let p = Proc::spawn(data, role, ports, extra);
        assert!(answers_healthz(&p.api).await, "the {role} process answers /healthz");
        p
    }

    /// Starts the binary on `ports` without waiting for it.
    fn spawn(data: &Path, role: &str, ports: &Ports, extra: &[&str]) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_douyin_club"))
            .args(["--role", role, "--data-dir"])
            .arg(data)
            .args(["--api-addr", &ports.api, "--stream-addr", &ports.stream])
            .args(["--scheduler-addr", &ports.scheduler, "--web-addr", &ports.web])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        Proc { child, api: format!("http://{}", ports.api) }
    }

    /// Sends `SIGname` (e.g. `STOP`, `CONT`) with the `kill` command.
    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIG{name} delivered");
    }

    fn kill9(&mut self) {
        // SIGKILL: no shutdown code runs, as in a crash or a power cut.
        self.child.kill().expect("killed");
        self.child.wait().expect("reaped");
    }

    /// The process's nice value (field 19 of `/proc/<pid>/stat`).
    fn nice(&self) -> i64 {
        stat_field(&self.child.id().to_string(), 19)
    }

    /// The process's scheduling policy (field 41 of `/proc/<pid>/stat`; 5 is `SCHED_IDLE`).
    fn policy(&self) -> i64 {
        stat_field(&self.child.id().to_string(), 41)
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

/// Whether the service at `base` answers `/healthz` with a success within 20 s.
async fn answers_healthz(base: &str) -> bool {
    let client = awc::Client::default();
    eventually(Duration::from_secs(20), || {
        let req = client.get(format!("{base}/healthz"));
        async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await
}

/// Field `n` (numbered from 1, as in proc(5)) of `/proc/<pid>/stat`, a number.
fn stat_field(pid: &str, n: usize) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc is readable");
    // Fields after the parenthesised command name start at field 3.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    rest.split_whitespace().nth(n - 3).expect("the field").parse().expect("a number")
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

/// Records still to run (not given up on).
async fn waiting(store: &Addr<VideoStore>) -> u64 {
    store
        .send(JobQueueStats { kind: JobKind::RemoveVideo })
        .await
        .expect("store reachable")
        .expect("queue stats")
        .waiting
}

/// Queues `n` removals of videos that never had a row or a file, in one transaction, as
/// bench/scheduler.sh does: a queue worth draining in milliseconds, where a store message per
/// record would cost an fsync each.
fn queue_many(db: &Path, n: usize) {
    let mut conn = rusqlite::Connection::open(db).expect("the database opens");
    let tx = conn.transaction().expect("a transaction");
    let now = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .expect("milliseconds fit");
    for _ in 0..n {
        tx.execute(
            "INSERT INTO jobs (kind, video_id, next_attempt_at, queued_at)
             VALUES ('remove_video', ?1, ?2, ?2)",
            rusqlite::params![VideoId::new().to_string(), now],
        )
        .expect("queued");
    }
    tx.commit().expect("committed");
}

#[actix_web::test]
async fn a_scheduler_killed_mid_drain_restarts_and_finishes_within_seconds_not_a_lease() {
    const N: u64 = 4000;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("the data dir");
    let db = data.join("douyin.sqlite3");
    let store = VideoStore::start(VideoStore::open(&db, 2).expect("the store opens"), 1);
    queue_many(&db, usize::try_from(N).expect("small"));

    // First run: killed with -9 mid-drain while it holds claims. It is frozen (SIGSTOP) to look
    // at the queue, and let go again (SIGCONT) if it held none at that instant.
    let ports = Ports::fresh();
    let args = ["--delete-every-secs", "1"];
    let mut first = Proc::spawn(&data, "all", &ports, &args);
    let mut held = 0;
    for _ in 0..1000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if waiting(&store).await == N {
            continue; // not begun yet
        }
        first.signal("STOP");
        // A claim moves next_attempt_at a lease (60 s) ahead: those are the records it holds.
        let soon = OffsetDateTime::now_utc() + Duration::from_secs(30);
        let left = records(&store).await;
        held = left.iter().filter(|r| r.next_attempt_at > soon).count();
        if held > 0 || left.is_empty() {
            break;
        }
        first.signal("CONT");
    }
    first.kill9();
    assert!(held > 0, "the first run was killed holding claims");

    // Second run: the same node (same addresses, same data dir) takes its dead claims back.
    let restarted = std::time::Instant::now();
    let _second = Proc::start_on(&data, "all", &ports, &args).await;
    let drained = eventually(Duration::from_secs(10), || {
        let store = store.clone();
        async move { waiting(&store).await == 0 }
    })
    .await;
    assert!(
        drained,
        "{} records (of which {held} were claimed by the killed run) still queued {:?} after \
         the restart",
        waiting(&store).await,
        restarted.elapsed()
    );
}

/// A scheduler node's work is background work: it runs under `SCHED_IDLE`, 19 nice values
/// below the nodes that serve requests (capped at 19), which keep their priority and policy.
#[actix_web::test]
async fn a_scheduler_node_yields_the_cpu_to_the_nodes_serving_requests() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let ours = stat_field("self", 19);
    let our_policy = stat_field("self", 41);
    let api = Proc::start(&data, "api", &[]).await;
    let ports = Ports::fresh();
    let scheduler = Proc::spawn(&data, "scheduler", &ports, &[]);
    let url = format!("http://{}", ports.scheduler);
    assert!(answers_healthz(&url).await, "the scheduler answers /healthz");
    assert_eq!(api.nice(), ours, "the api keeps its priority");
    assert_eq!(scheduler.nice(), (ours + 19).min(19), "the scheduler yields");
    assert_eq!(api.policy(), our_policy, "the api keeps its policy");
    assert_eq!(scheduler.policy(), 5, "the scheduler runs under SCHED_IDLE");
}
