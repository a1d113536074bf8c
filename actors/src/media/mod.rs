//! Reading a video's media with ffprobe and taking its poster frame with ffmpeg: the work of
//! the `probe_video` job (see `scheduler::executor`). The programs read the committed file in
//! place (its path, or a signed URL of the object), never a copy.

mod ffprobe;
mod tools;

use std::ffi::OsString;
use std::time::Duration;

use bytes::Bytes;

use crate::blob::MediaInput;
use crate::model::MediaInfo;

pub use tools::{Found, MediaTools, RunError};

/// Width of every poster, in pixels; the height follows the video's shape (an even number).
/// Cards show it at up to 240 CSS pixels, so it is sharp at twice that.
pub const POSTER_WIDTH: u32 = 480;

/// Limits of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLimits {
    /// ffprobe reads headers only: seconds even for a large file over the network.
    pub ffprobe: Duration,
    /// ffmpeg seeks, then decodes a few seconds at most.
    pub ffmpeg: Duration,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        Self { ffprobe: Duration::from_secs(30), ffmpeg: Duration::from_secs(120) }
    }
}

/// Why a probe did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The programs ran and could not read the file: trying again changes nothing.
    #[error("{0}")]
    Unreadable(String),
    /// The programs are not installed here.
    #[error("{0}")]
    Missing(String),
    /// Anything else (a time limit, the object store): worth another try later.
    #[error("{0}")]
    Failed(String),
}

impl From<RunError> for ProbeError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Missing(name) => ProbeError::Missing(name),
            e @ (RunError::Failed { .. } | RunError::TooMuch { .. }) => {
                ProbeError::Unreadable(e.to_string())
            }
            e @ (RunError::TimedOut { .. } | RunError::Io { .. }) => {
                ProbeError::Failed(e.to_string())
            }
        }
    }
}

/// The largest ffprobe answer read: a few KiB for any real file.
const MAX_PROBE_JSON: usize = 1 << 20;
/// The largest poster accepted from ffmpeg: a 480-pixel WebP is tens of KiB.
const MAX_POSTER: usize = 2 << 20;

/// ffmpeg's demuxer for a container the upload recognised (`upload::sniff`): the programs are
/// told what the file is rather than left to guess, so a file that merely starts like a video
/// cannot make them read something else (a playlist naming other files, say).
pub fn demuxer_of(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "video/mp4" | "video/quicktime" => "mov",
        "video/webm" | "video/x-matroska" => "matroska",
        "video/x-msvideo" => "avi",
        "video/x-flv" => "flv",
        "video/mp2t" => "mpegts",
        _ => return None,
    })
}

/// The input options every run takes: the protocols the input may use (a file, or HTTP(S)
/// for the object store, nothing else) and the demuxer.
fn input_args(input: &MediaInput, demuxer: Option<&str>) -> Vec<OsString> {
    let (protocols, source): (&str, OsString) = match input {
        MediaInput::Path(p) => ("file", p.clone().into_os_string()),
        MediaInput::Url(u) => ("http,https,tcp,tls", u.into()),
    };
    let mut args: Vec<OsString> = vec!["-protocol_whitelist".into(), protocols.into()];
    if let Some(demuxer) = demuxer {
        args.extend(["-f".into(), demuxer.into()]);
    }
    args.extend(["-i".into(), source]);
    args
}

/// Reads duration, displayed size and codecs with ffprobe (the poster is left `None`).
pub async fn probe(
    tools: &Found,
    input: &MediaInput,
    demuxer: Option<&str>,
    limits: ProbeLimits,
) -> Result<MediaInfo, ProbeError> {
    let mut args: Vec<OsString> =
        ["-v", "error", "-hide_banner", "-print_format", "json", "-show_format", "-show_streams"]
            .map(OsString::from)
            .to_vec();
    args.extend(input_args(input, demuxer));
    let out = tools::run(&tools.ffprobe, &args, limits.ffprobe, MAX_PROBE_JSON).await?;
    ffprobe::parse(&out).map_err(ProbeError::Unreadable)
}

/// A poster: the image and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosterImage {
    pub bytes: Bytes,
    pub content_type: &'static str,
}

