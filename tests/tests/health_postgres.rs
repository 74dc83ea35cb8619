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
use keel_telemetry::{BreakerMetrics, MetricsService, PoolGauges, PoolMetrics, TelemetryLayer};
use keel_tests::{Metrics, POSTGRES_URL, dead_port, install_sql_helpers, prometheus};
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

/// The README's "Health probes and metrics" stack: probes and `/metrics`
/// mounted in one axum router, answered after a few calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_stack_serves_probes_and_metrics_from_one_router() {
    let prometheus = prometheus().clone();
    let url: DatabaseUrl = POSTGRES_URL.parse().unwrap();
    let pool = Pool::builder(PgManager::from_url(&url).unwrap())
        .name("readme")
        .observer(PoolMetrics::new())
        .build()
        .await
        .unwrap();
    let breaker_signal = Signal::new();
    let breaker = CircuitBreaker::builder(BreakerConfig::default())
        .name("readme")
        .observer((BreakerMetrics::new(), breaker_signal.clone()))
        .build()
        .unwrap();
    let db = ServiceBuilder::new()
        .layer(TelemetryLayer::new("readme").db_system("postgresql"))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(pool.service());
    for n in 0..3_i32 {
        let got: i32 = db
            .clone()
            .oneshot(op::fetch_one(move || {
                sqlx::query_scalar("SELECT $1::int4").bind(n)
            }))
            .await
            .unwrap();
        assert_eq!(got, n);
    }
    let health = HealthRegistry::builder(hourly())
        .check("orders-db", PoolCheck::new(pool.clone()))
        .signal("orders-db breaker", &breaker_signal)
        .build()
        .unwrap();
    health.refresh().await;
    let app: axum::Router = axum::Router::new()
        .merge(keel_health::router(HealthService::new(health.clone())))
        .route_service(
            "/metrics",
            MetricsService::new(prometheus).collect(PoolGauges::new(pool.clone())),
        );
    let ask = |path: &'static str| {
        app.clone().oneshot(
            http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
    };
    assert_eq!(ask("/health/ready").await.unwrap().status(), 200);
    let scrape = ask("/metrics").await.unwrap();
    assert_eq!(scrape.status(), 200);
    let body = scrape.into_body().collect().await.unwrap().to_bytes();
    let metrics = Metrics::parse(std::str::from_utf8(&body).unwrap());
    let ok = [("name", "readme"), ("outcome", "ok")];
    assert_eq!(
        metrics.get("db_client_operation_duration_seconds", &ok),
        Some(3.0)
    );
    let idle = [
        ("db_client_connection_pool_name", "readme"),
        ("db_client_connection_state", "idle"),
    ];
    assert!(metrics.get("db_client_connection_count", &idle).unwrap() >= 1.0);

    health.drain();
    assert_eq!(ask("/health/ready").await.unwrap().status(), 503);
    assert_eq!(ask("/health").await.unwrap().status(), 200);
}
