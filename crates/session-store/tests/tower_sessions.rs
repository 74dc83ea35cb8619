//! A small axum application with tower-sessions, run on each keel backend.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use keel_session_store::{
    Event, MemoryStore, SaveMissing, SessionStore, SledConfig, SledStore, StoreConfig,
    TowerSessions,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_sessions::session::{Id, Record};
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore as _};

#[cfg(any(feature = "postgres", feature = "mysql"))]
#[allow(dead_code, reason = "only the SQL store factories are used here")]
mod conformance;

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
    let (status, body, cookie) = send(app, path, cookie).await;
    assert!(status.is_success(), "{status}: {body}");
    (body, cookie)
}

/// Sends a request with `cookie`; returns the status, body and any new
/// cookie.
async fn send(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap(), cookie)
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
    let stored: serde_json::Value = sessions[0].data.get("data").unwrap().unwrap();
    assert_eq!(stored["visits"], serde_json::json!(4));
    // The keel TTL runs a second past the record's expiry date.
    let ttl = sessions[0].ttl.as_secs();
    assert!((590..=601).contains(&ttl), "expiry carried over: {ttl} s");
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

/// Hands a request's loaded session back to the test, and waits for its
/// go-ahead before writing: a logout runs in between.
#[derive(Clone, Default)]
struct Gate {
    loaded: Arc<Notify>,
    go: Arc<Notify>,
}

/// `/slow` loads the session, waits at the gate, then writes; `/logout`
/// ends the session; `/clear` clears it.
fn racing_app<S: SessionStore + Debug + Clone>(store: TowerSessions<S>, gate: Gate) -> Router {
    async fn slow(
        axum::extract::State(gate): axum::extract::State<Gate>,
        session: Session,
    ) -> String {
        let n: u64 = session.get("visits").await.unwrap().unwrap_or(0);
        gate.loaded.notify_one();
        gate.go.notified().await;
        session.insert("visits", n + 1).await.unwrap();
        "written".into()
    }
    async fn logout(session: Session) -> StatusCode {
        session.flush().await.unwrap();
        StatusCode::NO_CONTENT
    }
    async fn clear(session: Session) -> StatusCode {
        session.clear().await;
        StatusCode::NO_CONTENT
    }
    async fn visit(session: Session) -> String {
        session.insert("visits", 1).await.unwrap();
        "1".into()
    }
    let layer = SessionManagerLayer::new(store).with_secure(false);
    Router::new()
        .route("/", get(visit))
        .route("/slow", get(slow))
        .route("/logout", get(logout))
        .route("/clear", get(clear))
        .with_state(gate)
        .layer(layer)
}

