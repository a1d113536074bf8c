//! A real PostgreSQL for tests, in two sizes. [`Postgres`] is a private cluster a test can stop,
//! kill and restart under a running node; [`fresh_database`] is a new empty database in one
//! cluster shared by the whole test binary, for the many store tests that only need somewhere
//! to write and should not each pay for an `initdb`.
//!
//! The tools are the Debian package's (`/usr/lib/postgresql/<version>/bin`, not on the PATH).
//! `initdb` and `pg_ctl` refuse to run as root, so as root the server runs as the `postgres`
//! user, in a temporary directory handed to it. Outside CI a missing PostgreSQL skips the test
//! with the reason; under `CI=true` it fails.
//!
//! A cluster is stopped (immediately: nothing in it is worth a clean shutdown) when its
//! `Postgres` is dropped. The shared one lives in a static and statics are never dropped, and a
//! test process killed outright drops nothing, so every cluster also has a detached reaper that
//! stops it and removes its directory once the test process is gone.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process_support::free_port;

/// The role every cluster is made with (its superuser), and the database [`Postgres::url`]
/// names, as `deploy/cluster.sh` makes them.
const USER: &str = "douyin";
const DATABASE: &str = "douyin";

/// Appended to each cluster's `postgresql.conf`; `{dir}` is its temporary directory, where the
/// Unix socket goes instead of `/var/run/postgresql` (which another cluster may own, and which
/// needs root to create). TCP on loopback only: the URL the nodes get is a TCP one.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
unix_socket_directories = '{dir}'
# For speed, and only because these clusters hold nothing worth keeping: fsync and full-page
# writes guard against the machine losing power, not against the server dying, so kill() still
# loses nothing committed (the page cache survives a SIGKILL). synchronous_commit stays on: with
# fsync off a commit costs one write() anyway, and off it would let kill() lose commits that
# were already acknowledged, which is what restart tests check.
fsync = off
full_page_writes = off
# Every parallel store test on the shared cluster holds a pool of connections.
max_connections = 300
";

/// Where PostgreSQL's tools are, and whose they run as.
#[derive(Clone)]
struct Tools {
    bin: PathBuf,
    /// We are root, so the server's tools run as `postgres`.
    as_postgres: bool,
}

