//! API.md: a bad value of a storage flag stops start-up with one clear line naming the flag,
//! before any listener opens. The real binary with every port it is given already taken by the
//! test: had it bound anything first, it would fail on the port instead of the flag.

use std::net::TcpListener;

use crate::process_support::command;

const SECRET: &str = "a-secret-the-error-must-not-show";

/// Flags of a complete S3 configuration (the store need not exist: nothing is sent to it
/// before the listeners are up).
fn s3_flags() -> Vec<&'static str> {
    vec![
        "--blob-store",
        "s3",
        "--s3-endpoint",
        "http://127.0.0.1:9",
        "--s3-bucket",
        "videos",
        "--s3-access-key-id",
        "GK0123456789abcdef01234567",
    ]
}

/// Runs the binary with `args` and `env` while the test holds every port it names; returns
/// whether it succeeded, what it printed, and the directory its data dir would be in.
fn start_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String, tempfile::TempDir) {
    let taken: Vec<TcpListener> =
        (0..4).map(|_| TcpListener::bind("127.0.0.1:0").expect("a port")).collect();
    let addr = |i: usize| taken[i].local_addr().expect("bound").to_string();
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let data = scratch.path().join("data");
    let o = command(env)
        .arg("--data-dir")
        .arg(&data)
        .args(["--api-addr", &addr(0), "--stream-addr", &addr(1)])
        .args(["--scheduler-addr", &addr(2), "--web-addr", &addr(3)])
        .args(args)
        .output()
        .expect("the binary runs");
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    drop(taken);
    (o.status.success(), out, scratch)
}

/// The binary, given the secret in its environment, refuses `args` with one line that names
/// `flag`, having bound and written nothing.
#[track_caller]
fn refused(args: &[&str], env: &[(&str, &str)], flag: &str) {
    let mut env = env.to_vec();
    env.push(("DOUYIN_S3_SECRET_ACCESS_KEY", SECRET));
    assert_refusal(args, start_with(args, &env), flag);
}

#[track_caller]
fn assert_refusal(
    args: &[&str],
    (ok, out, scratch): (bool, String, tempfile::TempDir),
    flag: &str,
) {
    assert!(!ok, "{args:?} must not start:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line:\n{out}");
    assert!(lines[0].contains(flag), "{args:?}: the line names {flag}: {out}");
    assert!(!lines[0].contains("cannot listen"), "{args:?}: it tried to bind first: {out}");
    assert!(!out.contains(SECRET), "{args:?}: the secret is shown: {out}");
    assert!(!scratch.path().join("data").exists(), "{args:?}: the data dir was created");
}

#[test]
fn a_missing_s3_flag_is_named() {
    for (i, flag) in [(2, "--s3-endpoint"), (4, "--s3-bucket"), (6, "--s3-access-key-id")] {
        let mut args = s3_flags();
        args.drain(i..i + 2);
        refused(&args, &[], flag);
    }
    let mut args = s3_flags();
    args[5] = " ";
    refused(&args, &[], "--s3-bucket");
    // Without the secret the node cannot sign.
    assert_refusal(&s3_flags(), start_with(&s3_flags(), &[]), "--s3-secret-access-key");
    // The same rules for the environment's names.
    refused(
        &[],
        &[("DOUYIN_BLOB_STORE", "s3"), ("DOUYIN_S3_ENDPOINT", "http://127.0.0.1:9")],
        "--s3-bucket",
    );
}

#[test]
fn a_bad_endpoint_is_named() {
    for bad in ["ftp://127.0.0.1:3900", "not a url", "http://", "http://127.0.0.1:3900/?x=1"] {
        let mut args = s3_flags();
        args[3] = bad;
        refused(&args, &[], "--s3-endpoint");
        let mut args = s3_flags();
        args.extend(["--s3-public-endpoint", bad]);
        refused(&args, &[], "--s3-public-endpoint");
    }
}

#[test]
fn redirect_playback_needs_the_object_store() {
    refused(&["--playback", "redirect"], &[], "--playback");
    refused(&["--blob-store", "file", "--playback", "redirect"], &[], "--playback");
}

/// The control: with good flags the same taken ports do stop start-up, on the port — so the
/// refusals above came before any listener.
#[test]
fn good_flags_reach_the_listeners() {
    for args in [vec![], s3_flags()] {
        let (ok, out, _) = start_with(&args, &[("DOUYIN_S3_SECRET_ACCESS_KEY", SECRET)]);
        assert!(!ok, "the ports are taken:\n{out}");
        assert!(out.contains("cannot listen"), "{args:?}: {out}");
        assert!(!out.contains(SECRET), "{out}");
    }
}

