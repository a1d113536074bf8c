//! Comments on videos; a video that the caller cannot see has no comments to them either.

use actix::prelude::*;

use super::batch::{Batch, Batchable, run_batch};
use super::videos::paginate;
use super::{Db, Row, VideoStore, from_ms, now_ms, uuid_col};
use crate::error::StoreError;
use crate::model::{Comment, CommentId, CommentText, Listing, Page, User, UserId, VideoId};
use crate::params;

const COMMENT_COLS: &str = "c.id, v.id, c.author_id, u.user_name, c.content, c.created_at, c.seq";

fn comment_row(r: &Row<'_>) -> Result<(Comment, i64), StoreError> {
    Ok((
        Comment {
            id: CommentId(uuid_col(r, 0)?),
            video_id: VideoId(uuid_col(r, 1)?),
            author_id: UserId(r.get(2)?),
            author: r.get(3)?,
            content: r.get(4)?,
            created_at: from_ms(r.get(5)?),
        },
        r.get(6)?,
    ))
}

/// The internal sequence number of a video `viewer` may see, or `NotFound`.
fn visible_video_seq(
    db: &mut Db<'_>,
    video: VideoId,
    viewer: Option<UserId>,
) -> Result<i64, StoreError> {
    db.query_opt(
        "SELECT seq FROM videos v WHERE v.id = ?1
           AND (v.state = 'ready' OR (v.state = 'pending' AND v.author_id = ?2))",
        params![video.to_string(), viewer.map_or(-1, |u| u.0)],
        |r| r.get(0),
    )?
    .ok_or(StoreError::NotFound)
}

/// Inserts a comment on the video `?2`, if its author `?3` may see it, in one statement: a
/// round trip per comment on PostgreSQL. There the video's row is locked (`FOR SHARE`) until
/// the comment commits, so no comment lands on a video whose deletion committed first (SQLite
/// has one writer at a time anyway).
const INSERT_COMMENT: &str = "INSERT INTO comments (id, video_seq, author_id, content, created_at)
     SELECT ?1, v.seq, ?3, ?4, ?5 FROM videos v WHERE v.id = ?2
        AND (v.state = 'ready' OR (v.state = 'pending' AND v.author_id = ?3))";
const INSERT_COMMENT_LOCKED: &str =
    "INSERT INTO comments (id, video_seq, author_id, content, created_at)
     SELECT ?1, v.seq, ?3, ?4, ?5 FROM videos v WHERE v.id = ?2
        AND (v.state = 'ready' OR (v.state = 'pending' AND v.author_id = ?3)) FOR SHARE";

/// Adds a comment to a video the author can see.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Comment, StoreError>")]
pub struct CreateComment {
    pub video: VideoId,
    pub author: User,
    pub content: CommentText,
}

/// A page of a video's comments, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<Listing<Comment>, StoreError>")]
pub struct ListComments {
    pub video: VideoId,
    pub viewer: Option<UserId>,
    pub page: Page,
}

/// Deletes a comment; allowed to its author and to the video's owner (`Forbidden` otherwise).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DeleteComment {
    pub video: VideoId,
    pub comment: CommentId,
    pub by: UserId,
}

/// Inserts one comment inside an open transaction.
fn insert_comment(db: &mut Db<'_>, msg: CreateComment) -> Result<Comment, StoreError> {
    let id = CommentId::new();
    let created = now_ms();
    let content = msg.content.into_inner();
    let sql = if db.is_postgres() { INSERT_COMMENT_LOCKED } else { INSERT_COMMENT };
    let (comment, video) = (id.to_string(), msg.video.to_string());
    if db.execute(sql, params![comment, video, msg.author.id.0, content, created])? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(Comment {
        id,
        video_id: msg.video,
        author_id: msg.author.id,
        author: msg.author.name,
        content,
        created_at: from_ms(created),
    })
}

impl Handler<CreateComment> for VideoStore {
    type Result = Result<Comment, StoreError>;

    fn handle(&mut self, msg: CreateComment, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| insert_comment(db, msg))
    }
}

impl Batchable for CreateComment {
    type Output = Comment;
}

impl Handler<Batch<CreateComment>> for VideoStore {
    type Result = Result<Vec<Result<Comment, StoreError>>, StoreError>;

