//! RFC 9110 preconditions and byte ranges, as pure functions of header values, so every case is
//! unit-tested without a server: `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//! `If-Modified-Since`, `If-Range`, `Range`.

use std::time::SystemTime;

/// The validators of one immutable file.
#[derive(Debug, Clone)]
pub struct Validators {
    /// The strong entity tag with its quotes, e.g. `"ab12…"`.
    pub etag: String,
    /// Whole seconds, as `Last-Modified` carries it.
    pub last_modified: SystemTime,
}

/// What to send for a `Range` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// 200 and the whole file (no range, an ignored or a multi-range request).
    Full,
    /// 206 with the inclusive byte range `first..=last`.
    Partial { first: u64, last: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// The opaque tags of an entity-tag list, with their quotes; `None` when the list is `*`.
/// Malformed members are skipped (they cannot match anything).
fn entity_tags(list: &str) -> Option<Vec<(bool, &str)>> {
    if list.trim() == "*" {
        return None;
    }
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(tags);
        }
        let (weak, body) = match rest.strip_prefix("W/") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let Some(inner) = body.strip_prefix('"') else {
            // Not a tag: skip to the next list member.
            rest = body.find(',').map_or("", |i| &body[i..]);
            continue;
        };
        let Some(end) = inner.find('"') else { return Some(tags) };
        tags.push((weak, &body[..end + 2]));
        rest = &inner[end + 1..];
    }
}

/// `If-Match` (strong comparison): whether the request may go ahead; `*` matches any current
/// representation. A weak tag never matches.
pub fn match_holds(header: &str, v: &Validators) -> bool {
    match entity_tags(header) {
        None => true,
        Some(tags) => tags.iter().any(|(weak, tag)| !weak && *tag == v.etag),
    }
}

/// `If-Unmodified-Since`, consulted only without `If-Match`: whether the request may go ahead.
/// An unparsable date is ignored (RFC 9110 §13.1.4), so it holds.
pub fn unmodified_since_holds(header: &str, v: &Validators) -> bool {
    httpdate::parse_http_date(header.trim()).map_or(true, |since| v.last_modified <= since)
}

/// `If-None-Match` (weak comparison): whether the client already has this representation.
pub fn none_match_hits(header: &str, v: &Validators) -> bool {
    match entity_tags(header) {
        None => true,
        Some(tags) => tags.iter().any(|(_, tag)| *tag == v.etag),
    }
}

/// `If-Modified-Since`, consulted only without `If-None-Match`: true when not modified since.
pub fn not_modified_since(header: &str, v: &Validators) -> bool {
    httpdate::parse_http_date(header.trim()).is_ok_and(|since| v.last_modified <= since)
}

/// `If-Range`: true when the range may be served (a strong match of the tag, or the exact
/// modification date). A weak tag never matches.
pub fn if_range_matches(header: &str, v: &Validators) -> bool {
    let header = header.trim();
    if header.starts_with('"') {
        return header == v.etag;
    }
    if header.starts_with("W/") {
        return false;
    }
    httpdate::parse_http_date(header).is_ok_and(|date| date == v.last_modified)
}

/// Digits as a number, saturating (a huge position is still a position), `None` unless 1*DIGIT.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| n.saturating_mul(10).saturating_add(u64::from(b - b'0'))))
}

/// One `range-spec` resolved against `size`: `Ok(Some)` satisfiable, `Ok(None)` not,
/// `Err` syntactically invalid.
fn spec(s: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let (first, last) = s.split_once('-').ok_or(())?;
    if first.is_empty() {
        let n = digits(last).ok_or(())?;
        return Ok((n > 0 && size > 0).then(|| (size - n.min(size), size - 1)));
    }
    let first = digits(first).ok_or(())?;
    let last = if last.is_empty() { None } else { Some(digits(last).ok_or(())?) };
    if last.is_some_and(|l| l < first) {
        return Err(());
    }
    if first >= size {
        return Ok(None);
    }
    Ok(Some((first, last.map_or(size - 1, |l| l.min(size - 1)))))
}

