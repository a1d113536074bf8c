//! Dispatcher and Executor at message level: `Tick` sent directly, no timer, no HTTP.

use crate::db_support::TestDb;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::{Actor as _, Addr};
use actors::blob::{BlobStore, LocalBlobs};
use actors::model::JobKind;
use actors::scheduler::{
    Dispatcher, DispatcherConfig, Executor, Outcome, PassReport, Reconcile, RetryPolicy,
    SchedulerMetrics, Tick, execute_one,
};
use actors::store::{ClaimJobs, Incarnation, SchedulerNode};
use time::OffsetDateTime;

use crate::scheduler_support::{CountingBlobs, Fixture, assert_gone, eventually};

fn runner(
    fx: &Fixture,
    blobs: Arc<dyn BlobStore>,
    config: DispatcherConfig,
    policy: RetryPolicy,
) -> (Addr<Dispatcher>, SchedulerMetrics) {
    let metrics = SchedulerMetrics::new();
    let media = fx.media_jobs();
    let tools = media.tools.clone();
    let executor =
        Executor::new(fx.store.clone(), blobs.clone(), media, policy, metrics.clone()).start();
    let dispatcher =
        Dispatcher::new(fx.store.clone(), executor, blobs, tools, config, metrics.clone()).start();
    (dispatcher, metrics)
}

/// One pass per tick, and removals only: the fixture's ready videos are not real videos, and
/// their probes are `media_jobs`' to test.
fn counted(config: DispatcherConfig) -> DispatcherConfig {
    DispatcherConfig { follow_up: false, max_probes: 0, ..config }
}

async fn tick(d: &Addr<Dispatcher>) -> PassReport {
    d.send(Tick).await.expect("dispatcher reachable").expect("pass ran")
}

async fn a_tick_removes_file_comments_row_and_record(db: TestDb) {
    let fx = Fixture::on(db).await;
    let video = fx.deleted_video().await;
    let keep = fx.ready_video(1).await;
    let (d, metrics) =
        runner(&fx, fx.blobs.clone(), counted(DispatcherConfig::default()), RetryPolicy::default());

    let report = tick(&d).await;
    assert_eq!(report, PassReport { claimed: 1, removed: 1, ..PassReport::default() });
    assert_gone(&fx.store, &fx.blobs, video).await;
    assert!(fx.blobs.path_of(keep).exists(), "a video that was not deleted keeps its file");
    assert_eq!(fx.remnants(keep).await.comments, 1);
    assert_eq!(metrics.removals_done.get(), 1);
    assert_eq!(metrics.queue_depth.get(), 0, "the tick refreshed the gauge");
    assert_eq!(tick(&d).await, PassReport::default(), "nothing is left to do");
}

async fn one_tick_claims_at_most_a_batch(db: TestDb) {
    let fx = Fixture::on(db).await;
    for _ in 0..10 {
        fx.deleted_video().await;
    }
    let config = counted(DispatcherConfig { batch: 4, max_in_flight: 8, ..Default::default() });
    let (d, metrics) = runner(&fx, fx.blobs.clone(), config, RetryPolicy::default());

    let claimed: Vec<usize> = [tick(&d).await, tick(&d).await, tick(&d).await, tick(&d).await]
        .iter()
        .map(|r| r.claimed)
        .collect();
    assert_eq!(claimed, [4, 4, 2, 0]);
    assert!(fx.records().await.is_empty());
    assert_eq!(metrics.removals_done.get(), 10);
}

async fn overlapping_ticks_never_run_a_record_twice_nor_exceed_the_bound(db: TestDb) {
    let fx = Fixture::on(db).await;
    let mut videos = Vec::new();
    for _ in 0..12 {
        videos.push(fx.deleted_video().await);
    }
    // Slow removals make the ticks really overlap.
    let blobs = Arc::new(CountingBlobs::new((*fx.blobs).clone(), Duration::from_millis(100)));
    let config = counted(DispatcherConfig { batch: 5, max_in_flight: 5, ..Default::default() });
    let (d, _) = runner(&fx, blobs.clone(), config, RetryPolicy::default());

    let reports = futures_util::future::join_all((0..4).map(|_| d.send(Tick))).await;
    let claimed: usize =
        reports.into_iter().map(|r| r.expect("reachable").expect("pass ran").claimed).sum();
    assert_eq!(claimed, 5, "the first pass took every slot; the others found none free");
    assert!(blobs.peak.load(Ordering::SeqCst) <= 5);

    // Drain the rest with more overlapping ticks; every record runs exactly once.
    while !fx.records().await.is_empty() {
        futures_util::future::join_all((0..3).map(|_| d.send(Tick))).await;
    }
    for v in videos {
        assert_eq!(blobs.calls_of(v), 1, "{v} was removed once");
        assert_gone(&fx.store, &fx.blobs, v).await;
    }
    assert!(blobs.peak.load(Ordering::SeqCst) <= 5, "never more than max_in_flight at once");
}

