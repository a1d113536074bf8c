//! Media jobs with the real ffprobe and ffmpeg: a ready video gets its duration, size, codecs
//! and poster; a file they cannot read fails its job, never the video; a deletion removes the
//! poster; the queue survives `kill -9` mid-probe; removals and probes interleave; and a node
//! without ffmpeg keeps working and catches up once it is installed.

use std::time::Duration;

use awc::http::Method;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, enc};
use crate::media_support::{
    clip, fetch, have_ffmpeg, jobs, jobs_at, look_at, probed, tool_path, video, within, wrapper,
};
use crate::process_support::{Ports, Proc};
use crate::stream_support::{fake_mp4, get, has_file, ready_video};

/// Whether `vid`'s poster is stored on the node's backend.
async fn has_poster(app: &TestApp, vid: &str) -> bool {
    let blobs = app.node.blob_backend().expect("this node opens the blobs").store();
    match blobs.open_poster(vid.parse().expect("a video id")).await {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("cannot tell whether {vid} has a poster: {e}"),
    }
}

async fn a_ready_video_gets_its_media_and_a_poster_that_is_not_black(backend: Backend) {
    if !have_ffmpeg() {
        return;
    }
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let user = app.register("mia").await;
    let data = clip(app.dir.path(), 3).await;
    let vid = ready_video(&app, &user, &data).await;

    let v = probed(&app, &user, &vid).await;
    let ms = v["duration_ms"].as_u64().expect("a duration");
    assert!((2900..=3100).contains(&ms), "3 s clip, {ms} ms");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(320), Some(240)));
    assert_eq!((v["video_codec"].as_str(), v["audio_codec"].as_str()), (Some("h264"), Some("aac")));
    assert_eq!(v["poster_url"], format!("/videos/{vid}/poster"));
    assert!(jobs(&app, "probe_video").await.is_empty(), "the job is done and gone");
    // Anonymous callers see the same fields in the feed.
    let feed = app.api(Method::GET, "/videos", None, None).await;
    assert_eq!(feed.assert_status(200)["videos"][0]["poster_url"], v["poster_url"]);

    let poster = get(&app, &format!("/videos/{vid}/poster"), &[]).await;
    poster.assert_status(200);
    let header = |r: &crate::helpers::Reply, h: &str| {
        r.headers.get(h).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    };
    assert_eq!(header(&poster, "content-type"), "image/webp");
    assert_eq!(header(&poster, "content-length"), poster.raw.len().to_string());
    let riff = &poster.raw[..];
    assert_eq!((&riff[..4], &riff[8..12]), (&b"RIFF"[..], &b"WEBP"[..]), "a WebP file");
    let riff_len = u32::from_le_bytes(riff[4..8].try_into().unwrap()) as usize + 8;
    assert_eq!(riff_len, riff.len(), "the RIFF size is the file's (browsers check it)");
    let (w, h, luma) = look_at(app.dir.path(), &poster.raw).await;
    assert_eq!((w, h), (480, 360), "fixed width, the video's shape");
    assert!(luma > 40.0, "the poster is a picture, not the black first second (luma {luma})");

    let etag = header(&poster, "etag");
    assert!(etag.starts_with('"'), "a strong validator: {etag}");
    let again = get(&app, &format!("/videos/{vid}/poster"), &[("If-None-Match", &etag)]).await;
    again.assert_status(304);
    assert!(again.raw.is_empty());
    let head = app.client.head(format!("{}/videos/{vid}/poster", app.stream)).send().await.unwrap();
    assert_eq!(head.status(), 200);

    // The same video plays as before.
    let play = get(&app, &format!("/videos/{vid}"), &[]).await;
    assert!(play.assert_status(200).is_null(), "the body is the video, not JSON");
    assert_eq!(play.raw.len(), data.len());
}

