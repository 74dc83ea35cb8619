//! keel-health against the real PostgreSQL: the pool check, a dead
//! endpoint reported with its cause and without its password, and a
//! breaker that opens flipping readiness at once.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use http_body_util::BodyExt;
use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use keel_health::checks::PoolCheck;
use keel_health::{HealthConfig, HealthRegistry, HealthService, Signal, Status};
use keel_pool_core::{DatabaseUrl, PgManager, Pool, op, sqlx};
use keel_telemetry::BreakerMetrics;
use keel_tests::{POSTGRES_URL, dead_port, install_sql_helpers};
use tower::{ServiceBuilder, ServiceExt};

async fn pool(url: &str) -> Pool<PgManager> {
    let url: DatabaseUrl = url.parse().unwrap();
    Pool::builder(PgManager::from_url(&url).unwrap())
        .name("orders")
        .max_size(4)
        .connect_timeout(Duration::from_secs(2))
        .wait_timeout(Duration::from_secs(3))
        .build()
        .await
        .unwrap()
}

/// Checks every hour: anything that changes within a test changed by a
/// refresh or a signal, not by the schedule.
fn hourly() -> HealthConfig {
    HealthConfig::new(Duration::from_secs(3600), Duration::from_secs(5))
}

async fn get(probes: &HealthService, path: &str) -> (u16, serde_json::Value) {
    let response = probes
        .clone()
        .oneshot(http::Request::get(path).body(()).unwrap())
        .await
        .unwrap();
    let code = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_check_is_healthy_with_its_stats() {
    let health = HealthRegistry::builder(hourly())
        .check("orders-db", PoolCheck::new(pool(POSTGRES_URL).await))
        .build()
        .unwrap();
    health.refresh().await;
    let probes = HealthService::new(health);
    let (code, report) = get(&probes, "/health/detailed").await;
    assert_eq!(code, 200, "{report}");
    let check = &report["checks"][0];
    assert_eq!(check["status"], "healthy", "{report}");
    assert_eq!(check["details"]["pool"]["name"], "orders");
    assert_eq!(check["details"]["pool"]["endpoint"], "127.0.0.1:5432/test");
    assert_eq!(check["details"]["pool"]["max_size"], 4);
    assert!(check["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(get(&probes, "/health/ready").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_is_unhealthy_with_its_cause_and_no_password() {
    let url = format!("postgres://app:s3cret-pw@127.0.0.1:{}/orders", dead_port());
    let health = HealthRegistry::builder(hourly())
        .check("orders-db", PoolCheck::new(pool(&url).await))
        .build()
        .unwrap();
    health.refresh().await;
    assert_eq!(health.status(), Status::Unhealthy);
    let probes = HealthService::new(health);
    let (code, report) = get(&probes, "/health/detailed").await;
    assert_eq!(code, 503);
    let message = report["checks"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("could not open a database connection"),
        "{message}"
    );
    assert!(message.contains("/orders"), "names the endpoint: {message}");
    assert!(
        message.to_lowercase().contains("refused"),
        "names the cause: {message}"
    );
    let text = report.to_string();
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(!text.contains("app:"), "{text}");
    assert_eq!(get(&probes, "/health/ready").await.0, 503);
    assert_eq!(get(&probes, "/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_by_failures_flips_readiness_at_once() {
    let pool = pool(POSTGRES_URL).await;
    install_sql_helpers(&pool).await;
    let signal = Signal::new();
    // Health and telemetry watch the same breaker: observers pair up.
    let breaker =
        CircuitBreaker::builder(BreakerConfig::default().with_consecutive_failures(Some(3)))
            .name("orders-db")
            .observer((BreakerMetrics::new(), signal.clone()))
            .build()
            .unwrap();
    let health = HealthRegistry::builder(hourly())
        .check("orders-db", PoolCheck::new(pool.clone()))
        .signal("orders-db breaker", &signal)
        .build()
        .unwrap();
    health.refresh().await;
    let probes = HealthService::new(health.clone());
    assert_eq!(get(&probes, "/health/ready").await.0, 200);

    let db = ServiceBuilder::new()
        .layer(
            CircuitBreakerLayer::new(breaker.clone()).with_classifier(keel_breaker::SqlxClassifier),
        )
        .service(pool.service());
    for _ in 0..3 {
        let failed = db
            .clone()
            .oneshot(op::fetch_one(|| {
                sqlx::query_scalar::<_, i32>("SELECT keel_raise('XX000')")
            }))
            .await;
        assert!(failed.is_err());
    }
    // No refresh, no interval: the signal decided.
    let (code, ready) = get(&probes, "/health/ready").await;
    assert_eq!((code, ready["status"].as_str()), (503, Some("unhealthy")));
    let (_, report) = get(&probes, "/health/detailed").await;
    assert_eq!(report["decided_by"], "orders-db breaker");
    let db_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "orders-db")
        .unwrap();
    assert_eq!(
        db_check["status"], "healthy",
        "the database itself still answers"
    );

    breaker.reset();
    assert_eq!(get(&probes, "/health/ready").await.0, 200);
}