/// A write after a concurrent logout, and a clear under a cookie naming
/// no session: the request succeeds, nothing is resurrected, observers
/// hear each dropped save; with `SaveMissing::Fail` the clear is a 500.
async fn saves_of_missing_sessions_are_dropped<S>(store: S)
where
    S: SessionStore + Debug + Clone,
{
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    let adapter = TowerSessions::new(store.clone()).with_observer("web", move |e: &Event<'_>| {
        if let Event::SaveDropped { name } = e {
            sink.lock().unwrap().push((*name).to_owned());
        }
    });
    let gate = Gate::default();
    let app = racing_app(adapter, gate.clone());
    let (_, cookie) = call(&app, "/", None).await;
    let cookie = cookie.unwrap();
    assert_eq!(store.len().await.unwrap(), 1);
    // A request loads the session; a logout deletes it; the request writes.
    let slow = tokio::spawn({
        let (app, cookie) = (app.clone(), cookie.clone());
        async move { send(&app, "/slow", Some(&cookie)).await }
    });
    gate.loaded.notified().await;
    call(&app, "/logout", Some(&cookie)).await;
    gate.go.notify_one();
    let (status, body, _) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "written"));
    assert_eq!(store.len().await.unwrap(), 0, "the logout stands");
    // A clear under a cookie that names no session.
    let stranger = format!("id={}", Id::default());
    let (status, _, _) = send(&app, "/clear", Some(&stranger)).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        store.len().await.unwrap(),
        0,
        "no session under a chosen id"
    );
    assert_eq!(*heard.lock().unwrap(), ["web", "web"]);
    let strict = racing_app(
        TowerSessions::new(store.clone()).with_save_missing(SaveMissing::Fail),
        Gate::default(),
    );
    let (status, _, _) = send(&strict, "/clear", Some(&stranger)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

/// A record's expiry date comes back exactly; the session is there until
/// that instant and gone from it; saving the same date twice stores the
/// same thing; later saves move the date later.
async fn expiry_dates_round_trip<S>(store: S)
where
    S: SessionStore + Debug + Clone,
{
    let adapter = TowerSessions::new(store.clone());
    let stored = || async {
        store.by_client("tower-sessions").await.unwrap()[0]
            .data
            .clone()
    };
    let at = OffsetDateTime::now_utc()
        + time::Duration::minutes(5)
        + time::Duration::nanoseconds(123_457);
    let mut record = Record {
        id: Id::default(),
        data: HashMap::from([("k".to_owned(), serde_json::json!(1))]),
        expiry_date: at,
    };
    adapter.create(&mut record).await.unwrap();
    let loaded = adapter.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.expiry_date, at, "exactly the date given");
    assert_eq!(loaded.data, record.data);
    // An AtDateTime expiry saved twice is stored identically.
    adapter.save(&record).await.unwrap();
    let first = stored().await;
    adapter.save(&record).await.unwrap();
    assert_eq!(stored().await, first);
    // Successive saves, a nanosecond apart, keep their order.
    for step in 1..=3 {
        record.expiry_date = at + time::Duration::nanoseconds(step);
        adapter.save(&record).await.unwrap();
        let loaded = adapter.load(&record.id).await.unwrap().unwrap();
        assert_eq!(loaded.expiry_date, record.expiry_date);
    }
    // Never before the date: present whenever the date is still ahead
    // after the call returns, absent once it has passed.
    let soon = OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    let mut short = Record {
        id: Id::default(),
        data: HashMap::new(),
        expiry_date: soon,
    };
    adapter.create(&mut short).await.unwrap();
    loop {
        let loaded = adapter.load(&short.id).await.unwrap();
        let now = OffsetDateTime::now_utc();
        if now >= soon {
            break;
        }
        assert!(loaded.is_some(), "gone {} before its date", soon - now);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        adapter.load(&short.id).await.unwrap().is_none(),
        "gone at its date"
    );
}

/// Every scenario on one backend.
async fn adapter_scenarios<S>(store: impl Fn() -> S)
where
    S: SessionStore + Debug + Clone,
{
    visits_are_counted_in_the_keel_store(store()).await;
    saves_of_missing_sessions_are_dropped(store()).await;
    expiry_dates_round_trip(store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_on_the_memory_store() {
    adapter_scenarios(|| MemoryStore::new(StoreConfig::default()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_on_the_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    adapter_scenarios(|| {
        let path = dir.path().join(
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        );
        SledStore::open(SledConfig::new(path), StoreConfig::default()).unwrap()
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_on_the_postgres_store() {
    let f = conformance::sql::pg::Factory::default();
    adapter_scenarios(|| f.make_live()).await;
    f.drop_schemas().await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_on_the_mysql_store() {
    let f = conformance::sql::my::Factory::default();
    adapter_scenarios(|| f.make_live()).await;
    f.drop_schemas().await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_app_on_the_redis_store() {
    let url =
        std::env::var("KEEL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(url).unwrap();
    let prefix = format!("keel-test-{:016x}:", fastrand::u64(..));
    let n = std::sync::atomic::AtomicUsize::new(0);
    let make = || {
        let prefix = format!(
            "{prefix}{}:",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let redis = client.get_connection_manager().await.unwrap();
                keel_session_store::RedisStore::builder(
                    redis,
                    keel_session_store::RedisConfig::default().with_prefix(prefix),
                    StoreConfig::default(),
                )
                .build()
                .await
                .unwrap()
            })
        })
    };
    adapter_scenarios(make).await;
    let mut redis = client.get_connection_manager().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}
