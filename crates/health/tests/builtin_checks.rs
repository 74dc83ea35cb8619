//! The session-store and breaker checks, and the probes mounted in axum.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use keel_breaker::{BreakerConfig, BreakerRegistry, CircuitBreaker};
use keel_health::checks::{BreakerCheck, BreakerRegistryCheck, SessionStoreCheck};
use keel_health::{HealthCheck, HealthConfig, HealthRegistry, HealthService, Status};
use keel_session_store::{MemoryStore, NewSession, SessionStore, StoreConfig};
use tower::ServiceExt;

#[tokio::test]
async fn a_session_store_reports_its_session_count() {
    let store = std::sync::Arc::new(MemoryStore::new(StoreConfig::default()).unwrap());
    store
        .create(NewSession::new("alice", "http"))
        .await
        .unwrap();
    let outcome = SessionStoreCheck::new(std::sync::Arc::clone(&store))
        .check()
        .await;
    assert_eq!(outcome.status(), Status::Healthy);
    assert_eq!(outcome.details()["sessions"], 1);
}

#[tokio::test]
async fn a_breaker_is_judged_by_its_state() {
    let breaker = CircuitBreaker::builder(BreakerConfig::default())
        .name("orders")
        .build()
        .unwrap();
    let check = BreakerCheck::new(breaker.clone());
    assert_eq!(check.check().await.status(), Status::Healthy);
    breaker.force_open();
    let outcome = check.check().await;
    assert_eq!(outcome.status(), Status::Unhealthy);
    assert_eq!(outcome.message(), Some("orders is forced-open"));
    assert_eq!(outcome.details()["breaker"]["state"], "forced_open");
}

#[tokio::test]
async fn a_breaker_registry_is_as_bad_as_its_worst_breaker() {
    let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default()).unwrap();
    registry.get("eu");
    registry.get("us").force_open();
    let outcome = BreakerRegistryCheck::new(registry).check().await;
    assert_eq!(outcome.status(), Status::Unhealthy);
    assert_eq!(outcome.details()["breakers"]["eu"]["state"], "closed");
    assert_eq!(outcome.details()["breakers"]["us"]["state"], "forced_open");
    assert!(outcome.message().unwrap().contains("us is forced-open"));
}

#[tokio::test]
async fn the_probes_answer_inside_an_axum_router() {
    let health = HealthRegistry::builder(HealthConfig::new(
        Duration::from_secs(60),
        Duration::from_secs(1),
    ))
    .check("db", || async { keel_health::Outcome::healthy() })
    .build()
    .unwrap();
    health.refresh().await;
    let app: axum::Router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello" }))
        .merge(keel_health::router(HealthService::new(health.clone())));
    let ask = |path: &'static str| {
        app.clone().oneshot(
            http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
    };
    assert_eq!(ask("/health/ready").await.unwrap().status(), 200);
    assert_eq!(ask("/").await.unwrap().status(), 200);
    health.drain();
    assert_eq!(ask("/health/ready").await.unwrap().status(), 503);
    assert_eq!(ask("/health").await.unwrap().status(), 200);
}
