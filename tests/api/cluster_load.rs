//! issue 10's "Prove it", the part that runs on one host today: `deploy/cluster.sh up` with
//! Redis (`DOUYIN_CLUSTER_REDIS=1`), 8 clients looping through the whole user flow through
//! nginx (register, sign in, create a video, upload, play a Range, comment, delete it every
//! other time, sign out), and meanwhile: an api and a stream node `SIGKILL`ed, then a scheduler
//! while deletions are queued, then Redis killed and started again. Afterwards:
//! - every acknowledged write is there: the users sign in, the comments on kept videos are
//!   listed, deleted videos are 404 on every live node and their objects leave Garage once the
//!   surviving scheduler has drained the queue, signed-out sessions are 401;
//! - the failures are only requests in flight at a kill (nginx's 502/503/504, counted per kill
//!   and kind): no other 5xx, nothing outside a kill's window, nothing in the last seconds;
//! - before the load, API.md's "Guarantees across nodes", asked of the nodes themselves: a
//!   logout on api-1 is 401 on api-2 at the next request, a deletion on api-1 leaves api-2's
//!   feed at once, and one client's token bucket (`--stream-burst` made small) is shared by the
//!   two stream nodes.
//!
//! Without nginx, Garage or redis-server the test skips with the reason, and fails under
//! `CI=true`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actors::blob::{BlobStore, S3Blobs, S3Config};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::cluster_support::{Cluster, have_tools};
use crate::helpers::Reply;
use crate::stream_support::fake_mp4;

const CLIENTS: usize = 8;
const PWD: &str = "password1";
/// The stream nodes' token bucket: small enough that two per-node buckets would show, large
/// enough for a load client's two stream requests per session.
const BURST: usize = 8;
const RATE: f64 = 2.0;
/// How long after a kill a failure still counts as the kill's.
const AFTERMATH: Duration = Duration::from_secs(3);
/// The end of the load, after the last kill's aftermath: no failure at all is allowed here.
const QUIET: Duration = Duration::from_secs(3);

/// A request's answer, or why none came.
async fn answer<S>(
    sent: Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
) -> Result<Reply, String>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut res = sent.map_err(|e| format!("no answer: {e}"))?;
    let raw = res.body().limit(16 << 20).await.map_err(|e| format!("body cut: {e}"))?;
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Ok(Reply { status: res.status(), headers: res.headers().clone(), body, raw })
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(Duration::from_secs(20)).disable_redirects().finish()
}

/// A request that did not get the answer it expected.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    at: Instant,
    status: Option<u16>,
    what: String,
    /// The api path of a failed DELETE (nginx may have sent it to a second node).
    delete: Option<String>,
}

/// What one client saw acknowledged.
#[derive(Default)]
struct Seen {
    ok: usize,
    /// When each acknowledged answer came.
    acked: Vec<Instant>,
    failures: Vec<Failure>,
    /// Registered (201) user names.
    users: Vec<String>,
    /// Videos whose upload was acknowledged (201).
    uploaded: Vec<String>,
    /// Signed out (204): user name and the session id that stopped.
    signed_out: Vec<(String, String)>,
    /// Videos created (201) and not deleted, with the comments acknowledged on them.
    kept: BTreeMap<String, Vec<String>>,
    /// Videos whose deletion was acknowledged (204), with their owner.
    deleted: Vec<(String, String)>,
}

/// One of the load's browsers, with its own address (`X-Forwarded-For`, which nginx and the
/// web nodes pass on: the sign-in budget is per address).
struct LoadClient {
    client: awc::Client,
    site: String,
    ip: String,
    cookie: Option<String>,
    seen: Seen,
}

impl LoadClient {
    /// Records the outcome: the reply if it has the expected status, else a failure.
    fn check(
        &mut self,
        kind: &'static str,
        expect: u16,
        got: Result<Reply, String>,
    ) -> Option<Reply> {
        let failure = match got {
            Ok(r) if r.status.as_u16() == expect => {
                self.seen.ok += 1;
                self.seen.acked.push(Instant::now());
                return Some(r);
            }
            Ok(r) => Failure {
                kind,
                at: Instant::now(),
                status: Some(r.status.as_u16()),
                what: String::from_utf8_lossy(&r.raw[..r.raw.len().min(200)]).into_owned(),
                delete: None,
            },
            Err(why) => Failure { kind, at: Instant::now(), status: None, what: why, delete: None },
        };
        self.seen.failures.push(failure);
        None
    }

