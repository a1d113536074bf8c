//! A real single-node Garage per test: its own temporary directory, free loopback ports, a fresh
//! key and bucket; killed and reaped when the test ends, however it ends. Without `garage` on the
//! PATH a test skips with the reason, and fails under `CI=true`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actors::blob::{S3Blobs, S3Config};
use douyin_club::Config;
use douyin_club::config::BlobStoreKind;

pub const REGION: &str = "garage";
pub const BUCKET: &str = "douyin-test";

/// A running Garage and what it takes to reach it.
pub struct Garage {
    child: Child,
    /// Removed after the process is gone (fields drop after `Drop::drop`).
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`, the S3 API.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("bound").port()
}

/// Whether `garage` can run; without it the test fails under `CI=true` and is skipped elsewhere.
pub fn have_garage() -> bool {
    let ok = Command::new("garage")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "garage is required under CI");
        eprintln!("skipping: garage is not installed (cargo install garage --locked)");
    }
    ok
}

impl Garage {
    /// Starts Garage and waits until it answers S3 with the bucket; `None` (the test skips)
    /// when Garage is not installed outside CI.
    pub async fn start() -> Option<Garage> {
        if !have_garage() {
            return None;
        }
        // Free ports are only free when checked: if Garage loses one to another test, it
        // exits, and it is started again on new ones.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(garage) => return Some(garage),
                Err(why) => last = why,
            }
        }
        panic!("garage did not start: {last}");
    }

    async fn try_start() -> Result<Garage, String> {
        let started = Instant::now();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (rpc, s3) = (free_port(), free_port());
        let conf = dir.path().join("garage.toml");
        std::fs::write(&conf, config(dir.path(), rpc, s3)).expect("config written");
        let access_key = format!("GK{}", hex(&rand::random::<[u8; 12]>()));
        let secret_key = hex(&rand::random::<[u8; 32]>());
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("log file");
        let child = Command::new("garage")
            .arg("-c")
            .arg(&conf)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run garage: {e}"))?;
        let mut garage = Garage {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            access_key,
            secret_key,
        };
        let blobs = garage.blobs();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match blobs.check().await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => return Err(garage.failed(&e.to_string())),
                Err(_) => {}
            }
            if let Ok(Some(status)) = garage.child.try_wait() {
                return Err(garage.failed(&format!("exited with {status}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("garage ready in {:?}", started.elapsed());
        Ok(garage)
    }

    /// Why the start failed, with the end of Garage's log.
    fn failed(&self, why: &str) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default();
        let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
        format!("{why}; garage's log ends with:\n{tail}")
    }

    pub fn config(&self) -> S3Config {
        let endpoint: url::Url = self.endpoint.parse().expect("a URL");
        S3Config {
            public_endpoint: endpoint.clone(),
            endpoint,
            bucket: BUCKET.into(),
            region: REGION.into(),
            access_key_id: self.access_key.clone(),
            secret_access_key: self.secret_key.clone(),
        }
    }

    pub fn blobs(&self) -> S3Blobs {
        S3Blobs::new(self.config()).expect("an S3 client")
    }

    /// Points a node's storage flags at this Garage (proxied playback, the default).
    pub fn configure(&self, cfg: &mut Config) {
        let s = &mut cfg.storage;
        s.blob_store = BlobStoreKind::S3;
        s.s3_endpoint = Some(self.endpoint.clone());
        s.s3_bucket = Some(BUCKET.into());
        s.s3_region = REGION.into();
        s.s3_access_key_id = Some(self.access_key.clone());
        s.s3_secret_access_key = Some(self.secret_key.parse().expect("any text is a secret"));
    }

    /// The same as command-line flags for the binary, but for the secret, which belongs in the
    /// environment (`DOUYIN_S3_SECRET_ACCESS_KEY`: flags show in `ps`).
    pub fn flags(&self) -> Vec<String> {
        [
            "--blob-store",
            "s3",
            "--s3-endpoint",
            &self.endpoint,
            "--s3-bucket",
            BUCKET,
            "--s3-region",
            REGION,
            "--s3-access-key-id",
            &self.access_key,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Stops Garage now (a store that goes away under a running node).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A single-node configuration; the `[s3_api]` region is the one requests are signed for.
fn config(dir: &Path, rpc: u16, s3: u16) -> String {
    let secret = hex(&rand::random::<[u8; 32]>());
    format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
"#,
        meta = dir.join("meta").display(),
        data = dir.join("data").display(),
    )
}

/// Points a node's configuration at `garage` (`--blob-store s3` and the `--s3-*` flags).
pub fn use_garage(cfg: &mut douyin_club::Config, garage: &Garage) {
    garage.configure(cfg);
}

/// A node on `garage`, with `tweak` applied after. Declare the `Garage` before the app, so
/// that the app (dropped first) never outlives it.
pub async fn s3_app(
    garage: &Garage,
    tweak: impl FnOnce(&mut douyin_club::Config),
) -> crate::helpers::TestApp {
    crate::helpers::TestApp::spawn_with(|cfg| {
        use_garage(cfg, garage);
        tweak(cfg);
    })
    .await
}
