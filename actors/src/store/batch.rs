//! `CommentBatcher`: group commit for the hot write path. Comments that arrive while one
//! transaction is being committed wait together and go to the store as one transaction, so
//! one fsync serves many posts. The SQL stays in [`VideoStore`]; this actor only gathers.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::VideoStore;
use super::comments::{CreateComment, CreateComments};
use crate::error::StoreError;
use crate::model::Comment;

type Reply = oneshot::Sender<Result<Comment, StoreError>>;

/// Gathers [`CreateComment`]s into [`CreateComments`] batches, one batch in flight at a time.
#[derive(Debug)]
pub struct CommentBatcher {
    store: Addr<VideoStore>,
    waiting: Vec<(CreateComment, Reply)>,
    in_flight: bool,
    max_batch: usize,
}

impl CommentBatcher {
    pub fn new(store: Addr<VideoStore>) -> Self {
        Self { store, waiting: Vec::new(), in_flight: false, max_batch: 256 }
    }

    /// Sends what is waiting, unless a batch is already being committed: then the waiting
    /// comments go as soon as it returns.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.waiting.is_empty() {
            return;
        }
        self.in_flight = true;
        let take = self.waiting.len().min(self.max_batch);
        let (items, replies): (Vec<_>, Vec<_>) = self.waiting.drain(..take).unzip();
        self.store
            .send(CreateComments { items })
            .into_actor(self)
            .map(move |res, act, ctx| {
                match res {
                    Ok(Ok(results)) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            // The poster may have gone away; nothing to tell then.
                            let _ = reply.send(result);
                        }
                    }
                    Ok(Err(e)) => {
                        let db = e.is_database();
                        let text = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(if db {
                                StoreError::Batch(text.clone())
                            } else {
                                StoreError::Internal(text.clone())
                            }));
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

impl Actor for CommentBatcher {
    type Context = Context<Self>;
}

impl Handler<CreateComment> for CommentBatcher {
    type Result = ResponseFuture<Result<Comment, StoreError>>;

    fn handle(&mut self, msg: CreateComment, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiting.push((msg, tx));
        self.flush(ctx);
        Box::pin(async move {
            rx.await.map_err(|_| StoreError::Internal("the comment batch was dropped".into()))?
        })
    }
}
