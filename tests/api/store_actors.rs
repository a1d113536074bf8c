//! Actor-level tests: messages sent straight to `VideoStore` and `Session` over a temporary
//! database (each test on SQLite and on PostgreSQL), including two `Session` actors sharing one database (the two-process case).

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};

use crate::db_support::TestDb;
use actors::StoreError;
use actors::clock::{ManualClock, SharedClock};
use actors::model::{JobKind, Page, PwdHash, User, UserName};
use actors::session::{
    CreateSession, DbSessions, ResolveSession, RevokeSession, Session, SessionConfig, Sweep,
};
use actors::store::{
    CreateComment, CreateVideo, DeleteVideo, GetVideo, InsertUser, ListComments, ListJobs,
    ListVideos, VideoStore,
};

fn name(s: &str) -> UserName {
    s.parse().expect("a valid test user name")
}

fn sessions(store: &Addr<VideoStore>, ttl: Duration) -> Addr<Session> {
    sessions_on(store, ttl, SharedClock::default())
}

/// A session actor reading the time from `clock`.
fn sessions_on(store: &Addr<VideoStore>, ttl: Duration, clock: SharedClock) -> Addr<Session> {
    Session::new(Arc::new(DbSessions(store.clone())), SessionConfig::new(ttl), clock).start()
}

/// A user whose password nobody needs here (sign-in is tested in `store_accounts`).
async fn user(store: &Addr<VideoStore>, n: &str) -> User {
    let pwd_hash = PwdHash::from_phc("$argon2id$not-used-by-these-tests".into());
    store.send(InsertUser { name: name(n), pwd_hash }).await.unwrap().unwrap()
}

async fn pending_videos_are_visible_to_their_owner_only_and_deletion_queues_a_record(db: TestDb) {
    let store = db.start(2);
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let video = store
        .send(CreateVideo { author: alice.clone(), name: "clip".into() })
        .await
        .unwrap()
        .unwrap();

    let as_owner = store.send(GetVideo { id: video.id, author: None, viewer: Some(alice.id) });
    assert_eq!(as_owner.await.unwrap().unwrap().id, video.id);
    let as_bob = store.send(GetVideo { id: video.id, author: None, viewer: Some(bob.id) }).await;
    assert!(matches!(as_bob.unwrap(), Err(StoreError::NotFound)));
    let wrong_author =
        store.send(GetVideo { id: video.id, author: Some(name("bob")), viewer: Some(alice.id) });
    assert!(matches!(wrong_author.await.unwrap(), Err(StoreError::NotFound)));

    let feed = store.send(ListVideos { author: None, viewer: None, page: Page::default() });
    assert!(feed.await.unwrap().unwrap().items.is_empty(), "pending videos are not in the feed");

    let by_bob = store.send(DeleteVideo { id: video.id, owner: bob.id }).await.unwrap();
    assert!(matches!(by_bob, Err(StoreError::NotFound)), "only the owner deletes");
    store.send(DeleteVideo { id: video.id, owner: alice.id }).await.unwrap().unwrap();
    let gone = store.send(GetVideo { id: video.id, author: None, viewer: Some(alice.id) }).await;
    assert!(matches!(gone.unwrap(), Err(StoreError::NotFound)));
    let comment = store
        .send(CreateComment {
            video: video.id,
            author: alice.clone(),
            content: "late".parse().unwrap(),
        })
        .await
        .unwrap();
    assert!(matches!(comment, Err(StoreError::NotFound)), "no comments on a deleted video");
    let list = store.send(ListComments { video: video.id, viewer: None, page: Page::default() });
    assert!(matches!(list.await.unwrap(), Err(StoreError::NotFound)));

    let queue = store.send(ListJobs { kind: Some(JobKind::RemoveVideo) }).await.unwrap().unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].video_id, video.id);
}

