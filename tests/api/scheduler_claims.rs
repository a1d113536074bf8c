//! Claims across scheduler incarnations, at store level with explicit times: a live
//! incarnation's claims are never taken, a dead one's are free at once, and a restarted node
//! takes its previous run's claims back without waiting for anything.

use crate::db_support::TestDb;
use std::collections::BTreeSet;
use std::time::Duration;

use actix::Addr;
use actors::model::{JobKind, JobRecord, VideoId};
use actors::store::{
    ClaimJobs, EnqueueDeletion, FailJob, Heartbeat, Incarnation, Liveness, SchedulerNode,
    VideoStore,
};
use time::OffsetDateTime;

use crate::scheduler_support::{Fixture, records};

const ALIVE_FOR: Duration = Duration::from_secs(10);

fn incarnation(node: &str, started_at: OffsetDateTime) -> Incarnation {
    let addr = "127.0.0.1:9001".parse().expect("an address");
    let node = SchedulerNode::new(node, addr, std::path::Path::new("/data"));
    Incarnation { started_at, ..Incarnation::start(node, ALIVE_FOR) }
}

async fn queue(store: &Addr<VideoStore>, n: usize) -> Vec<VideoId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let video = VideoId::new();
        store.send(EnqueueDeletion { video }).await.expect("reachable").expect("queued");
        ids.push(video);
    }
    ids
}

async fn claim(
    store: &Addr<VideoStore>,
    who: &Incarnation,
    now: OffsetDateTime,
    limit: u32,
    lease: Duration,
) -> BTreeSet<VideoId> {
    let claimed = store
        .send(ClaimJobs { kind: JobKind::RemoveVideo, claimer: who.clone(), now, limit, lease })
        .await
        .expect("reachable")
        .expect("claimed");
    assert!(claimed.iter().all(|r| r.claimed_by == Some(who.id)), "{claimed:?}");
    claimed.into_iter().map(|r| r.video_id).collect()
}

async fn beat(store: &Addr<VideoStore>, who: &Incarnation, now: OffsetDateTime) -> Liveness {
    let msg = Heartbeat { incarnation: who.clone(), now };
    store.send(msg).await.expect("reachable").expect("heartbeat")
}

async fn record(store: &Addr<VideoStore>, video: VideoId) -> JobRecord {
    records(store).await.into_iter().find(|r| r.video_id == video).expect("still queued")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn a_live_incarnations_claims_stay_its_own_and_a_dead_ones_are_free(db: TestDb) {
    let fx = Fixture::on(db).await;
    let store = &fx.store;
    queue(store, 3).await;
    let t0 = OffsetDateTime::now_utc();
    let a = incarnation("host-a", t0);
    let b = incarnation("host-b", t0);
    // Leases of one second: only liveness keeps A's claims A's once they have run out.
    let lease = secs(1);

    let of_a = claim(store, &a, t0, 2, lease).await;
    assert_eq!(of_a.len(), 2);
    let of_b = claim(store, &b, t0, 10, lease).await;
    assert_eq!(of_b.len(), 1, "B gets the one record A did not claim");
    assert!(of_a.is_disjoint(&of_b));

    // A is alive until t0 + 10 s: past every lease, B still gets only its own record back.
    assert_eq!(claim(store, &b, t0 + secs(5), 10, lease).await, of_b);
    assert_eq!(beat(store, &a, t0 + secs(8)).await, Liveness::Alive);
    assert_eq!(claim(store, &b, t0 + secs(15), 10, lease).await, of_b, "A's heartbeat held");

    // A falls silent: after t0 + 18 s it is dead, and its claims are B's at once.
    let later = t0 + secs(19);
    let taken = claim(store, &b, later, 10, lease).await;
    assert!(taken.is_superset(&of_a), "B took A's claims: {taken:?}");
    // A late failure from A is fenced off: the record is B's now and stays untouched.
    let video = *of_a.first().expect("two records");
    let fail = FailJob {
        kind: JobKind::RemoveVideo,
        video,
        claim: Some(a.id),
        error: "late".into(),
        next_attempt_at: later + secs(3600),
        give_up: false,
    };
    store.send(fail).await.expect("reachable").expect("fenced, not an error");
    let r = record(store, video).await;
    assert_eq!((r.attempts, r.claimed_by), (0, Some(b.id)), "{r:?}");
}

async fn a_restarted_node_takes_back_its_previous_runs_claims_at_once(db: TestDb) {
    let fx = Fixture::on(db).await;
    let store = &fx.store;
    let queued: BTreeSet<VideoId> = queue(store, 3).await.into_iter().collect();
    let t0 = OffsetDateTime::now_utc();
    let first = incarnation("host-a", t0);
    let other = incarnation("host-b", t0);
    let held = claim(store, &first, t0, 10, secs(60)).await;
    assert_eq!(held, queued, "the first run claimed everything, then was killed");
    assert!(claim(store, &other, t0 + secs(1), 10, secs(60)).await.is_empty());

    // One second later the same node starts again: its previous run is over, although its
    // heartbeat and its leases would still hold for a while.
    let second = incarnation("host-a", t0 + secs(1));
    assert_eq!(claim(store, &second, t0 + secs(1), 10, secs(60)).await, queued);

    // The previous run, were it somehow still there, may claim nothing any more.
    assert_eq!(beat(store, &first, t0 + secs(2)).await, Liveness::Superseded);
    assert!(claim(store, &first, t0 + secs(120), 10, secs(60)).await.is_empty());
    // The restarted run is an ordinary live incarnation to everyone else.
    assert_eq!(beat(store, &second, t0 + secs(2)).await, Liveness::Alive);
    assert!(claim(store, &other, t0 + secs(3), 10, secs(60)).await.is_empty());
}

/// Two schedulers on two nodes (each its own pool and store threads) claiming at the same
/// moments, again and again: no record is claimed twice, and together they claim every one. On
/// PostgreSQL this is the row locks' doing (`FOR UPDATE SKIP LOCKED`); without them both
/// claimers read the same due rows and both take them.
async fn schedulers_claiming_at_once_never_share_a_record(db: TestDb) {
    let fx = Fixture::on(db).await;
    let queued: BTreeSet<VideoId> = queue(&fx.store, 60).await.into_iter().collect();
    let there = fx.db.start(4);
    let t0 = OffsetDateTime::now_utc();
    let (a, b) = (incarnation("host-a", t0), incarnation("host-b", t0));
    assert_eq!(beat(&fx.store, &a, t0).await, Liveness::Alive);
    assert_eq!(beat(&there, &b, t0).await, Liveness::Alive);
    let mut claimed = Vec::new();
    for _ in 0..40 {
        let rounds = (0..6).map(|i| {
            let (store, who) = if i % 2 == 0 { (&fx.store, &a) } else { (&there, &b) };
            claim(store, who, t0, 3, secs(600))
        });
        claimed.extend(futures_util::future::join_all(rounds).await.into_iter().flatten());
        if claimed.len() >= queued.len() {
            break;
        }
    }
    let distinct: BTreeSet<VideoId> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "a record was claimed twice");
    assert_eq!(distinct, queued, "every record was claimed");
}

on_both_databases!(
    a_live_incarnations_claims_stay_its_own_and_a_dead_ones_are_free,
    a_restarted_node_takes_back_its_previous_runs_claims_at_once,
    schedulers_claiming_at_once_never_share_a_record,
);
