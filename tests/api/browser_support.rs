//! What the browser tests share: headless Chromium driven over WebDriver (fantoccini), a clip
//! made with ffmpeg, screenshots into `target/screenshots/`, and the page steps every test
//! takes (register, upload, play and seek). Under `CI=true` a missing tool fails the test;
//! elsewhere the test skips with the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// `--max-upload-bytes` of the browser test's node: 1 MiB, well above the test clip.
pub(crate) const LIMIT: u64 = 1 << 20;

/// Kills chromedriver when the test ends, however it ends.
pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the test cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() && !on_path("chromium") {
        missing.push("chromium");
    }
    if !Path::new(CHROMEDRIVER).exists() && !on_path("chromedriver") {
        missing.push("chromedriver");
    }
    if !on_path("ffmpeg") {
        missing.push("ffmpeg");
    }
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory can be made");
    dir
}

pub(crate) async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("saved");
}

/// A 4-second VP8 WebM clip, which Debian's Chromium plays.
pub(crate) fn make_clip(dir: &Path) -> PathBuf {
    let path = dir.join("clip.webm");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=4:size=320x240:rate=25")
        .args(["-c:v", "libvpx", "-b:v", "200k"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg made the clip");
    path
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("bound").port()
}

pub(crate) async fn start_browser(profile: &Path) -> (Driver, Client) {
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(driver);
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = caps.as_object().expect("an object").clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connected = ClientBuilder::rustls()
            .expect("a TLS configuration")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match connected {
            Ok(c) => return (driver, c),
            Err(e) if Instant::now() > deadline => panic!("cannot reach chromedriver: {e}"),
            Err(_) => actix_web::rt::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Polls `expr` (a JavaScript expression) until it is truthy; returns its value.
pub(crate) async fn until(c: &Client, expr: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = c.execute(&format!("return ({expr});"), vec![]).await.unwrap_or(Value::Null);
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what} ({expr})");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) async fn fill(c: &Client, css: &str, text: &str) {
    let el = c.wait().for_element(Locator::Css(css)).await.expect("the field");
    el.send_keys(text).await.expect("typed");
}

pub(crate) async fn click(c: &Client, css: &str) {
    let el = c.wait().for_element(Locator::Css(css)).await.expect("the button");
    el.click().await.expect("clicked");
}

pub(crate) async fn path_is(c: &Client, path: &str) {
    until(c, &format!("location.pathname === {}", json!(path)), path).await;
    until(c, "document.readyState === 'complete'", "page load").await;
}

/// The upload form's alert, once it shows something.
pub(crate) async fn upload_alert(c: &Client) -> String {
    let js = "!document.querySelector('#upload-form .alert').hidden \
              && document.querySelector('#upload-form .alert').textContent";
    let text = until(c, js, "the upload form's alert").await;
    text.as_str().expect("text").to_owned()
}

/// Chooses `file` on a freshly loaded `/userhome` and submits it as `title`.
pub(crate) async fn submit_upload(c: &Client, web: &str, title: &str, file: &Path) {
    c.goto(&format!("{web}/userhome")).await.expect("userhome");
    path_is(c, "/userhome").await;
    fill(c, "#up-name", title).await;
    let input = c.find(Locator::Css("#up-file")).await.expect("file input");
    input.send_keys(&file.display().to_string()).await.expect("file chosen");
    click(c, "#upload-form button[type=submit]").await;
}

pub(crate) async fn rows(c: &Client) -> u64 {
    let n = c.execute("return document.querySelectorAll('.row').length", vec![]).await;
    n.expect("rows").as_u64().expect("a count")
}

/// Whether the browser test `what` must skip: it fails instead under `CI=true`.
pub(crate) fn skip(what: &str) -> bool {
    let Some(why) = missing_tools() else { return false };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} under CI: {why}");
    eprintln!("skipping {what}: {why}");
    true
}

/// Whether a test that makes a real clip must skip for want of ffmpeg: it fails instead under
/// `CI=true`.
pub(crate) fn skip_without_ffmpeg(what: &str) -> bool {
    if on_path("ffmpeg") {
        return false;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} under CI: missing ffmpeg");
    eprintln!("skipping {what}: missing ffmpeg");
    true
}

/// Registers `name` through the home page's form, which signs in and lands on `/userhome`.
pub(crate) async fn register(c: &Client, web: &str, name: &str) {
    c.goto(&format!("{web}/")).await.expect("home");
    c.wait().for_element(Locator::Css("#register-form")).await.expect("register form");
    fill(c, "#rg-name", name).await;
    fill(c, "#rg-pwd", "password1").await;
    click(c, "#register-form button[type=submit]").await;
    path_is(c, "/userhome").await;
}

/// Waits for a submitted upload's bar to reach 100 %, moved there by real progress events.
pub(crate) async fn progress_reaches_100(c: &Client) {
    until(
        c,
        "document.getElementById('up-bar') && document.getElementById('up-bar').value === 100",
        "100%",
    )
    .await;
    let events = c
        .execute("return document.getElementById('up-bar').getAttribute('data-events')", vec![])
        .await
        .expect("events");
    assert!(
        events.as_str().and_then(|e| e.parse::<u32>().ok()).is_some_and(|n| n >= 1),
        "progress events: {events}"
    );
    let pct = c.find(Locator::Css("#up-pct")).await.expect("pct").text().await.expect("text");
    assert_eq!(pct, "100%");
}

/// On a watch page: the player plays (enough data, time advancing), then seeks to 2 s —
/// `seeked` fires there — and plays on from there.
pub(crate) async fn play_and_seek(c: &Client) {
    c.wait().for_element(Locator::Css("#player")).await.expect("player");
    c.execute(
        "const v = document.getElementById('player'); v.muted = true; \
         v.addEventListener('seeked', () => { v.dataset.seekedAt = String(v.currentTime); }); \
         v.play(); return true;",
        vec![],
    )
    .await
    .expect("play");
    let v = "document.getElementById('player')";
    until(c, &format!("{v}.readyState >= 3"), "readyState >= 3").await;
    let t0 = until(c, &format!("{v}.currentTime > 0.3 && {v}.currentTime"), "playback").await;
    until(c, &format!("{v}.currentTime > {t0} + 0.3"), "time advancing").await;
    c.execute(
        "const v = document.getElementById('player'); v.pause(); v.currentTime = 2.0; return true;",
        vec![],
    )
    .await
    .expect("seek");
    let at = until(c, &format!("!{v}.seeking && {v}.dataset.seekedAt"), "seeked").await;
    let at: f64 = at.as_str().and_then(|t| t.parse().ok()).expect("a time");
    assert!((at - 2.0).abs() < 0.3, "seeked to {at}, not 2 s");
    until(c, &format!("{v}.readyState >= 2"), "data at 2 s").await;
    c.execute("document.getElementById('player').play(); return true;", vec![])
        .await
        .expect("play on");
    until(c, &format!("{v}.currentTime > 2.3"), "playing on from 2 s").await;
}

/// Uploads a text file named `.mp4` (as "Not a video") through the page, which must say "not a
/// video" (and never "busy"); the page is kept as screenshot `shot_name`.
pub(crate) async fn a_text_file_is_not_a_video(c: &Client, web: &str, dir: &Path, shot_name: &str) {
    let text = dir.join("notes.mp4");
    std::fs::write(&text, "These are my notes, not a video.\n".repeat(40)).expect("written");
    submit_upload(c, web, "Not a video", &text).await;
    let alert = upload_alert(c).await;
    assert!(alert.contains("not a video"), "{alert}");
    assert!(!alert.contains("busy"), "{alert}");
    shot(c, shot_name).await;
}
