//! What the media job tests share: real clips made with ffmpeg, waiting for a probe's outcome
//! through the api and the internal job listing, and looking at a poster with ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::Value;

use crate::helpers::{Reply, TestApp, TestUser, enc, send_with};
use crate::stream_support::{have_tool, run};

/// Whether ffmpeg and ffprobe are here (under `CI=true` their absence fails the test).
pub fn have_ffmpeg() -> bool {
    have_tool("ffmpeg") && have_tool("ffprobe")
}

/// The absolute path of `tool` on `PATH` (processes started by the tests get no `PATH`).
pub fn tool_path(tool: &str) -> PathBuf {
    let out = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A 320x240 H.264 + AAC MP4 of `secs` seconds whose first second is black: the first frame
/// is never the poster a person would pick. Its one keyframe is that black first frame (no
/// keyframe at the scene change), so the poster has to come from decoding every frame.
pub async fn clip(dir: &Path, secs: u32) -> Vec<u8> {
    let path = dir.join(format!("clip-{secs}.mp4"));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=black:s=320x240:r=25:d=1"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s=320x240:r=25:d={}", secs - 1))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=d={secs}"))
        .args(["-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-map", "2:a"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .args(["-x264-params", "scenecut=0:keyint=250"])
        .args(["-movflags", "+faststart"])
        .arg(&path);
    let out = run(cmd).await;
    assert!(out.status.success(), "ffmpeg made the clip: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&path).unwrap()
}

/// The video object of `vid` as its owner sees it.
pub async fn video(app: &TestApp, user: &TestUser, vid: &str) -> Value {
    let path = format!("/user/{}/videos/{vid}", enc(&user.name));
    app.api(Method::GET, &path, Some(&user.session), None).await.assert_status(200).clone()
}

/// The jobs of `kind` (`remove_video` or `probe_video`) on the scheduler at `scheduler`.
pub async fn jobs_at(scheduler: &str, token: &str, kind: &str) -> Vec<Value> {
    let client = awc::Client::default();
    let url = format!("{scheduler}/jobs?kind={kind}");
    let r = send_with(
        &client,
        Method::GET,
        &url,
        Some(("Authorization", format!("Bearer {token}"))),
        None,
    )
    .await;
    r.assert_status(200)["jobs"].as_array().unwrap().clone()
}

pub async fn jobs(app: &TestApp, kind: &str) -> Vec<Value> {
    jobs_at(&app.scheduler, &app.node.internal_token, kind).await
}

/// Polls `check` every 50 ms for up to `limit`; its last answer.
pub async fn within<F, Fut, T>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The video object once its probe recorded a poster.
pub async fn probed(app: &TestApp, user: &TestUser, vid: &str) -> Value {
    crate::web_support::wait_for_poster(app, &user.name, vid).await
}

/// Width, height and mean luma (16–235) of an image, read by ffprobe and ffmpeg.
pub async fn look_at(dir: &Path, image: &[u8]) -> (u32, u32, f64) {
    let path = dir.join("poster.img");
    std::fs::write(&path, image).unwrap();
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height"])
        .args(["-of", "csv=p=0"])
        .arg(&path);
    let out = String::from_utf8(run(cmd).await.stdout).unwrap();
    let (w, h) = out.trim().split_once(',').expect("width,height");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "info", "-i"]).arg(&path).args([
        "-vf",
        "signalstats,metadata=print:key=lavfi.signalstats.YAVG",
        "-f",
        "null",
        "-",
    ]);
    let err = String::from_utf8(run(cmd).await.stderr).unwrap();
    let luma = err
        .lines()
        .find_map(|l| l.split("lavfi.signalstats.YAVG=").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .expect("ffmpeg printed the mean luma");
    (w.parse().unwrap(), h.parse().unwrap(), luma)
}

/// An executable at `dir/name` that runs `then` after `before` (shell lines): a test stand-in
/// around the real program, to slow it down or to see it start.
pub fn wrapper(dir: &Path, name: &str, before: &str, then: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    let script = format!("#!/bin/sh\n{before}\nexec {} \"$@\"\n", then.display());
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// GET `url` with one extra header.
pub async fn fetch(app: &TestApp, url: &str, header: Option<(&str, String)>) -> Reply {
    send_with(&app.client, Method::GET, url, header, None).await
}
