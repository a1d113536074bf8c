//! Recognising a video container from a file's first bytes; the client's Content-Type is never
//! trusted for what playback later announces.

/// How many leading bytes [`sniff`] wants (fewer only when the file is shorter).
pub const SNIFF_LEN: usize = 512;

/// The MIME type of the container `head` starts, or `None` when it is not a known one.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    // ISO base media (MP4, MOV, 3GP): a first box of type `ftyp`, whose major brand tells
    // QuickTime from the rest.
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(if &head[8..12] == b"qt  " { "video/quicktime" } else { "video/mp4" });
    }
    // EBML: Matroska, or WebM when the DocType says so.
    if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        let webm = head.windows(4).take(64).any(|w| w == b"webm");
        return Some(if webm { "video/webm" } else { "video/x-matroska" });
    }
    if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"AVI " {
        return Some("video/x-msvideo");
    }
    // FLV: signature and version 1.
    if head.starts_with(b"FLV\x01") {
        return Some("video/x-flv");
    }
    // MPEG-TS: 188-byte packets, each starting with the sync byte 0x47; two in a row at least.
    if head.len() > 188 && head.iter().step_by(188).all(|&b| b == 0x47) {
        return Some("video/mp2t");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_containers() {
        let mp4 = b"\0\0\0\x20ftypisom\0\0\x02\0";
        assert_eq!(sniff(mp4), Some("video/mp4"));
        assert_eq!(sniff(b"\0\0\0\x14ftypqt  \0\0\0\0"), Some("video/quicktime"));
        let webm = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm";
        assert_eq!(sniff(webm), Some("video/webm"));
        assert_eq!(sniff(b"\x1a\x45\xdf\xa3\x42\x82\x88matroska"), Some("video/x-matroska"));
        assert_eq!(sniff(b"RIFF\x10\0\0\0AVI LIST"), Some("video/x-msvideo"));
        assert_eq!(sniff(b"FLV\x01\x05\0\0\0\x09"), Some("video/x-flv"));
        let mut ts = vec![0u8; 376];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert_eq!(sniff(&ts), Some("video/mp2t"));
    }

    #[test]
    fn everything_else_is_refused() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"\x47"), None, "one sync byte is not a stream");
        assert_eq!(sniff(&[0x47; 100]), None);
        assert_eq!(sniff(b"<html>ftyp"), None);
    }
}
