//! A small axum application with tower-sessions, run on each keel backend.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::fmt::Debug;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use keel_session_store::{
    MemoryStore, SessionStore, SledConfig, SledStore, StoreConfig, TowerSessions,
};
use tower::ServiceExt;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// Counts visits in the session; `/logout` ends it.
fn app<S: SessionStore + Debug + Clone>(store: TowerSessions<S>) -> Router {
    async fn visit(session: Session) -> String {
        let n: u64 = session.get("visits").await.unwrap().unwrap_or(0) + 1;
        session.insert("visits", n).await.unwrap();
        n.to_string()
    }
    async fn logout(session: Session) -> StatusCode {
        session.flush().await.unwrap();
        StatusCode::NO_CONTENT
    }
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(10)));
    Router::new()
        .route("/", get(visit))
        .route("/logout", get(logout))
        .layer(layer)
}

/// Sends a request with `cookie`; returns the body and any new cookie.
async fn call(app: &Router, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    (String::from_utf8(body.to_vec()).unwrap(), cookie)
}

async fn visits_are_counted_in_the_keel_store<S>(store: S)
where
    S: SessionStore + Debug + Clone,
{
    let app = app(TowerSessions::new(store.clone()));
    let (body, cookie) = call(&app, "/", None).await;
    assert_eq!(body, "1");
    let cookie = cookie.expect("a new session sets a cookie");
    for expected in 2..=4 {
        let (body, _) = call(&app, "/", Some(&cookie)).await;
        assert_eq!(body, expected.to_string());
    }
    // The session lives in the keel store, with the data tower-sessions wrote.
    let sessions = store.by_client("tower-sessions").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0]
            .data
            .get::<serde_json::Value>("visits")
            .unwrap()
            .unwrap_or_default(),
        serde_json::json!(4)
    );
    let ttl = sessions[0].ttl.as_secs();
    assert!((590..=600).contains(&ttl), "expiry carried over: {ttl} s");
    // A stranger gets a session of their own.
    let (body, _) = call(&app, "/", None).await;
    assert_eq!(body, "1");
    assert_eq!(store.len().await.unwrap(), 2);
    // Logging out deletes it from the keel store; the old cookie starts over.
    call(&app, "/logout", Some(&cookie)).await;
    assert_eq!(store.len().await.unwrap(), 1);
    let (body, _) = call(&app, "/", Some(&cookie)).await;
    assert_eq!(body, "1");
}

#[tokio::test]
async fn axum_app_on_the_memory_store() {
    visits_are_counted_in_the_keel_store(MemoryStore::new(StoreConfig::default()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_on_the_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap();
    visits_are_counted_in_the_keel_store(store).await;
}
