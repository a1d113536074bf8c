//! `deploy/cluster.sh` as an operator runs it on a machine without PostgreSQL or Redis (its
//! opt-outs `DOUYIN_CLUSTER_PG=0 DOUYIN_CLUSTER_REDIS=0`: one SQLite file shared by the nodes of
//! this host; the default, full cluster is `cluster_load`'s): Garage, 2 api, 2 stream,
//! 2 scheduler and 2 web processes of this binary, nginx in front, used through nginx's one
//! public URL the way a browser uses the site. Then one stream node and one api node are killed
//! (`SIGKILL`), and playback and the feed still answer: nginx retries each request that met a
//! dead node on the live one, which its access log shows. `down` leaves nothing running. Without
//! nginx or Garage the test skips with the reason, and fails under `CI=true`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster_support::{Browser, Cluster, cookies, gone, have_tools};
use crate::helpers::read_reply;
use crate::stream_support::fake_mp4;

const USER: &str = "cluster_user";
const VIDEO_NAME: &str = "Seen from every node";

#[actix::test]
async fn a_cluster_on_loopback_serves_through_nginx_and_survives_a_killed_api_and_stream_node() {
    if !have_tools(false, false) {
        return;
    }
    let t0 = Instant::now();
    let mut cluster = Cluster::up(&[("DOUYIN_CLUSTER_PG", "0"), ("DOUYIN_CLUSTER_REDIS", "0")]);
    let t_up = t0.elapsed();
    let client =
        awc::Client::builder().timeout(Duration::from_secs(20)).disable_redirects().finish();
    let mut browser = Browser { client, site: cluster.site().to_owned(), cookie: None };

    // Register, then sign in again: the web node moves each session into the cookie.
    let r =
        browser.api("/user", "POST", Some(json!({"user_name": USER, "pwd": "password1"}))).await;
    r.assert_status(201);
    assert!(r.body.get("session_id").is_none(), "the session stays in the cookie");
    let r = browser.api(&format!("/user/{USER}"), "POST", Some(json!({"pwd": "password1"}))).await;
    r.assert_status(200);
    browser.cookie = Some(cookies(&r));

    let r = browser
        .api(&format!("/user/{USER}/videos"), "POST", Some(json!({"name": VIDEO_NAME})))
        .await;
    let vid = r.assert_status(201)["id"].as_str().expect("an id").to_owned();

    // The upload goes through nginx straight to a stream node, and on into Garage.
    let data = fake_mp4(300_000);
    let res = browser
        .client
        .post(format!("{}/upload/{vid}", browser.site))
        .insert_header(("Cookie", browser.cookie.clone().expect("signed in")))
        .insert_header(("Origin", &*browser.site))
        .insert_header(("Content-Type", "video/mp4"))
        .send_body(data.clone())
        .await
        .expect("nginx answers");
    let r = read_reply(res).await;
    assert_eq!(r.assert_status(201)["status"], "ready");
    browser.play(&vid, &data, 1000, 99_999).await;

    let comment = "from behind nginx";
    let r = browser
        .api(&format!("/videos/{vid}/comments"), "POST", Some(json!({"content": comment})))
        .await;
    r.assert_status(201);

    // One stream node and one api node die without a word.
    let (dead_stream, dead_api) = (cluster.addr("stream-1"), cluster.addr("api-1"));
    let (live_stream, live_api) = (cluster.addr("stream-2"), cluster.addr("api-2"));
    for name in ["stream-1", "api-1"] {
        let pid = cluster.pid(name);
        let killed = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        assert!(killed.is_ok_and(|s| s.success()), "kill -KILL {pid}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(gone(cluster.pid("stream-1")) && gone(cluster.pid("api-1"))) {
        assert!(Instant::now() < deadline, "the killed nodes are still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_kill = Instant::now();

    // Round-robin sends some of these to the dead nodes first; every one must still succeed.
    for i in 0..6 {
        browser.play(&vid, &data, i * 40_000, i * 40_000 + 30_000).await;
    }
    for _ in 0..4 {
        browser.feed_has(&vid).await;
    }
    for _ in 0..2 {
        let r = browser.get("/", &[]).await;
        assert_eq!(r.status.as_u16(), 200);
        assert!(String::from_utf8_lossy(&r.raw).contains(VIDEO_NAME), "the home page's feed");
    }
    let r = browser.api(&format!("/videos/{vid}/comments"), "GET", None).await;
    assert_eq!(r.assert_status(200)["comments"][0]["content"], comment);
    let after_kill = t_kill.elapsed();

    // They succeeded because nginx retried them, not because round-robin missed the dead nodes:
    // its log has requests that tried the dead node first and were answered by the live one.
    let log = cluster.nginx_log();
    let retried = |dead: &str, live: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("upstream=[{dead}, {live}]")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let playback = retried(&dead_stream, &live_stream);
    assert!(
        playback
            .iter()
            .any(|l| l.contains(&format!("\"GET /videos/{vid} ")) && l.contains("\" 206 ")),
        "no playback retried from {dead_stream} on {live_stream}:\n{log}"
    );
    let api = retried(&dead_api, &live_api);
    assert!(
        api.iter().any(|l| l.contains("\" 200 ")),
        "no api call retried from {dead_api} on {live_api}:\n{log}"
    );
    eprintln!("retried by nginx:\n{}\n{}", playback.join("\n"), api.join("\n"));

    // `down` stops every process it started and removes the run dir.
    let t_down = cluster.down_and_check();
    let public = browser.site.trim_start_matches("http://").to_owned();
    assert!(std::net::TcpStream::connect(&public).is_err(), "nginx still listens");
    eprintln!(
        "timings: up {t_up:?}, requests after the kill {after_kill:?}, down {t_down:?}, \
         total {:?}",
        t0.elapsed()
    );
}