    /// [`Self::check`] of a DELETE's 204, remembering its path if it failed.
    fn check_delete(
        &mut self,
        kind: &'static str,
        got: Result<Reply, String>,
        path: String,
    ) -> Option<Reply> {
        let r = self.check(kind, 204, got);
        if r.is_none() {
            self.seen.failures.last_mut()?.delete = Some(path);
        }
        r
    }

    async fn api(&self, url: &str, method: &str, body: Option<Value>) -> Result<Reply, String> {
        let mut req = self
            .client
            .post(format!("{}/api", self.site))
            .insert_header(("Origin", &*self.site))
            .insert_header(("X-Forwarded-For", &*self.ip));
        if let Some(c) = &self.cookie {
            req = req.insert_header(("Cookie", c.as_str()));
        }
        let mut envelope = json!({"url": url, "method": method});
        if let Some(b) = body {
            envelope["req_body"] = b;
        }
        answer(req.send_json(&envelope).await).await
    }

    fn stream(&self, method: awc::http::Method, path: &str) -> awc::ClientRequest {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.site))
            .insert_header(("Origin", &*self.site))
            .insert_header(("X-Forwarded-For", &*self.ip));
        if let Some(c) = &self.cookie {
            req = req.insert_header(("Cookie", c.as_str()));
        }
        req
    }

    /// One pass through the site; `None` as soon as a step fails (the next pass starts over).
    async fn pass(&mut self, n: usize, data: &[u8]) -> Option<()> {
        let user = format!("c{}p{n}", self.ip.rsplit('.').next().unwrap_or("0"));
        self.cookie = None;
        let r = self.api("/user", "POST", Some(json!({"user_name": user, "pwd": PWD}))).await;
        self.check("register", 201, r)?;
        self.seen.users.push(user.clone());
        let r = self.api(&format!("/user/{user}"), "POST", Some(json!({"pwd": PWD}))).await;
        let r = self.check("sign in", 200, r)?;
        let session = session_cookie(&r)?;
        self.cookie = Some(format!("session={session}"));

        let r = self.api(&format!("/user/{user}/videos"), "POST", Some(json!({"name": "v"}))).await;
        let vid = self.check("create video", 201, r)?.body["id"].as_str()?.to_owned();
        self.seen.kept.insert(vid.clone(), Vec::new());

        let req = self
            .stream(awc::http::Method::POST, &format!("/upload/{vid}"))
            .insert_header(("Content-Type", "video/mp4"));
        let r = answer(req.send_body(data.to_vec()).await).await;
        self.check("upload", 201, r)?;
        self.seen.uploaded.push(vid.clone());

        let (first, last) = (1000 + n, 20_999 + n);
        let req = self
            .stream(awc::http::Method::GET, &format!("/videos/{vid}"))
            .insert_header(("Range", format!("bytes={first}-{last}")));
        let r = answer(req.send().await).await;
        let r = self.check("play", 206, r)?;
        if r.raw[..] != data[first..=last] {
            let at = Instant::now();
            let what = format!("{vid}: {} other bytes than the upload's", r.raw.len());
            let failure = Failure { kind: "play bytes", at, status: None, what, delete: None };
            self.seen.failures.push(failure);
            return None;
        }

        let content = format!("comment {n} of {user}");
        let r = self
            .api(&format!("/videos/{vid}/comments"), "POST", Some(json!({"content": content})))
            .await;
        self.check("comment", 201, r)?;
        self.seen.kept.get_mut(&vid)?.push(content);

        if n.is_multiple_of(2) {
            // Until its 204 the deletion may or may not have happened: the video is neither
            // kept nor deleted for the checks.
            self.seen.kept.remove(&vid);
            let path = format!("/user/{user}/videos/{vid}");
            let r = self.api(&path, "DELETE", None).await;
            self.check_delete("delete video", r, path)?;
            self.seen.deleted.push((user.clone(), vid));
        }

        let path = format!("/user/{user}");
        let r = self.api(&path, "DELETE", None).await;
        self.check_delete("sign out", r, path)?;
        self.seen.signed_out.push((user, session));
        Some(())
    }
}

