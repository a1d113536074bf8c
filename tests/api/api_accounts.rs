//! Accounts against hostile and careless clients (issue 8): look-alike names, names and texts
//! nobody can see, the sign-in throttle, and password hashing that must not stall the database.

use awc::http::Method;
use serde_json::json;

use crate::helpers::{Reply, TestApp};

async fn register_as(app: &TestApp, name: &str) -> Reply {
    let body = json!({"user_name": name, "pwd": "password1"});
    app.api(Method::POST, "/user", None, Some(body)).await
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