    fn handle(&mut self, msg: Batch<CreateComment>, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        if conn.is_postgres() {
            return conn.write(|db| insert_comments(db, msg.items));
        }
        run_batch(&mut conn, msg.items, insert_comment)
    }
}

/// A batch of comments as one statement on PostgreSQL: the batch goes as one JSON parameter,
/// each comment is inserted if its author may see its video (whose row is locked `FOR SHARE`,
/// as in [`INSERT_COMMENT_LOCKED`]), in the batch's order, and the ids inserted come back. A
/// round trip per batch rather than per comment; a comment missing from the answer is
/// `NotFound`.
const INSERT_COMMENTS: &str = "INSERT INTO comments (id, video_seq, author_id, content, created_at)
     SELECT x.id, v.seq, x.author_id, x.content, x.created_at
       FROM ROWS FROM (json_to_recordset(CAST(?1 AS text)::json)
                       AS (id text, video_id text, author_id bigint, content text, created_at bigint))
            WITH ORDINALITY AS x(id, video_id, author_id, content, created_at, n)
       JOIN videos v ON v.id = x.video_id
        AND (v.state = 'ready' OR (v.state = 'pending' AND v.author_id = x.author_id))
      ORDER BY x.n
        FOR SHARE OF v
     RETURNING id";

fn insert_comments(
    db: &mut Db<'_>,
    items: Vec<CreateComment>,
) -> Result<Vec<Result<Comment, StoreError>>, StoreError> {
    let created = now_ms();
    let comments: Vec<Comment> = items
        .into_iter()
        .map(|msg| Comment {
            id: CommentId::new(),
            video_id: msg.video,
            author_id: msg.author.id,
            author: msg.author.name,
            content: msg.content.into_inner(),
            created_at: from_ms(created),
        })
        .collect();
    let rows: Vec<serde_json::Value> = comments
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id.to_string(),
                "video_id": c.video_id.to_string(),
                "author_id": c.author_id.0,
                "content": c.content,
                "created_at": created,
            })
        })
        .collect();
    let batch = serde_json::Value::Array(rows).to_string();
    let inserted: std::collections::HashSet<String> =
        db.query(INSERT_COMMENTS, params![batch], |r| r.get(0))?.into_iter().collect();
    Ok(comments
        .into_iter()
        .map(
            |c| {
                if inserted.contains(&c.id.to_string()) { Ok(c) } else { Err(StoreError::NotFound) }
            },
        )
        .collect())
}

impl Handler<ListComments> for VideoStore {
    type Result = Result<Listing<Comment>, StoreError>;

    fn handle(&mut self, msg: ListComments, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        let db = &mut conn.db();
        let video_seq = visible_video_seq(db, msg.video, msg.viewer)?;
        let sql = format!(
            "SELECT {COMMENT_COLS} FROM comments c
             JOIN videos v ON v.seq = c.video_seq JOIN users u ON u.id = c.author_id
             WHERE c.video_seq = ?1 AND c.seq < ?2
             ORDER BY c.seq DESC LIMIT {}",
            // Written into the SQL, not bound: see ListVideos.
            msg.page.limit + 1
        );
        let after = msg.page.after.map_or(i64::MAX, |c| c.0);
        let rows = db.query(&sql, params![video_seq, after], comment_row)?;
        Ok(paginate(rows, msg.page.limit))
    }
}

impl Handler<DeleteComment> for VideoStore {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, msg: DeleteComment, _: &mut Self::Context) -> Self::Result {
        self.conn()?.write(|db| {
            let video_seq = visible_video_seq(db, msg.video, Some(msg.by))?;
            let (comment_seq, author, owner): (i64, i64, i64) = db
                .query_opt(
                    "SELECT c.seq, c.author_id, v.author_id FROM comments c
                     JOIN videos v ON v.seq = c.video_seq
                     WHERE c.id = ?1 AND c.video_seq = ?2",
                    params![msg.comment.to_string(), video_seq],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?
                .ok_or(StoreError::NotFound)?;
            if msg.by.0 != author && msg.by.0 != owner {
                return Err(StoreError::Forbidden);
            }
            // Two deletions racing on PostgreSQL both found it; the second removes nothing
            // and answers as if it had come after the first.
            match db.execute("DELETE FROM comments WHERE seq = ?1", params![comment_seq])? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
    }
}
