//! `deploy/cluster.sh` as an operator runs it: a whole cluster on loopback (Garage, 2 api,
//! 2 stream, 2 scheduler and 2 web processes of this binary, nginx in front), used through
//! nginx's one public URL the way a browser uses the site. Then one stream node and one api node
//! are killed (`SIGKILL`), and playback and the feed still answer: nginx retries each request
//! that met a dead node on the live one, which its access log shows. `down` leaves nothing
//! running. Without nginx or Garage the test skips with the reason, and fails under `CI=true`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::garage_support::have_garage;
use crate::helpers::{Reply, read_reply};
use crate::stream_support::fake_mp4;

const USER: &str = "cluster_user";
const VIDEO_NAME: &str = "Seen from every node";

/// Whether the script's tools are here: nginx (often outside PATH, in /usr/sbin), curl,
/// python3, setsid; and Garage.
fn have_tools() -> bool {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success())
    };
    let mut missing: Vec<&str> = Vec::new();
    if !runs("nginx", "-v") && !runs("/usr/sbin/nginx", "-v") {
        missing.push("nginx");
    }
    for tool in ["curl", "python3", "setsid"] {
        if !runs(tool, "--version") {
            missing.push(tool);
        }
    }
    if !missing.is_empty() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{missing:?} required under CI");
        eprintln!("skipping: {} not installed (deploy/cluster.sh needs them)", missing.join(", "));
        return false;
    }
    have_garage()
}

/// A cluster started by `deploy/cluster.sh up` in a temporary run dir; `down` when dropped,
/// after printing the end of every log if the test failed.
struct Cluster {
    /// Holds the run dir (`<tmp>/run`), which `down` removes.
    tmp: tempfile::TempDir,
    /// `cluster.env`: PUBLIC_URL and the balancers.
    env: HashMap<String, String>,
    /// Process name → the URL `status` checks (from the run dir's `processes`).
    urls: HashMap<String, String>,
    down: bool,
}

impl Cluster {
    fn run_dir(tmp: &Path) -> PathBuf {
        tmp.join("run")
    }

    /// The script with only what it needs in its environment: a developer's `DOUYIN_*`
    /// variables would reach every node.
    fn script(tmp: &Path, action: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cluster.sh"))
            .arg(action)
            .env_clear()
            .env("BIN", env!("CARGO_BIN_EXE_douyin_club"))
            .env("CLUSTER_DIR", Self::run_dir(tmp))
            .env("RUST_LOG", "info")
            .current_dir(tmp)
            .stdin(Stdio::null());
        for var in ["PATH", "HOME", "LANG"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd
    }

    fn run(tmp: &Path, action: &str) -> Output {
        let out = Self::script(tmp, action).output().expect("bash runs deploy/cluster.sh");
        eprintln!(
            "--- cluster.sh {action}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn up() -> Cluster {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let mut cluster = Cluster { tmp, env: HashMap::new(), urls: HashMap::new(), down: false };
        let out = Self::run(cluster.tmp.path(), "up");
        assert!(out.status.success(), "cluster.sh up failed");
        let dir = cluster.dir();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
        cluster.env = read("cluster.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        cluster.urls = read("processes")
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains(&format!("URL: {}/", cluster.site())), "{printed}");
        cluster
    }

    fn dir(&self) -> PathBuf {
        Self::run_dir(self.tmp.path())
    }

    fn site(&self) -> &str {
        &self.env["PUBLIC_URL"]
    }

    /// `127.0.0.1:<port>` of a node, as nginx's upstream names it.
    fn addr(&self, name: &str) -> String {
        self.urls[name].trim_start_matches("http://").to_owned()
    }

    fn pid(&self, name: &str) -> u32 {
        let path = self.dir().join("pids").join(format!("{name}.pid"));
        std::fs::read_to_string(&path).expect("a pid file").trim().parse().expect("a pid")
    }

    fn pids(&self) -> Vec<(String, u32)> {
        let mut names: Vec<&String> = self.urls.keys().collect();
        names.sort();
        names.into_iter().map(|n| (n.clone(), self.pid(n))).collect()
    }

    fn nginx_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("nginx/logs/access.log")).unwrap_or_default()
    }