async fn deleting_a_video_removes_its_poster(backend: Backend) {
    if !have_ffmpeg() {
        return;
    }
    let Some(app) = TestApp::on(backend, |_| {}).await else { return };
    let user = app.register("noa").await;
    let vid = ready_video(&app, &user, &clip(app.dir.path(), 2).await).await;
    probed(&app, &user, &vid).await;
    assert!(has_poster(&app, &vid).await);

    let path = format!("/user/{}/videos/{vid}", enc(&user.name));
    app.api(Method::DELETE, &path, Some(&user.session), None).await.assert_status(204);
    get(&app, &format!("/videos/{vid}/poster"), &[]).await.assert_error(404, "006");
    let gone = within(Duration::from_secs(15), || async {
        (!has_poster(&app, &vid).await && !has_file(&app, &vid).await).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the scheduler removed the file and the poster");
}

on_both_backends!(
    a_ready_video_gets_its_media_and_a_poster_that_is_not_black,
    deleting_a_video_removes_its_poster
);

#[actix::test]
async fn a_corrupt_but_sniffable_file_fails_its_job_and_stays_playable() {
    if !have_ffmpeg() {
        return;
    }
    let app = TestApp::spawn().await;
    let user = app.register("ola").await;
    // An `ftyp` box, then noise: the upload's sniffing takes it for MP4, ffprobe cannot read it.
    let data = fake_mp4(64 * 1024);
    let vid = ready_video(&app, &user, &data).await;

    let failed = within(Duration::from_secs(20), || async {
        let jobs = jobs(&app, "probe_video").await;
        jobs.into_iter().find(|j| j["video_id"] == vid && j["failed"] == true)
    })
    .await
    .expect("the probe job gave up");
    assert_eq!(failed["attempts"], 1, "no retry can read it: given up at once");
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("ffprobe"), "the listing says what failed: {error}");

    let v = video(&app, &user, &vid).await;
    assert_eq!(v["status"], "ready");
    for field in ["duration_ms", "width", "height", "video_codec", "poster_url"] {
        assert_eq!(v[field], Value::Null, "{field} stays null");
    }
    let play = get(&app, &format!("/videos/{vid}"), &[("Range", "bytes=0-99")]).await;
    play.assert_status(206);
    assert_eq!(&play.raw[..], &data[..100], "the video still plays");
    get(&app, &format!("/videos/{vid}/poster"), &[]).await.assert_error(404, "006");
}

/// A video dark from start to end still gets a poster (the darkest frames are all there is).
#[actix::test]
async fn a_video_dark_all_through_still_gets_a_poster() {
    if !have_ffmpeg() {
        return;
    }
    let app = TestApp::spawn().await;
    let user = app.register("dee").await;
    let path = app.dir.path().join("night.mp4");
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=0x141414:s=320x180:d=2"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&path);
    assert!(crate::stream_support::run(cmd).await.status.success());
    let vid = ready_video(&app, &user, &std::fs::read(&path).unwrap()).await;
    probed(&app, &user, &vid).await;
    let poster = get(&app, &format!("/videos/{vid}/poster"), &[]).await;
    poster.assert_status(200);
    let (w, h, luma) = look_at(app.dir.path(), &poster.raw).await;
    assert_eq!((w, h), (480, 270));
    assert!(luma < 40.0, "a dark poster of a dark video ({luma})");
}

/// Probes slowed down (each ffmpeg waits 2 s first) hold the probe slot while a deletion is
/// queued: the removal runs at once beside them, and the probes finish after.
#[actix::test]
async fn removals_and_probes_interleave() {
    if !have_ffmpeg() {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    let slow = wrapper(tools.path(), "ffmpeg", "sleep 2", &tool_path("ffmpeg"));
    let app = TestApp::spawn_with(|cfg| cfg.ffmpeg = slow.into()).await;
    let user = app.register("pia").await;
    let data = clip(app.dir.path(), 2).await;
    let mut probing = Vec::new();
    for _ in 0..3 {
        probing.push(ready_video(&app, &user, &data).await);
    }
    let doomed = ready_video(&app, &user, &fake_mp4(4096)).await;
    let path = format!("/user/{}/videos/{doomed}", enc(&user.name));
    app.api(Method::DELETE, &path, Some(&user.session), None).await.assert_status(204);

    let removed = within(Duration::from_secs(10), || async {
        (!has_file(&app, &doomed).await && jobs(&app, "remove_video").await.is_empty())
            .then_some(())
    })
    .await;
    assert!(removed.is_some(), "the removal ran");
    let running = jobs(&app, "probe_video").await;
    assert!(
        running.iter().any(|j| j["running"] == true),
        "the removal did not wait for the probes: {running:?}"
    );
    for vid in &probing {
        probed(&app, &user, vid).await;
    }
}

/// With `--max-probes 2`, a slow probe holds one slot, not both. Four probes wait for ffmpeg,
/// which then appears: one pass claims the slow one and a fast one together, and the two
/// others go through the fast one's slot while the slow one runs (they would wait for it if a
/// pass freed its slots only together).
#[actix::test]
async fn a_slow_probe_does_not_hold_up_the_others() {
    if !have_ffmpeg() {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    let ffmpeg = tools.path().join("ffmpeg");
    let app = TestApp::spawn_with(|cfg| {
        cfg.ffmpeg = ffmpeg.clone().into();
        cfg.max_probes = 2;
    })
    .await;
    let user = app.register("sam").await;
    let data = clip(app.dir.path(), 2).await;
    let mut videos = Vec::new();
    for _ in 0..4 {
        videos.push(ready_video(&app, &user, &data).await);
    }
    let waiting = within(Duration::from_secs(10), || async {
        let jobs = jobs(&app, "probe_video").await;
        (jobs.len() == 4 && jobs.iter().all(|j| !j["waiting_for"].is_null())).then_some(())
    });
    assert!(waiting.await.is_some(), "all four wait for ffmpeg");

    // The first claimed (the oldest id) is slowed down; then ffmpeg appears, whole at once.
    let slow = videos.iter().min().unwrap().clone();
    let before = format!("case \"$*\" in *{slow}*) /bin/sleep 6;; esac");
    let staged = wrapper(app.dir.path(), "ffmpeg.staged", &before, &tool_path("ffmpeg"));
    std::fs::rename(staged, &ffmpeg).unwrap();
    for vid in videos.iter().filter(|v| **v != slow) {
        probed(&app, &user, vid).await;
    }
    assert!(
        video(&app, &user, &slow).await["poster_url"].is_null(),
        "three probes went through the other slot while the slow one ran"
    );
    probed(&app, &user, &slow).await;
}

/// The node is killed (`kill -9`) while ffmpeg runs for a probe: the probe dies with it, the
/// job is still queued, and the restarted node finishes it.
#[actix::test]
async fn the_queue_survives_kill_9_mid_probe() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, started) = (dir.path().join("data"), dir.path().join("started"));
    // Asked for its encoders (at start-up) it answers; asked for a poster it stalls.
    let real = tool_path("ffmpeg");
    let stall = format!(
        "case \"$*\" in *-encoders*) exec {} \"$@\";; esac\necho $$ > {}\nexec /bin/sleep 300",
        real.display(),
        started.display()
    );
    let stalled = wrapper(dir.path(), "stalled-ffmpeg", &stall, &real);
    let ffprobe = tool_path("ffprobe");
    let args = |ffmpeg: &std::path::Path| {
        vec![
            "--ffprobe".to_owned(),
            ffprobe.display().to_string(),
            "--ffmpeg".to_owned(),
            ffmpeg.display().to_string(),
            "--delete-every-secs".to_owned(),
            "1".to_owned(),
        ]
    };
    let ports = Ports::fresh();
    let client = awc::Client::default();
    let mut node = Proc::spawn(&data_dir, ports, &args(&stalled), &[]);
    node.wait_healthy(&client).await;
    let app_like = RemoteNode { api: node.api(), stream: node.stream(), client: client.clone() };
    let (session, vid) = app_like.upload(&clip(dir.path(), 2).await).await;

    let pid = within(Duration::from_secs(20), || async {
        std::fs::read_to_string(&started).ok().and_then(|p| p.trim().parse::<u32>().ok())
    });
    let pid = pid.await.unwrap_or_else(|| panic!("ffmpeg never started:\n{}", node.log()));
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists(), "the stalled ffmpeg runs");
    drop(node); // SIGKILL
    let died = within(Duration::from_secs(5), || async { (!proc_dir.exists()).then_some(()) });
    assert!(died.await.is_some(), "the probe's ffmpeg died with the node");

    // What the killed node left: the job, still claimed by its dead run.
    let db = rusqlite::Connection::open(data_dir.join("douyin.sqlite3")).unwrap();
    let claims: Vec<Option<String>> = db
        .prepare("SELECT claimed_by FROM jobs WHERE kind = 'probe_video' AND video_id = ?1")
        .unwrap()
        .query_map([&vid], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(matches!(claims.as_slice(), [Some(_)]), "the job outlived the node: {claims:?}");
    drop(db);

    let token = std::fs::read_to_string(data_dir.join("internal.token")).unwrap();
    let mut node = Proc::spawn(&data_dir, ports, &args(&tool_path("ffmpeg")), &[]);
    node.wait_healthy(&client).await;
    let done = within(Duration::from_secs(30), || async {
        let v = app_like.video(&session, &vid).await;
        (!v["poster_url"].is_null()).then_some(v)
    })
    .await;
    assert!(done.is_some(), "the restarted node finished the probe:\n{}", node.log());
    assert!(jobs_at(&node.scheduler(), token.trim(), "probe_video").await.is_empty());
    let temps = std::fs::read_dir(data_dir.join("videos/.posters")).unwrap();
    assert_eq!(temps.count(), 1, "one poster, no temporary file left");
}

/// Without ffmpeg the upload still works and the job waits, said once in the log; once ffmpeg
/// is installed (here: appears at the configured path) the queue catches up by itself.
#[actix::test]
async fn without_ffmpeg_uploads_work_and_the_queue_catches_up_once_it_is_installed() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let (ffmpeg, ffprobe) = (bin.join("ffmpeg"), bin.join("ffprobe"));
    let args = [
        "--ffmpeg".to_owned(),
        ffmpeg.display().to_string(),
        "--ffprobe".to_owned(),
        ffprobe.display().to_string(),
        "--delete-every-secs".to_owned(),
        "1".to_owned(),
    ];
    let data_dir = dir.path().join("data");
    let client = awc::Client::default();
    let mut node = Proc::spawn(&data_dir, Ports::fresh(), &args, &[]);
    node.wait_healthy(&client).await;
    let remote = RemoteNode { api: node.api(), stream: node.stream(), client: client.clone() };
    let (session, vid) = remote.upload(&clip(dir.path(), 2).await).await;
    let token = std::fs::read_to_string(data_dir.join("internal.token")).unwrap();
    let token = token.trim();

    let waiting = within(Duration::from_secs(10), || async {
        let jobs = jobs_at(&node.scheduler(), token, "probe_video").await;
        jobs.into_iter().find(|j| j["video_id"] == vid && !j["waiting_for"].is_null())
    })
    .await
    .unwrap_or_else(|| panic!("the job waits for the tool:\n{}", node.log()));
    assert_eq!(waiting["attempts"], 0, "waiting is not failing");
    assert_eq!(waiting["failed"], false);
    let play = send_get(&client, &format!("{}/videos/{vid}", node.stream())).await;
    assert_eq!(play, 200, "the video plays without its probe");
    tokio::time::sleep(Duration::from_secs(2)).await; // a few more ticks
    let warnings = node.log().matches("not found: uploads work").count();
    assert_eq!(warnings, 1, "warned once at start-up:\n{}", node.log());

    std::os::unix::fs::symlink(tool_path("ffmpeg"), &ffmpeg).unwrap();
    std::os::unix::fs::symlink(tool_path("ffprobe"), &ffprobe).unwrap();
    let caught_up = within(Duration::from_secs(20), || async {
        let v = remote.video(&session, &vid).await;
        (!v["poster_url"].is_null()).then_some(v)
    })
    .await;
    assert!(caught_up.is_some(), "the queue caught up once ffmpeg was there:\n{}", node.log());
}

