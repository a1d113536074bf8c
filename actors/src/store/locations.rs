//! Where each ready video's bytes are (`videos.blob_location`), for moving a site's files to
//! the object store (`relocate`): the files still to move, the switch of one video once its
//! object is verified, and what the rows say of files found on disk.

use std::collections::HashMap;

use actix::prelude::*;

use super::{VideoStore, uuid_col};
use crate::error::StoreError;
use crate::model::{BlobLocation, VideoId};
use crate::params;

/// A ready video whose bytes are a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileToMove {
    /// Its place in upload order, the cursor of [`FilesToMove`].
    pub seq: i64,
    pub id: VideoId,
    pub size: u64,
    /// The SHA-256 recorded when it was uploaded through the server (hex).
    pub sha256: String,
}

/// Ready videos still on local files after `after_seq`, in order, at most `limit`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<FileToMove>, StoreError>")]
pub struct FilesToMove {
    pub after_seq: i64,
    pub limit: u32,
}

/// Records that `id`'s bytes are now in the object store — only if it is still ready, still on
/// a file, and still the file whose hash is `sha256`. `Ok(false)` when it was not switched.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct SwitchToObjectStore {
    pub id: VideoId,
    pub sha256: String,
}

/// What a video's row says, for a file or object found without going through the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whereabouts {
    pub ready: bool,
    /// Where its bytes are, when it is ready (or was, when it is deleted).
    pub location: Option<BlobLocation>,
}

/// The rows of `ids`; an id without a row is absent from the answer.
#[derive(Debug, Message)]
#[rtype(result = "Result<HashMap<VideoId, Whereabouts>, StoreError>")]
pub struct WhereaboutsOf {
    pub ids: Vec<VideoId>,
}

impl Handler<FilesToMove> for VideoStore {
    type Result = Result<Vec<FileToMove>, StoreError>;

    fn handle(&mut self, msg: FilesToMove, _: &mut Self::Context) -> Self::Result {
        self.conn()?.db().query(
            "SELECT seq, id, size, sha256 FROM videos
             WHERE blob_location = 'file' AND state = 'ready' AND seq > ?1
             ORDER BY seq LIMIT ?2",
            params![msg.after_seq, msg.limit],
            |r| {
                Ok(FileToMove {
                    seq: r.get(0)?,
                    id: VideoId(uuid_col(r, 1)?),
                    size: r.get::<i64>(2)?.try_into().unwrap_or(0),
                    sha256: r.get(3)?,
                })
            },
        )
    }
}

impl Handler<SwitchToObjectStore> for VideoStore {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, msg: SwitchToObjectStore, _: &mut Self::Context) -> Self::Result {
        let changed = self.conn()?.db().execute(
            "UPDATE videos SET blob_location = 's3'
             WHERE id = ?1 AND state = 'ready' AND blob_location = 'file' AND sha256 = ?2",
            params![msg.id.to_string(), msg.sha256],
        )?;
        Ok(changed == 1)
    }
}

impl Handler<WhereaboutsOf> for VideoStore {
    type Result = Result<HashMap<VideoId, Whereabouts>, StoreError>;

    fn handle(&mut self, msg: WhereaboutsOf, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.conn()?;
        let db = &mut conn.db();
        let mut found = HashMap::new();
        for id in msg.ids {
            let row = db.query_opt(
                "SELECT state, blob_location FROM videos WHERE id = ?1",
                params![id.to_string()],
                |r| {
                    let state: String = r.get(0)?;
                    let location: Option<String> = r.get(1)?;
                    Ok(Whereabouts {
                        ready: state == "ready",
                        location: location.map(|l| BlobLocation::from_column(Some(&l))),
                    })
                },
            )?;
            if let Some(row) = row {
                found.insert(id, row);
            }
        }
        Ok(found)
    }
}
