//! `/user` and `/user/:username`: registration, sign-in, who-am-I, sign-out and validation.

use awc::http::Method;
use serde_json::json;

use crate::helpers::{TestApp, enc};

#[actix_web::test]
async fn register_signs_in_and_a_taken_name_is_409() {
    let app = TestApp::spawn().await;
    let r = app
        .api(Method::POST, "/user", None, Some(json!({"user_name": "小明", "pwd": "secret12"})))
        .await;
    let body = r.assert_status(201);
    assert_eq!(body["success"], true);
    let session = body["session_id"].as_str().unwrap();
    assert!(session.len() >= 22, "at least 128 bits of randomness");

    let me = app.api(Method::GET, &format!("/user/{}", enc("小明")), Some(session), None).await;
    assert_eq!(me.assert_status(200)["user_name"], "小明");
    assert!(me.body["id"].is_i64());

    let again = app
        .api(Method::POST, "/user", None, Some(json!({"user_name": "小明", "pwd": "other123"})))
        .await;
    again.assert_error(409, "007");
}

#[actix_web::test]
async fn registration_validates_names_and_passwords() {
    let app = TestApp::spawn().await;
    let long_name = "x".repeat(33);
    let bad_names = ["a", "", "a b", "a/b", "<script>", long_name.as_str(), "tab\tname", "😀😀"];
    for name in bad_names {
        let r = app
            .api(Method::POST, "/user", None, Some(json!({"user_name": name, "pwd": "secret12"})))
            .await;
        r.assert_error(400, "001");
    }
    for pwd in ["12345".to_owned(), "p".repeat(129)] {
        let r = app
            .api(Method::POST, "/user", None, Some(json!({"user_name": "bob", "pwd": pwd})))
            .await;
        r.assert_error(400, "001");
    }
    let ok_names = ["ab", "alice_01", "a.b-c", "Ünïcödé", &"y".repeat(32)];
    for name in ok_names {
        let r = app
            .api(
                Method::POST,
                "/user",
                None,
                Some(json!({"user_name": name, "pwd": "p".repeat(128)})),
            )
            .await;
        r.assert_status(201);
    }
}

#[actix_web::test]
async fn malformed_and_oversized_bodies_get_the_error_format() {
    let app = TestApp::spawn().await;
    let url = format!("{}/user", app.api);
    let send_raw = |ct: &'static str, body: String| {
        let req = app.client.post(&url).insert_header(("content-type", ct));
        async move { crate::helpers::read_reply(req.send_body(body).await.unwrap()).await }
    };
    send_raw("application/json", "{not json".into()).await.assert_error(400, "001");
    send_raw("application/json", r#"{"user_name": 5, "pwd": "secret12"}"#.into())
        .await
        .assert_error(400, "001");
    send_raw("application/json", r#"{"pwd": "secret12"}"#.into()).await.assert_error(400, "001");
    send_raw("text/plain", r#"{"user_name":"bob","pwd":"secret12"}"#.into())
        .await
        .assert_error(400, "001");
    let huge = format!(r#"{{"user_name":"bob","pwd":"{}"}}"#, "p".repeat(70 * 1024));
    send_raw("application/json", huge).await.assert_error(413, "008");
    // Nothing was created by any of these.
    let r = app.api(Method::POST, "/user/bob", None, Some(json!({"pwd": "secret12"}))).await;
    r.assert_error(401, "002");
}

#[actix_web::test]
async fn sign_in_answers_the_same_for_unknown_user_and_wrong_password() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let ok = app.api(Method::POST, "/user/alice", None, Some(json!({"pwd": "password1"}))).await;
    assert_eq!(ok.assert_status(200)["success"], true);
    assert!(ok.body["session_id"].is_string());

    let wrong = app.api(Method::POST, "/user/alice", None, Some(json!({"pwd": "password2"}))).await;
    wrong.assert_error(401, "002");
    let unknown =
        app.api(Method::POST, "/user/nobody", None, Some(json!({"pwd": "password1"}))).await;
    unknown.assert_error(401, "002");
    assert_eq!(wrong.body, unknown.body, "no user enumeration through the message");

    let mismatch = app
        .api(
            Method::POST,
            "/user/alice",
            None,
            Some(json!({"pwd": "password1", "user_name": "bob"})),
        )
        .await;
    mismatch.assert_error(400, "001");
    let same = app
        .api(
            Method::POST,
            "/user/alice",
            None,
            Some(json!({"pwd": "password1", "user_name": "alice"})),
        )
        .await;
    same.assert_status(200);
    let bad_path = app.api(Method::POST, "/user/a", None, Some(json!({"pwd": "password1"}))).await;
    bad_path.assert_error(400, "001");
}

#[actix_web::test]
async fn get_user_needs_the_users_own_session() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.api(Method::GET, "/user/alice", None, None).await.assert_error(401, "002");
    app.api(Method::GET, "/user/alice", Some("not-a-session"), None).await.assert_error(401, "002");
    let fake = "A".repeat(43);
    app.api(Method::GET, "/user/alice", Some(&fake), None).await.assert_error(401, "002");
    app.api(Method::GET, "/user/alice", Some(&bob.session), None).await.assert_error(403, "005");
    app.api(Method::GET, "/user/a", Some(&alice.session), None).await.assert_error(400, "001");
    app.api(Method::GET, "/user/alice", Some(&alice.session), None).await.assert_status(200);
}

#[actix_web::test]
async fn logout_revokes_the_presented_session_at_once() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let second =
        app.api(Method::POST, "/user/alice", None, Some(json!({"pwd": "password1"}))).await;
    let second = second.body["session_id"].as_str().unwrap().to_owned();

    app.api(Method::DELETE, "/user/alice", None, None).await.assert_error(401, "002");
    app.api(Method::DELETE, "/user/alice", Some(&bob.session), None).await.assert_error(403, "005");
    let r = app.api(Method::DELETE, "/user/alice", Some(&alice.session), None).await;
    assert_eq!(r.status.as_u16(), 204);
    assert!(r.raw.is_empty(), "204 has no body");
    app.api(Method::GET, "/user/alice", Some(&alice.session), None).await.assert_error(401, "002");
    // Only the presented session ends; the other sign-in still works.
    app.api(Method::GET, "/user/alice", Some(&second), None).await.assert_status(200);
}