    fn down(&mut self) -> Output {
        self.down = true;
        Self::run(self.tmp.path(), "down")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        if std::thread::panicking() {
            let logs = self.dir().join("logs");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.push(self.dir().join("nginx/logs/error.log"));
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- {}:", file.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        self.down();
    }
}

/// Whether `pid` is gone (a zombie counts: it runs nothing and holds no port).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// A browser's cookies, from the `Set-Cookie` lines of a sign-in.
fn cookies(r: &Reply) -> String {
    let pairs: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .collect();
    assert!(pairs.iter().any(|p| p.starts_with("session=")), "no session cookie: {pairs:?}");
    pairs.join("; ")
}

struct Browser {
    client: awc::Client,
    site: String,
    cookie: Option<String>,
}

impl Browser {
    /// `POST /api` as the pages send it: the cookie and our own `Origin`.
    async fn api(&self, url: &str, method: &str, body: Option<Value>) -> Reply {
        let mut req =
            self.client.post(format!("{}/api", self.site)).insert_header(("Origin", &*self.site));
        if let Some(c) = &self.cookie {
            req = req.insert_header(("Cookie", c.as_str()));
        }
        let mut envelope = json!({"url": url, "method": method});
        if let Some(b) = body {
            envelope["req_body"] = b;
        }
        read_reply(req.send_json(&envelope).await.expect("nginx answers")).await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.client.get(format!("{}{path}", self.site));
        for h in headers {
            req = req.insert_header(*h);
        }
        if let Some(c) = &self.cookie {
            req = req.insert_header(("Cookie", c.as_str()));
        }
        read_reply(req.send().await.expect("nginx answers")).await
    }

    /// A Range request of the video, checked byte for byte.
    async fn play(&self, vid: &str, data: &[u8], first: usize, last: usize) {
        let range = format!("bytes={first}-{last}");
        let r = self.get(&format!("/videos/{vid}"), &[("Range", &range)]).await;
        assert_eq!(r.status.as_u16(), 206, "Range {range}: {}", String::from_utf8_lossy(&r.raw));
        let content_range = r.headers.get("content-range").and_then(|v| v.to_str().ok());
        assert_eq!(content_range, Some(&*format!("bytes {first}-{last}/{}", data.len())));
        assert!(r.raw[..] == data[first..=last], "Range {range}: other bytes came back");
    }

