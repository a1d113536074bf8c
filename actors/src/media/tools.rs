//! Finding `ffprobe` and `ffmpeg`, and running one of them as a child process: no shell, no
//! inherited environment, a time limit, bounded output, the lowest CPU priority, and killed
//! with the node.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The programs media jobs run, as configured: a bare name is looked up on `PATH` (as a shell
/// would), anything with a `/` is used as it is. Where they were found is remembered; cloning
/// shares that.
#[derive(Debug, Clone)]
pub struct MediaTools {
    ffprobe: OsString,
    ffmpeg: OsString,
    found: Arc<Mutex<Option<Found>>>,
}

/// Both programs, found, and what the ffmpeg can encode a poster as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub ffprobe: PathBuf,
    pub ffmpeg: PathBuf,
    /// ffmpeg was built with libwebp: posters are WebP, else JPEG.
    pub webp: bool,
}

impl Default for MediaTools {
    /// `ffprobe` and `ffmpeg` on `PATH`.
    fn default() -> Self {
        Self::new("ffprobe", "ffmpeg")
    }
}

impl MediaTools {
    pub fn new(ffprobe: impl Into<OsString>, ffmpeg: impl Into<OsString>) -> Self {
        Self { ffprobe: ffprobe.into(), ffmpeg: ffmpeg.into(), found: Arc::default() }
    }

    /// The programs, if the last [`MediaTools::locate`] found them.
    pub fn found(&self) -> Option<Found> {
        self.found.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Looks both programs up and remembers the answer: `Err` names what is missing.
    /// Blocking (searches `PATH`, asks ffmpeg for its encoders): call it on a blocking thread.
    pub fn locate(&self) -> Result<Found, String> {
        let find =
            |name: &OsString| which::which(name).map_err(|_| name.to_string_lossy().into_owned());
        let located = match (find(&self.ffprobe), find(&self.ffmpeg)) {
            (Ok(ffprobe), Ok(ffmpeg)) => {
                let webp = encodes_webp(&ffmpeg);
                Ok(Found { ffprobe, ffmpeg, webp })
            }
            (Err(a), Err(b)) => Err(format!("{a} and {b}")),
            (Err(missing), _) | (_, Err(missing)) => Err(missing),
        };
        *self.found.lock().unwrap_or_else(PoisonError::into_inner) = located.clone().ok();
        located
    }

    /// A program found earlier is gone (it could not be started): look again next time.
    pub fn forget(&self) {
        *self.found.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The names as configured, for messages.
    pub fn names(&self) -> String {
        format!("{} and {}", self.ffprobe.to_string_lossy(), self.ffmpeg.to_string_lossy())
    }
}

/// How long `ffmpeg -encoders` may take: it prints a list and exits in milliseconds.
const ENCODERS_WITHIN: Duration = Duration::from_secs(10);

/// Whether `ffmpeg -encoders` lists libwebp (an ffmpeg that hangs counts as without it).
/// Blocking.
fn encodes_webp(ffmpeg: &std::path::Path) -> bool {
    use std::io::Read as _;
    let child = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-encoders"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let Some(mut stdout) = child.stdout.take() else { return false };
    // The list is read on a thread of its own, so that a hung ffmpeg is killed on time.
    let reader = std::thread::spawn(move || {
        let mut list = String::new();
        let _ = stdout.read_to_string(&mut list);
        list
    });
    let start = std::time::Instant::now();
    while matches!(child.try_wait(), Ok(None)) {
        if start.elapsed() > ENCODERS_WITHIN {
            log::warn!("{} -encoders did not answer within {ENCODERS_WITHIN:?}", ffmpeg.display());
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    reader.join().is_ok_and(|list| list.contains(" libwebp "))
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program is not there (any more).
    #[error("{0} could not be started: not found")]
    Missing(String),
    #[error("{program} took longer than {limit:?} and was killed")]
    TimedOut { program: String, limit: Duration },
    /// It ran and said no; `message` is the last lines of what it wrote to stderr.
    #[error("{program} failed ({status}): {message}")]
    Failed { program: String, status: std::process::ExitStatus, message: String },
    #[error("{program} wrote more than {limit} bytes")]
    TooMuch { program: String, limit: usize },
    #[error("running {program}: {source}")]
    Io { program: String, source: std::io::Error },
}

/// How much of a child's stderr is kept for the error message.
const STDERR_KEPT: usize = 4096;

/// Runs `program` with `args` and returns what it wrote to stdout (at most `max_out` bytes),
/// killing it after `limit`. The child gets no environment (the node's secrets stay here), no
/// stdin, the lowest CPU priority, and dies with the node (see [`lower_and_tie`]).
pub async fn run(
    program: &std::path::Path,
    args: &[OsString],
    limit: Duration,
    max_out: usize,
) -> Result<Vec<u8>, RunError> {
    let name = program.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    lower_and_tie(&mut command);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            RunError::Missing(name.clone())
        }
        _ => RunError::Io { program: name.clone(), source: e },
    })?;
    let io = |source| RunError::Io { program: name.clone(), source };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io(std::io::Error::other("no pipes")));
    };
    let finished = tokio::time::timeout(limit, async {
        // Both pipes at once, or a child filling one while we wait on the other would hang.
        let (out, err) = tokio::join!(read_up_to(stdout, max_out), read_up_to(stderr, STDERR_KEPT));
        let status = child.wait().await;
        (out, err, status)
    })
    .await;
    // On the timeout `child` is dropped with the future: `kill_on_drop` kills it.
    let Ok((out, err, status)) = finished else {
        return Err(RunError::TimedOut { program: name, limit });
    };
    let ((out, over), status) = (out.map_err(io)?, status.map_err(io)?);
    if !status.success() {
        let (err, _) = err.unwrap_or_default();
        let message = String::from_utf8_lossy(&err).trim().lines().rev().take(3).fold(
            String::new(),
            |acc, line| {
                if acc.is_empty() { line.to_owned() } else { format!("{line}; {acc}") }
            },
        );
        return Err(RunError::Failed { program: name, status, message });
    }
    if over {
        return Err(RunError::TooMuch { program: name, limit: max_out });
    }
    Ok(out)
}

/// Reads `pipe` to its end, keeping its first `max` bytes, and whether there was more (the
/// rest is still read, so the child is never blocked on a full pipe).
async fn read_up_to(
    mut pipe: impl AsyncRead + Unpin,
    max: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut over = false;
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, over));
        }
        let room = max.saturating_sub(kept.len());
        over |= n > room;
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The most address space a child may map: a file claiming absurd dimensions fails its job
/// instead of taking the node's memory. Decoding 1080p on one thread needs a small part of it.
const CHILD_ADDRESS_SPACE: libc::rlim_t = 2 << 30;

/// Makes the child run under `SCHED_IDLE` at nice 19 (a probe takes only CPU that requests
/// leave), with [`CHILD_ADDRESS_SPACE`], and killed when the thread that started it ends (the
/// node dying, even by `kill -9`, takes its probes along; the executor's thread lives as long
/// as the node).
#[allow(unsafe_code)]
fn lower_and_tie(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: these four are plain system calls that allocate
    // nothing and take no lock. Their failures are ignored on purpose: a child at normal
    // priority still does the job.
    unsafe {
        command.pre_exec(|| {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
            let limit =
                libc::rlimit { rlim_cur: CHILD_ADDRESS_SPACE, rlim_max: CHILD_ADDRESS_SPACE };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
