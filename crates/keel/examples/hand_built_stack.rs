//! The stack the README builds by hand from the single crates (here
//! through `keel`'s re-exports): pool, breaker, retry and telemetry around
//! PostgreSQL, health checks with the breaker as a live signal, and one
//! axum router serving the probes and `/metrics`. `cargo test` compiles
//! it; `cargo run --example hand_built_stack` runs it against
//! DATABASE_URL (default: the local test database) for a few seconds.
#![allow(clippy::print_stdout, reason = "an example prints what it does")]

use std::time::Duration;

use keel::breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use keel::health::checks::PoolCheck;
use keel::health::{HealthConfig, HealthRegistry, HealthService, Signal};
use keel::pool::{DatabaseUrl, PgManager, Pool, op};
use keel::retry::{Retrier, RetryLayer, RetryPolicy, SkipOpenBreaker};
use keel::sqlx;
use keel::telemetry::{
    BreakerMetrics, MetricsService, PoolGauges, PoolMetrics, RetryMetrics, TelemetryLayer,
};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let prometheus = keel::telemetry::install()?; // first: layers resolve their handles through it
    let url: DatabaseUrl = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        .parse()?;
    let pool = Pool::builder(PgManager::from_url(&url)?)
        .name("orders")
        .observer(PoolMetrics::new())
        .build()
        .await?;
    let breaker_signal = Signal::new(); // Unhealthy the moment the breaker opens
    let breaker = CircuitBreaker::builder(BreakerConfig::default())
        .name("orders")
        .observer((BreakerMetrics::new(), breaker_signal.clone()))
        .build()?;
    let retrier = Retrier::builder(RetryPolicy::database())
        .classifier(SkipOpenBreaker(keel::retry::SqlxClassifier))
        .observer(RetryMetrics::new("orders"))
        .build()?;
    let db = ServiceBuilder::new()
        .layer(TelemetryLayer::new("orders").db_system("postgresql")) // outermost: sees what callers see
        .layer(RetryLayer::new(retrier)) // outside the breaker: a rejected call is not retried
        .layer(
            CircuitBreakerLayer::new(breaker.clone())
                .with_classifier(keel::breaker::SqlxClassifier),
        )
        .service(pool.service());

    let health = HealthRegistry::builder(HealthConfig::default()) // every 30 s, 5 s timeout
        .check("orders-db", PoolCheck::new(pool.clone()))
        .signal("orders-db breaker", &breaker_signal)
        .build()?;
    let app: axum::Router = axum::Router::new()
        .merge(keel::health::router(HealthService::new(health.clone())))
        .route_service(
            "/metrics",
            MetricsService::new(prometheus).collect(PoolGauges::new(pool.clone())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "serving http://{}/health/detailed and /metrics",
        listener.local_addr()?
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    for n in 0..5_i32 {
        let got: i32 = db
            .clone()
            .oneshot(op::fetch_one(move || {
                sqlx::query_scalar("SELECT $1::int4").bind(n)
            }))
            .await?;
        println!("SELECT {n} -> {got}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    health.drain(); // shutting down: readiness 503, liveness still 200
    server.abort();
    pool.close(Duration::from_secs(5)).await?;
    Ok(())
}