async fn sessions_resolve_slide_and_revoke(db: TestDb) {
    let store = db.start(2);
    let alice = user(&store, "alice").await;
    let sessions = sessions(&store, Duration::from_secs(60));
    let token = sessions.send(CreateSession { user: alice.clone() }).await.unwrap().unwrap();
    let who = sessions.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap();
    assert_eq!(who, Some(alice));
    sessions.send(RevokeSession { token: token.clone() }).await.unwrap().unwrap();
    let who = sessions.send(ResolveSession { token }).await.unwrap().unwrap();
    assert_eq!(who, None, "a revoked session stops working at once");
}

/// The logout race: resolves sent while a revocation is in flight, and every resolve after
/// it, answer `None`; a load that read the row before the delete must not be cached.
async fn resolves_racing_a_revocation_never_revive_the_session(db: TestDb) {
    const TRIALS: usize = 300;
    let store = db.start(2);
    let alice = user(&store, "alice").await;
    let sessions = sessions(&store, Duration::from_secs(60));
    let (mut racers_ok, mut revived) = (0, 0);
    for _ in 0..TRIALS {
        let token = sessions.send(CreateSession { user: alice.clone() }).await.unwrap().unwrap();
        // Warm the cache as a busy session would be.
        sessions.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap();
        // `send` queues at once: the resolves reach the actor right behind the revocation.
        let revoke = sessions.send(RevokeSession { token: token.clone() });
        let racers: Vec<_> =
            (0..5).map(|_| sessions.send(ResolveSession { token: token.clone() })).collect();
        revoke.await.unwrap().unwrap();
        let after = sessions.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap();
        for r in futures_util::future::join_all(racers).await {
            racers_ok += usize::from(r.unwrap().unwrap().is_some());
        }
        let later = sessions.send(ResolveSession { token }).await.unwrap().unwrap();
        revived += usize::from(after.is_some() || later.is_some());
    }
    assert_eq!(revived, 0, "{revived}/{TRIALS} sessions resolved after their revocation");
    assert_eq!(racers_ok, 0, "{racers_ok} resolves sent after the revocation began succeeded");
}

async fn sessions_expire_after_their_idle_ttl_and_the_sweep_removes_them(db: TestDb) {
    let store = db.start(2);
    let alice = user(&store, "alice").await;
    let clock = Arc::new(ManualClock::new());
    let sessions = sessions_on(&store, Duration::from_secs(1), clock.clone().into());
    let token = sessions.send(CreateSession { user: alice.clone() }).await.unwrap().unwrap();
    assert!(
        sessions.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap().is_some()
    );
    clock.advance(Duration::from_millis(999));
    assert!(
        sessions.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap().is_some(),
        "still alive just before its idle TTL, and the use slides it"
    );
    clock.advance(Duration::from_millis(1001));
    assert_eq!(sessions.send(ResolveSession { token }).await.unwrap().unwrap(), None);
    sessions.send(Sweep).await.unwrap();
    assert_eq!(db.scalar("SELECT COUNT(*) FROM sessions"), 0, "the sweep deletes expired rows");
}

async fn two_session_actors_over_one_database_share_sessions(db: TestDb) {
    // Two stores and two session actors over the same file: two processes on one data dir.
    let store_a = db.start(2);
    let store_b = db.start(2);
    let alice = user(&store_a, "alice").await;
    let clock = Arc::new(ManualClock::new());
    let a = sessions_on(&store_a, Duration::from_secs(60), clock.clone().into());
    let b = sessions_on(&store_b, Duration::from_secs(60), clock.clone().into());

    let token = a.send(CreateSession { user: alice.clone() }).await.unwrap().unwrap();
    let seen_by_b = b.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap();
    assert_eq!(seen_by_b, Some(alice), "a cache miss in B falls through to the database");

    b.send(RevokeSession { token: token.clone() }).await.unwrap().unwrap();
    assert_eq!(b.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap(), None);
    // A's cache trusts an entry for a short revalidation window, then asks the database.
    clock.advance(SessionConfig::REVALIDATE_AFTER - Duration::from_millis(1));
    let cached = a.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap();
    assert!(cached.is_some(), "within the window A answers from its cache");
    clock.advance(Duration::from_millis(1));
    assert_eq!(a.send(ResolveSession { token }).await.unwrap().unwrap(), None);
}

