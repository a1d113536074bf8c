//! S3 POST policies (a browser form that uploads one object straight to the store), signed with
//! AWS Signature Version 4. rusty-s3 signs requests but not POST policies, so this is the one
//! piece of signing written here; it is checked against AWS's own worked example.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use time::OffsetDateTime;
use time::macros::format_description;
use url::Url;

/// A signed form for uploading one object straight to the store: post `fields`, then the file
/// in a field named `file`, as `multipart/form-data` to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    /// Where the form is posted (the bucket, path-style, on the public endpoint).
    pub url: Url,
    /// The form fields: the object's key, the policy and its signature. The store refuses the
    /// form if any of them is changed.
    pub fields: BTreeMap<String, String>,
    /// When the store stops accepting the form (whole seconds).
    pub expires_at: OffsetDateTime,
}

/// Who signs, and for which region.
pub(super) struct Signer<'a> {
    pub access_key: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
}

/// What the policy allows: exactly one key, a size range, until `now + ttl`.
pub(super) struct Grant<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub max_bytes: u64,
    pub now: OffsetDateTime,
    pub ttl: Duration,
}

/// Signs a POST policy for `grant` to be posted to `url`.
pub(super) fn sign_post_policy(signer: &Signer<'_>, url: Url, grant: &Grant<'_>) -> PostPolicy {
    let now = grant.now.replace_nanosecond(0).unwrap_or(grant.now);
    let expires_at = now + grant.ttl;
    let day = format(now, format_description!("[year][month][day]"));
    let amz_date = format(now, format_description!("[year][month][day]T[hour][minute][second]Z"));
    let expiration = format(
        expires_at,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].000Z"),
    );
    let credential = format!("{}/{day}/{}/s3/aws4_request", signer.access_key, signer.region);
    // Every form field but the file, the policy and the signature needs a condition, or the
    // store refuses the form; `eq` on the key is what stops a client from choosing another.
    let policy = serde_json::json!({
        "expiration": expiration,
        "conditions": [
            {"bucket": grant.bucket},
            ["eq", "$key", grant.key],
            ["content-length-range", 1, grant.max_bytes],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
        ]
    });
    let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let signature = signature(signer.secret, &day, signer.region, &policy);
    let fields = [
        ("key", grant.key.to_owned()),
        ("policy", policy),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential", credential),
        ("x-amz-date", amz_date),
        ("x-amz-signature", signature),
    ];
    let fields = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    PostPolicy { url, fields, expires_at }
}

fn format(t: OffsetDateTime, f: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    // Formatting a UTC date with numeric components only cannot fail.
    t.to_offset(time::UtcOffset::UTC).format(f).unwrap_or_default()
}

/// The SigV4 signature of `string_to_sign` (for a POST policy: the base64 policy itself) with
/// the signing key of `secret` for `day` (`YYYYMMDD`), `region` and the `s3` service.
pub(super) fn signature(secret: &str, day: &str, region: &str, string_to_sign: &str) -> String {
    let key = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let key = hmac(&key, region.as_bytes());
    let key = hmac(&key, b"s3");
    let key = hmac(&key, b"aws4_request");
    hmac(&key, string_to_sign.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length; `new_from_slice` only fails for fixed-size-key MACs.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// AWS's worked example, "Example: Browser-Based Upload using HTTP POST (Using AWS
    /// Signature Version 4)" in the S3 API reference: its base64 policy (which decodes to the
    /// policy with CRLF line ends) and the signature AWS gives for it.
    const AWS_POLICY: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
    const AWS_SIGNATURE: &str = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn signs_aws_worked_example() {
        assert_eq!(signature(AWS_SECRET, "20151229", "us-east-1", AWS_POLICY), AWS_SIGNATURE);
        let decoded = base64::engine::general_purpose::STANDARD.decode(AWS_POLICY).unwrap();
        let decoded = String::from_utf8(decoded).unwrap();
        assert!(decoded.starts_with("{ \"expiration\": \"2015-12-30T12:00:00.000Z\",\r\n"));
        // One changed byte of the policy changes the signature.
        let tampered = AWS_POLICY.replacen("eyAi", "eyBi", 1);
        assert_ne!(signature(AWS_SECRET, "20151229", "us-east-1", &tampered), AWS_SIGNATURE);
    }

    #[test]
    fn policy_signs_exactly_one_key_size_range_and_expiry() {
        let signer =
            Signer { access_key: "AKIAIOSFODNN7EXAMPLE", secret: AWS_SECRET, region: "us-east-1" };
        let url: Url = "http://127.0.0.1:3900/videos-bucket/".parse().unwrap();
        // 2015-12-29T00:00:00Z, the example's date.
        let now = OffsetDateTime::from_unix_timestamp(1_451_347_200).unwrap();
        let grant = Grant {
            bucket: "videos-bucket",
            key: "videos/0191d5c8-0000-7000-8000-000000000000",
            max_bytes: 1 << 30,
            now,
            ttl: Duration::from_secs(300),
        };
        let p = sign_post_policy(&signer, url.clone(), &grant);
        assert_eq!(p.url, url);
        assert_eq!(p.expires_at.unix_timestamp(), 1_451_347_500);
        assert_eq!(p.fields["key"], grant.key);
        assert_eq!(p.fields["x-amz-date"], "20151229T000000Z");
        assert_eq!(
            p.fields["x-amz-credential"],
            "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"
        );
        let doc = base64::engine::general_purpose::STANDARD.decode(&p.fields["policy"]).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(doc["expiration"], "2015-12-29T00:05:00.000Z");
        let conditions = doc["conditions"].as_array().unwrap();
        assert!(conditions.contains(&serde_json::json!(["eq", "$key", grant.key])));
        assert!(conditions.contains(&serde_json::json!(["content-length-range", 1, 1u64 << 30])));
        assert!(conditions.contains(&serde_json::json!({"bucket": "videos-bucket"})));
        assert_eq!(
            p.fields["x-amz-signature"],
            signature(AWS_SECRET, "20151229", "us-east-1", &p.fields["policy"])
        );
        assert_eq!(p.fields.len(), 6, "no field without a condition: {:?}", p.fields.keys());
    }
}
