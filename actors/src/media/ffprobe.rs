//! ffprobe's JSON (`-show_format -show_streams`) read into what the site shows.

use serde::Deserialize;

use crate::model::MediaInfo;

#[derive(Debug, Deserialize)]
struct Output {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Debug, Deserialize)]
struct Format {
    duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    sample_aspect_ratio: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    tags: Tags,
}

#[derive(Debug, Default, Deserialize)]
struct Disposition {
    /// Cover art in an audio file: a picture, but not the video.
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Debug, Default, Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct Tags {
    rotate: Option<String>,
}

/// Seconds as ffprobe writes them (`"12.345000"`) to milliseconds.
fn millis(secs: Option<&str>) -> Option<u64> {
    let secs: f64 = secs?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).round() as u64)
}

impl Stream {
    /// The size a player shows: the width stretched by the pixel aspect ratio, and width and
    /// height swapped for a quarter turn (a phone held upright).
    fn displayed(&self) -> (Option<u32>, Option<u32>) {
        let (Some(w), Some(h)) = (self.width, self.height) else { return (None, None) };
        if w == 0 || h == 0 {
            return (None, None);
        }
        let sar = self.sample_aspect_ratio.as_deref().and_then(|r| {
            let (n, d) = r.split_once(':')?;
            let (n, d): (u32, u32) = (n.parse().ok()?, d.parse().ok()?);
            (n > 0 && d > 0).then_some(f64::from(n) / f64::from(d))
        });
        let w = sar.map_or(w, |sar| (f64::from(w) * sar).round() as u32);
        let rotation = self
            .side_data_list
            .iter()
            .find_map(|s| s.rotation)
            .or_else(|| self.tags.rotate.as_deref().and_then(|r| r.parse().ok()))
            .unwrap_or(0.0);
        let quarter = ((rotation / 90.0).round() as i64).rem_euclid(2) == 1;
        if quarter { (Some(h), Some(w)) } else { (Some(w), Some(h)) }
    }
}

/// Reads ffprobe's answer (no poster yet: that is ffmpeg's); `Err` says why the file is not a
/// video the site can describe.
pub(super) fn parse(json: &[u8]) -> Result<MediaInfo, String> {
    let out: Output = serde_json::from_slice(json).map_err(|e| format!("ffprobe's answer: {e}"))?;
    let kind = |s: &&Stream, t: &str| s.codec_type.as_deref() == Some(t);
    let video = out.streams.iter().find(|s| kind(s, "video") && s.disposition.attached_pic == 0);
    let audio = out.streams.iter().find(|s| kind(s, "audio"));
    if video.is_none() && audio.is_none() {
        return Err("ffprobe found no video or audio stream".into());
    }
    let duration_ms = out
        .format
        .as_ref()
        .and_then(|f| millis(f.duration.as_deref()))
        .or_else(|| out.streams.iter().filter_map(|s| millis(s.duration.as_deref())).max());
    let (width, height) = video.map_or((None, None), Stream::displayed);
    Ok(MediaInfo {
        duration_ms,
        width,
        height,
        video_codec: video.and_then(|s| s.codec_name.clone()),
        audio_codec: audio.and_then(|s| s.codec_name.clone()),
        poster: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn reads_duration_size_and_codecs() {
        let json = br#"{"streams":[
            {"codec_type":"video","codec_name":"h264","width":1920,"height":1080,
             "sample_aspect_ratio":"1:1","disposition":{"attached_pic":0}},
            {"codec_type":"audio","codec_name":"aac"}],
            "format":{"duration":"61.4405"}}"#;
        let p = parse(json).unwrap();
        assert_eq!(p.duration_ms, Some(61_441));
        assert_eq!((p.width, p.height), (Some(1920), Some(1080)));
        assert_eq!(p.video_codec.as_deref(), Some("h264"));
        assert_eq!(p.audio_codec.as_deref(), Some("aac"));
    }

    #[test]
    fn a_phone_video_held_upright_is_taller_than_wide() {
        let side = br#"{"streams":[{"codec_type":"video","codec_name":"hevc","width":1920,
            "height":1080,"side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]}],
            "format":{"duration":"3"}}"#;
        let tag = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":1280,
            "height":720,"tags":{"rotate":"270"}}],"format":{}}"#;
        let flipped = br#"{"streams":[{"codec_type":"video","codec_name":"h264","width":1280,
            "height":720,"side_data_list":[{"rotation":180}]}]}"#;
        assert_eq!(parse(side).unwrap().width, Some(1080));
        assert_eq!(parse(tag).unwrap().height, Some(1280));
        assert_eq!(parse(flipped).unwrap().width, Some(1280));
    }

    #[test]
    fn non_square_pixels_are_stretched() {
        // DVD PAL 16:9: 720x576 stored, 1024x576 shown.
        let json = br#"{"streams":[{"codec_type":"video","codec_name":"mpeg2video",
            "width":720,"height":576,"sample_aspect_ratio":"64:45"}]}"#;
        assert_eq!(parse(json).unwrap().width, Some(1024));
    }

    #[test]
    fn cover_art_is_no_video_and_a_file_without_streams_is_refused() {
        let song = br#"{"streams":[{"codec_type":"audio","codec_name":"mp3"},
            {"codec_type":"video","codec_name":"mjpeg","width":500,"height":500,
             "disposition":{"attached_pic":1}}],"format":{"duration":"200.0"}}"#;
        let p = parse(song).unwrap();
        assert_eq!(p.video_codec, None, "no picture to take a poster from");
        assert_eq!(p.width, None);
        assert!(parse(br#"{"streams":[],"format":{}}"#).is_err());
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn a_missing_format_duration_falls_back_to_the_longest_stream() {
        let json = br#"{"streams":[{"codec_type":"video","codec_name":"vp9","width":640,
            "height":360,"duration":"1.5"},{"codec_type":"audio","codec_name":"opus",
            "duration":"2.25"}],"format":{"duration":"N/A"}}"#;
        assert_eq!(parse(json).unwrap().duration_ms, Some(2250));
    }
}
