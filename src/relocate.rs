//! `douyin_club … move-to-object-store`: moves a site's local video files to the object store
//! while its nodes keep serving (the work is `actors::relocate`). One line per step on standard
//! output, so an operator (or a test) can follow it; the exit status says whether every video
//! was moved.

use std::fs::File;
use std::io::Write as _;
use std::time::Duration;

use actors::relocate::{Event, Relocation, Report};

use crate::config::{BlobSettings, Config, FlagError, MoveArgs};
use crate::startup::{StartError, open_for_task};

/// Why the move did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Relocate(#[from] actors::relocate::RelocateError),
    #[error("another move of {0} is running")]
    Busy(String),
    #[error("{0}")]
    Lock(std::io::Error),
}

/// Runs the move; the report says what was left (`skipped`), for the exit status.
pub async fn move_to_object_store(config: Config, args: MoveArgs) -> Result<Report, MoveError> {
    if !matches!(config.storage.settings().map_err(StartError::from)?, BlobSettings::S3(_)) {
        let why = "the move needs --blob-store s3 and the --s3-* flags";
        return Err(StartError::from(FlagError { flag: "--blob-store", why: why.into() }).into());
    }
    let (store, blobs) = open_for_task(&config).await?;
    // One move at a time per data dir: two would copy the same files and race their removals.
    let lock_path = config.data_dir.join("move-to-object-store.lock");
    let lock = File::create(&lock_path).map_err(MoveError::Lock)?;
    if lock.try_lock().is_err() {
        return Err(MoveError::Busy(config.data_dir.display().to_string()));
    }
    let s3 = blobs.s3().cloned().expect("the settings chose the object store");
    let relocation = Relocation {
        store,
        files: blobs.files().clone(),
        s3,
        linger: Duration::from_secs(args.linger_secs),
        max_rate: (args.max_mib_per_sec > 0.0)
            .then_some((args.max_mib_per_sec * 1024.0 * 1024.0) as u64),
    };
    let mut out = std::io::stdout();
    let report = relocation
        .run(|event| {
            let line = match event {
                Event::Moved { video, bytes } => format!("moved {video} ({bytes} bytes)"),
                Event::Skipped { video, why } => format!("skipped {video}: {why}"),
                Event::Removed { video } => format!("removed the local file of {video}"),
                Event::Aborted { key } => format!("aborted the cut-off copy {key}"),
            };
            // Standard output gone (a closed pipe) must not stop the move.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        })
        .await?;
    drop(lock);
    Ok(report)
}
