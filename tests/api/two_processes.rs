//! Two processes on one data dir, as on one host behind a balancer: what one does takes effect
//! on the other at once (API.md, "Guarantees across nodes"). Before the shared change counters
//! the other process's caches hid a logout for up to 2 s and a deletion for up to 1 s.

use std::time::Duration;

use awc::http::Method;
use serde_json::{Value, json};

use crate::helpers::{Reply, read_reply, send_with};
use crate::process_support::{Ports, Proc};
use crate::stream_support::fake_mp4;

/// One process's api (and, for `a`, stream) base URL.
struct Node<'a> {
    client: &'a awc::Client,
    api: String,
    stream: String,
}

impl Node<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let url = format!("{}{path}", self.api);
        send_with(self.client, method, &url, session.map(|s| ("X-Session-Id", s.to_owned())), body)
            .await
    }

    async fn feed_ids(&self) -> Vec<String> {
        let r = self.call(Method::GET, "/videos?limit=50", None, None).await;
        let videos = r.assert_status(200)["videos"].as_array().expect("videos").clone();
        videos.iter().map(|v| v["id"].as_str().expect("an id").to_owned()).collect()
    }
}

async fn wait_for_api(client: &awc::Client, api: &str, proc: &Proc) {
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{api}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{api} never answered:\n{}", proc.log());
}

#[actix::test]
async fn a_logout_and_a_deletion_on_one_process_take_effect_at_once_on_the_other() {
    let data = tempfile::tempdir().unwrap();
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let mut all = Proc::spawn(data.path(), Ports::fresh(), &[], &[]);
    all.wait_healthy(&client).await;
    let role_api = ["--role".to_owned(), "api".to_owned()];
    let other = Proc::spawn(data.path(), Ports::fresh(), &role_api, &[]);
    wait_for_api(&client, &other.api(), &other).await;
    let a = Node { client: &client, api: all.api(), stream: all.stream() };
    let b = Node { client: &client, api: other.api(), stream: String::new() };

    // Logouts on A, each seen by B's very next request although B has the session cached.
    for i in 0..20 {
        let name = format!("user{i}");
        let body = json!({"user_name": name, "pwd": "password1"});
        let r = a.call(Method::POST, "/user", None, Some(body)).await;
        let session = r.assert_status(201)["session_id"].as_str().unwrap().to_owned();
        let me = format!("/user/{name}");
        b.call(Method::GET, &me, Some(&session), None).await.assert_status(200);
        b.call(Method::GET, &me, Some(&session), None).await.assert_status(200);
        a.call(Method::DELETE, &me, Some(&session), None).await.assert_status(204);
        b.call(Method::GET, &me, Some(&session), None).await.assert_error(401, "002");
    }

    // Deletions on A, each gone from B's feed at once although B has the feed cached.
    let body = json!({"user_name": "owner", "pwd": "password1"});
    let r = a.call(Method::POST, "/user", None, Some(body)).await;
    let session = r.assert_status(201)["session_id"].as_str().unwrap().to_owned();
    for i in 0..10 {
        let body = json!({"name": format!("clip {i}")});
        let r = a.call(Method::POST, "/user/owner/videos", Some(&session), Some(body)).await;
        let vid = r.assert_status(201)["id"].as_str().unwrap().to_owned();
        let res = client
            .post(format!("{}/upload/{vid}", a.stream))
            .insert_header(("X-Session-Id", session.clone()))
            .insert_header(("Content-Type", "video/mp4"))
            .send_body(fake_mp4(10_000 + i))
            .await
            .expect("the stream answers");
        read_reply(res).await.assert_status(201);
        // Ready on A: in B's feed at once too, then cached there.
        assert!(b.feed_ids().await.contains(&vid), "{vid} became ready: B's feed shows it");
        assert!(b.feed_ids().await.contains(&vid));
        let path = format!("/user/owner/videos/{vid}");
        a.call(Method::DELETE, &path, Some(&session), None).await.assert_status(204);
        assert!(!b.feed_ids().await.contains(&vid), "{vid} deleted on A is still in B's feed");
        b.call(Method::GET, &path, None, None).await.assert_error(404, "006");
    }
}

#[actix::test]
async fn processes_starting_together_on_a_new_data_dir_all_come_up() {
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    // Before the schema version was read inside each step's lock, one or two of four died in
    // two rounds of three ("table users already exists", "duplicate column name"); then one
    // died writing the internal token another had just renamed away.
    for _ in 0..3 {
        let data = tempfile::tempdir().unwrap();
        let role_api = ["--role".to_owned(), "api".to_owned()];
        let procs: Vec<Proc> =
            (0..4).map(|_| Proc::spawn(data.path(), Ports::fresh(), &role_api, &[])).collect();
        for p in &procs {
            wait_for_api(&client, &p.api(), p).await;
        }
        // And with one internal token between them (each would otherwise refuse the others'
        // calls to the scheduler API).
        let token = std::fs::read_to_string(data.path().join("internal.token")).unwrap();
        assert_eq!(token.trim().len(), 43);
        let leftovers: Vec<_> = std::fs::read_dir(data.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("internal.token."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
