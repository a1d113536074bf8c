//! Group commit for hot writes. `Batcher<M>` gathers messages of one kind that arrive while a
//! transaction is being committed and sends them to [`VideoStore`] as one [`Batch`], so one
//! fsync serves many writes. The SQL stays in the store; this actor only gathers.
//! Used for comment posts and for the scheduler's completed deletions.

use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use tokio::sync::oneshot;

use super::VideoStore;
use crate::error::StoreError;

/// A write that can share a transaction with others of its kind.
pub trait Batchable:
    Message<Result = Result<Self::Output, StoreError>> + Clone + std::fmt::Debug + Send + 'static
{
    type Output: std::fmt::Debug + Send + 'static;
}

/// Several writes in one transaction. Each item succeeds or fails on its own (a savepoint
/// each); the reply has one result per item, in order.
#[derive(Debug)]
pub struct Batch<M: Batchable> {
    pub items: Vec<M>,
}

impl<M: Batchable> Message for Batch<M> {
    type Result = Result<Vec<Result<M::Output, StoreError>>, StoreError>;
}

/// Runs `items` in one write transaction, each inside its own savepoint so that one refused
/// item does not undo its neighbours.
///
/// On PostgreSQL a savepoint and its release are two more round trips per item, as many as the
/// item's own statements, and an item is refused rarely (a comment on a video deleted a moment
/// before). So the batch is first run without savepoints; only if an item fails is that
/// transaction rolled back whole (nothing of it was committed) and the batch run again with
/// them. SQLite's savepoints cost no round trip and are always taken.
pub(super) fn run_batch<M: Clone, R>(
    conn: &mut super::Conn,
    items: Vec<M>,
    mut one: impl FnMut(&mut super::Db<'_>, M) -> Result<R, StoreError>,
) -> Result<Vec<Result<R, StoreError>>, StoreError> {
    if conn.is_postgres() {
        let mut item_failed = false;
        let optimistic = conn.write(|db| {
            let mut results = Vec::with_capacity(items.len());
            for item in items.iter().cloned() {
                match one(db, item) {
                    Ok(r) => results.push(Ok(r)),
                    Err(e) => {
                        item_failed = true;
                        return Err(e);
                    }
                }
            }
            Ok(results)
        });
        match optimistic {
            Err(_) if item_failed => {}
            done => return done,
        }
    }
    conn.write(|db| {
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            db.execute("SAVEPOINT item", &[])?;
            let result = one(db, item);
            if result.is_err() {
                db.execute("ROLLBACK TO SAVEPOINT item", &[])?;
            }
            db.execute("RELEASE SAVEPOINT item", &[])?;
            results.push(result);
        }
        Ok(results)
    })
}

type Reply<M> = oneshot::Sender<Result<<M as Batchable>::Output, StoreError>>;

/// Gathers `M`s into [`Batch`]es, one batch in flight at a time.
#[derive(Debug)]
pub struct Batcher<M: Batchable> {
    store: Addr<VideoStore>,
    waiting: Vec<(M, Reply<M>)>,
    in_flight: bool,
    max_batch: usize,
}

/// Group commit for comment posts.
pub type CommentBatcher = Batcher<super::CreateComment>;

impl<M> Batcher<M>
where
    M: Batchable + Unpin,
    VideoStore: Handler<Batch<M>>,
    <VideoStore as Actor>::Context: ToEnvelope<VideoStore, Batch<M>>,
{
    pub fn new(store: Addr<VideoStore>) -> Self {
        Self { store, waiting: Vec::new(), in_flight: false, max_batch: 256 }
    }

    /// Sends what is waiting, unless a batch is already being committed: then the waiting
    /// writes go as soon as it returns.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.waiting.is_empty() {
            return;
        }
        self.in_flight = true;
        let take = self.waiting.len().min(self.max_batch);
        let (items, replies): (Vec<_>, Vec<_>) = self.waiting.drain(..take).unzip();
        self.store
            .send(Batch { items })
            .into_actor(self)
            .map(move |res, act, ctx| {
                // A caller that went away has nobody to tell: send errors are ignored.
                match res {
                    Ok(Ok(results)) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    Ok(Err(e)) => {
                        let shared = Arc::new(e);
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Batch(shared.clone())));
                        }
                    }
                    Err(mailbox) => {
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Unavailable(mailbox)));
                        }
                    }
                }
                act.in_flight = false;
                act.flush(ctx);
            })
            .spawn(ctx);
    }
}

impl<M> Actor for Batcher<M>
where
    M: Batchable + Unpin,
    VideoStore: Handler<Batch<M>>,
    <VideoStore as Actor>::Context: ToEnvelope<VideoStore, Batch<M>>,
{
    type Context = Context<Self>;
}

impl<M> Handler<M> for Batcher<M>
where
    M: Batchable + Unpin,
    VideoStore: Handler<Batch<M>>,
    <VideoStore as Actor>::Context: ToEnvelope<VideoStore, Batch<M>>,
{
    type Result = ResponseFuture<Result<M::Output, StoreError>>;

    fn handle(&mut self, msg: M, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiting.push((msg, tx));
        self.flush(ctx);
        Box::pin(async move {
            rx.await.map_err(|_| StoreError::Internal("the write batch was dropped".into()))?
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::error::Error as _;

    use super::*;
    use crate::model::VideoId;
    use crate::store::CompleteDeletion;

    #[actix::test]
    async fn a_failed_batch_gives_every_item_the_database_error_with_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        drop(VideoStore::open(&path, 1).unwrap()); // creates and migrates the database
        // A store that gives up on a locked database at once, instead of after busy_timeout.
        let manager = r2d2_sqlite::SqliteConnectionManager::file(&path)
            .with_init(|c| c.execute_batch("PRAGMA busy_timeout = 0;"));
        let pool = r2d2::Pool::builder().max_size(2).build(manager).unwrap();
        let store = VideoStore::start(crate::store::Pool::Sqlite(pool), 1);
        let batcher = Batcher::<CompleteDeletion>::new(store).start();
        // Another writer holds the lock, so every batch's BEGIN IMMEDIATE fails as a whole.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        let sends = (0..3).map(|_| batcher.send(CompleteDeletion { video: VideoId::new() }));
        for reply in futures_util::future::join_all(sends).await {
            let err = reply.unwrap().unwrap_err();
            assert!(err.is_database(), "{err:?} is the database's failure (API code 003)");
            let mut chain = std::iter::successors(err.source(), |e| (*e).source());
            let cause = chain.find_map(|e| e.downcast_ref::<rusqlite::Error>());
            assert_eq!(
                cause.and_then(rusqlite::Error::sqlite_error_code),
                Some(rusqlite::ErrorCode::DatabaseBusy),
                "the SQLite error is kept as the source of {err:?}"
            );
        }
    }
}
