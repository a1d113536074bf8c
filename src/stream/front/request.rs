//! Request heads as the front reads them: where one ends, what it asks, and whether the front
//! answers it or actix-web does.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, Uri, Version};

use crate::headers::media_type;

/// The longest head the front reads. actix-http refuses a longer one (431) at the same size, so
/// a head that reaches it unended goes to actix-http, which answers it.
pub const MAX_HEAD: usize = 32 * 1024;
/// Headers the front parses; a request with more goes to actix-http (which takes up to 96).
const MAX_HEADERS: usize = 48;

/// A request head the front answers: `GET`/`HEAD /videos/:id` without a body, or
/// `POST /upload/:id` with a raw body of a declared length.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    /// The id as it stands in the path (only letters, digits and `-`: nothing to decode).
    pub id: String,
    /// The request target as sent, for the access log.
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// Whether the connection stays open after the answer (actix-http's rule: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// Bytes of the head.
    pub len: usize,
}

/// What a whole head asks.
#[derive(Debug)]
pub enum Parsed {
    Playback(Head),
    /// A raw upload: its body's declared length, and whether the client waits for
    /// `100 Continue` before sending it.
    Upload {
        head: Head,
        length: u64,
        expect: bool,
    },
    /// A request for actix-web: any other, or one the front does not read (a playback with a
    /// body, a chunked or multipart upload, an upgrade, a head it cannot parse or that is too
    /// long).
    Other,
}

/// Reads the head at the start of `buf`; `None` while it is not whole. `scanned` is how much of
/// `buf` earlier calls searched for the head's end; only the new bytes are searched, so a client
/// sending a byte at a time costs linear work, not quadratic.
pub fn parse(buf: &[u8], scanned: &mut usize) -> Option<Parsed> {
    let from = scanned.saturating_sub(3);
    *scanned = buf.len();
    let ended = buf[from..].windows(2).any(|w| w == b"\n\n")
        || buf[from..].windows(3).any(|w| w == b"\n\r\n");
    if !ended {
        return (buf.len() >= MAX_HEAD).then_some(Parsed::Other);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Some(classify(&req, len).unwrap_or(Parsed::Other)),
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => None,
        _ => Some(Parsed::Other),
    }
}

/// What the body-related headers of a head say.
#[derive(Default)]
struct Body {
    /// `Content-Length`, when there is exactly one and it is a plain number.
    length: Option<u64>,
    /// Anything that makes the body something else: `Transfer-Encoding`, a second or malformed
    /// `Content-Length`.
    unusual: bool,
    /// `Expect: 100-continue`; another expectation is unusual.
    expect: bool,
}

fn classify(req: &httparse::Request<'_, '_>, len: usize) -> Option<Parsed> {
    let (head, body) = head(req, len)?;
    if body.unusual {
        return None;
    }
    let path = req.path?;
    match head.method {
        Method::GET | Method::HEAD
            if body.length.is_none() && !body.expect && segment(path, "/videos/").is_some() =>
        {
            Some(Parsed::Playback(head))
        }
        // The raw body of `POST /upload/:id`; a form goes to actix-web with its parser.
        Method::POST
            if segment(path, "/upload/").is_some()
                && !media_type(&head.headers).starts_with("multipart/") =>
        {
            let length = body.length?;
            Some(Parsed::Upload { head, length, expect: body.expect })
        }
        _ => None,
    }
}

fn head(req: &httparse::Request<'_, '_>, len: usize) -> Option<(Head, Body)> {
    let method = match req.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        _ => return None,
    };
    let version = match req.version? {
        1 => Version::HTTP_11,
        0 => Version::HTTP_10,
        _ => return None,
    };
    let path = req.path?;
    let id = segment(path, "/videos/").or_else(|| segment(path, "/upload/"))?;
    // What actix-http would refuse (400), it shall refuse: a target `Uri` does not take.
    Uri::try_from(path).ok()?;
    let (mut close, mut keep, mut hosts) = (false, false, 0);
    let mut body = Body::default();
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        match name {
            header::UPGRADE => return None,
            header::TRANSFER_ENCODING => body.unusual = true,
            header::CONTENT_LENGTH => {
                let value = std::str::from_utf8(h.value).ok()?.trim();
                match value.parse::<u64>() {
                    Ok(n) if body.length.is_none() && !value.starts_with('+') => {
                        body.length = Some(n);
                    }
                    _ => body.unusual = true,
                }
            }
            header::EXPECT if h.value.eq_ignore_ascii_case(b"100-continue") => body.expect = true,
            header::EXPECT => body.unusual = true,
            header::HOST => hosts += 1,
            header::CONNECTION => {
                for token in std::str::from_utf8(h.value).ok()?.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        keep = true;
                    } else if token.eq_ignore_ascii_case("upgrade") {
                        return None;
                    }
                }
            }
            _ => {}
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    // actix-http refuses a second Host, and an HTTP/1.1 request without one (RFC 9112 §3.2).
    if hosts > 1 || (hosts == 0 && version == Version::HTTP_11) {
        return None;
    }
    // `Expect` means nothing in HTTP/1.0 to actix-http; leave such a request to it.
    if body.expect && version == Version::HTTP_10 {
        body.unusual = true;
    }
    let keep_alive = !close && (version == Version::HTTP_11 || keep);
    let (id, target) = (id.to_owned(), path.to_owned());
    Some((Head { method, id, target, version, headers, keep_alive, len }, body))
}

