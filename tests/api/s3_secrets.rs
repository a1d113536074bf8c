//! API.md: a secret (`--s3-secret-access-key`, `--internal-token`) never appears in `--help`,
//! logs, metrics or error bodies. The real binary, run as a self-hoster runs it, against a real
//! Garage that is stopped halfway through; and no signed URL leaks where a secret may not.

use std::time::Duration;

use awc::http::Method;
use serde_json::json;

use crate::garage_support::Garage;
use crate::helpers::{Reply, read_reply};
use crate::process_support::{Ports, Proc, command};
use crate::stream_support::fake_mp4;

/// What no log line, metric or error body may contain: the secrets, and a signature (a signed
/// URL is a credential while it is valid).
fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
    assert!(!text.contains("X-Amz-Signature"), "{what} shows a signed URL:\n{text}");
}

#[test]
fn help_never_shows_a_secret_from_the_environment() {
    let (secret, token) = ("s3-secret-7f3a9c11d2", "internal-token-91be44c0");
    for flag in ["--help", "-h"] {
        let env = [
            ("DOUYIN_S3_SECRET_ACCESS_KEY", secret),
            ("DOUYIN_INTERNAL_TOKEN", token),
            // Not secrets: shown, which proves values from the environment would show.
            ("DOUYIN_S3_BUCKET", "bucket-shown-in-help"),
        ];
        let o = command(&env).arg(flag).output().expect("the binary runs");
        assert!(o.status.success(), "{flag}: {}", o.status);
        let out =
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("--s3-secret-access-key"), "{flag} lists the flag:\n{out}");
        assert!(out.contains("--internal-token"), "{flag} lists the flag:\n{out}");
        if flag == "--help" {
            assert!(out.contains("bucket-shown-in-help"), "env values are shown:\n{out}");
        }
        assert_clean(flag, &out, &[secret, token]);
    }
}

