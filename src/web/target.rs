//! Which api calls `/api` may forward: the api table's paths and methods, nothing else. The
//! browser-supplied `url` is parsed strictly and rebuilt from its checked parts, so no spelling
//! of it can reach another host or another path.

use actix_web::http::Method;
use actors::model::{CommentId, VideoId};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Characters left as they are in a rebuilt path segment: RFC 3986's unreserved set.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// What the web service must do besides forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Register or sign in: on success, move the session id into the cookie.
    SignIn {
        user: Option<String>,
    },
    /// Sign out: on success, clear the cookie.
    SignOut,
    None,
}

/// A checked api call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub method: Method,
    /// Path and query as sent to the api, rebuilt from the decoded parts.
    pub path_and_query: String,
    pub effect: Effect,
}

/// Why a `url`/`method` pair was refused; the text goes into the 400's `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Checks `url` and `method` against the api table.
pub fn check(url: &str, method: &str) -> Result<Target, Refused> {
    let method = match method {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "DELETE" => Method::DELETE,
        _ => return Err(Refused("method must be GET, POST or DELETE")),
    };
    if !url.starts_with('/') || url.starts_with("//") {
        return Err(Refused("url must be a path of the api, starting with one /"));
    }
    if url.contains(['\\', '#']) || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Refused("url contains characters a path may not"));
    }
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let mut segments = Vec::new();
    for raw in path[1..].split('/') {
        let seg = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| Refused("url is not valid UTF-8 once decoded"))?;
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains(['/', '\\', '?', '#']) {
            return Err(Refused("url has an empty, dot or encoded-slash segment"));
        }
        if seg.chars().any(char::is_control) {
            return Err(Refused("url contains characters a path may not"));
        }
        segments.push(seg.into_owned());
    }
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let video = |i: usize| s[i].parse::<VideoId>().is_ok();
    let comment = |i: usize| s[i].parse::<CommentId>().is_ok();
    let (allowed, effect): (&[Method], Effect) = match s.as_slice() {
        ["user"] => (&[Method::POST], Effect::SignIn { user: None }),
        ["user", name] => match method {
            Method::POST => (&[Method::POST], Effect::SignIn { user: Some((*name).to_owned()) }),
            Method::DELETE => (&[Method::DELETE], Effect::SignOut),
            _ => (&[Method::GET], Effect::None),
        },
        ["user", _, "videos"] => (&[Method::GET, Method::POST], Effect::None),
        ["user", _, "videos", _] if video(3) => (&[Method::GET, Method::DELETE], Effect::None),
        ["videos"] => (&[Method::GET], Effect::None),
        ["videos", _, "comments"] if video(1) => (&[Method::GET, Method::POST], Effect::None),
        ["videos", _, "comment", _] if video(1) && comment(3) => (&[Method::DELETE], Effect::None),
        _ => return Err(Refused("url is not one of the api's paths")),
    };
    if !allowed.contains(&method) {
        return Err(Refused("this method is not allowed on this path"));
    }
    let mut path_and_query = String::with_capacity(url.len());
    for seg in &segments {
        path_and_query.push('/');
        path_and_query.extend(utf8_percent_encode(seg, SEGMENT));
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        path_and_query.push('?');
        path_and_query.push_str(&check_query(q, &method)?);
    }
    Ok(Target { method, path_and_query, effect })
}

/// Only list GETs take a query, and only `limit` and `cursor`; rebuilt encoded.
fn check_query(q: &str, method: &Method) -> Result<String, Refused> {
    if *method != Method::GET {
        return Err(Refused("only GET requests take a query string"));
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if k != "limit" && k != "cursor" {
            return Err(Refused("the query may only hold limit and cursor"));
        }
        out.append_pair(&k, &v);
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0190a0b0-0000-7000-8000-000000000001";

    #[test]
    fn accepts_the_api_table() {
        assert_eq!(check("/user", "POST").map(|t| t.effect), Ok(Effect::SignIn { user: None }));
        let t = check("/user/%E5%B0%8F%E6%98%8E", "POST").expect("sign-in");
        assert_eq!(t.effect, Effect::SignIn { user: Some("小明".into()) });
        assert_eq!(t.path_and_query, "/user/%E5%B0%8F%E6%98%8E");
        assert_eq!(check("/user/bob", "DELETE").map(|t| t.effect), Ok(Effect::SignOut));
        assert!(check("/user/bob", "GET").is_ok());
        assert!(check("/user/bob/videos?limit=5&cursor=abc", "GET").is_ok());
        assert!(check(&format!("/user/bob/videos/{V}"), "DELETE").is_ok());
        assert!(check("/videos", "GET").is_ok());
        assert!(check(&format!("/videos/{V}/comments"), "POST").is_ok());
        assert!(check(&format!("/videos/{V}/comment/{V}"), "DELETE").is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for (url, m) in [
            ("http://evil.example/user", "GET"),
            ("//evil.example/user", "GET"),
            ("/user/../videos", "GET"),
            ("/user/%2e%2e/videos", "GET"),
            ("/user/a%2Fb", "GET"),
            ("/user/a\\b", "GET"),
            ("/user/", "GET"),
            ("/videos/", "GET"),
            ("/healthz", "GET"),
            ("/metrics", "GET"),
            ("/video-delete-record", "GET"),
            ("/user", "PUT"),
            ("/user", "GET"),
            ("/videos", "POST"),
            ("/videos/not-a-uuid/comments", "GET"),
            ("/videos?secret=1", "GET"),
            ("/user/bob?limit=1", "POST"),
            ("user", "POST"),
            ("/user/bob%00", "GET"),
        ] {
            assert!(check(url, m).is_err(), "{m} {url} must be refused");
        }
        let upper = V.to_uppercase();
        assert!(check(&format!("/videos/{upper}/comments"), "GET").is_err());
    }
}
