//! What every service promises a careful operator: headers on every answer, private files, the
//! internal API's bearer scheme spelled any way RFC 9110 allows.

use std::os::unix::fs::PermissionsExt as _;

use actix_web::http::Method;

use crate::helpers::TestApp;

#[actix::test]
async fn every_answer_of_every_service_says_nosniff() {
    let app = TestApp::spawn().await;
    let missing = format!("/videos/{}", uuid::Uuid::new_v4());
    for url in [
        format!("{}/healthz", app.api),
        format!("{}/videos", app.api),
        format!("{}/nope", app.api),
        format!("{}{missing}", app.stream),
        format!("{}/video-delete-record", app.scheduler),
        format!("{}/", app.web),
        format!("{}/metrics", app.web),
    ] {
        let r = app.send(Method::GET, &url, None, None).await;
        let nosniff = r.headers.get("x-content-type-options").and_then(|v| v.to_str().ok());
        assert_eq!(nosniff, Some("nosniff"), "{url} answered {}", r.status);
    }
}

#[actix::test]
async fn the_database_and_the_token_are_private_to_their_owner() {
    let app = TestApp::spawn_with(crate::helpers::pin_sqlite).await;
    // A write, so that the WAL and shared-memory files exist too.
    app.register("alice").await;
    for name in ["douyin.sqlite3", "douyin.sqlite3-wal", "douyin.sqlite3-shm", "internal.token"] {
        let meta = std::fs::metadata(app.data_dir().join(name)).expect(name);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
}

#[actix::test]
async fn an_older_database_is_made_private_at_start_up() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("douyin.sqlite3");
    std::fs::write(&db, b"").expect("an empty database file");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut cfg = crate::helpers::test_config(dir.path().to_path_buf());
    crate::helpers::pin_sqlite(&mut cfg);
    let _app = TestApp::spawn_config(cfg, dir).await;
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[actix::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = TestApp::spawn().await;
    let url = format!("{}/video-delete-record", app.scheduler);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = ("Authorization", format!("{scheme} {}", app.node.internal_token));
        app.send(Method::GET, &url, Some(auth), None).await.assert_status(200);
    }
    let auth = ("Authorization", format!("Bearer{}", app.node.internal_token));
    app.send(Method::GET, &url, Some(auth), None).await.assert_error(401, "002");
}
