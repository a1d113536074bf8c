//! Moving a site that started with files to the object store (`move-to-object-store`), on a
//! real Garage, while the site serves: every video plays, byte for byte, before, during and
//! after a move that is killed (`SIGKILL`) half-way and run again.

use std::cell::{Cell, RefCell};
use std::process::Stdio;
use std::time::Duration;

use actors::blob::{BlobStore as _, S3Blobs};
use actors::model::{BlobLocation, VideoId};
use actors::relocate::{Event, Relocation};
use actors::store::{GetPlayable, SwitchToObjectStore};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::garage_support::{Garage, use_garage};
use crate::helpers::{TestApp, TestUser, test_config};
use crate::process_support::command;
use crate::stream_support::{etag_of, fake_mp4, get, header, ready_video, sha256_hex};
use awc::http::Method;

/// A site with `videos` uploaded on files, then restarted on `garage` (the first step of the
/// move: new files go to the store, old ones are served from disk). The files node is
/// returned too: it owns the data dir.
async fn site_on_files_then_s3(
    garage: &Garage,
    videos: &[Vec<u8>],
) -> (TestApp, TestApp, TestUser, Vec<String>) {
    let files = TestApp::spawn_with(crate::helpers::pin_sqlite).await;
    let alice = files.register("alice").await;
    let mut ids = Vec::new();
    for data in videos {
        ids.push(ready_video(&files, &alice, data).await);
    }
    files.node.stop_handle().stop(true).await;
    let mut cfg = test_config(files.data_dir());
    crate::helpers::pin_sqlite(&mut cfg);
    use_garage(&mut cfg, garage);
    // The test plays every video over and over: the limiter's quota is not what it measures.
    cfg.stream_rate = 100_000.0;
    cfg.stream_burst = 100_000.0;
    let s3 = TestApp::spawn_config(cfg, tempfile::tempdir().expect("a spare dir")).await;
    (files, s3, alice, ids)
}

async fn location(app: &TestApp, vid: &str) -> BlobLocation {
    let store = app.node.store().expect("the node has the store");
    let video = store.send(GetPlayable { id: id(vid) }).await.unwrap().unwrap();
    video.file.expect("a ready video").location
}

fn id(vid: &str) -> VideoId {
    vid.parse().expect("a video id")
}

/// Plays `vid` whole and checks every byte and the validator.
async fn plays(app: &TestApp, vid: &str, data: &[u8]) -> Result<(), String> {
    let r = get(app, &format!("/videos/{vid}"), &[]).await;
    if r.status.as_u16() != 200 || r.raw[..] != data[..] {
        return Err(format!("{vid}: {} with {} bytes", r.status, r.raw.len()));
    }
    if header(&r, "etag") != etag_of(data) {
        return Err(format!("{vid}: etag {}", header(&r, "etag")));
    }
    Ok(())
}

/// Local video files left in the data dir.
async fn local_files(app: &TestApp) -> Vec<VideoId> {
    let files = app.node.blob_backend().expect("blobs").files().clone();
    files.list().await.expect("the directory lists")
}

#[actix::test]
async fn a_site_moves_to_the_store_while_every_video_plays_and_a_killed_move_resumes() {
    let Some(garage) = Garage::start().await else { return };
    // Small ones, and a big one fourth, which the kill cuts off mid-copy.
    let mut videos: Vec<Vec<u8>> = (0..3).map(|i| fake_mp4(200_000 + i * 1111)).collect();
    videos.push(fake_mp4(24 << 20));
    videos.extend((3..8).map(|i| fake_mp4(200_000 + i * 1111)));
    let (files, app, _, ids) = site_on_files_then_s3(&garage, &videos).await;
    for vid in &ids {
        assert_eq!(location(&app, vid).await, BlobLocation::File);
    }
    // New uploads on the s3 node go to the store.
    let bob = app.register("bob").await;
    let fresh = fake_mp4(150_000);
    let new_vid = ready_video(&app, &bob, &fresh).await;
    assert_eq!(location(&app, &new_vid).await, BlobLocation::ObjectStore);
    assert!(!local_files(&app).await.contains(&id(&new_vid)));

    let s3 = garage.blobs();
    let all: Vec<(String, Vec<u8>)> = ids.iter().cloned().zip(videos.iter().cloned()).collect();
    let failures = RefCell::new(Vec::<String>::new());
    let rounds = Cell::new(0u32);
    let moving = Cell::new(true);
    let player = async {
        while moving.get() {
            for (vid, data) in &all {
                if let Err(e) = plays(&app, vid, data).await {
                    failures.borrow_mut().push(e);
                }
            }
            rounds.set(rounds.get() + 1);
        }
    };
    let mover = async {
        // Paced, so the kill lands mid-way: after three videos, inside the big one's copy.
        let mut first =
            spawn_move(&files, &garage, &["--linger-secs", "1", "--max-mib-per-sec", "16"]);
        let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
        let mut moved = 0;
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("moved ") {
                moved += 1;
            }
            if moved == 3 {
                break;
            }
        }
        assert_eq!(moved, 3, "the first run moves three videos");
        // 16 MiB of the 24 MiB copy: one 8 MiB part is in the store, unfinished.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        first.start_kill().unwrap();
        first.wait().await.unwrap();
        let cut_off = s3.list_uploads().await.unwrap();
        assert_eq!(cut_off.len(), 1, "the big copy was cut off mid-way: {cut_off:?}");
        assert_eq!(cut_off[0].video, Some(id(&ids[3])));
        for vid in &ids[..3] {
            assert_eq!(location(&app, vid).await, BlobLocation::ObjectStore);
        }
        for vid in &ids[3..] {
            assert_eq!(location(&app, vid).await, BlobLocation::File);
        }
        // Still playing from both places for a while.
        let before = rounds.get();
        while rounds.get() < before + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Again, to the end.
        let second = spawn_move(&files, &garage, &["--linger-secs", "1"]);
        let out = second.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("aborted the cut-off copy videos/{}", ids[3])),
            "{stdout}"
        );
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("moved ")).count(),
            ids.len() - 3,
            "{stdout}"
        );
        assert!(!stderr.contains(garage.secret_key.as_str()), "the secret is never logged");
        let before = rounds.get();
        while rounds.get() < before + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        moving.set(false);
    };
    futures_util::join!(player, mover);
    let failures = failures.into_inner();
    assert!(
        failures.is_empty(),
        "{} plays failed during the move, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(rounds.get() >= 4, "every video played during the move: {} rounds", rounds.get());

    // Everything in the store, nothing left on disk or half-written, every video as before.
    for (vid, data) in all.iter().chain([(new_vid.clone(), fresh.clone())].iter()) {
        assert_eq!(location(&app, vid).await, BlobLocation::ObjectStore, "{vid}");
        plays(&app, vid, data).await.unwrap();
        let range = get(&app, &format!("/videos/{vid}"), &[("Range", "bytes=100-199")]).await;
        assert_eq!(range.status.as_u16(), 206);
        assert!(range.raw[..] == data[100..200]);
    }
    assert_eq!(local_files(&app).await, Vec::<VideoId>::new());
    let mut in_store = s3.list().await.unwrap();
    in_store.sort();
    let mut expected: Vec<VideoId> = ids.iter().chain([&new_vid]).map(|v| id(v)).collect();
    expected.sort();
    assert_eq!(in_store, expected);
    assert!(s3.list_uploads().await.unwrap().is_empty());

    // Nothing left to do: a third run says so and succeeds.
    let third = spawn_move(&files, &garage, &[]).wait_with_output().await.unwrap();
    assert!(third.status.success());
    assert_eq!(String::from_utf8_lossy(&third.stdout), "");
    drop(files);
}