async fn the_comment_batcher_commits_concurrent_posts_and_fails_only_the_bad_ones(db: TestDb) {
    use actors::store::CommentBatcher;
    let store = db.start(2);
    let alice = user(&store, "alice").await;
    let live = store.send(CreateVideo { author: alice.clone(), name: "live".into() });
    let live = live.await.unwrap().unwrap();
    let gone = store.send(CreateVideo { author: alice.clone(), name: "gone".into() });
    let gone = gone.await.unwrap().unwrap();
    store.send(DeleteVideo { id: gone.id, owner: alice.id }).await.unwrap().unwrap();

    let batcher = CommentBatcher::new(store.clone()).start();
    let posts = (0..60).map(|i| {
        let video = if i % 20 == 7 { gone.id } else { live.id };
        batcher.send(CreateComment {
            video,
            author: alice.clone(),
            content: format!("comment {i}").parse().unwrap(),
        })
    });
    let results = futures_util::future::join_all(posts).await;
    let mut stored = 0;
    for (i, r) in results.into_iter().enumerate() {
        match r.unwrap() {
            Ok(c) => {
                assert_eq!(c.content, format!("comment {i}"), "replies go to their own poster");
                stored += 1;
            }
            Err(e) => {
                assert_eq!(i % 20, 7, "only comments on the deleted video fail");
                assert!(matches!(e, StoreError::NotFound));
            }
        }
    }
    assert_eq!(stored, 57);
    let page = Page { limit: 100, after: None };
    let listed = store.send(ListComments { video: live.id, viewer: Some(alice.id), page }).await;
    assert_eq!(listed.unwrap().unwrap().items.len(), 57);
}

on_both_databases!(
    pending_videos_are_visible_to_their_owner_only_and_deletion_queues_a_record,
    sessions_resolve_slide_and_revoke,
    resolves_racing_a_revocation_never_revive_the_session,
    sessions_expire_after_their_idle_ttl_and_the_sweep_removes_them,
    two_session_actors_over_one_database_share_sessions,
    the_comment_batcher_commits_concurrent_posts_and_fails_only_the_bad_ones,
);

/// Nodes on PostgreSQL share no memory: a `Session` that follows the store's count of logouts
/// trusts its cached entries only while that count stands, so a logout through another node
/// (another store, another pool) is seen at the next resolve, well inside the revalidation
/// window, with the clock standing still.
#[actix::test]
async fn on_postgres_a_logout_anywhere_is_seen_at_the_next_resolve() {
    let Some(db) = TestDb::postgres().await else { return };
    let (store_a, store_b) = (db.start(2), db.start(2));
    let alice = user(&store_a, "alice").await;
    let bob = user(&store_a, "bob").await;
    let clock: SharedClock = Arc::new(ManualClock::new()).into();
    let on = |store: &Addr<VideoStore>| {
        let config = SessionConfig {
            ttl: Duration::from_secs(600),
            revalidate_after: Duration::from_secs(60),
        };
        Session::new(Arc::new(DbSessions(store.clone())), config, clock.clone())
            .with_store_revocations()
            .start()
    };
    let (a, b) = (on(&store_a), on(&store_b));
    let alices = a.send(CreateSession { user: alice.clone() }).await.unwrap().unwrap();
    let bobs = a.send(CreateSession { user: bob.clone() }).await.unwrap().unwrap();
    for token in [&alices, &bobs] {
        assert!(a.send(ResolveSession { token: token.clone() }).await.unwrap().unwrap().is_some());
    }

    b.send(RevokeSession { token: alices.clone() }).await.unwrap().unwrap();
    assert_eq!(a.send(ResolveSession { token: alices }).await.unwrap().unwrap(), None);
    let still = a.send(ResolveSession { token: bobs }).await.unwrap().unwrap();
    assert_eq!(still, Some(bob), "another user's session is confirmed again, and stands");
    assert_eq!(db.scalar("SELECT version FROM change_counters WHERE topic = 0"), 1);
}
