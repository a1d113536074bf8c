//! The pages' CSS and JavaScript, embedded in the binary, with content hashes for their URLs so
//! that browsers may cache them for a year and still see every new build.

/// One static file.
#[derive(Debug, Clone, Copy)]
pub struct Static {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    /// FNV-1a of the body, in hex: the `ETag` and the `?v=` of the page links.
    pub hash: &'static str,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

const fn hex16(mut v: u64) -> [u8; 16] {
    let digits = b"0123456789abcdef";
    let mut out = [b'0'; 16];
    let mut i = 16;
    while i > 0 {
        i -= 1;
        out[i] = digits[(v & 0xf) as usize];
        v >>= 4;
    }
    out
}

macro_rules! embed {
    ($name:literal, $ct:literal) => {{
        const BODY: &str = include_str!(concat!("../static/", $name));
        const HEX: [u8; 16] = hex16(fnv1a(BODY.as_bytes()));
        Static {
            name: $name,
            content_type: $ct,
            body: BODY,
            hash: match std::str::from_utf8(&HEX) {
                Ok(s) => s,
                // Hex digits are ASCII; this arm cannot be reached.
                Err(_) => "0",
            },
        }
    }};
}

pub const CSS: Static = embed!("site.css", "text/css; charset=utf-8");
pub const JS: Static = embed!("site.js", "text/javascript; charset=utf-8");

/// The file served at `/statics/<name>`.
pub fn find(name: &str) -> Option<Static> {
    [CSS, JS].into_iter().find(|s| s.name == name)
}

/// The cache-busting URL a page links to.
pub fn href(s: &Static) -> String {
    format!("/statics/{}?v={}", s.name, s.hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_hex_and_differ() {
        assert_eq!(CSS.hash.len(), 16);
        assert_ne!(CSS.hash, JS.hash);
        assert!(find("site.js").is_some() && find("../x").is_none());
    }
}