fn spawn_move(files: &TestApp, garage: &Garage, extra: &[&str]) -> tokio::process::Child {
    let secret = garage.secret_key.clone();
    let std_cmd =
        command(&[("DOUYIN_S3_SECRET_ACCESS_KEY", secret.as_str()), ("RUST_LOG", "info")]);
    let mut cmd = tokio::process::Command::from(std_cmd);
    cmd.arg("--data-dir")
        .arg(files.data_dir())
        .args(garage.flags())
        .arg("move-to-object-store")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("the binary starts")
}

#[actix::test]
async fn a_file_unlike_its_upload_stays_and_a_deleted_video_is_not_switched() {
    let Some(garage) = Garage::start().await else { return };
    let videos = [fake_mp4(100_000), fake_mp4(120_000)];
    let (files, app, alice, ids) = site_on_files_then_s3(&garage, &videos).await;
    // Bit rot on disk: same size, one byte changed.
    let path = files.data_dir().join("videos").join(&ids[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5000] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let store = app.node.store().unwrap();
    let blobs = app.node.blob_backend().unwrap();
    let s3: std::sync::Arc<S3Blobs> = blobs.s3().unwrap().clone();
    let relocation = Relocation {
        store: store.clone(),
        files: blobs.files().clone(),
        s3: s3.clone(),
        linger: Duration::ZERO,
        max_rate: None,
    };
    let mut events = Vec::new();
    let report = relocation.run(|e| events.push(e.clone())).await.unwrap();
    assert_eq!(report.moved, 1, "{events:?}");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, id(&ids[0]));
    assert!(report.skipped[0].1.contains("SHA-256"), "{:?}", report.skipped);
    // The damaged file stays where it is, and no copy of it is in the store.
    assert_eq!(location(&app, &ids[0]).await, BlobLocation::File);
    assert!(s3.head(id(&ids[0])).await.unwrap().is_none());
    assert!(s3.list_uploads().await.unwrap().is_empty());
    assert!(events.contains(&Event::Removed { video: id(&ids[1]) }));
    plays(&app, &ids[1], &videos[1]).await.unwrap();

    // The switch is conditional: not for a file other than the one recorded (the row's
    // hash), not twice, not for a deleted video.
    let switch =
        |vid: &str, data: &[u8]| SwitchToObjectStore { id: id(vid), sha256: sha256_hex(data) };
    assert!(!store.send(switch(&ids[0], &bytes)).await.unwrap().unwrap(), "another file");
    assert!(!store.send(switch(&ids[1], &videos[1])).await.unwrap().unwrap(), "already switched");
    let path = format!("/user/alice/videos/{}", ids[0]);
    app.api(Method::DELETE, &path, Some(&alice.session), None).await.assert_status(204);
    assert!(!store.send(switch(&ids[0], &videos[0])).await.unwrap().unwrap(), "deleted");
    // The deleted video's bytes are still a local file on this s3 node: the scheduler removes
    // them wherever they are.
    let dispatcher = app.node.dispatcher().expect("this node runs the scheduler");
    let mut removed = false;
    for _ in 0..200 {
        dispatcher.send(actors::scheduler::Tick).await.unwrap().unwrap();
        if !local_files(&app).await.contains(&id(&ids[0])) {
            removed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(removed, "the deleted video's local file was removed");
    drop(files);
}

#[actix::test]
async fn the_move_needs_the_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(&[])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("move-to-object-store")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--blob-store"), "{err}");
}