    async fn feed_has(&self, vid: &str) {
        let r = self.api("/videos", "GET", None).await;
        let ids: Vec<&str> = r.assert_status(200)["videos"]
            .as_array()
            .expect("videos")
            .iter()
            .filter_map(|v| v["id"].as_str())
            .collect();
        assert!(ids.contains(&vid), "the feed lacks {vid}: {ids:?}");
    }
}

#[actix::test]
async fn a_cluster_on_loopback_serves_through_nginx_and_survives_a_killed_api_and_stream_node() {
    if !have_tools() {
        return;
    }
    let t0 = Instant::now();
    let mut cluster = Cluster::up();
    let t_up = t0.elapsed();
    let client =
        awc::Client::builder().timeout(Duration::from_secs(20)).disable_redirects().finish();
    let mut browser = Browser { client, site: cluster.site().to_owned(), cookie: None };

    // Register, then sign in again: the web node moves each session into the cookie.
    let r =
        browser.api("/user", "POST", Some(json!({"user_name": USER, "pwd": "password1"}))).await;
    r.assert_status(201);
    assert!(r.body.get("session_id").is_none(), "the session stays in the cookie");
    let r = browser.api(&format!("/user/{USER}"), "POST", Some(json!({"pwd": "password1"}))).await;
    r.assert_status(200);
    browser.cookie = Some(cookies(&r));

    let r = browser
        .api(&format!("/user/{USER}/videos"), "POST", Some(json!({"name": VIDEO_NAME})))
        .await;
    let vid = r.assert_status(201)["id"].as_str().expect("an id").to_owned();

    // The upload goes through nginx straight to a stream node, and on into Garage.
    let data = fake_mp4(300_000);
    let res = browser
        .client
        .post(format!("{}/upload/{vid}", browser.site))
        .insert_header(("Cookie", browser.cookie.clone().expect("signed in")))
        .insert_header(("Origin", &*browser.site))
        .insert_header(("Content-Type", "video/mp4"))
        .send_body(data.clone())
        .await
        .expect("nginx answers");
    let r = read_reply(res).await;
    assert_eq!(r.assert_status(201)["status"], "ready");
    browser.play(&vid, &data, 1000, 99_999).await;

    let comment = "from behind nginx";
    let r = browser
        .api(&format!("/videos/{vid}/comments"), "POST", Some(json!({"content": comment})))
        .await;
    r.assert_status(201);

    // One stream node and one api node die without a word.
    let (dead_stream, dead_api) = (cluster.addr("stream-1"), cluster.addr("api-1"));
    let (live_stream, live_api) = (cluster.addr("stream-2"), cluster.addr("api-2"));
    for name in ["stream-1", "api-1"] {
        let pid = cluster.pid(name);
        let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        assert!(killed.is_ok_and(|s| s.success()), "kill -KILL {pid}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(gone(cluster.pid("stream-1")) && gone(cluster.pid("api-1"))) {
        assert!(Instant::now() < deadline, "the killed nodes are still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_kill = Instant::now();

    // Round-robin sends some of these to the dead nodes first; every one must still succeed.
    for i in 0..6 {
        browser.play(&vid, &data, i * 40_000, i * 40_000 + 30_000).await;
    }
    for _ in 0..4 {
        browser.feed_has(&vid).await;
    }
    for _ in 0..2 {
        let r = browser.get("/", &[]).await;
        assert_eq!(r.status.as_u16(), 200);
        assert!(String::from_utf8_lossy(&r.raw).contains(VIDEO_NAME), "the home page's feed");
    }
    let r = browser.api(&format!("/videos/{vid}/comments"), "GET", None).await;
    assert_eq!(r.assert_status(200)["comments"][0]["content"], comment);
    let after_kill = t_kill.elapsed();

    // They succeeded because nginx retried them, not because round-robin missed the dead nodes:
    // its log has requests that tried the dead node first and were answered by the live one.
    let log = cluster.nginx_log();
    let retried = |dead: &str, live: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("upstream=[{dead}, {live}]")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let playback = retried(&dead_stream, &live_stream);
    assert!(
        playback
            .iter()
            .any(|l| l.contains(&format!("\"GET /videos/{vid} ")) && l.contains("\" 206 ")),
        "no playback retried from {dead_stream} on {live_stream}:\n{log}"
    );
    let api = retried(&dead_api, &live_api);
    assert!(
        api.iter().any(|l| l.contains("\" 200 ")),
        "no api call retried from {dead_api} on {live_api}:\n{log}"
    );
    eprintln!("retried by nginx:\n{}\n{}", playback.join("\n"), api.join("\n"));

    // `down` stops every process it started and removes the run dir.
    let pids = cluster.pids();
    let t_down = Instant::now();
    let out = cluster.down();
    let t_down = t_down.elapsed();
    assert!(out.status.success(), "cluster.sh down failed");
    for (name, pid) in &pids {
        assert!(gone(*pid), "{name} (pid {pid}) still runs after down");
    }
    assert!(!cluster.dir().exists(), "down leaves the run dir behind");
    let public = browser.site.trim_start_matches("http://").to_owned();
    assert!(std::net::TcpStream::connect(&public).is_err(), "nginx still listens");
    eprintln!(
        "timings: up {t_up:?}, requests after the kill {after_kill:?}, down {t_down:?}, \
         total {:?}",
        t0.elapsed()
    );
}
