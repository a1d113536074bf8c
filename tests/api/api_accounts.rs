//! Accounts against hostile and careless clients (issue 8): look-alike names, names and texts
//! nobody can see, the sign-in throttle, and password hashing that must not stall the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::clock::ManualClock;
use awc::http::Method;
use serde_json::{Value, json};

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

fn retry_after(r: &Reply) -> u64 {
    let v = r.headers.get("retry-after").expect("a Retry-After header");
    v.to_str().unwrap().parse().expect("whole seconds")
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

#[actix_web::test]
async fn wrong_passwords_slow_down_per_account_and_per_address() {
    let clock = Arc::new(ManualClock::new());
    let app = TestApp::spawn_with(|c| c.clock = clock.clone().into()).await;
    app.register("alice").await;
    app.register("bob").await;
    let (stranger, owner) = ("198.51.100.7", "192.0.2.10");
    for _ in 0..5 {
        sign_in_from(&app, "alice", "wrong-password", stranger).await.assert_error(401, "002");
    }
    let throttled = sign_in_from(&app, "alice", "wrong-password", stranger).await;
    throttled.assert_error(429, "010");
    assert_eq!(retry_after(&throttled), 1);
    // The account waits, whoever asks and whatever the password, but not for long.
    let r = sign_in_from(&app, "ALICE", "password1", owner).await;
    r.assert_error(429, "010");
    // Another account from the same address still works.
    sign_in_from(&app, "bob", "password1", stranger).await.assert_status(200);

    // The stranger keeps trying at every chance: the wait doubles up to its cap.
    let mut waits = Vec::new();
    for _ in 0..8 {
        let r = sign_in_from(&app, "alice", "wrong-password", stranger).await;
        let wait = retry_after(&r);
        waits.push(wait);
        clock.advance(Duration::from_secs(wait));
        sign_in_from(&app, "alice", "wrong-password", stranger).await.assert_error(401, "002");
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30], "exponential, capped at 30 s");
    // After the cap the owner signs in, and the success clears the account's count.
    clock.advance(Duration::from_secs(30));
    sign_in_from(&app, "alice", "password1", owner).await.assert_status(200);
    for _ in 0..5 {
        sign_in_from(&app, "alice", "wrong-password", owner).await.assert_error(401, "002");
    }

    // The address's own budget: 30 failures, whichever accounts they name.
    for i in 0..30 {
        let name = format!("nobody{}", i / 5);
        let r = sign_in_from(&app, &name, "wrong-password", "203.0.113.9").await;
        r.assert_error(401, "002");
    }
    let r = sign_in_from(&app, "bob", "password1", "203.0.113.9").await;
    r.assert_error(429, "010");
    sign_in_from(&app, "bob", "password1", owner).await.assert_status(200);
}

#[actix_web::test]
async fn database_reads_stay_fast_while_passwords_are_hashed() {
    const SIGN_INS: usize = 8;
    let app = TestApp::spawn().await;
    let users: Vec<String> = (0..SIGN_INS).map(|i| format!("user{i}")).collect();
    for u in &users {
        app.register(u).await;
    }
    let started = Instant::now();
    sign_in_from(&app, &users[0], "password1", "192.0.2.1").await.assert_status(200);
    let one_sign_in = started.elapsed();

    let stop = std::sync::atomic::AtomicBool::new(false);
    let signing = futures_util::future::join_all(users.iter().map(|u| {
        let stop = &stop;
        let app = &app;
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sign_in_from(app, u, "password1", "192.0.2.1").await.assert_status(200);
                n += 1;
            }
            n
        }
    }));
    let reading = async {
        // Let the sign-ins fill the hashing threads first.
        actix_web::rt::time::sleep(one_sign_in).await;
        let mut took = Vec::new();
        for _ in 0..40 {
            let t = Instant::now();
            app.api(Method::GET, "/videos", None, None).await.assert_status(200);
            took.push(t.elapsed());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        took.sort();
        took
    };
    let (signed, took) = futures_util::future::join(signing, reading).await;
    let p50 = took[took.len() / 2];
    assert!(signed.iter().sum::<usize>() >= SIGN_INS, "the sign-ins ran: {signed:?}");
    assert!(
        p50 < one_sign_in / 4,
        "GET /videos p50 {p50:?} while {SIGN_INS} sign-ins run; one sign-in takes {one_sign_in:?}"
    );
}

#[actix_web::test]
async fn an_unknown_user_costs_as_much_as_a_wrong_password() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let t = Instant::now();
        sign_in_from(&app, "alice", "wrong-password", "192.0.2.1").await.assert_error(401, "002");
        wrong.push(t.elapsed());
        let t = Instant::now();
        let nobody = format!("nobody{i}");
        sign_in_from(&app, &nobody, "wrong-password", "192.0.2.1").await.assert_error(401, "002");
        unknown.push(t.elapsed());
    }
    wrong.sort();
    unknown.sort();
    let ratio = unknown[2].as_secs_f64() / wrong[2].as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "unknown {unknown:?} vs wrong password {wrong:?}");
}

#[actix_web::test]
async fn a_flood_of_sign_ins_is_answered_and_never_exhausts_the_server() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let floods = (0..60).map(|i| {
        let app = &app;
        async move { sign_in_from(app, &format!("flood{i}"), "wrong-password", "192.0.2.200").await }
    });
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for r in futures_util::future::join_all(floods).await {
        let code = r.status.as_u16();
        assert!(matches!(code, 401 | 429 | 503), "{code}: {}", r.body);
        if code != 401 {
            assert!(r.headers.get("retry-after").is_some(), "{code} says when to retry");
        }
        *seen.entry(code).or_default() += 1;
    }
    assert!(seen.get(&401).copied().unwrap_or(0) >= 1, "{seen:?}");
    // The owner, from elsewhere, is not affected.
    let ok = sign_in_from(&app, "alice", "password1", "192.0.2.1").await;
    assert_eq!(ok.assert_status(200)["success"], Value::Bool(true));
}
