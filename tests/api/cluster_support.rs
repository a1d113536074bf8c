//! `deploy/cluster.sh` driven from a test: the cluster it starts in a temporary run dir, its
//! processes by name, and a browser that uses the site through nginx's public URL. Shared by
//! `cluster_deploy` and `cluster_load`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::garage_support::have_garage;
use crate::helpers::{Reply, read_reply};
use crate::pg_support::postgres_missing;

/// Whether the script's tools are here: nginx (often outside PATH, in /usr/sbin), curl,
/// python3, setsid; redis-server and PostgreSQL's tools when the cluster is to have them (the
/// script's default); and Garage.
pub fn have_tools(redis: bool, postgres: bool) -> bool {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success())
    };
    let mut missing: Vec<String> = Vec::new();
    if !runs("nginx", "-v") && !runs("/usr/sbin/nginx", "-v") {
        missing.push("nginx is not installed".into());
    }
    for tool in ["curl", "python3", "setsid"] {
        if !runs(tool, "--version") {
            missing.push(format!("{tool} is not installed"));
        }
    }
    if redis && !runs("redis-server", "--version") {
        missing.push("redis-server is not installed".into());
    }
    if postgres && let Some(why) = postgres_missing() {
        missing.push(why);
    }
    if !missing.is_empty() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{missing:?} required under CI");
        eprintln!("skipping: {} (deploy/cluster.sh needs it)", missing.join("; "));
        return false;
    }
    have_garage()
}

/// A cluster started by `deploy/cluster.sh up` in a temporary run dir; `down` when dropped,
/// after printing the end of every log if the test failed.
pub struct Cluster {
    /// Holds the run dir (`<tmp>/run`), which `down` removes.
    tmp: tempfile::TempDir,
    /// `cluster.env`: PUBLIC_URL and the balancers.
    env: HashMap<String, String>,
    /// Process name → the URL `status` checks (from the run dir's `processes`).
    urls: HashMap<String, String>,
    /// The extra variables of `up`, given to `restart` too.
    vars: Vec<(String, String)>,
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
            .args(action.split(' '))
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

    /// `cluster.sh up` with these extra variables (the opt-outs `DOUYIN_CLUSTER_PG=0` and
    /// `DOUYIN_CLUSTER_REDIS=0`, a `DOUYIN_*` flag of every node).
    pub fn up(vars: &[(&str, &str)]) -> Cluster {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut cluster =
            Cluster { tmp, env: HashMap::new(), urls: HashMap::new(), vars, down: false };
        let mut cmd = Self::script(cluster.tmp.path(), "up");
        cmd.envs(cluster.vars.iter().map(|(k, v)| (k, v)));
        let out = cmd.output().expect("bash runs deploy/cluster.sh");
        eprintln!(
            "--- cluster.sh up: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
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

    /// `cluster.sh kill|stop|start|restart NAME`, without holding up the test's other tasks.
    pub async fn act(&self, action: &str, name: &str) {
        let mut cmd = Self::script(self.tmp.path(), &format!("{action} {name}"));
        cmd.envs(self.vars.iter().map(|(k, v)| (k, v)));
        let out = tokio::process::Command::from(cmd).output().await.expect("bash runs");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cluster.sh {action} {name}: {said}");
    }

    /// `http://127.0.0.1:<port>` of a process, as the script recorded it.
    pub fn url(&self, name: &str) -> &str {
        &self.urls[name]
    }

    /// A `KEY=value` of one of the run dir's files (`cluster.env`, `secrets/garage.env`).
    pub fn var(&self, file: &str, key: &str) -> String {
        let text = std::fs::read_to_string(self.dir().join(file)).expect(file);
        let found = text.lines().find_map(|l| l.strip_prefix(&format!("{key}=")));
        found.unwrap_or_else(|| panic!("{key} in {file}")).to_owned()
    }

    pub fn dir(&self) -> PathBuf {
        Self::run_dir(self.tmp.path())
    }

    pub fn site(&self) -> &str {
        &self.env["PUBLIC_URL"]
    }

    /// `127.0.0.1:<port>` of a node, as nginx's upstream names it.
    pub fn addr(&self, name: &str) -> String {
        self.urls[name].trim_start_matches("http://").to_owned()
    }

    pub fn pid(&self, name: &str) -> u32 {
        let path = self.dir().join("pids").join(format!("{name}.pid"));
        std::fs::read_to_string(&path).expect("a pid file").trim().parse().expect("a pid")
    }

    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut names: Vec<&String> = self.urls.keys().collect();
        names.sort();
        names.into_iter().map(|n| (n.clone(), self.pid(n))).collect()
    }

    pub fn nginx_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("nginx/logs/access.log")).unwrap_or_default()
    }

    pub fn down(&mut self) -> Output {
        self.down = true;
        Self::run(self.tmp.path(), "down")
    }

    /// `down`, checked: it succeeds, every process it started is gone and so is the run dir.
    /// Returns how long it took.
    pub fn down_and_check(&mut self) -> std::time::Duration {
        let pids = self.pids();
        let started = std::time::Instant::now();
        let out = self.down();
        let took = started.elapsed();
        assert!(out.status.success(), "cluster.sh down failed");
        for (name, pid) in &pids {
            assert!(gone(*pid), "{name} (pid {pid}) still runs after down");
        }
        assert!(!self.dir().exists(), "down leaves the run dir behind");
        took
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
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// A browser's cookies, from the `Set-Cookie` lines of a sign-in.
pub fn cookies(r: &Reply) -> String {
    let pairs: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .collect();
    assert!(pairs.iter().any(|p| p.starts_with("session=")), "no session cookie: {pairs:?}");
    pairs.join("; ")
}

pub struct Browser {
    pub client: awc::Client,
    pub site: String,
    pub cookie: Option<String>,
}

impl Browser {
    /// `POST /api` as the pages send it: the cookie and our own `Origin`.
    pub async fn api(&self, url: &str, method: &str, body: Option<Value>) -> Reply {
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

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
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
    pub async fn play(&self, vid: &str, data: &[u8], first: usize, last: usize) {
        let range = format!("bytes={first}-{last}");
        let r = self.get(&format!("/videos/{vid}"), &[("Range", &range)]).await;
        assert_eq!(r.status.as_u16(), 206, "Range {range}: {}", String::from_utf8_lossy(&r.raw));
        let content_range = r.headers.get("content-range").and_then(|v| v.to_str().ok());
        assert_eq!(content_range, Some(&*format!("bytes {first}-{last}/{}", data.len())));
        assert!(r.raw[..] == data[first..=last], "Range {range}: other bytes came back");
    }

    pub async fn feed_has(&self, vid: &str) {
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
