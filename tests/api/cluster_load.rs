//! issue 10's "Prove it": `deploy/cluster.sh up`, the whole cluster on loopback (PostgreSQL,
//! Redis, Garage, nginx, 2 api, 2 stream, 2 scheduler, 2 web), 8 clients looping through the
//! whole user flow through nginx (register, sign in, create a video, upload, play a Range,
//! comment, delete it every other time, sign out), and meanwhile: an api and a stream node
//! `SIGKILL`ed, then a scheduler while deletions are queued, then Redis killed and started again,
//! then (the killed api and stream nodes back) PostgreSQL stopped for a couple of seconds and
//! started again. Afterwards:
//! - every acknowledged write is there: the users sign in, the comments on kept videos are
//!   listed, deleted videos are 404 on every live node and their objects leave Garage once the
//!   surviving scheduler has drained the queue, signed-out sessions are 401;
//! - the failures are only those a fault explains, counted per fault and kind: at a kill,
//!   requests in flight on the killed node (nginx's 502/503/504, or no answer); around Redis,
//!   none at all; while PostgreSQL is down (and for the pool's 2 s connect timeout after), the
//!   nodes' own 500 `003` / 503 `011` JSON, nothing else; after that every client succeeds
//!   again, no node restarted, and the last seconds have no failure at all;
//! - before the load and after it, API.md's "Guarantees across nodes", asked of the nodes
//!   themselves: a logout on api-1 is 401 on api-2 at the next request, a deletion on api-1
//!   leaves api-2's feed at once, and one client's token bucket (`--stream-burst` made small) is
//!   shared by the two stream nodes.
//!
//! Without nginx, Garage, redis-server or PostgreSQL the test skips with the reason, and fails
//! under `CI=true`.

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
/// How long PostgreSQL stays stopped.
const PG_DOWN: Duration = Duration::from_secs(2);
/// How long after PostgreSQL is back a failure still counts as its: a request that asked the
/// pool for a connection while it was down waits up to the pool's 2 s connect timeout.
const PG_GRACE: Duration = Duration::from_millis(2500);
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
    /// The `error_code` of a JSON answer.
    code: Option<String>,
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
                code: r.body["error_code"].as_str().map(str::to_owned),
                delete: None,
            },
            Err(why) => Failure {
                kind,
                at: Instant::now(),
                status: None,
                what: why,
                code: None,
                delete: None,
            },
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
            let failure =
                Failure { kind: "play bytes", at, status: None, what, code: None, delete: None };
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

/// What failures a fault explains.
#[derive(Clone, Copy, PartialEq)]
enum Explains {
    /// A killed node's requests in flight: nginx's 502/503/504 (its 503 `011`), or no answer.
    InFlight,
    /// Nothing: Redis is only a cache.
    Nothing,
    /// The database away: the nodes' own 500 `003` or 503 `011`, in JSON.
    DatabaseDown,
}

/// A stretch of the load in which failures are expected, named for the report.
struct Window {
    name: &'static str,
    from: Instant,
    to: Instant,
    explains: Explains,
}

/// What [`faults`] did.
struct Faults {
    windows: Vec<Window>,
    /// PostgreSQL's `stop` began, and its `start` had returned.
    pg_stopped: Instant,
    pg_back: Instant,
    /// From the start's return until every live node's /healthz said `"database":"ok"`.
    pg_healthy: Duration,
}

