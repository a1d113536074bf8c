//! Authentication carriers and the rules every service shares: header vs cookie, the
//! cross-site rule, ignored `X-User-Name`, unknown paths, wrong methods, health and metrics.

use awc::http::Method;
use serde_json::json;

use crate::helpers::TestApp;

#[actix_web::test]
async fn the_cookie_authenticates_but_not_from_a_foreign_origin() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let cookie = format!("session={}", alice.session);
    let url = format!("{}/user/alice/videos", app.api);
    let post = |origin: Option<&str>| {
        let mut req = app.client.post(&url).insert_header(("Cookie", cookie.clone()));
        if let Some(o) = origin {
            req = req.insert_header(("Origin", o.to_owned()));
        }
        async move {
            crate::helpers::read_reply(req.send_json(&json!({"name": "c"})).await.unwrap()).await
        }
    };
    post(Some("http://evil.example")).await.assert_error(403, "005");
    post(Some("null")).await.assert_error(403, "005");
    post(None).await.assert_status(201);
    post(Some(&app.web)).await.assert_status(201);

    // The header is not a cookie: no ambient authority, so a foreign Origin is fine.
    let r = app
        .client
        .post(&url)
        .insert_header(("X-Session-Id", alice.session.clone()))
        .insert_header(("Origin", "http://evil.example"))
        .send_json(&json!({"name": "c"}))
        .await
        .unwrap();
    crate::helpers::read_reply(r).await.assert_status(201);

    // Reads with the cookie are fine from anywhere.
    let r = app
        .client
        .get(format!("{}/user/alice", app.api))
        .insert_header(("Cookie", cookie.clone()))
        .insert_header(("Origin", "http://evil.example"))
        .send()
        .await
        .unwrap();
    crate::helpers::read_reply(r).await.assert_status(200);
}

#[actix_web::test]
async fn a_client_sent_user_name_header_is_never_trusted() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let r = app
        .client
        .get(format!("{}/user/alice", app.api))
        .insert_header(("X-User-Name", "alice"))
        .send()
        .await
        .unwrap();
    crate::helpers::read_reply(r).await.assert_error(401, "002");
}

#[actix_web::test]
async fn unknown_paths_and_wrong_methods_answer_in_the_error_format() {
    let app = TestApp::spawn().await;
    app.api(Method::GET, "/nope", None, None).await.assert_error(404, "006");
    let r = app.api(Method::PUT, "/videos", None, None).await;
    assert_eq!(r.status.as_u16(), 405);
    assert!(r.headers.get("allow").is_some());
    assert!(r.body["error_code"].is_string());
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json; charset=utf-8");
}

#[actix_web::test]
async fn success_bodies_are_json_with_the_charset() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for r in [
        app.api(Method::GET, "/videos", None, None).await,
        app.api(Method::GET, "/user/alice", Some(&alice.session), None).await,
        app.send(Method::GET, &format!("{}/healthz", app.stream), None, None).await,
    ] {
        r.assert_status(200);
        assert_eq!(r.headers.get("content-type").unwrap(), "application/json; charset=utf-8");
    }
}

#[actix_web::test]
async fn every_service_reports_health_and_metrics() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    for base in [&app.api, &app.stream, &app.scheduler, &app.web] {
        let r = app.send(Method::GET, &format!("{base}/healthz"), None, None).await;
        // API.md "Scale-out": each dependency by name; the web has none of its own.
        let expected = if base == &app.web {
            json!({"status": "ok"})
        } else {
            json!({"status": "ok", "database": "ok", "redis": "off", "blobs": "ok"})
        };
        assert_eq!(r.assert_status(200), &expected, "{base}");
        let m = app.send(Method::GET, &format!("{base}/metrics"), None, None).await;
        assert_eq!(m.status.as_u16(), 200);
        let text = String::from_utf8_lossy(&m.raw);
        assert!(text.contains("douyin_http_requests_total"), "{base}: {text}");
        assert!(text.contains("status=\"200\""));
    }
    let m = app.send(Method::GET, &format!("{}/metrics", app.api), None, None).await;
    let text = String::from_utf8_lossy(&m.raw);
    assert!(text.contains("endpoint=\"/user\""), "requests are counted by route: {text}");
    assert!(text.contains("status=\"201\""));
}

#[actix_web::test]
async fn health_names_a_blob_store_that_is_down_and_stays_200() {
    let app = TestApp::spawn().await;
    let videos = app.data_dir().join("videos");
    std::fs::rename(&videos, app.data_dir().join("elsewhere")).expect("move the video dir away");
    for base in [&app.api, &app.stream, &app.scheduler] {
        let r = app.send(Method::GET, &format!("{base}/healthz"), None, None).await;
        let expected = json!({"status": "ok", "database": "ok", "redis": "off", "blobs": "down"});
        assert_eq!(r.assert_status(200), &expected, "{base}");
    }
    std::fs::rename(app.data_dir().join("elsewhere"), &videos).expect("and back");
    let r = app.send(Method::GET, &format!("{}/healthz", app.stream), None, None).await;
    assert_eq!(r.assert_status(200)["blobs"], "ok");
}