/// The id of `/videos/:id` or `/upload/:id` (`prefix`; a query is ignored, as actix-web's
/// router ignores it), when it is made only of what a video id is made of. Anything else —
/// `%`-escapes, more segments (`/upload/:id/ticket`) — goes to actix-web, so that its answer
/// stays the one answer.
fn segment<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    let id = rest.split_once('?').map_or(rest, |(id, _)| id);
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> Parsed {
        parse(raw, &mut 0).expect("a whole head")
    }

    fn playback_of(raw: &[u8]) -> Head {
        match parse_all(raw) {
            Parsed::Playback(p) => p,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn playback_requests_are_read_with_their_connection_rule() {
        let p = playback_of(
            b"GET /videos/abc-1?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\nGET",
        );
        assert_eq!((p.method, p.id.as_str(), p.keep_alive), (Method::GET, "abc-1", true));
        assert_eq!(p.headers.get("range").unwrap(), "bytes=0-1");
        assert_eq!(p.len, 61, "the head ends before the next request's bytes");
        assert_eq!(p.target, "/videos/abc-1?x=1");
        assert!(
            !playback_of(b"HEAD /videos/a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                .keep_alive
        );
        assert!(!playback_of(b"GET /videos/a HTTP/1.0\r\n\r\n").keep_alive);
        let p = playback_of(b"GET /videos/a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(p.keep_alive);
        assert_eq!(p.version, Version::HTTP_10);
        // Bare LF line ends are read as actix-http reads them.
        assert!(playback_of(b"GET /videos/a HTTP/1.1\nHost: x\n\n").keep_alive);
    }

    #[test]
    fn everything_else_goes_to_actix_web() {
        for raw in [
            &b"POST /upload/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST /upload/a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST /upload/a/ticket HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            b"POST /upload/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST /upload/a HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n",
            b"POST /upload/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: x\r\n\r\n",
            b"POST /upload/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\
              Content-Type: multipart/form-data; boundary=b\r\n\r\n",
            b"PUT /upload/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
            b"POST /videos/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
            b"GET /videos/a/b HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /videos/%61 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /videos/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
            b"DELETE /videos/a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /videos/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /videos/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /videos/a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
            b"GET /videos/a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            b"GET /videos/a HTTP/2.0\r\n\r\n",
            b"GET /videos/a HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
            b"GET /videos/a HTTP/1.1\r\n\r\n",
            b"GET /videos/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /videos/a HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /videos/a?q=\"{|}\" HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(matches!(parse_all(raw), Parsed::Other), "{:?}", String::from_utf8_lossy(raw));
        }
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: y\r\n")).collect();
        let raw = format!("GET /videos/a HTTP/1.1\r\nHost: h\r\n{many}\r\n");
        assert!(matches!(parse_all(raw.as_bytes()), Parsed::Other), "too many headers");
    }

    #[test]
    fn raw_uploads_of_a_declared_length_are_the_fronts() {
        let raw = b"POST /upload/a-1 HTTP/1.1\r\nHost: h\r\nContent-Type: video/mp4\r\n\
                    Content-Length: 10\r\nExpect: 100-Continue\r\n\r\n0123";
        let Parsed::Upload { head, length, expect } = parse_all(raw) else { panic!("an upload") };
        assert_eq!((head.id.as_str(), length, expect, head.keep_alive), ("a-1", 10, true, true));
        assert_eq!(head.len, raw.len() - 4, "the body's first bytes are not the head's");
        let raw = b"POST /upload/a HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(parse_all(raw), Parsed::Upload { expect: false, length: 0, .. }));
    }

    #[test]
    fn a_head_is_read_once_it_ends_and_never_past_the_limit() {
        let raw = b"GET /videos/a HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n";
        let mut scanned = 0;
        for end in 1..raw.len() {
            assert!(parse(&raw[..end], &mut scanned).is_none(), "{end}");
            assert_eq!(scanned, end);
        }
        assert!(matches!(parse(raw, &mut scanned), Some(Parsed::Playback(_))));
        let long = format!("GET /videos/a HTTP/1.1\r\nX: {}", "y".repeat(MAX_HEAD));
        assert!(matches!(parse_all(long.as_bytes()), Parsed::Other));
    }
}