async fn executing_the_same_record_twice_is_harmless(db: TestDb) {
    let fx = Fixture::on(db).await;
    let video = fx.deleted_video().await;
    let record = fx.records().await.pop().expect("the delete queued a record");
    let policy = RetryPolicy::default();
    let now = OffsetDateTime::now_utc();

    let first = execute_one(&fx.store, &*fx.blobs, &policy, record.clone(), now).await;
    let second = execute_one(&fx.store, &*fx.blobs, &policy, record, now).await;
    assert_eq!(first.expect("ran"), Outcome::Removed { video, file_existed: true });
    assert_eq!(second.expect("ran"), Outcome::Removed { video, file_existed: false });
    assert_gone(&fx.store, &fx.blobs, video).await;
}

/// Removal fails for real, root included: the video's path is a non-empty directory, which
/// `unlink` refuses (EISDIR) whatever the caller's privileges, unlike a read-only directory.
fn obstruct(blobs: &LocalBlobs, video: actors::model::VideoId) {
    let path = blobs.path_of(video);
    std::fs::remove_file(&path).expect("the file was there");
    std::fs::create_dir(&path).expect("a directory in its place");
    std::fs::write(path.join("keep"), b"x").expect("non-empty");
}

async fn a_failing_removal_backs_off_then_is_marked_failed(db: TestDb) {
    let fx = Fixture::on(db).await;
    let video = fx.deleted_video().await;
    obstruct(&fx.blobs, video);
    let policy = RetryPolicy {
        base: Duration::from_secs(60),
        cap: Duration::from_secs(100),
        max_attempts: 3,
    };
    let (d, metrics) = runner(&fx, fx.blobs.clone(), counted(DispatcherConfig::default()), policy);

    // First attempt through the dispatcher: it fails and is pushed a minute out.
    let before = OffsetDateTime::now_utc();
    assert_eq!(tick(&d).await, PassReport { claimed: 1, failed: 1, ..PassReport::default() });
    let r = fx.records().await.pop().expect("still queued");
    assert_eq!((r.attempts, r.failed), (1, false));
    assert!(r.last_error.as_deref().is_some_and(|e| e.contains("removing the file")), "{r:?}");
    // Stored times have millisecond precision; `before` has nanoseconds.
    assert!(r.next_attempt_at + Duration::from_millis(1) >= before + Duration::from_secs(60));
    assert!(r.next_attempt_at <= OffsetDateTime::now_utc() + Duration::from_secs(61));
    assert_eq!(tick(&d).await.claimed, 0, "not due again before its backoff");
    assert_eq!(metrics.removals_failed.get(), 1);

    // Later attempts, driven one step at a time at the times they fall due: the delay
    // doubles (60 s → 100 s, the cap), and the third failure gives up.
    let due = r.next_attempt_at;
    let outcome = execute_one(&fx.store, &*fx.blobs, &policy, r, due).await.expect("recorded");
    let Outcome::Retry { attempts: 2, next_attempt_at, .. } = outcome else {
        panic!("expected a second retry, got {outcome:?}")
    };
    assert_eq!(next_attempt_at, due + Duration::from_secs(100));
    let r = fx.records().await.pop().expect("still queued");
    let outcome =
        execute_one(&fx.store, &*fx.blobs, &policy, r, next_attempt_at).await.expect("recorded");
    assert!(matches!(outcome, Outcome::GaveUp { attempts: 3, .. }), "{outcome:?}");

    let r = fx.records().await.pop().expect("kept in the listing");
    assert_eq!((r.attempts, r.failed), (3, true));
    let far = OffsetDateTime::now_utc() + Duration::from_secs(86_400 * 365);
    let claimable = fx
        .store
        .send(ClaimJobs {
            kind: JobKind::RemoveVideo,
            claimer: Incarnation::start(SchedulerNode::unique(), Duration::from_secs(10)),
            now: far,
            limit: 10,
            lease: Duration::from_secs(1),
        })
        .await
        .expect("reachable")
        .expect("claim");
    assert!(claimable.is_empty(), "a failed record is never retried by itself");
    assert!(fx.remnants(video).await.row, "nothing was half-removed");
}