/// Sends a request to the running binary; the reply with its body.
async fn call(
    client: &awc::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Reply {
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let res = match body {
        Some(b) => req.send_body(b).await,
        None => req.send().await,
    };
    read_reply(res.expect("the node answers")).await
}

#[actix::test]
async fn a_node_on_s3_keeps_its_secrets_out_of_logs_metrics_and_errors() {
    let Some(mut garage) = Garage::start().await else { return };
    let secret = garage.secret_key.clone();
    let token = "internal-token-5d0c7e3f8a";
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Debug logging: every line the node can write at all.
    let env = [
        ("DOUYIN_S3_SECRET_ACCESS_KEY", secret.as_str()),
        ("DOUYIN_INTERNAL_TOKEN", token),
        ("RUST_LOG", "debug"),
    ];
    let mut node = Proc::spawn(dir.path(), Ports::fresh(), &garage.flags(), &env);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    node.wait_healthy(&client).await;
    let (api, stream, scheduler, web) = (node.api(), node.stream(), node.scheduler(), node.web());
    let secrets = [secret.as_str(), token];

    let r = call(
        &client,
        Method::POST,
        &format!("{api}/user"),
        &[("Content-Type", "application/json")],
        Some(json!({"user_name": "alice", "pwd": "password1"}).to_string().into_bytes()),
    )
    .await;
    let session = r.assert_status(201)["session_id"].as_str().expect("a session").to_owned();
    let auth = [("X-Session-Id", session.as_str()), ("Content-Type", "application/json")];
    let mut vids = Vec::new();
    for name in ["kept", "lost", "deleted"] {
        let body = json!({ "name": name }).to_string().into_bytes();
        let r = call(&client, Method::POST, &format!("{api}/user/alice/videos"), &auth, Some(body))
            .await;
        vids.push(r.assert_status(201)["id"].as_str().expect("an id").to_owned());
    }
    let upload = [("X-Session-Id", session.as_str()), ("Content-Type", "video/mp4")];
    let mut errors = Vec::new();
    // A refused upload (not a video), then real ones.
    let text = b"plainly not a video file, long enough to sniff".to_vec();
    errors.push(
        call(&client, Method::POST, &format!("{stream}/upload/{}", vids[0]), &upload, Some(text))
            .await,
    );
    for vid in &vids {
        let r = call(
            &client,
            Method::POST,
            &format!("{stream}/upload/{vid}"),
            &upload,
            Some(fake_mp4(100_000)),
        )
        .await;
        r.assert_status(201);
    }
    let play = |vid: &str| format!("{stream}/videos/{vid}");
    call(&client, Method::GET, &play(&vids[0]), &[("Range", "bytes=0-99")], None)
        .await
        .assert_status(206);
    call(&client, Method::HEAD, &play(&vids[0]), &[], None).await.assert_status(200);
    call(&client, Method::GET, &format!("{web}/videos/{}", vids[0]), &[], None)
        .await
        .assert_status(200);
    // Failing requests of every kind.
    errors.push(
        call(&client, Method::GET, &play(&uuid::Uuid::new_v4().to_string()), &[], None).await,
    );
    errors.push(call(&client, Method::GET, &format!("{stream}/videos/..%2F"), &[], None).await);
    errors.push(
        call(
            &client,
            Method::POST,
            &format!("{stream}/upload/{}", vids[0]),
            &[("X-Session-Id", "nope"), ("Content-Type", "video/mp4")],
            Some(fake_mp4(1000)),
        )
        .await,
    );
    errors.push(
        call(
            &client,
            Method::GET,
            &format!("{scheduler}/video-delete-record"),
            &[("Authorization", "Bearer wrong")],
            None,
        )
        .await,
    );
    // A ready video whose object went away behind the node's back.
    assert!(garage.blobs().head(vids[1].parse().unwrap()).await.unwrap().is_some());
    use actors::blob::BlobStore as _;
    garage.blobs().remove(vids[1].parse().unwrap()).await.unwrap();
    errors.push(call(&client, Method::GET, &play(&vids[1]), &[], None).await);
    let r =
        call(&client, Method::DELETE, &format!("{api}/user/alice/videos/{}", vids[2]), &auth, None)
            .await;
    r.assert_status(204);
    let bearer = format!("Bearer {token}");
    call(
        &client,
        Method::GET,
        &format!("{scheduler}/video-delete-record"),
        &[("Authorization", bearer.as_str())],
        None,
    )
    .await
    .assert_status(200);

    // The store goes away: playback, HEAD and upload fail with our JSON error, nothing more.
    garage.kill();
    let down = [
        call(&client, Method::GET, &play(&vids[0]), &[], None).await,
        call(&client, Method::GET, &play(&vids[0]), &[("Range", "bytes=5-9")], None).await,
        call(&client, Method::HEAD, &play(&vids[0]), &[], None).await,
        call(&client, Method::GET, &format!("{web}/videos/{}", vids[0]), &[], None).await,
    ];
    for r in &down[..2] {
        r.assert_error(500, "004");
    }
    assert_eq!(down[2].status.as_u16(), 500);
    assert_eq!(down[3].status.as_u16(), 500, "the web passes the stream's answer on");
    let pending = {
        let body = json!({ "name": "after" }).to_string().into_bytes();
        let r = call(&client, Method::POST, &format!("{api}/user/alice/videos"), &auth, Some(body))
            .await;
        r.assert_status(201)["id"].as_str().expect("an id").to_owned()
    };
    let r = call(
        &client,
        Method::POST,
        &format!("{stream}/upload/{pending}"),
        &upload,
        Some(fake_mp4(9 << 20)),
    )
    .await;
    assert_eq!(r.status.as_u16(), 500, "an upload into a stopped store: {}", r.body);
    errors.push(r);
    errors.extend(down);
    for r in &errors {
        assert!(r.status.is_client_error() || r.status.is_server_error(), "{}", r.status);
        assert_clean(
            &format!("the {} error body", r.status),
            &String::from_utf8_lossy(&r.raw),
            &secrets,
        );
        for (name, value) in &r.headers {
            let value = value.to_str().unwrap_or_default();
            assert_clean(&format!("the {} header {name}", r.status), value, &secrets);
        }
    }

    for base in [&api, &stream, &scheduler, &web] {
        let r = call(&client, Method::GET, &format!("{base}/metrics"), &[], None).await;
        r.assert_status(200);
        let text = String::from_utf8_lossy(&r.raw).into_owned();
        assert!(text.contains("# TYPE"), "{base}/metrics is Prometheus text");
        assert_clean(&format!("{base}/metrics"), &text, &secrets);
    }

    let log = node.log();
    // The log is the node's: its request lines and the failures it met are in it.
    assert!(log.contains("GET /videos/"), "request lines:\n{log}");
    assert!(log.contains("cannot be opened"), "the failed plays are logged:\n{log}");
    assert_clean("the log", &log, &secrets);
    // Nor the key id in a signed URL's credential, nor the test's raw sign-in password.
    assert!(!log.contains("password1"), "a password in the log");
    drop(node);
}
