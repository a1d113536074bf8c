//! The real binary as a child process, as a self-hoster runs it: on free loopback ports, with
//! its stderr (the log) kept in a file the test reads; killed (`SIGKILL`) and reaped when
//! dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The four services' ports; the same ones again make a restart the same node.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub api: u16,
    pub stream: u16,
    pub scheduler: u16,
    pub web: u16,
}

impl Ports {
    pub fn fresh() -> Self {
        Ports { api: free_port(), stream: free_port(), scheduler: free_port(), web: free_port() }
    }

    fn args(&self) -> Vec<String> {
        let addr = |p: u16| format!("127.0.0.1:{p}");
        [
            ("--api-addr", self.api),
            ("--stream-addr", self.stream),
            ("--scheduler-addr", self.scheduler),
            ("--web-addr", self.web),
        ]
        .into_iter()
        .flat_map(|(flag, port)| [flag.to_owned(), addr(port)])
        .collect()
    }
}

/// A running binary.
pub struct Proc {
    child: Child,
    log: tempfile::NamedTempFile,
    pub ports: Ports,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with only `env` in its environment: a developer's `DOUYIN_*` variables must not
/// change what a test sees.
pub fn command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin_club"));
    cmd.env_clear().envs(env.iter().copied()).stdin(Stdio::null());
    cmd
}

impl Proc {
    /// Starts every service over `data` on `ports` with `args` and `env` added; `RUST_LOG`
    /// is `info` unless `env` says otherwise.
    pub fn spawn(data: &Path, ports: Ports, args: &[String], env: &[(&str, &str)]) -> Proc {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            env.push(("RUST_LOG", "info"));
        }
        let out = || log.as_file().try_clone().expect("the log file");
        let child = command(&env)
            .stdout(out())
            .stderr(out())
            .arg("--data-dir")
            .arg(data)
            .args(ports.args())
            .args(args)
            .spawn()
            .expect("the binary starts");
        Proc { child, log, ports }
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.api)
    }

    pub fn stream(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.stream)
    }

    pub fn scheduler(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.scheduler)
    }

    pub fn web(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.web)
    }

    /// Waits until every service answers `/healthz`.
    pub async fn wait_healthy(&mut self, client: &awc::Client) {
        for url in [self.api(), self.stream(), self.scheduler(), self.web()] {
            let mut up = false;
            for _ in 0..400 {
                if let Some(status) = self.child.try_wait().expect("the child's status") {
                    panic!("the binary exited with {status}:\n{}", self.log());
                }
                if let Ok(r) = client.get(format!("{url}/healthz")).send().await
                    && r.status().is_success()
                {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(up, "{url} never became healthy:\n{}", self.log());
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).expect("the log file")
    }
}