async fn reconciliation_queues_stale_pending_videos_and_reports_orphan_files(db: TestDb) {
    let fx = Fixture::on(db).await;
    let ready = fx.ready_video(0).await;
    let pending = fx
        .store
        .send(actors::store::CreateVideo { author: fx.user.clone(), name: "never".into() })
        .await
        .expect("reachable")
        .expect("created")
        .id;
    let orphan = actors::model::VideoId::new();
    std::fs::write(fx.blobs.path_of(orphan), b"lost").expect("write");
    let (d, metrics) =
        runner(&fx, fx.blobs.clone(), counted(DispatcherConfig::default()), RetryPolicy::default());

    // A day and a bit later, as the reconciliation pass sees it.
    let now = OffsetDateTime::now_utc() + Duration::from_secs(25 * 3600);
    let report = d.send(Reconcile { now }).await.expect("reachable").expect("ran");
    assert_eq!(report.stale_queued, [pending]);
    assert_eq!(report.orphan_files, [orphan]);
    assert_eq!(metrics.orphan_files.get(), 1);
    assert!(fx.blobs.path_of(orphan).exists(), "orphans are reported, never removed");
    assert!(fx.remnants(ready).await.row, "a ready video is never stale");

    // Queuing woke the dispatcher, whose pass may still be running: wait for it (no timer).
    let store = fx.store.clone();
    let drained = eventually(Duration::from_secs(5), || {
        let store = store.clone();
        async move { !crate::scheduler_support::remnants(&store, pending).await.record }
    })
    .await;
    assert!(drained, "the woken pass removed the stale video");
    assert_gone(&fx.store, &fx.blobs, pending).await;
    let again = d.send(Reconcile { now }).await.expect("reachable").expect("ran");
    assert!(again.stale_queued.is_empty());
}

async fn a_live_dispatchers_claims_are_not_taken_by_another_even_past_the_lease(db: TestDb) {
    let fx = Fixture::on(db).await;
    let mut videos = Vec::new();
    for _ in 0..3 {
        videos.push(fx.deleted_video().await);
    }
    // Removals far slower than the lease: only the claimer being alive keeps its claims its own.
    let blobs = Arc::new(CountingBlobs::new((*fx.blobs).clone(), Duration::from_millis(300)));
    let config = counted(DispatcherConfig {
        batch: 3,
        max_in_flight: 3,
        lease: Duration::from_millis(1),
        ..Default::default()
    });
    // Two schedulers on one database, as two processes on one data dir.
    let (a, _) = runner(&fx, blobs.clone(), config, RetryPolicy::default());
    let (b, _) = runner(&fx, blobs.clone(), config, RetryPolicy::default());

    let first = a.send(Tick);
    let started = eventually(Duration::from_secs(5), || async {
        videos.iter().all(|v| blobs.calls_of(*v) == 1)
    })
    .await;
    assert!(started, "A claimed every record and is removing them");
    let report = tick(&b).await;
    assert_eq!(report.claimed, 0, "B took none of A's claims: {report:?}");
    let report = first.await.expect("dispatcher reachable").expect("pass ran");
    assert_eq!(report.removed, 3, "{report:?}");
    for v in videos {
        assert_eq!(blobs.calls_of(v), 1, "{v} was removed once");
        assert_gone(&fx.store, &fx.blobs, v).await;
    }
}

on_both_databases!(
    a_tick_removes_file_comments_row_and_record,
    one_tick_claims_at_most_a_batch,
    overlapping_ticks_never_run_a_record_twice_nor_exceed_the_bound,
    executing_the_same_record_twice_is_harmless,
    a_failing_removal_backs_off_then_is_marked_failed,
    reconciliation_queues_stale_pending_videos_and_reports_orphan_files,
    a_live_dispatchers_claims_are_not_taken_by_another_even_past_the_lease,
);