async fn send_get(client: &awc::Client, url: &str) -> u16 {
    client.get(url).send().await.expect("the node answers").status().as_u16()
}

/// A node run as a process, reached over HTTP.
struct RemoteNode {
    api: String,
    stream: String,
    client: awc::Client,
}

impl RemoteNode {
    /// Registers a user, creates a video and uploads `data`: the session and the video's id.
    async fn call(
        &self,
        m: Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> crate::helpers::Reply {
        let url = format!("{}{path}", self.api);
        let header = session.map(|s| ("X-Session-Id", s.to_owned()));
        crate::helpers::send_with(&self.client, m, &url, header, body).await
    }

    async fn upload(&self, data: &[u8]) -> (String, String) {
        let body = serde_json::json!({"user_name": "rae", "pwd": "password1"});
        let r = self.call(Method::POST, "/user", None, Some(body)).await;
        let session = r.assert_status(201)["session_id"].as_str().unwrap().to_owned();
        let body = serde_json::json!({"name": "clip"});
        let r = self.call(Method::POST, "/user/rae/videos", Some(&session), Some(body)).await;
        let vid = r.assert_status(201)["id"].as_str().unwrap().to_owned();
        let res = self
            .client
            .post(format!("{}/upload/{vid}", self.stream))
            .insert_header(("X-Session-Id", session.clone()))
            .insert_header(("Content-Type", "video/mp4"))
            .send_body(data.to_vec())
            .await
            .expect("the upload reaches the node");
        assert_eq!(res.status(), 201);
        (session, vid)
    }

    async fn video(&self, session: &str, vid: &str) -> Value {
        let path = format!("/user/rae/videos/{vid}");
        self.call(Method::GET, &path, Some(session), None).await.assert_status(200).clone()
    }
}

#[actix::test]
async fn the_poster_route_refuses_what_playback_refuses() {
    let app = TestApp::spawn().await;
    let user = app.register("qin").await;
    get(&app, "/videos/not-a-uuid/poster", &[]).await.assert_error(400, "001");
    let unknown = "01234567-89ab-7def-8123-456789abcdef";
    get(&app, &format!("/videos/{unknown}/poster"), &[]).await.assert_error(404, "006");
    // Pending: no file, so no poster, for anybody.
    let pending = app.create_video(&user, "later").await;
    let r = fetch(&app, &format!("{}/videos/{pending}/poster", app.stream), None).await;
    r.assert_error(404, "006");
}

/// A site from before the job queue (schema version 1): its queued deletions become
/// `remove_video` jobs with their attempts and errors, every ready video is queued for probing,
/// and the old table is gone.
#[actix::test]
async fn an_older_site_keeps_its_deletions_and_gets_its_videos_probed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let (ready, pending, deleted) = (
        "01234567-89ab-7def-8123-000000000001",
        "01234567-89ab-7def-8123-000000000002",
        "01234567-89ab-7def-8123-000000000003",
    );
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../schema.sql")).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO users (id, user_name, pwd_hash, created_at) VALUES (1, 'old', 'x', 1);
             INSERT INTO videos (id, author_id, name, state, size, content_type, sha256,
                                 created_at, uploaded_at)
             VALUES ('{ready}', 1, 'r', 'ready', 10, 'video/mp4', 'aa', 1, 2),
                    ('{pending}', 1, 'p', 'pending', NULL, NULL, NULL, 1, NULL),
                    ('{deleted}', 1, 'd', 'deleted', 10, 'video/mp4', 'bb', 1, 2);
             INSERT INTO video_del_rec (video_id, attempts, next_attempt_at, last_error,
                                        failed, queued_at)
             VALUES ('{deleted}', 3, 99, 'disk full', 0, 5);"
        ))
        .unwrap();
    }
    let pool = actors::store::VideoStore::open(&path, 2).expect("the store opens and migrates");
    drop(pool);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let jobs: Vec<(String, String, i64, Option<String>)> = conn
        .prepare("SELECT kind, video_id, attempts, last_error FROM jobs ORDER BY kind, video_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        jobs,
        [
            ("probe_video".to_owned(), ready.to_owned(), 0, None),
            ("remove_video".to_owned(), deleted.to_owned(), 3, Some("disk full".to_owned())),
        ]
    );
    let old: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'video_del_rec'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(old, 0, "the old queue is gone");
}
