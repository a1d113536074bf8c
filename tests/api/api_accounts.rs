//! Accounts against hostile and careless clients (issue 8): look-alike names, names and texts
//! nobody can see, the sign-in throttle, and password hashing that must not stall the database.

use awc::http::Method;
use serde_json::json;

use crate::helpers::{Reply, TestApp, enc};

async fn register_as(app: &TestApp, name: &str) -> Reply {
    let body = json!({"user_name": name, "pwd": "password1"});
    app.api(Method::POST, "/user", None, Some(body)).await
}

/// Signs in as `name` with `pwd`, from `client` (sent as `X-Forwarded-For`: the test talks
/// from 127.0.0.1, a trusted proxy, so the address is believed).
async fn sign_in_from(app: &TestApp, name: &str, pwd: &str, client: &str) -> Reply {
    let url = format!("{}/user/{}", app.api, enc(name));
    app.send(
        Method::POST,
        &url,
        Some(("X-Forwarded-For", client.to_owned())),
        Some(json!({"pwd": pwd})),
    )
    .await
}

#[actix_web::test]
async fn look_alike_names_are_one_account_and_find_it() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for twin in ["Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ"] {
        register_as(&app, twin).await.assert_error(409, "007");
    }
    // A Cyrillic а among Latin letters imitates another name: refused outright.
    register_as(&app, "аlice").await.assert_error(400, "001");

    // Any spelling of the key signs in as alice and shows her name as she typed it.
    let r = sign_in_from(&app, "ALICE", "password1", "192.0.2.1").await;
    let session = r.assert_status(200)["session_id"].as_str().unwrap().to_owned();
    for spelling in ["alice", "ALICE", "ａｌｉｃｅ"] {
        let path = format!("/user/{}", enc(spelling));
        let me = app.api(Method::GET, &path, Some(&session), None).await;
        assert_eq!(me.assert_status(200)["user_name"], "alice", "{spelling}");
    }
    let vid = app.create_video(&alice, "clip").await;
    let path = format!("/user/{}/videos", enc("Alice"));
    let mine = app.api(Method::GET, &path, Some(&alice.session), None).await;
    assert_eq!(mine.assert_status(200)["videos"][0]["id"], vid.as_str());
    let one = app.api(Method::GET, &format!("{path}/{vid}"), Some(&alice.session), None).await;
    assert_eq!(one.assert_status(200)["author"], "alice");
    let posted = app
        .api(Method::POST, "/user/ALICE/videos", Some(&session), Some(json!({"name": "b"})))
        .await;
    assert_eq!(posted.assert_status(201)["author"], "alice");

    // An NFD name is normalised, not refused, and its precomposed twin is taken.
    let cafe = register_as(&app, "cafe\u{301}").await;
    let cafe = cafe.assert_status(201)["session_id"].as_str().unwrap().to_owned();
    let me = app.api(Method::GET, &format!("/user/{}", enc("café")), Some(&cafe), None).await;
    assert_eq!(me.assert_status(200)["user_name"], "café");
    register_as(&app, "CAFÉ").await.assert_error(409, "007");
    // Names in one script or in the usual mixtures stay valid.
    for ok in ["小明", "ひらがな漢字", "alice小明", "Ünïcödé"] {
        register_as(&app, ok).await.assert_status(201);
    }
}

#[actix_web::test]
async fn names_without_a_letter_or_digit_and_invisible_texts_are_refused() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for name in [".", "..", "...", "__", "-.-", "\u{3164}\u{3164}", "\u{115F}\u{1160}", "a\u{200B}"]
    {
        register_as(&app, name).await.assert_error(400, "001");
    }
    let videos = format!("/user/{}/videos", alice.name);
    for blank in
        ["\u{200B}\u{200C}", "\u{FEFF}", "\u{2800}\u{2800}", "\u{202E}\u{2066}", "\u{FFA0}"]
    {
        let body = Some(json!({"name": blank}));
        app.api(Method::POST, &videos, Some(&alice.session), body).await.assert_error(400, "001");
    }
    let vid = app.create_video(&alice, "clip").await;
    let comments = format!("/videos/{vid}/comments");
    for blank in ["\u{2800}", " \u{200D} ", "\u{3164}", "\u{2067}\u{2069}", "\u{E0020}"] {
        let body = Some(json!({"content": blank}));
        let r = app.api(Method::POST, &comments, Some(&alice.session), body).await;
        r.assert_error(400, "001");
    }
    let ok = Some(json!({"content": "ok"}));
    app.api(Method::POST, &comments, Some(&alice.session), ok).await.assert_status(201);
}
