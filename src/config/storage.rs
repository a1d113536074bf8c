//! The storage flags of API.md's "Scale-out" table: where video files live, how they play, and
//! the secrets that go with them. Checked as a whole before any listener opens.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use actors::blob::S3Config;
use clap::ValueEnum;
use url::Url;

/// A secret from the command line or the environment: never printed (`Debug` is redacted, and
/// the flags hide their environment values in `--help`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where video files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BlobStoreKind {
    /// `<data-dir>/videos`.
    File,
    /// An S3-compatible object store.
    S3,
}

/// How the stream service plays a video whose bytes are in the object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Playback {
    /// The stream service relays the bytes.
    Proxy,
    /// 302 to a signed URL of the object store (s3 only).
    Redirect,
}

/// The storage flags (flattened into [`super::Config`]).
#[derive(Debug, Clone, clap::Args)]
pub struct StorageFlags {
    /// Where video files live: `file` (<data-dir>/videos) or `s3`.
    #[arg(long, env = "DOUYIN_BLOB_STORE", value_enum, default_value = "file")]
    pub blob_store: BlobStoreKind,

    /// The S3-compatible endpoint this node uses, path-style (required with s3).
    #[arg(long, env = "DOUYIN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// The bucket video objects live in (required with s3).
    #[arg(long, env = "DOUYIN_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The object store's region.
    #[arg(long, env = "DOUYIN_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// The access key id (required with s3).
    #[arg(long, env = "DOUYIN_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// The secret access key (required with s3; never printed).
    #[arg(long, env = "DOUYIN_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,

    /// The endpoint browsers reach the object store at, for direct uploads and redirected
    /// playback [default: --s3-endpoint].
    #[arg(long, env = "DOUYIN_S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,

    /// How videos in the object store play: `proxy` (relayed) or `redirect` (302 to a signed
    /// URL; s3 only).
    #[arg(long, env = "DOUYIN_PLAYBACK", value_enum, default_value = "proxy")]
    pub playback: Playback,

    /// Lifetime of upload tickets and signed playback URLs, in seconds.
    #[arg(long, env = "DOUYIN_SIGNED_URL_TTL_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub signed_url_ttl_secs: u64,

    /// Seconds after its ticket before a direct upload whose `complete` never came is checked
    /// by the scheduler's reconciliation.
    #[arg(long, env = "DOUYIN_DIRECT_UPLOAD_GRACE_SECS", default_value_t = 600)]
    pub direct_upload_grace_secs: u64,
}

/// A storage setting that cannot work, naming the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {why}")]
pub struct FlagError {
    pub flag: &'static str,
    pub why: String,
}

fn bad(flag: &'static str, why: impl Into<String>) -> FlagError {
    FlagError { flag, why: why.into() }
}

/// Where video files live, once the flags are checked.
#[derive(Debug, Clone)]
pub enum BlobSettings {
    Files,
    S3(Box<S3Config>),
}

fn endpoint(flag: &'static str, raw: &str) -> Result<Url, FlagError> {
    let url = Url::parse(raw).map_err(|e| bad(flag, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(flag, "must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(flag, "must not have a query or fragment"));
    }
    Ok(url)
}

impl StorageFlags {
    /// How long tickets and signed URLs live.
    pub fn signed_url_ttl(&self) -> Duration {
        Duration::from_secs(self.signed_url_ttl_secs)
    }

    /// Checks the flags together: every S3 flag that `s3` needs, none that only `s3` can use.
    pub fn settings(&self) -> Result<BlobSettings, FlagError> {
        if self.blob_store == BlobStoreKind::File {
            if self.playback == Playback::Redirect {
                return Err(bad("--playback", "redirect needs --blob-store s3"));
            }
            return Ok(BlobSettings::Files);
        }
        let required = |flag: &'static str, value: &Option<String>| {
            value
                .clone()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| bad(flag, "required with --blob-store s3"))
        };
        let endpoint_raw = required("--s3-endpoint", &self.s3_endpoint)?;
        let endpoint = endpoint("--s3-endpoint", &endpoint_raw)?;
        let public_endpoint = match &self.s3_public_endpoint {
            Some(raw) => self::endpoint("--s3-public-endpoint", raw)?,
            None => endpoint.clone(),
        };
        let bucket = required("--s3-bucket", &self.s3_bucket)?;
        let access_key_id = required("--s3-access-key-id", &self.s3_access_key_id)?;
        let secret = self
            .s3_secret_access_key
            .clone()
            .filter(|s| !s.expose().is_empty())
            .ok_or_else(|| bad("--s3-secret-access-key", "required with --blob-store s3"))?;
        if self.s3_region.trim().is_empty() {
            return Err(bad("--s3-region", "must not be empty"));
        }
        Ok(BlobSettings::S3(Box::new(S3Config {
            endpoint,
            public_endpoint,
            bucket,
            region: self.s3_region.clone(),
            access_key_id,
            secret_access_key: secret.expose().to_owned(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        storage: StorageFlags,
    }

    fn settings(args: &[&str]) -> Result<BlobSettings, FlagError> {
        let mut all = vec!["douyin_club"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all).expect("the flags parse").storage.settings()
    }

    const S3: [&str; 10] = [
        "--blob-store",
        "s3",
        "--s3-endpoint",
        "http://127.0.0.1:3900",
        "--s3-bucket",
        "videos",
        "--s3-access-key-id",
        "GK123",
        "--s3-secret-access-key",
        "hush",
    ];

    #[test]
    fn the_default_is_files_and_s3_needs_every_flag() {
        assert!(matches!(settings(&[]), Ok(BlobSettings::Files)));
        let Ok(BlobSettings::S3(c)) = settings(&S3) else { panic!("s3 settings") };
        assert_eq!(c.public_endpoint, c.endpoint);
        assert_eq!(c.region, "us-east-1");
        for (i, flag) in [(2, "--s3-endpoint"), (4, "--s3-bucket"), (6, "--s3-access-key-id")] {
            let mut args = S3.to_vec();
            args.drain(i..i + 2);
            assert_eq!(settings(&args).unwrap_err().flag, flag);
        }
        let no_secret = &S3[..8];
        assert_eq!(settings(no_secret).unwrap_err().flag, "--s3-secret-access-key");
    }

    #[test]
    fn bad_values_name_their_flag_and_never_the_secret() {
        let mut args = S3.to_vec();
        args[3] = "ftp://x";
        let e = settings(&args).unwrap_err();
        assert_eq!(e.flag, "--s3-endpoint");
        assert!(!e.to_string().contains("hush"));
        let mut args = S3.to_vec();
        args.extend(["--s3-public-endpoint", "not a url"]);
        assert_eq!(settings(&args).unwrap_err().flag, "--s3-public-endpoint");
        let e = settings(&["--playback", "redirect"]).unwrap_err();
        assert_eq!(e.flag, "--playback");
        let flags = Flags::try_parse_from(["x"].iter().chain(&S3)).expect("parse");
        assert!(!format!("{:?}", flags.storage).contains("hush"));
    }
}