impl Tools {
    /// `tool` (`initdb`, `pg_ctl`) as the server's user.
    fn server(&self, tool: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            cmd
        } else {
            Command::new(self.bin.join(tool))
        };
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// The directory of `initdb`, `pg_ctl` and `psql`: beside an `initdb` on the PATH (often a
/// symlink), else the newest `/usr/lib/postgresql/<version>/bin`, where Debian puts them
/// without putting them on the PATH. Found once per test process.
fn bin_dir() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(initdb) =
            std::env::split_paths(&path).map(|d| d.join("initdb")).find(|p| p.is_file())
        {
            return std::fs::canonicalize(initdb).ok()?.parent().map(Path::to_path_buf);
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
    .as_deref()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let uid = unsafe { libc::geteuid() };
    uid == 0
}

/// The tools, or why a test cannot have a cluster.
fn tools() -> Result<Tools, String> {
    let bin = bin_dir().ok_or("PostgreSQL is not installed (apt-get install postgresql)")?;
    let tools = Tools { bin: bin.to_path_buf(), as_postgres: is_root() };
    // As root this also proves there is a `postgres` user to run the server as.
    let probe = tools.server("initdb").arg("--version").output();
    match probe {
        Ok(out) if out.status.success() => Ok(tools),
        Ok(out) => Err(format!(
            "{}/initdb does not run{}: {}",
            bin.display(),
            if tools.as_postgres { " as the postgres user" } else { "" },
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{}/initdb does not run: {e}", bin.display())),
    }
}

/// Why PostgreSQL's tools are not usable here (for a test whose server another program
/// starts, as `deploy/cluster.sh` does), or `None` when they are.
pub fn postgres_missing() -> Option<String> {
    tools().err()
}

/// `None` for a test that must skip because of `why`; under `CI=true` the test fails instead.
fn skip<T>(why: &str) -> Option<T> {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "PostgreSQL is required under CI: {why}");
    eprintln!("skipping: {why}");
    None
}

/// Runs `f` off the test's runtime: `pg_ctl` blocks until the server is up or down, and a
/// node under test on the same single-threaded runtime must keep running meanwhile. A panic in
/// `f` is the test's panic.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether process `pid` is alive. A zombie is not: where PID 1 does not reap orphans (a
/// container's), a killed postmaster stays one for good, and `kill -0` still finds it.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `pid (comm) state ...`; comm may hold spaces and parentheses, so read after the last `)`.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// The first line of a lock file (`postmaster.pid` and the socket's lock): the postmaster.
fn lock_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.lines().next()?.trim().parse().ok()
}

/// `psql` against `url`, with `sql` on its standard input: what it prints, trimmed, one row a
/// line with `|` between columns, no headers and no command tags. A failing statement stops it
/// and panics with psql's error. For the URLs of [`fresh_database`]; [`Postgres::psql`] is the
/// same against a private cluster.
pub fn psql_at(url: &str, sql: &str) -> String {
    let bin = bin_dir().expect("PostgreSQL's tools (a cluster was started with them)");
    let mut cmd = Command::new(bin.join("psql"));
    // A developer's PGOPTIONS, PGSSLMODE and the like must not change what a test sees.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-", "-d", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    child.stdin.take().expect("psql's stdin").write_all(sql.as_bytes()).expect("sql written");
    let out = child.wait_with_output().expect("psql finishes");
    assert!(
        out.status.success(),
        "psql failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A private PostgreSQL cluster on a free loopback port, in its own temporary directory, with
/// the role `douyin` (password-protected, `scram-sha-256`) and an empty database `douyin`.
pub struct Postgres {
    cluster: Cluster,
    /// Holds `cluster`'s directory; removed after the server is stopped (fields drop after
    /// `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Ignored: the server may already be stopped or killed.
        let _ = self.cluster.pg_ctl(&["stop", "-m", "immediate"]).output();
    }
}

impl Postgres {
    /// Makes and starts one, or `None` (having said why) when the test must skip.
    pub async fn start() -> Option<Postgres> {
        match tools() {
            Ok(tools) => Some(blocking(move || Postgres::create(tools)).await),
            Err(why) => skip(&why),
        }
    }

    /// `initdb`, a start on a free port (another one if that one was taken meanwhile), and
    /// the database `douyin`; panics with the reason when the cluster cannot be had.
    fn create(tools: Tools) -> Postgres {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("pg-").tempdir().expect("a temporary directory");
        if tools.as_postgres {
            let chown = Command::new("chown").arg("postgres:").arg(dir.path()).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown postgres: {}", dir.path().display());
        }
        let mut cluster = Cluster {
            tools,
            dir: dir.path().to_path_buf(),
            port: 0,
            password: hex(&rand::random::<[u8; 16]>()),
        };
        cluster.reaper();
        cluster.initdb();
        let initdb = started.elapsed();

        // A free port is only free when checked: another test may take it before the server
        // binds it, and then the server is started again on another one.
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = free_port();
            match cluster.try_start() {
                Ok(()) => break,
                Err(log) if log.contains("already in use") => last = log,
                Err(log) => panic!("postgres did not start:\n{log}"),
            }
            cluster.port = 0;
        }
        assert!(cluster.port != 0, "postgres found no free port:\n{last}");
        cluster.wait_ready();
        psql_at(&cluster.url_of("postgres"), &format!("CREATE DATABASE {DATABASE}"));
        eprintln!("postgres ready in {:?} (initdb {initdb:?})", started.elapsed());
        Postgres { cluster, _dir: dir }
    }

    /// `postgres://douyin:<password>@127.0.0.1:<port>/douyin`.
    pub fn url(&self) -> String {
        self.cluster.url_of(DATABASE)
    }

    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// [`psql_at`] against [`Postgres::url`].
    pub fn psql(&self, sql: &str) -> String {
        psql_at(&self.url(), sql)
    }

    /// Stops the server the way an administrator does (`pg_ctl stop -m fast`: sessions are
    /// ended, and what was committed is checkpointed). A stopped server stays stopped.
    pub async fn stop(&mut self) {
        let cluster = self.cluster.clone();
        blocking(move || cluster.stop()).await;
    }

    /// Stops the server if it runs and starts it again on the same port over the same data,
    /// waiting until it accepts connections.
    pub async fn restart(&mut self) {
        let cluster = self.cluster.clone();
        blocking(move || {
            cluster.stop();
            cluster.start_again();
        })
        .await;
    }

    /// Starts the stopped or killed server again on the same port over the same data (after
    /// a kill, through crash recovery), waiting until it accepts connections.
    pub async fn start_again(&mut self) {
        let cluster = self.cluster.clone();
        blocking(move || cluster.start_again()).await;
    }

    /// Kills the postmaster (`SIGKILL`), as a crash would, and waits until it is gone. Its
    /// data stays for [`Postgres::start_again`] or [`Postgres::restart`].
    pub fn kill(&mut self) {
        let pid = lock_pid(&self.cluster.pid_file()).expect("postgres is running");
        // SAFETY: sends a signal to the postmaster this cluster started, named by its pid file.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        assert_eq!(rc, 0, "SIGKILL to the postmaster {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "the postmaster {pid} outlived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What it takes to drive one cluster, without owning its directory: cloned into the blocking
/// tasks that run `pg_ctl`.
#[derive(Clone)]
struct Cluster {
    tools: Tools,
    /// `data/` (the cluster), the Unix socket and `postgres.log`.
    dir: PathBuf,
    port: u16,
    password: String,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn pid_file(&self) -> PathBuf {
        self.data().join("postmaster.pid")
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// `pg_ctl` on this cluster, with `args` after the common ones.
    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.tools.server("pg_ctl");
        cmd.current_dir(&self.dir).arg("-D").arg(self.data()).args(["-w", "-t", "60"]).args(args);
        cmd
    }

    /// Makes the cluster in `data/` and appends [`SETTINGS`] to its configuration.
    fn initdb(&self) {
        // The password reaches initdb in a file, not in its arguments (which `ps` shows).
        let pwfile = self.dir.join("pw");
        std::fs::write(&pwfile, format!("{}\n", self.password)).expect("password file");
        let out = self
            .tools
            .server("initdb")
            .current_dir(&self.dir)
            .arg("-D")
            .arg(self.data())
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            // The C locale: sorting must not depend on the host's LANG. No fsync of the new
            // files: nothing here outlives the test.
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .expect("initdb runs");
        let _ = std::fs::remove_file(&pwfile);
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let settings = SETTINGS.replace("{dir}", &self.dir.display().to_string());
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .expect("postgresql.conf");
    }

    /// Starts the server on its port (once), waiting until it is up; `Err` is what it logged.
    fn try_start(&self) -> Result<(), String> {
        self.clear_stale_locks();
        let from = std::fs::metadata(self.log()).map_or(0, |m| m.len());
        let port = format!("-p {}", self.port);
        let log = self.log().display().to_string();
        let out = self.pg_ctl(&["-l", &log, "-o", &port, "start"]).output().expect("pg_ctl runs");
        if out.status.success() {
            return Ok(());
        }
        let mut logged = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log()) {
            let _ = file.seek(SeekFrom::Start(from));
            let _ = file.read_to_string(&mut logged);
        }
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Err(format!("{stdout}{stderr}{logged}"))
    }

    /// Removes `postmaster.pid` and the socket's lock file when the postmaster they name is
    /// dead. The server does this itself, except when that postmaster is a zombie no one
    /// reaps (after `kill()` in a container whose PID 1 does not reap): then it refuses to
    /// start, taking the zombie for a running server.
    fn clear_stale_locks(&self) {
        let socket_lock = self.dir.join(format!(".s.PGSQL.{}.lock", self.port));
        for file in [self.pid_file(), socket_lock] {
            if lock_pid(&file).is_some_and(|pid| !alive(pid)) {
                let _ = std::fs::remove_file(&file);
            }
        }
    }

    /// Waits until the server accepts connections (`pg_isready`), after `pg_ctl -w` said so
    /// from its pid file.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.tools.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "postgres on {} never became ready", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `pg_ctl stop -m fast`, unless the postmaster is already gone.
    fn stop(&self) {
        if !lock_pid(&self.pid_file()).is_some_and(alive) {
            return;
        }
        let out = self.pg_ctl(&["stop", "-m", "fast"]).output().expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn start_again(&self) {
        // After a kill the postmaster's children notice its death and leave within moments;
        // until they have, the server refuses to start over their shared memory.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.try_start() {
                Ok(()) => break,
                Err(log) if log.contains("still in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("postgres did not start again on {}:\n{log}", self.port),
            }
        }
        self.wait_ready();
    }

    /// The backstop for `Drop`: a detached shell (in its own session, so that a Ctrl-C to the
    /// tests does not reach it) that waits until this process is gone or the directory is (a
    /// normal drop), and in the first case stops the server and removes the directory.
    fn reaper(&self) {
        let script = r#"pid=$1 dir=$2; shift 2
alive() { s=$(cat /proc/$1/stat 2>/dev/null) || return 1; s=${s##*) }; [ "${s%% *}" != Z ]; }
while alive "$pid" && [ -d "$dir" ]; do sleep 1; done
[ -d "$dir" ] || exit 0
"$@" -D "$dir/data" -m immediate -w -t 10 stop
rm -rf "$dir""#;
        let stop = self.tools.server("pg_ctl");
        let status = Command::new("setsid")
            .args(["-f", "sh", "-c", script, "pg-reaper"])
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(stop.get_program())
            .args(stop.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "the reaper (setsid, from util-linux) starts");
    }
}

/// The cluster [`fresh_database`] makes its databases in: started by whichever test asks
/// first, on a blocking thread rather than on that test's runtime (every `#[actix::test]` has
/// its own), and never dropped, as no static is; its reaper stops it when the process exits.
/// `Err` is why there is none.
static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();

/// The URL of a new, empty database (owned by `douyin`, a superuser) in the cluster shared by
/// this test process, or `None` (having said why) when the test must skip. Each call makes
/// another database, so tests in parallel never see each other's tables.
pub async fn fresh_database() -> Option<String> {
    let shared = blocking(|| SHARED.get_or_init(|| tools().map(Postgres::create)).as_ref()).await;
    let shared = match shared {
        Ok(shared) => shared,
        Err(why) => return skip(why),
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let url = shared.url();
    let sql = format!("CREATE DATABASE {name}");
    blocking(move || psql_at(&url, &sql)).await;
    Some(shared.cluster.url_of(&name))
}

/// Psql's answers, a restart, and a crash with recovery, on a private cluster.
#[actix::test]
async fn a_private_cluster_keeps_its_data_through_a_restart_and_a_kill() {
    let started = Instant::now();
    let Some(mut pg) = Postgres::start().await else { return };
    eprintln!("Postgres::start took {:?} (port {})", started.elapsed(), pg.port());
    assert!(pg.url().starts_with("postgres://douyin:"), "{}", pg.url());
    assert!(pg.url().ends_with(&format!("@127.0.0.1:{}/douyin", pg.port())), "{}", pg.url());

    let rows = pg.psql("CREATE TABLE t(x int); INSERT INTO t VALUES (1), (2); SELECT x FROM t;");
    assert_eq!(rows, "1\n2");

    let restarted = Instant::now();
    pg.restart().await;
    eprintln!("restart took {:?}", restarted.elapsed());
    assert_eq!(pg.psql("SELECT x FROM t ORDER BY x"), "1\n2");

    // What was committed just before the crash is there after the recovery.
    pg.psql("INSERT INTO t VALUES (3)");
    pg.kill();
    let recovered = Instant::now();
    pg.restart().await;
    eprintln!("restart after kill took {:?}", recovered.elapsed());
    assert_eq!(pg.psql("SELECT x FROM t ORDER BY x"), "1\n2\n3");

    pg.stop().await;
    pg.start_again().await;
    assert_eq!(pg.psql("SELECT count(*) FROM t"), "3");
}

/// Two fresh databases are two, and both answer.
#[actix::test]
async fn fresh_databases_are_separate() {
    let started = Instant::now();
    let Some(a) = fresh_database().await else { return };
    eprintln!("first fresh_database took {:?}", started.elapsed());
    let second = Instant::now();
    let b = fresh_database().await.expect("a second database");
    eprintln!("second fresh_database took {:?}", second.elapsed());
    assert_ne!(a, b);

    let name = |url: &str| url.rsplit('/').next().expect("a database name").to_owned();
    assert_eq!(psql_at(&a, "SELECT current_database()"), name(&a));
    assert_eq!(psql_at(&b, "SELECT current_database()"), name(&b));
    psql_at(&a, "CREATE TABLE only_in_a(x int)");
    assert_eq!(psql_at(&a, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"), "1");
    assert_eq!(psql_at(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"), "0");
}