/// The faults, one after the other, while the clients run.
async fn faults(cluster: &Cluster, token: &str) -> Faults {
    let mut windows = Vec::new();
    let pause = |s: f64| tokio::time::sleep(Duration::from_secs_f64(s));
    pause(2.0).await;

    let from = Instant::now();
    cluster.act("kill", "api-1").await;
    cluster.act("kill", "stream-1").await;
    let (name, explains) = ("api-1 + stream-1 killed", Explains::InFlight);
    windows.push(Window { name, from, to: Instant::now() + AFTERMATH, explains });
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
    let (name, explains) = ("scheduler-1 killed", Explains::InFlight);
    windows.push(Window { name, from, to: Instant::now() + AFTERMATH, explains });
    pause(2.0).await;

    // While Redis is away the nodes say so and keep answering (200); once it is back they
    // use it again. No failure at all is explained by it.
    let from = Instant::now();
    cluster.act("kill", "redis").await;
    let down = redis_health(cluster, "down", Duration::from_secs(3)).await;
    pause(3.0).await;
    cluster.act("start", "redis").await;
    let back = Instant::now();
    let ok = redis_health(cluster, "ok", Duration::from_secs(10)).await;
    eprintln!("/healthz: redis \"down\" {down:?} after the kill, \"ok\" {ok:?} after the restart");
    let (name, explains) = ("Redis killed, restarted", Explains::Nothing);
    windows.push(Window { name, from, to: back + AFTERMATH, explains });
    tokio::time::sleep(AFTERMATH).await;

    // The killed nodes come back (no failure allowed for that), before the database goes: the
    // nodes that then reconnect by themselves are all there is.
    cluster.act("start", "api-1").await;
    cluster.act("start", "stream-1").await;
    pause(2.0).await;

    // PostgreSQL stops (a fast shutdown: its sessions are ended) and starts again over the same
    // data. Meanwhile the nodes answer 500/503 in JSON; then they reconnect by themselves.
    let pg_stopped = Instant::now();
    cluster.act("stop", "postgres").await;
    // The nodes know: /healthz is 503, database down (the clients meanwhile see what they see).
    let r = answer(client().get(format!("{}/healthz", cluster.url("api-2"))).send().await).await;
    let r = r.expect("api-2 answers /healthz");
    assert_eq!((r.status.as_u16(), &r.body["database"]), (503, &json!("down")), "{}", r.body);
    tokio::time::sleep(PG_DOWN).await;
    cluster.act("start", "postgres").await;
    let pg_back = Instant::now();
    let pg_healthy = database_health(cluster, Duration::from_secs(10)).await;
    eprintln!(
        "PostgreSQL: stopped at +0, started again at {:?}; every live node's /healthz said \
         database ok {pg_healthy:?} after that",
        pg_back - pg_stopped
    );
    let (name, explains) = ("PostgreSQL stopped, started", Explains::DatabaseDown);
    windows.push(Window { name, from: pg_stopped, to: pg_back + PG_GRACE, explains });
    tokio::time::sleep(PG_GRACE).await;

    // The load ends quietly.
    tokio::time::sleep(QUIET).await;
    Faults { windows, pg_stopped, pg_back, pg_healthy }
}

