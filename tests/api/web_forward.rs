//! `POST /api`: the allow-list, the Origin check, the session cookie and its flags.

use serde_json::json;

use crate::helpers::{Reply, TestApp, read_reply};
use crate::web_support::{Jar, browser_register, call, jar_of, set_cookies};

#[actix_web::test]
async fn register_sets_an_httponly_cookie_and_hides_the_session_id() {
    let app = TestApp::spawn().await;
    let (jar, r) = browser_register(&app, "alice").await;
    r.assert_status(201);
    assert_eq!(r.body, json!({"success": true}));
    assert!(!String::from_utf8_lossy(&r.raw).contains("session_id"));
    let cookies = set_cookies(&r);
    let session = cookies.iter().find(|c| c.starts_with("session=")).expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(flag), "{session} lacks {flag}");
    }
    assert!(jar.session.as_deref().is_some_and(|s| !s.is_empty()));

    // The cookie now authenticates forwarded calls.
    let me = call(&app, &jar, None, json!({"url": "/user/alice", "method": "GET"})).await;
    assert_eq!(me.assert_status(200)["user_name"], "alice");
    assert!(!String::from_utf8_lossy(&me.raw).contains(jar.session.as_deref().unwrap_or("x")));
}

#[actix_web::test]
async fn sign_in_and_logout_set_and_clear_the_cookie() {
    let app = TestApp::spawn().await;
    app.register("bob").await;
    let env = json!({"url": "/user/bob", "method": "POST", "req_body": "{\"pwd\":\"password1\"}"});
    let r = call(&app, &Jar::default(), None, env).await;
    r.assert_status(200);
    assert_eq!(r.body, json!({"success": true}), "a JSON-string req_body works too");
    let session = set_cookies(&r)
        .into_iter()
        .find_map(|c| c.split(';').next()?.strip_prefix("session=").map(str::to_owned))
        .expect("session cookie");
    let jar = Jar { session: Some(session), user: Some("bob".into()) };

    let bad = call(
        &app,
        &Jar::default(),
        None,
        json!({"url": "/user/bob", "method": "POST", "req_body": {"pwd": "wrong-password"}}),
    )
    .await;
    bad.assert_error(401, "002");
    assert!(set_cookies(&bad).is_empty());

    let out =
        call(&app, &jar, Some(&app.web), json!({"url": "/user/bob", "method": "DELETE"})).await;
    out.assert_status(204);
    let cleared = set_cookies(&out);
    let session = cleared.iter().find(|c| c.starts_with("session=")).expect("clearing cookie");
    assert!(session.contains("Max-Age=0") || session.contains("expires"), "{session}");
    // The session is gone at the api too.
    let me = call(&app, &jar, None, json!({"url": "/user/bob", "method": "GET"})).await;
    me.assert_error(401, "002");
}

#[actix_web::test]
async fn api_errors_pass_through_unchanged() {
    let app = TestApp::spawn().await;
    app.register("carol").await;
    let (_, r) = browser_register(&app, "carol").await;
    r.assert_error(409, "007");
    let r = call(
        &app,
        &Jar::default(),
        None,
        json!({"url": "/user/carol/videos/0190a0b0-0000-7000-8000-000000000001", "method": "GET"}),
    )
    .await;
    r.assert_error(404, "006");
    let r =
        call(&app, &Jar::default(), None, json!({"url": "/videos?limit=2", "method": "GET"})).await;
    assert_eq!(r.assert_status(200)["videos"], json!([]));
}

#[actix_web::test]
async fn only_the_api_tables_calls_are_forwarded() {
    let app = TestApp::spawn().await;
    let user = app.register("dave").await;
    let jar = jar_of(&user);
    let scheduler = format!("{}/video-delete-record", app.scheduler);
    for (url, method) in [
        ("http://127.0.0.1:1/user", "GET"),
        (scheduler.as_str(), "GET"),
        ("//evil.example/videos", "GET"),
        ("/user/../healthz", "GET"),
        ("/user/%2e%2e/videos", "GET"),
        ("/user/dave%2Fvideos", "GET"),
        ("/user\\dave", "GET"),
        ("/healthz", "GET"),
        ("/metrics", "GET"),
        ("/video-delete-record", "GET"),
        ("/videos/x/comments", "GET"),
        ("/videos", "POST"),
        ("/user/dave", "PUT"),
        ("/user/dave", "PATCH"),
        ("/user/dave", "get"),
        ("/videos?x=1", "GET"),
    ] {
        let r = call(&app, &jar, None, json!({"url": url, "method": method})).await;
        r.assert_error(400, "001");
    }
    for bad in [json!({"method": "GET"}), json!({"url": "/videos"}), json!([1])] {
        call(&app, &jar, None, bad).await.assert_error(400, "001");
    }
    let raw = app
        .client
        .post(format!("{}/api", app.web))
        .insert_header(("Content-Type", "text/plain"))
        .send_body(r#"{"url":"/videos","method":"GET"}"#)
        .await
        .expect("answers");
    assert_eq!(raw.status().as_u16(), 400);
    let get = app.client.get(format!("{}/api", app.web)).send().await.expect("answers");
    assert_eq!(get.status().as_u16(), 405);
}

#[actix_web::test]
async fn a_foreign_origin_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.register("erin").await;
    let env = json!({"url": "/user/erin/videos", "method": "POST", "req_body": {"name": "x"}});
    let r = call(&app, &jar_of(&user), Some("http://evil.example"), env.clone()).await;
    r.assert_error(403, "005");
    let r = call(&app, &jar_of(&user), Some(&app.web), env.clone()).await;
    r.assert_status(201);
    let r = call(&app, &jar_of(&user), None, env).await;
    r.assert_status(201);
}

/// A sign-in through the web's `/api` from the browser at `address` (the test talks from
/// 127.0.0.1, which the web node appends and the api trusts, so the address is believed).
async fn web_sign_in_from(app: &TestApp, name: &str, pwd: &str, address: &str) -> Reply {
    let envelope =
        json!({"url": format!("/user/{name}"), "method": "POST", "req_body": {"pwd": pwd}});
    let req = app
        .client
        .post(format!("{}/api", app.web))
        .insert_header(("Origin", app.web.clone()))
        .insert_header(("X-Forwarded-For", address.to_owned()));
    read_reply(req.send_json(&envelope).await.expect("the web answers")).await
}

#[actix::test]
async fn the_api_throttles_each_browser_behind_the_web_not_the_web_node() {
    let app = TestApp::spawn().await;
    app.register("bob").await;
    // One browser's 30 failures exhaust its address's budget…
    for i in 0..30 {
        let name = format!("nobody{}", i / 5);
        web_sign_in_from(&app, &name, "wrong-password", "203.0.113.9")
            .await
            .assert_error(401, "002");
    }
    web_sign_in_from(&app, "bob", "password1", "203.0.113.9").await.assert_error(429, "010");
    // …and only its own: another browser behind the same web node signs in (before the web
    // passed the chain on, every browser was the web node's one address: 429 here).
    web_sign_in_from(&app, "bob", "password1", "198.51.100.7").await.assert_status(200);
}
