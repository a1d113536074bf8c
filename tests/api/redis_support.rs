//! A real `redis-server` per test, on a free loopback port in a temporary directory, with an
//! append-only file so that a restart brings back what it held. Outside CI a missing
//! `redis-server` skips the test with a reason; under `CI=true` it fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process_support::free_port;

pub struct Redis {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Redis {
    /// Starts one, or `None` (having said why) when the test must skip.
    pub async fn start() -> Option<Redis> {
        let found = Command::new("redis-server").arg("--version").output().is_ok();
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is required under CI"
            );
            eprintln!("skipping: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let mut redis = Redis {
            child: None,
            dir: tempfile::tempdir().expect("a directory"),
            port: free_port(),
        };
        redis.run().await;
        Some(redis)
    }

    fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts the server on its port and directory (again), and waits for its `PONG`.
    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..200 {
            if self.cli(&["PING"]).is_some_and(|out| out == "PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on {} never answered", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis-cli` against it: the first line of the answer, `None` when it does not answer.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// Kills it (`SIGKILL`): what it held stays in its append-only file.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again from its append-only file.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: sends a signal to our own child process.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid as i32, signal) };
        assert_eq!(rc, 0, "signal {signal} to redis-server");
    }

    /// Freezes it (`SIGSTOP`): connections stay open, nothing answers.
    pub fn hang(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws it (`SIGCONT`).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }
}