/// Issue 8 item 2: `DELETE /user/bob` raced with GETs on the same session; from the 204 on,
/// the session is 401 on every api route.
#[actix_web::test]
async fn logout_wins_every_race_with_requests_on_the_same_session() {
    use actors::session::{CreateSession, ResolveSession, SessionToken};
    const TRIALS: usize = 300;
    let app = TestApp::spawn().await;
    let bob = app.register("bob").await;
    // Sessions are made by the actor directly: 300 sign-ins would spend most of the test in
    // argon2, and the race is between the logout and the requests, not the sign-in.
    let sessions = app.node.sessions().unwrap();
    let token = SessionToken::from_client(&bob.session).unwrap();
    let user = sessions.send(ResolveSession { token }).await.unwrap().unwrap().unwrap();
    let mut survived = Vec::new();
    for trial in 0..TRIALS {
        let token = sessions.send(CreateSession { user: user.clone() }).await.unwrap().unwrap();
        let s = token.expose();
        let logout = app.api(Method::DELETE, "/user/bob", Some(s), None);
        let gets = futures_util::future::join_all(
            (0..5).map(|_| app.api(Method::GET, "/user/bob", Some(s), None)),
        );
        let (logout, _) = futures_util::future::join(logout, gets).await;
        assert_eq!(logout.status.as_u16(), 204, "trial {trial}: {}", logout.body);
        let me = app.api(Method::GET, "/user/bob", Some(s), None).await;
        let post =
            app.api(Method::POST, "/user/bob/videos", Some(s), Some(json!({"name": "late"}))).await;
        if me.status.as_u16() != 401 || post.status.as_u16() != 401 {
            survived.push((trial, me.status.as_u16(), post.status.as_u16()));
        }
    }
    assert!(
        survived.is_empty(),
        "{}/{TRIALS} sessions worked after their logout's 204: {survived:?}",
        survived.len()
    );
}

#[actix_web::test]
async fn an_expired_session_is_401() {
    let clock = std::sync::Arc::new(actors::clock::ManualClock::new());
    let app = TestApp::spawn_with(|c| {
        c.session_ttl_secs = 1;
        c.clock = clock.clone().into();
    })
    .await;
    let alice = app.register("alice").await;
    app.api(Method::GET, "/user/alice", Some(&alice.session), None).await.assert_status(200);
    clock.advance(std::time::Duration::from_millis(1001));
    app.api(Method::GET, "/user/alice", Some(&alice.session), None).await.assert_error(401, "002");
}

#[actix_web::test]
async fn no_password_or_session_id_is_stored_in_plain_text() {
    let app = TestApp::spawn_with(crate::helpers::pin_sqlite).await;
    let pwd = "Very-Distinctive-Passw0rd";
    let r =
        app.api(Method::POST, "/user", None, Some(json!({"user_name": "carol", "pwd": pwd}))).await;
    let session = r.assert_status(201)["session_id"].as_str().unwrap().to_owned();
    app.api(Method::POST, "/user/carol", None, Some(json!({"pwd": pwd}))).await.assert_status(200);
    // Every file in the data dir, the WAL included.
    let mut files = vec![app.data_dir()];
    let mut scanned = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        for secret in [pwd, session.as_str()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret in plain text",
                p.display()
            );
        }
        scanned += 1;
    }
    assert!(scanned >= 2, "the database files were scanned");
}