/// A web-only node opens no store: the object store's secret (and Redis) are the other
/// nodes' business, so it starts without them; the others still refuse to.
#[actix::test]
async fn a_web_node_needs_no_store_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = ["--role", "web"].map(str::to_owned).to_vec();
    args.extend(s3_flags().into_iter().map(str::to_owned));
    let web = crate::process_support::Proc::spawn(
        dir.path(),
        crate::process_support::Ports::fresh(),
        &args,
        &[],
    );
    let client = awc::Client::default();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{}/healthz", web.web())).send().await
            && r.status().is_success()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(up, "the web node starts:\n{}", web.log());
    let mut stream_args = s3_flags();
    stream_args.splice(0..0, ["--role", "stream"]);
    let refusal = start_with(&stream_args, &[]);
    assert_refusal(&stream_args, refusal, "--s3-secret-access-key");
}

#[test]
fn a_database_url_that_cannot_work_is_named_without_its_password() {
    let bad_port = format!("postgres://douyin:{SECRET}@127.0.0.1:port/douyin");
    refused(&["--database-url", &bad_port], &[], "--database-url");
    refused(&[], &[("DOUYIN_DATABASE_URL", &bad_port)], "--database-url");
    // TLS to PostgreSQL is not built in: asked for, it is refused rather than silently skipped.
    let tls = format!("postgres://douyin:{SECRET}@127.0.0.1:5432/douyin?sslmode=require");
    refused(&["--database-url", &tls], &[], "--database-url");
    refused(&["--database-url", "mysql://x"], &[], "--database-url");
    refused(&["--database-url", "sqlite://"], &[], "--database-url");
}

/// A PostgreSQL that does not answer stops start-up within seconds, before any file is
/// written, in one line that names the flag and not the password.
#[test]
fn an_unreachable_postgres_stops_start_up_without_showing_its_password() {
    let port = crate::process_support::free_port();
    refused_by_postgres(&format!("postgres://douyin:{SECRET}@127.0.0.1:{port}/douyin"));
}

/// A PostgreSQL that refuses the password stops start-up the same way.
#[actix::test]
async fn a_wrong_postgres_password_stops_start_up_without_showing_it() {
    let Some(pg) = crate::pg_support::Postgres::start().await else { return };
    let url = format!("postgres://douyin:{SECRET}@127.0.0.1:{}/douyin", pg.port());
    actix_web::web::block(move || refused_by_postgres(&url)).await.expect("the check ran");
}

/// The binary, started on free ports with `--database-url url`, stops within seconds before
/// writing anything, its last line naming the flag and PostgreSQL, and never shows [`SECRET`].
#[track_caller]
fn refused_by_postgres(url: &str) {
    let started = std::time::Instant::now();
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let free = || format!("127.0.0.1:{}", crate::process_support::free_port());
    let o = command(&[])
        .arg("--data-dir")
        .arg(scratch.path().join("data"))
        .args(["--api-addr", &free(), "--stream-addr", &free()])
        .args(["--scheduler-addr", &free(), "--web-addr", &free()])
        .args(["--database-url", url])
        .output()
        .expect("the binary runs");
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success(), "it must not start:\n{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "it gave up in time");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.contains("--database-url") && last.contains("PostgreSQL"), "{out}");
    assert!(!out.contains(SECRET), "the password is shown: {out}");
    assert!(!scratch.path().join("data").exists(), "the data dir was created");
}

/// `--database-url sqlite://<path>` puts the database (and the change counters every process
/// on it shares) there, not in the data dir.
#[actix::test]
async fn the_database_can_live_outside_the_data_dir() {
    let elsewhere = tempfile::tempdir().unwrap();
    let db = elsewhere.path().join("db").join("site.sqlite3");
    let url = format!("sqlite://{}", db.display());
    let app = crate::helpers::TestApp::spawn_with(|c| {
        c.database_url = Some(url.parse().expect("any text"));
    })
    .await;
    app.register("alice").await;
    assert!(db.exists(), "the database is where the URL says");
    assert!(elsewhere.path().join("db").join("site.sqlite3-changes").exists());
    assert!(!app.data_dir().join("douyin.sqlite3").exists(), "and not in the data dir");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
}