/// `Range` against a file of `size` bytes. An invalid header or another unit is ignored (the
/// whole file); several ranges get the whole file too, which RFC 9110 allows.
pub fn select(header: &str, size: u64) -> Selection {
    let Some((unit, set)) = header.trim().split_once('=') else { return Selection::Full };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Selection::Full;
    }
    let mut specs = Vec::new();
    for member in set.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        match spec(member, size) {
            Ok(s) => specs.push(s),
            Err(()) => return Selection::Full,
        }
    }
    match specs.as_slice() {
        [] => Selection::Full,
        [Some((first, last))] => Selection::Partial { first: *first, last: *last },
        many if many.iter().all(Option::is_none) => Selection::Unsatisfiable,
        _ => Selection::Full,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use Selection::*;

    fn v() -> Validators {
        Validators {
            etag: "\"abc\"".into(),
            last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn if_match_and_if_unmodified_since() {
        let v = v();
        assert!(match_holds("*", &v));
        assert!(match_holds(&format!("\"x\", {}", v.etag), &v));
        assert!(!match_holds(&format!("W/{}", v.etag), &v), "If-Match compares strongly");
        assert!(!match_holds("\"other\"", &v));
        let at = httpdate::fmt_http_date(v.last_modified);
        let before = httpdate::fmt_http_date(v.last_modified - Duration::from_secs(1));
        assert!(unmodified_since_holds(&at, &v));
        assert!(!unmodified_since_holds(&before, &v));
        assert!(unmodified_since_holds("not a date", &v), "an unparsable date is ignored");
    }

    #[test]
    fn single_ranges() {
        assert_eq!(select("bytes=0-0", 10), Partial { first: 0, last: 0 });
        assert_eq!(select("bytes=2-5", 10), Partial { first: 2, last: 5 });
        assert_eq!(select("bytes=2-", 10), Partial { first: 2, last: 9 });
        assert_eq!(select("bytes=-3", 10), Partial { first: 7, last: 9 });
        assert_eq!(select("bytes=-30", 10), Partial { first: 0, last: 9 });
        assert_eq!(select("bytes=5-99999999999999999999999", 10), Partial { first: 5, last: 9 });
        assert_eq!(select("BYTES = 1-2 ,", 10), Partial { first: 1, last: 2 });
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(select("bytes=10-", 10), Unsatisfiable);
        assert_eq!(select("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(select("bytes=-0", 10), Unsatisfiable);
        assert_eq!(select("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(select("bytes=20-30, 40-", 10), Unsatisfiable);
    }

    #[test]
    fn invalid_ranges_are_ignored() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=0x1-2",
            "items=0-1",
            "bytes=1 -2",
            "bytes=0-1,x",
        ] {
            assert_eq!(select(h, 10), Full, "{h:?}");
        }
        assert_eq!(select("bytes=0-1,3-4", 10), Full, "several ranges: the whole file");
    }

    #[test]
    fn if_none_match() {
        assert!(none_match_hits("\"abc\"", &v()));
        assert!(none_match_hits("W/\"abc\"", &v()), "weak comparison");
        assert!(none_match_hits("\"x\", \"abc\"", &v()));
        assert!(none_match_hits("*", &v()));
        assert!(!none_match_hits("\"abcd\"", &v()));
        assert!(!none_match_hits("abc", &v()));
        assert!(!none_match_hits("\"a,b\"", &v()));
    }

    #[test]
    fn if_modified_since() {
        assert!(not_modified_since("Tue, 14 Nov 2023 22:13:20 GMT", &v()));
        assert!(not_modified_since("Wed, 15 Nov 2023 22:13:20 GMT", &v()));
        assert!(!not_modified_since("Tue, 14 Nov 2023 22:13:19 GMT", &v()));
        assert!(!not_modified_since("yesterday", &v()));
    }

    #[test]
    fn if_range() {
        assert!(if_range_matches("\"abc\"", &v()));
        assert!(!if_range_matches("W/\"abc\"", &v()), "weak tags never match");
        assert!(!if_range_matches("\"other\"", &v()));
        assert!(if_range_matches("Tue, 14 Nov 2023 22:13:20 GMT", &v()));
        assert!(!if_range_matches("Wed, 15 Nov 2023 22:13:20 GMT", &v()), "exact date only");
        assert!(!if_range_matches("garbage", &v()));
    }
}
