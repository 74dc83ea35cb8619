//! Pool + retry + breaker stacked with `ServiceBuilder` as the READMEs show,
//! called from spawned tasks, against the real PostgreSQL: the imports a
//! user writes, both layer orders, and what a caller sees when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use keel_breaker::{
    BreakerConfig, CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService, State,
};
use keel_pool_core::{DatabaseUrl, PgManager, Pool, PoolService, op, sqlx};
use keel_retry::{GaveUp, Retrier, RetryLayer, RetryPolicy, RetryService, SkipOpenBreaker};
use keel_tests::POSTGRES_URL;
use tower::{BoxError, ServiceBuilder, ServiceExt};

async fn pool(url: &str, max_size: usize) -> Pool<PgManager> {
    let url: DatabaseUrl = url.parse().unwrap();
    Pool::builder(PgManager::from_url(&url).unwrap())
        .max_size(max_size)
        .wait_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

fn retrier() -> Retrier<SkipOpenBreaker<keel_retry::SqlxClassifier>> {
    Retrier::builder(RetryPolicy::database())
        .classifier(SkipOpenBreaker(keel_retry::SqlxClassifier))
        .build()
        .unwrap()
}

fn breaker_layer(breaker: &CircuitBreaker) -> CircuitBreakerLayer<keel_breaker::SqlxClassifier> {
    CircuitBreakerLayer::new(breaker.clone()).with_classifier(keel_breaker::SqlxClassifier)
}

/// The recommended order, as the README builds it: retry outside the
/// breaker, so a call the open breaker rejects is not retried.
type Recommended = RetryService<
    CircuitBreakerService<PoolService<PgManager>, keel_breaker::SqlxClassifier>,
    SkipOpenBreaker<keel_retry::SqlxClassifier>,
>;

fn recommended(pool: &Pool<PgManager>, breaker: &CircuitBreaker) -> Recommended {
    ServiceBuilder::new()
        .layer(RetryLayer::new(retrier()))
        .layer(breaker_layer(breaker))
        .service(pool.service())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_run_statements_through_the_whole_stack() {
    let pool = pool(POSTGRES_URL, 4).await;
    let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
    let db = recommended(&pool, &breaker);

    let mut tasks = Vec::new();
    for i in 0..8_i32 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let n: i32 = db
                .clone()
                .oneshot(op::fetch_one(move || {
                    sqlx::query_scalar("SELECT $1::int4 + 1").bind(i)
                }))
                .await?;
            let done = db.oneshot(op::execute(|| sqlx::query("SELECT 1"))).await?;
            Ok::<_, BoxError>((n, done.rows_affected()))
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let (n, rows) = t.await.unwrap().unwrap();
        assert_eq!(n, i32::try_from(i).unwrap() + 1);
        assert_eq!(rows, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_own_errors_never_open_the_breaker_in_either_layer_order() {
    let pool = pool(POSTGRES_URL, 2).await;
    let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
    let retry_outside = recommended(&pool, &breaker);
    let breaker_outside = ServiceBuilder::new()
        .layer(breaker_layer(&breaker))
        .layer(RetryLayer::new(retrier()))
        .service(pool.service());
    for _ in 0..6 {
        let syntax = retry_outside
            .clone()
            .oneshot(op::execute(|| sqlx::query("SELEC 1")))
            .await
            .unwrap_err();
        assert!(syntax.to_string().contains("syntax error"), "{syntax}");
        let no_row = breaker_outside
            .clone()
            .oneshot(op::fetch_one(|| {
                sqlx::query_scalar::<_, i32>("SELECT 1 WHERE false")
            }))
            .await
            .unwrap_err();
        assert!(
            matches!(
                no_row.downcast_ref::<sqlx::Error>(),
                Some(sqlx::Error::RowNotFound)
            ),
            "{no_row}"
        );
    }
    assert_eq!(breaker.state(), State::Closed, "{:?}", breaker.info());
    // The same classifier serves a fetch of an i32 and an execute.
    let n: i32 = retry_outside
        .oneshot(op::fetch_one(|| sqlx::query_scalar("SELECT 2")))
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_timeout_is_retried_until_a_connection_comes_back() {
    let pool = pool(POSTGRES_URL, 1).await;
    let held = pool.get().await.unwrap();
    let db = recommended(
        &pool,
        &CircuitBreaker::new(BreakerConfig::default()).unwrap(),
    );
    let call = tokio::spawn(db.oneshot(op::fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 3"))));
    // The first attempt waits 200 ms for the slot and times out; the
    // connection comes back only then, and a retry finds it.
    for _ in 0..500 {
        if pool.stats().timeouts.wait >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(held);
    assert_eq!(call.await.unwrap().unwrap(), 3);
    assert!(pool.stats().timeouts.wait >= 1, "{:?}", pool.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_on_a_dead_database_says_which_and_why() {
    // Port 1 on loopback: refused at once.
    let pool = pool("postgres://app:pw-secret@127.0.0.1:1/orders", 2).await;
    let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
    let db = recommended(&pool, &breaker);
    let err = db
        .oneshot(op::execute(|| sqlx::query("SELECT 1")))
        .await
        .unwrap_err();
    let shown = err.to_string();
    for part in ["127.0.0.1:1/orders", "refused", "gave up after 4 attempts"] {
        assert!(shown.contains(part), "{part:?} missing from: {shown}");
    }
    assert!(!shown.contains("pw-secret"), "{shown}");
    let gave_up = err.downcast_ref::<keel_retry::GaveUpError>().unwrap();
    assert_eq!(gave_up.reason(), GaveUp::Exhausted);
    // Four connection failures in a row: the breaker has counted them all.
    assert_eq!(
        breaker.info().consecutive_failures,
        4,
        "{:?}",
        breaker.info()
    );
}
