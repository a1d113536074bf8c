//! Response heads written as actix-http's HTTP/1 encoder writes them: the status line in the
//! request's version, `content-length`, `connection` where it differs from the version's
//! default, the answer's headers, and `date`.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{StatusCode, Version};

/// The head of an answer with a body of `length` bytes (announced only: a HEAD answer sends
/// none). Statuses that carry no body (1xx, 204, 304) get no `content-length`.
pub fn head(
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
    length: u64,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + headers.len() * 32);
    let line = if version == Version::HTTP_10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let reason = status.canonical_reason().unwrap_or("<unknown status code>");
    out.extend_from_slice(format!("{line} {} {reason}\r\n", status.as_u16()).as_bytes());
    if has_body(status) {
        out.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    }
    match (version, keep_alive) {
        (Version::HTTP_10, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (Version::HTTP_11, false) => out.extend_from_slice(b"connection: close\r\n"),
        _ => {}
    }
    let mut has_date = false;
    for (name, value) in headers {
        match *name {
            header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING => continue,
            header::DATE => has_date = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        now(|date| out.extend_from_slice(date.as_bytes()));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Whether answers with `status` carry a body (and so a `content-length`): not 1xx, 204, 304.
pub fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED))
}

/// actix-http's answer to a head that took too long: 408, and the connection closes.
pub fn request_timeout() -> Vec<u8> {
    head(Version::HTTP_11, StatusCode::REQUEST_TIMEOUT, &HeaderMap::new(), 0, false)
}

/// The current `date` value, formatted once a second per thread.
fn now<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, date)| {
        if *at != secs || date.is_empty() {
            *at = secs;
            *date = httpdate::fmt_http_date(now);
        }
        f(date)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn text(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn heads_say_what_actix_http_says() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, "\"x\"".parse().unwrap());
        let h = text(head(Version::HTTP_11, StatusCode::PARTIAL_CONTENT, &headers, 10, true));
        assert!(h.starts_with(
            "HTTP/1.1 206 Partial Content\r\ncontent-length: 10\r\netag: \"x\"\r\ndate: "
        ));
        assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
        assert!(!h.contains("connection"));
        let h = text(head(Version::HTTP_11, StatusCode::NOT_MODIFIED, &headers, 0, false));
        assert!(h.starts_with("HTTP/1.1 304 Not Modified\r\nconnection: close\r\n"), "{h}");
        assert!(!h.contains("content-length"));
        let h = text(head(Version::HTTP_10, StatusCode::OK, &headers, 0, true));
        assert!(
            h.starts_with("HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n")
        );
        let h = text(head(Version::HTTP_10, StatusCode::OK, &headers, 0, false));
        assert!(!h.contains("connection"));
        let h = text(request_timeout());
        assert!(h.starts_with(
            "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\ndate: "
        ));
    }
}