/// Takes the poster frame: from a quarter into the video (past intros and fades), the frames
/// that are not close to black (`signalstats`), the most typical of up to a second of them
/// (`thumbnail`), scaled to [`POSTER_WIDTH`] with square pixels. Keyframes are tried first
/// (see [`Pick`]), then every frame; a video dark all through gets the most typical frame, dark
/// or not. `None` when there is no picture.
pub async fn poster(
    tools: &Found,
    input: &MediaInput,
    demuxer: Option<&str>,
    duration_ms: Option<u64>,
    limits: ProbeLimits,
) -> Result<Option<PosterImage>, ProbeError> {
    let at = Duration::from_millis(duration_ms.unwrap_or(0) / 4);
    for pick in [Pick::BrightKeyframe, Pick::BrightFrame, Pick::AnyFrame] {
        if let Some(image) = grab(tools, input, demuxer, at, pick, limits).await? {
            let content_type = if tools.webp { "image/webp" } else { "image/jpeg" };
            return Ok(Some(PosterImage { bytes: image, content_type }));
        }
    }
    Ok(None)
}

/// Which frames one ffmpeg run chooses among, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// Keyframes only (`-skip_frame nokey`): the decoder skips every other frame, a tenth or
    /// less of the work (0.05 s of CPU instead of 0.4 s for 1080p here), and phones and
    /// encoders put keyframes at scene changes, where posters are. Not black.
    BrightKeyframe,
    /// Every frame, not black: when no bright keyframe falls in the window.
    BrightFrame,
    /// Every frame: a video that is dark all through.
    AnyFrame,
}

/// Luma (16–235) at or under which a frame counts as black for the poster.
const DARK_LUMA: u32 = 40;
/// Frames `thumbnail` compares: a second of a 25 fps video, at poster size.
const THUMBNAIL_BATCH: u32 = 25;
/// How much of the video after the seek point ffmpeg may decode.
const DECODE_AT_MOST_SECS: u32 = 10;

/// One ffmpeg run; `None` when it produced no frame (no frame passed the filter).
async fn grab(
    tools: &Found,
    input: &MediaInput,
    demuxer: Option<&str>,
    at: Duration,
    pick: Pick,
    limits: ProbeLimits,
) -> Result<Option<Bytes>, ProbeError> {
    let scale = format!("scale=w={POSTER_WIDTH}:h=trunc({POSTER_WIDTH}*ih/(iw*sar)/2)*2,setsar=1");
    let filter = if pick != Pick::AnyFrame {
        format!(
            "{scale},signalstats,metadata=select:key=lavfi.signalstats.YAVG:value={DARK_LUMA}:\
             function=greater,thumbnail={THUMBNAIL_BATCH}"
        )
    } else {
        format!("{scale},thumbnail={THUMBNAIL_BATCH}")
    };
    let mut args: Vec<OsString> =
        ["-v", "error", "-nostdin", "-hide_banner", "-threads", "1", "-filter_threads", "1"]
            .map(OsString::from)
            .to_vec();
    if pick == Pick::BrightKeyframe {
        args.extend(["-skip_frame".into(), "nokey".into()]);
    }
    args.extend([
        "-ss".into(),
        format!("{:.3}", at.as_secs_f64()).into(),
        "-t".into(),
        DECODE_AT_MOST_SECS.to_string().into(),
    ]);
    args.extend(input_args(input, demuxer));
    args.extend(
        ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf", &filter, "-frames:v", "1"]
            .map(OsString::from),
    );
    // `image2pipe` writes the encoder's image as it is: the `webp` muxer would leave the RIFF
    // size at 0 on a pipe (it fills it in by seeking back), which browsers refuse.
    let codec: &[&str] = if tools.webp {
        &["-c:v", "libwebp", "-quality", "70", "-compression_level", "4", "-f", "image2pipe"]
    } else {
        &["-c:v", "mjpeg", "-q:v", "5", "-f", "image2pipe"]
    };
    args.extend(codec.iter().map(OsString::from));
    args.push("pipe:1".into());
    let out = tools::run(&tools.ffmpeg, &args, limits.ffmpeg, MAX_POSTER).await?;
    Ok((!out.is_empty()).then(|| Bytes::from(out)))
}
