//! Reading the request headers every service looks at, one way everywhere.

use actix_web::http::header::{self, HeaderMap};

/// The declared body length, when present and a plain decimal number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The media type of the body without its parameters, lowercased (`multipart/form-data`), or
/// `""` when there is no readable `Content-Type`.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn lengths_and_media_types() {
        assert_eq!(content_length(&with(header::CONTENT_LENGTH, "42")), Some(42));
        assert_eq!(content_length(&with(header::CONTENT_LENGTH, "-1")), None);
        assert_eq!(content_length(&with(header::CONTENT_LENGTH, "4 2")), None);
        assert_eq!(content_length(&HeaderMap::new()), None);
        let ct = with(header::CONTENT_TYPE, "Multipart/Form-Data ; boundary=x");
        assert_eq!(media_type(&ct), "multipart/form-data");
        assert_eq!(media_type(&HeaderMap::new()), "");
    }
}