/// How long until every live node that uses the database says `"database":"ok"` with a 200.
async fn database_health(cluster: &Cluster, within: Duration) -> Duration {
    let c = client();
    let started = Instant::now();
    for node in ["api-1", "api-2", "stream-1", "stream-2", "scheduler-2"] {
        loop {
            let r = answer(c.get(format!("{}/healthz", cluster.url(node))).send().await).await;
            let last = match r {
                Ok(r) if r.status.as_u16() == 200 && r.body["database"] == "ok" => break,
                Ok(r) => format!("{} {}", r.status, r.body),
                Err(e) => e,
            };
            assert!(started.elapsed() < within, "{node} never reconnected to PostgreSQL: {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    started.elapsed()
}

#[actix::test]
async fn under_load_the_full_cluster_loses_no_acknowledged_write_to_killed_nodes_redis_or_postgres()
{
    if !have_tools(true, true) {
        return;
    }
    let t0 = Instant::now();
    let burst = BURST.to_string();
    let rate = RATE.to_string();
    // The script's default cluster: PostgreSQL and Redis included.
    let mut cluster =
        Cluster::up(&[("DOUYIN_STREAM_BURST", &burst), ("DOUYIN_STREAM_RATE", &rate)]);
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
        let faults = faults(&cluster, &token).await;
        stop.set(true);
        faults
    };
    let (seen, faults) = futures_util::join!(futures_util::future::join_all(runs), orchestrate);
    let windows = &faults.windows;
    let load_ended = Instant::now();
    let t_load = load_started.elapsed();

    // The failures: each is one its window explains, and none comes in the quiet end.
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
    let mut server_errors = 0;
    for f in seen.iter().flat_map(|s| &s.failures) {
        let mut status = f.status.map_or("no answer".to_owned(), |s| s.to_string());
        if let Some(code) = &f.code {
            status = format!("{status} {code}");
        }
        server_errors += usize::from(f.status.is_some_and(|s| s >= 500));
        let explained = |w: &Window| match w.explains {
            Explains::InFlight => {
                f.status.is_none_or(|s| matches!(s, 502..=504))
                    || matches!((&f.delete, f.status), (Some(path), Some(code @ (401 | 404)))
                        if resent(path, code))
            }
            Explains::Nothing => false,
            Explains::DatabaseDown => {
                matches!(f.status, Some(500 | 503))
                    && matches!(f.code.as_deref(), Some("003" | "011"))
            }
        };
        let window = windows.iter().find(|w| w.from <= f.at && f.at <= w.to && explained(w));
        match window {
            Some(w) => {
                if w.explains == Explains::InFlight && matches!(f.status, Some(401 | 404)) {
                    status = format!("{status}: nginx sent it again to api-2");
                }
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
            None => wrong.push(format!(
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
    for w in windows {
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
    for w in windows {
        let n: usize =
            counts.iter().filter(|((name, ..), _)| *name == w.name).map(|(_, n)| n).sum();
        eprintln!("  {}: {n} failed request(s)", w.name);
    }
    eprintln!("  5xx answers: {server_errors}; failures no fault explains: {}", wrong.len());
    assert!(wrong.is_empty(), "failures no fault explains:\n{}", wrong.join("\n"));
    let last = windows.iter().map(|w| w.to).max().expect("windows");
    assert!(load_ended - last >= QUIET - Duration::from_millis(100), "no quiet end");
    // PostgreSQL's return needed no node restarted: every client had requests acknowledged
    // after its window, and the first came soon.
    let pg_end = faults.pg_back + PG_GRACE;
    for (i, s) in seen.iter().enumerate() {
        let after = s.acked.iter().filter(|at| **at > pg_end).count();
        assert!(after > 0, "client {i}: nothing acknowledged after PostgreSQL came back");
    }
    let first_ok = seen
        .iter()
        .flat_map(|s| &s.acked)
        .filter(|at| **at > faults.pg_back)
        .min()
        .map(|at| *at - faults.pg_back);
    let pg_failed = seen
        .iter()
        .flat_map(|s| &s.failures)
        .filter(|f| faults.pg_stopped <= f.at && f.at <= pg_end)
        .count();
    eprintln!(
        "PostgreSQL: down {:?} (stop to start), {pg_failed} request(s) failed, the first \
         acknowledged {first_ok:?} after the start returned, every node healthy after {:?}",
        faults.pg_back - faults.pg_stopped,
        faults.pg_healthy
    );

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
    let checker_client = LoadClient {
        client: client(),
        site: cluster.site().to_owned(),
        ip: "10.9.1.1".into(),
        cookie: None,
        seen: Seen::default(),
    };
    use awc::http::Method;
    // Registered users sign in (a few at a time: each is a password hash on api-2).
    let users: Vec<&String> = seen.iter().flat_map(|s| &s.users).collect();
    let checker = &checker_client;
    futures_util::stream::iter(users)
        .for_each_concurrent(4, |user| async move {
            let r = checker.api(&format!("/user/{user}"), "POST", Some(json!({"pwd": PWD}))).await;
            let r = r.unwrap_or_else(|e| panic!("sign-in of {user}: {e}"));
            assert_eq!(r.status.as_u16(), 200, "{user} registered but cannot sign in: {}", r.body);
        })
        .await;
    let mut i = 0;
    for s in &seen {
        // A video whose upload failed (a kill, the database away) stays pending, which nobody
        // but its owner sees: only uploaded ones are checked here.
        for (vid, comments) in s.kept.iter().filter(|(v, _)| s.uploaded.contains(v)) {
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

    let config = S3Config {
        endpoint: cluster.var("cluster.env", "S3_ENDPOINT").parse().expect("a URL"),
        public_endpoint: cluster.var("cluster.env", "S3_ENDPOINT").parse().expect("a URL"),
        bucket: cluster.var("secrets/garage.env", "GARAGE_DEFAULT_BUCKET"),
        region: "garage".into(),
        access_key_id: cluster.var("secrets/garage.env", "GARAGE_DEFAULT_ACCESS_KEY"),
        secret_access_key: cluster.var("secrets/garage.env", "GARAGE_DEFAULT_SECRET_KEY"),
    };
    // Listed on a runtime of its own, gone right after: the S3 client's pooled connection
    // would stay open on this test's runtime after the client is dropped, and Garage's orderly
    // stop in `down` waits 10 s for open connections.
    let objects: Vec<String> = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        rt.expect("a runtime").block_on(async {
            let store = S3Blobs::new(config).expect("an S3 client");
            store.list().await.expect("Garage lists").iter().map(ToString::to_string).collect()
        })
    })
    .join()
    .expect("the listing of Garage");
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

    // The test's own clients go first: their idle keep-alive connections would hold up the
    // nodes' orderly stop (each waits for its open connections, up to 5 s).
    drop((d, checker_client));
    // `down` stops every process, PostgreSQL included, and removes the run dir and PostgreSQL's
    // directory (outside the run dir when the server's user cannot reach it).
    let pg_home = std::fs::canonicalize(cluster.dir().join("postgres")).expect("PostgreSQL's dir");
    let t_down = cluster.down_and_check();
    assert!(!pg_home.exists(), "down leaves PostgreSQL's {} behind", pg_home.display());
    eprintln!(
        "timings: up {t_up:?}, across nodes {t_across:?}, load {t_load:?}, checks {t_check:?}, \
         drain {t_drain:?}, down {t_down:?}, total {:?}",
        t0.elapsed()
    );
}