/// The session id in a sign-in's `Set-Cookie`.
fn session_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .find_map(|p| p.strip_prefix("session="))
        .map(str::to_owned)
}

/// Straight to one node, bypassing nginx.
struct Direct {
    client: awc::Client,
}

impl Direct {
    async fn send(
        &self,
        base: &str,
        method: awc::http::Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{base}{path}"));
        if let Some(s) = session {
            req = req.insert_header(("X-Session-Id", s));
        }
        let sent = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        };
        answer(sent).await.unwrap_or_else(|e| panic!("{base}{path}: {e}"))
    }

    async fn register(&self, api: &str, user: &str) -> String {
        let body = json!({"user_name": user, "pwd": PWD});
        let r = self.send(api, awc::http::Method::POST, "/user", None, Some(body)).await;
        r.assert_status(201)["session_id"].as_str().expect("a session").to_owned()
    }

    async fn feed(&self, api: &str) -> Vec<String> {
        let r = self.send(api, awc::http::Method::GET, "/videos", None, None).await;
        let videos = r.assert_status(200)["videos"].as_array().expect("videos").clone();
        videos.iter().filter_map(|v| v["id"].as_str().map(str::to_owned)).collect()
    }

    /// A ready video of `user`, uploaded straight to `stream`.
    async fn ready_video(&self, api: &str, stream: &str, user: &str, session: &str) -> String {
        let path = format!("/user/{user}/videos");
        let body = Some(json!({"name": "across nodes"}));
        let r = self.send(api, awc::http::Method::POST, &path, Some(session), body).await;
        let vid = r.assert_status(201)["id"].as_str().expect("an id").to_owned();
        let res = self
            .client
            .post(format!("{stream}/upload/{vid}"))
            .insert_header(("X-Session-Id", session))
            .insert_header(("Content-Type", "video/mp4"))
            .send_body(fake_mp4(30_000))
            .await;
        answer(res).await.expect("the upload is answered").assert_status(201);
        vid
    }
}

/// API.md's "Guarantees across nodes", asked of the api and stream nodes themselves.
async fn across_nodes(cluster: &Cluster, tag: &str) {
    let d = Direct { client: client() };
    let (api1, api2) = (cluster.url("api-1"), cluster.url("api-2"));
    let (stream1, stream2) = (cluster.url("stream-1"), cluster.url("stream-2"));
    use awc::http::Method;

    // A logout on api-1 is 401 on api-2 at the very next request, though api-2 has just
    // seen (and may cache) the session.
    for round in 0..3 {
        let user = format!("{tag}leaver{round}");
        let session = d.register(api1, &user).await;
        let path = format!("/user/{user}");
        d.send(api2, Method::GET, &path, Some(&session), None).await.assert_status(200);
        d.send(api1, Method::DELETE, &path, Some(&session), None).await.assert_status(204);
        let r = d.send(api2, Method::GET, &path, Some(&session), None).await;
        assert_eq!(r.status.as_u16(), 401, "round {round}: api-2 still knows a logged-out session");
    }

    // A deletion through api-1 is gone from api-2's feed at once, though api-2 has just
    // served (and may cache) a feed with it.
    let owner = &format!("{tag}feeder");
    let session = d.register(api1, owner).await;
    for round in 0..3 {
        let vid = d.ready_video(api1, stream1, owner, &session).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !d.feed(api2).await.contains(&vid) {
            assert!(Instant::now() < deadline, "round {round}: {vid} never reached api-2's feed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let path = format!("/user/{owner}/videos/{vid}");
        d.send(api1, Method::DELETE, &path, Some(&session), None).await.assert_status(204);
        let feed = d.feed(api2).await;
        assert!(!feed.contains(&vid), "round {round}: api-2's feed still has {vid} after its 204");
        let r = d.send(api2, Method::GET, &path, None, None).await;
        assert_eq!(r.status.as_u16(), 404, "round {round}: api-2 still has {vid}");
    }

    // One client, one bucket across both stream nodes: alternating between them, it gets
    // about --stream-burst answers in all, not that many from each.
    let vid = d.ready_video(api1, stream1, owner, &session).await;
    let player = d.register(api2, &format!("{tag}player")).await;
    let (mut ok, mut limited) = ([0usize; 2], [0usize; 2]);
    let started = Instant::now();
    for i in 0..(3 * BURST) {
        let node = i % 2;
        let base = [stream1, stream2][node];
        let req = d
            .client
            .get(format!("{base}/videos/{vid}"))
            .insert_header(("X-Session-Id", &*player))
            .insert_header(("Range", "bytes=0-0"));
        let r = answer(req.send().await).await.expect("the stream node answers");
        match r.status.as_u16() {
            206 => ok[node] += 1,
            429 => limited[node] += 1,
            other => panic!("{base}: {other} {}", String::from_utf8_lossy(&r.raw)),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = BURST + (RATE * elapsed).ceil() as usize + 1;
    eprintln!(
        "{tag}: token bucket across stream nodes: {ok:?} answered, {limited:?} limited in {elapsed:.3} s \
         (burst {BURST}, rate {RATE}/s)"
    );
    assert!(
        ok[0] + ok[1] <= allowed,
        "{ok:?} answers past a burst of {BURST}: each stream node has a bucket of its own"
    );
    // Both nodes served the client; the limit came (on a slow machine the refill may hide it
    // from one node, never from both).
    assert!(ok[0] > 0 && ok[1] > 0 && limited[0] + limited[1] > 0, "{ok:?} {limited:?}");
}

/// How long until every live api and stream node's `/healthz` says `"redis": want` (with a
/// 200: Redis is only a cache).
async fn redis_health(cluster: &Cluster, want: &str, within: Duration) -> Duration {
    let c = client();
    let started = Instant::now();
    for node in ["api-2", "stream-2"] {
        loop {
            let r = answer(c.get(format!("{}/healthz", cluster.url(node))).send().await).await;
            let last = match r {
                Ok(r) if r.status.as_u16() == 200 && r.body["redis"] == want => break,
                Ok(r) => format!("{} {}", r.status, r.body),
                Err(e) => e,
            };
            assert!(
                started.elapsed() < within,
                "{node}'s /healthz never said redis {want}: {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    started.elapsed()
}

/// A stretch of the load in which failures are expected, named for the report.
struct Window {
    name: &'static str,
    from: Instant,
    to: Instant,
}

/// The faults, one after the other, while the clients run; returns the windows they open.
async fn faults(cluster: &Cluster, token: &str) -> Vec<Window> {
    let mut windows = Vec::new();
    let pause = |s: f64| tokio::time::sleep(Duration::from_secs_f64(s));
    pause(2.0).await;

    let from = Instant::now();
    cluster.act("kill", "api-1").await;
    cluster.act("kill", "stream-1").await;
    windows.push(Window { name: "api-1 + stream-1 killed", from, to: Instant::now() + AFTERMATH });
    pause(2.0).await;

    // Wait for deletions in the queue, and kill a scheduler then: mid-drain.
    let listing = format!("{}/video-delete-record", cluster.url("scheduler-1"));
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut queued = 0;
    while Instant::now() < deadline {
        let req = c.get(&listing).insert_header(("Authorization", format!("Bearer {token}")));
        if let Ok(r) = answer(req.send().await).await {
            queued = r.body["pending"].as_array().map_or(0, Vec::len);
            if queued > 0 {
                break;
            }
        }
        pause(0.01).await;
    }
    let from = Instant::now();
    cluster.act("kill", "scheduler-1").await;
    eprintln!("scheduler-1 killed with {queued} deletion(s) queued");
    windows.push(Window { name: "scheduler-1 killed", from, to: Instant::now() + AFTERMATH });
    pause(2.0).await;

    // While Redis is away the nodes say so and keep answering (200); once it is back they
    // use it again.
    let from = Instant::now();
    cluster.act("kill", "redis").await;
    let down = redis_health(cluster, "down", Duration::from_secs(3)).await;
    pause(3.0).await;
    cluster.act("restart", "redis").await;
    let back = Instant::now();
    let ok = redis_health(cluster, "ok", Duration::from_secs(10)).await;
    eprintln!("/healthz: redis \"down\" {down:?} after the kill, \"ok\" {ok:?} after the restart");
    windows.push(Window { name: "Redis killed, restarted", from, to: back + AFTERMATH });
    tokio::time::sleep(AFTERMATH).await;

    // The killed nodes come back (no failure allowed for that), and the load ends quietly.
    cluster.act("restart", "api-1").await;
    cluster.act("restart", "stream-1").await;
    tokio::time::sleep(QUIET).await;
    windows
}

#[actix::test]
async fn under_load_a_cluster_with_redis_loses_no_acknowledged_write_to_killed_nodes() {
    if !have_tools(true) {
        return;
    }
    let t0 = Instant::now();
    let burst = BURST.to_string();
    let rate = RATE.to_string();
    let cluster = Cluster::up(&[
        ("DOUYIN_CLUSTER_REDIS", "1"),
        ("DOUYIN_STREAM_BURST", &burst),
        ("DOUYIN_STREAM_RATE", &rate),
    ]);
    let t_up = t0.elapsed();
    let token = std::fs::read_to_string(cluster.dir().join("secrets/internal.token"))
        .expect("the internal token")
        .trim()
        .to_owned();

    let t_across = Instant::now();
    across_nodes(&cluster, "before").await;
    let t_across = t_across.elapsed();

    // The load, and the faults meanwhile.
    let stop = Rc::new(Cell::new(false));
    let data = Rc::new(fake_mp4(40_000));
    let load_started = Instant::now();
    let runs = (0..CLIENTS).map(|i| {
        let mut c = LoadClient {
            client: client(),
            site: cluster.site().to_owned(),
            ip: format!("10.9.0.{}", i + 1),
            cookie: None,
            seen: Seen::default(),
        };
        let (stop, data) = (stop.clone(), data.clone());
        async move {
            let mut n = 0;
            while !stop.get() {
                let _ = c.pass(n, &data).await;
                n += 1;
            }
            c.seen
        }
    });
    let orchestrate = async {
        let windows = faults(&cluster, &token).await;
        stop.set(true);
        windows
    };
    let (seen, windows) = futures_util::join!(futures_util::future::join_all(runs), orchestrate);
    let load_ended = Instant::now();
    let t_load = load_started.elapsed();

    // The failures: each belongs to a kill's window, is nginx's 502/503/504 or no answer, and
    // none comes in the quiet end.
    // nginx counts DELETE as idempotent: one that reached the killed api node (which did it)
    // is sent again to the live one, which finds nothing left to do: the logout is 401, the
    // deletion 404. Such an answer is explained only if the access log shows that second try.
    let log = cluster.nginx_log();
    let (dead_api, live_api) = (cluster.addr("api-1"), cluster.addr("api-2"));
    let resent = |path: &str, status: u16| {
        log.lines().any(|l| {
            l.contains(&format!("\"DELETE {path} HTTP/1.1\" {status} "))
                && l.contains(&format!("upstream=[{dead_api}, {live_api}]"))
        })
    };
    let mut counts: BTreeMap<(&str, &str, String), usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for f in seen.iter().flat_map(|s| &s.failures) {
        let mut status = f.status.map_or("no answer".to_owned(), |s| s.to_string());
        let window = windows.iter().find(|w| w.from <= f.at && f.at <= w.to);
        let mut gateway = f.status.is_none_or(|s| matches!(s, 502..=504));
        if let (Some(path), Some(code @ (401 | 404))) = (&f.delete, f.status)
            && resent(path, code)
        {
            gateway = true;
            status = format!("{code}: nginx sent it again to api-2");
        }
        match window {
            Some(w) if gateway => {
                eprintln!("  during {}: {} ({status}): {}", w.name, f.kind, f.what.trim());
                if f.kind == "play bytes" {
                    // What nginx saw of it (which node, how many bytes it passed on).
                    let vid = f.what.split(':').next().unwrap_or_default();
                    for l in log.lines().filter(|l| l.contains(&format!("GET /videos/{vid} "))) {
                        eprintln!("    nginx: {l}");
                    }
                }
                *counts.entry((w.name, f.kind, status)).or_default() += 1;
            }
            _ => wrong.push(format!(
                "{:?} after the load began, {} ({}): {}",
                f.at - load_started,
                f.kind,
                status,
                f.what
            )),
        }
    }
    let ok: usize = seen.iter().map(|s| s.ok).sum();
    let passes: usize = seen.iter().map(|s| s.signed_out.len()).sum();
    eprintln!("load: {CLIENTS} clients, {t_load:?}, {ok} acknowledged requests, {passes} passes");
    // Acknowledged requests per second of the load, and when the faults came.
    let mut per_second = vec![0usize; t_load.as_secs() as usize + 1];
    for at in seen.iter().flat_map(|s| &s.acked) {
        per_second[(*at - load_started).as_secs() as usize] += 1;
    }
    eprintln!("  acknowledged per second: {per_second:?}");
    for w in &windows {
        eprintln!(
            "  {} at {:?} (window to {:?})",
            w.name,
            w.from - load_started,
            w.to - load_started
        );
    }
    for ((window, kind, status), n) in &counts {
        eprintln!("  failed during {window}: {n} × {kind} ({status})");
    }
    assert!(wrong.is_empty(), "failures no kill explains:\n{}", wrong.join("\n"));
    let last = windows.iter().map(|w| w.to).max().expect("windows");
    assert!(load_ended - last >= QUIET - Duration::from_millis(100), "no quiet end");

    // The restarted Redis (empty: no persistence) holds the sessions and buckets written
    // since: the nodes went back to it.
    // redis://:<password>@127.0.0.1:<port>/0 (redis-cli's -u takes the empty user for one).
    let url = cluster.var("secrets/node.env", "DOUYIN_REDIS_URL");
    let (password, port) = url
        .strip_prefix("redis://:")
        .and_then(|rest| rest.split_once("@127.0.0.1:"))
        .map(|(pw, port)| (pw.to_owned(), port.trim_end_matches("/0").to_owned()))
        .expect("the script's Redis URL");
    for pattern in ["douyin:session:*", "douyin:bucket:*"] {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port, "--no-auth-warning", "--scan", "--pattern", pattern])
            .env("REDISCLI_AUTH", &password)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let keys = String::from_utf8_lossy(&out.stdout).lines().count();
                eprintln!("restarted Redis: {keys} keys {pattern}");
                assert!(keys > 0, "nothing written to Redis after its restart ({pattern})");
            }
            Ok(out) => panic!("redis-cli: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("redis-cli did not run ({e}): Redis's keys not checked"),
        }
    }

    let d = Direct { client: client() };
    // The surviving scheduler drains the queue, the killed one's claims included, and the
    // deleted videos' objects leave Garage.
    // (Timed from the end of the load; the killed scheduler's claims come free when its
    // heartbeat is stale.)
    let listing = format!("{}/video-delete-record", cluster.url("scheduler-2"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req =
            d.client.get(&listing).insert_header(("Authorization", format!("Bearer {token}")));
        let r = answer(req.send().await).await.expect("scheduler-2 answers");
        let pending = r.assert_status(200)["pending"].as_array().expect("pending").clone();
        if pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the queue is not drained: {pending:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t_drain = load_ended.elapsed();
    // Every acknowledged write is there.
    let t_check = Instant::now();
    let checker = LoadClient {
        client: client(),
        site: cluster.site().to_owned(),
        ip: "10.9.1.1".into(),
        cookie: None,
        seen: Seen::default(),
    };
    use awc::http::Method;
    // Registered users sign in (a few at a time: each is a password hash on api-2).
    let users: Vec<&String> = seen.iter().flat_map(|s| &s.users).collect();
    let checker = &checker;
    futures_util::stream::iter(users)
        .for_each_concurrent(4, |user| async move {
            let r = checker.api(&format!("/user/{user}"), "POST", Some(json!({"pwd": PWD}))).await;
            let r = r.unwrap_or_else(|e| panic!("sign-in of {user}: {e}"));
            assert_eq!(r.status.as_u16(), 200, "{user} registered but cannot sign in: {}", r.body);
        })
        .await;
    let mut i = 0;
    for s in &seen {
        for (vid, comments) in &s.kept {
            let r = checker.api(&format!("/videos/{vid}/comments"), "GET", None).await;
            let r = r.unwrap_or_else(|e| panic!("comments of {vid}: {e}"));
            let listed: Vec<&str> = r.assert_status(200)["comments"]
                .as_array()
                .expect("comments")
                .iter()
                .filter_map(|c| c["content"].as_str())
                .collect();
            for c in comments {
                assert!(listed.contains(&c.as_str()), "{vid} lost the comment {c:?}: {listed:?}");
            }
        }
        for (user, vid) in &s.deleted {
            let path = format!("/user/{user}/videos/{vid}");
            let r = checker.api(&path, "GET", None).await.expect("an answer");
            assert_eq!(r.status.as_u16(), 404, "deleted {vid} through nginx");
            for api in ["api-1", "api-2"] {
                let r = d.send(cluster.url(api), Method::GET, &path, None, None).await;
                assert_eq!(r.status.as_u16(), 404, "deleted {vid} on {api}");
            }
            for stream in ["stream-1", "stream-2"] {
                // Each from an address of its own (the node believes loopback's
                // X-Forwarded-For): one address would soon meet the small token bucket.
                let req = d
                    .client
                    .get(format!("{}/videos/{vid}", cluster.url(stream)))
                    .insert_header(("X-Forwarded-For", format!("10.8.{}.{}", i / 200, i % 200)));
                i += 1;
                let r = answer(req.send().await).await.expect("the stream node answers");
                assert_eq!(r.status.as_u16(), 404, "deleted {vid} on {stream}");
            }
        }
        for (user, session) in &s.signed_out {
            for api in ["api-1", "api-2"] {
                let path = format!("/user/{user}");
                let r = d.send(cluster.url(api), Method::GET, &path, Some(session), None).await;
                assert_eq!(r.status.as_u16(), 401, "{user}'s signed-out session works on {api}");
            }
        }
    }
    // The cross-node promises hold as well after the kills, with Redis back and api-1 and
    // stream-1 restarted.
    across_nodes(&cluster, "after").await;
    let t_check = t_check.elapsed();

    let store = S3Blobs::new(S3Config {
        endpoint: cluster.var("cluster.env", "S3_ENDPOINT").parse().expect("a URL"),
        public_endpoint: cluster.var("cluster.env", "S3_ENDPOINT").parse().expect("a URL"),
        bucket: cluster.var("secrets/garage.env", "GARAGE_DEFAULT_BUCKET"),
        region: "garage".into(),
        access_key_id: cluster.var("secrets/garage.env", "GARAGE_DEFAULT_ACCESS_KEY"),
        secret_access_key: cluster.var("secrets/garage.env", "GARAGE_DEFAULT_SECRET_KEY"),
    })
    .expect("an S3 client");
    let objects: Vec<String> =
        store.list().await.expect("Garage lists").iter().map(ToString::to_string).collect();
    let deleted: Vec<&String> = seen.iter().flat_map(|s| &s.deleted).map(|(_, v)| v).collect();
    let left: Vec<&&String> = deleted.iter().filter(|v| objects.contains(v)).collect();
    assert!(left.is_empty(), "deleted videos still in Garage: {left:?}");
    for s in &seen {
        for vid in s.uploaded.iter().filter(|v| s.kept.contains_key(*v)) {
            assert!(objects.contains(vid), "the acknowledged upload of {vid} is not in Garage");
        }
    }
    eprintln!(
        "cluster_load: {} users, {} videos deleted, {} kept, {} objects in Garage",
        seen.iter().map(|s| s.users.len()).sum::<usize>(),
        deleted.len(),
        seen.iter().map(|s| s.kept.len()).sum::<usize>(),
        objects.len()
    );
    eprintln!(
        "timings: up {t_up:?}, across nodes {t_across:?}, load {t_load:?}, checks {t_check:?}, \
         drain {t_drain:?}, total {:?}",
        t0.elapsed()
    );
}
