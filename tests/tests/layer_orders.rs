//! Telemetry, retry and breaker stacked by hand around the pool service in
//! every one of the six orders, over the real PostgreSQL: each gives the
//! caller the same results; in the recommended order a call the open
//! breaker rejects is never retried.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use keel_pool_core::{DatabaseUrl, PgManager, Pool, op, sqlx};
use keel_retry::{Event, Retrier, RetryLayer, RetryPolicy, SkipOpenBreaker, SqlxClassifier};
use keel_telemetry::TelemetryLayer;
use keel_tests::{POSTGRES_URL, install_sql_helpers, is_rejection};
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, ServiceExt};

type Db = BoxCloneService<op::Statement<sqlx::PgConnection, i32>, i32, BoxError>;

#[derive(Clone, Copy, Debug)]
enum L {
    Telemetry,
    Retry,
    Breaker,
}

const ORDERS: [[L; 3]; 6] = [
    [L::Telemetry, L::Retry, L::Breaker], // recommended
    [L::Telemetry, L::Breaker, L::Retry],
    [L::Retry, L::Telemetry, L::Breaker],
    [L::Retry, L::Breaker, L::Telemetry],
    [L::Breaker, L::Telemetry, L::Retry],
    [L::Breaker, L::Retry, L::Telemetry],
];

struct Stack {
    db: Db,
    breaker: CircuitBreaker,
    /// Attempts the retrier saw fail.
    failed_attempts: Arc<AtomicU32>,
}

/// `order` outermost first, around the pool service.
fn stack(pool: &Pool<PgManager>, order: [L; 3], name: &str) -> Stack {
    let breaker =
        CircuitBreaker::builder(BreakerConfig::default().with_consecutive_failures(Some(3)))
            .name(name)
            .build()
            .unwrap();
    let failed_attempts = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&failed_attempts);
    let retrier = Retrier::builder(RetryPolicy::database())
        .classifier(SkipOpenBreaker(SqlxClassifier))
        .observer(move |e: &Event| {
            if matches!(e, Event::AttemptFailed { .. }) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let mut db: Db = BoxCloneService::new(pool.service());
    for layer in order.iter().rev() {
        db = match layer {
            L::Telemetry => BoxCloneService::new(TelemetryLayer::new(name).layer(db)),
            L::Retry => BoxCloneService::new(RetryLayer::new(retrier.clone()).layer(db)),
            L::Breaker => BoxCloneService::new(
                CircuitBreakerLayer::new(breaker.clone())
                    .with_classifier(keel_breaker::SqlxClassifier)
                    .layer(db),
            ),
        };
    }
    Stack {
        db,
        breaker,
        failed_attempts,
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// What a caller sees from: reads, a read that fails twice with a
/// serialization failure, the caller's own error, and a read with the
/// breaker forced open.
async fn results(pool: &Pool<PgManager>, stack: &Stack) -> Vec<String> {
    let mut seen = Vec::new();
    for n in [1, 2, 3] {
        let r = stack
            .db
            .clone()
            .oneshot(op::fetch_one(move || {
                sqlx::query_scalar("SELECT $1::int4").bind(n)
            }))
            .await;
        seen.push(format!("{r:?}"));
    }
    let seq = format!(
        "keel_orders_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = pool.get().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SEQUENCE {seq}")))
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let name = seq.clone();
    let flaky = stack
        .db
        .clone()
        .oneshot(op::fetch_one(move || {
            sqlx::query_scalar(
                "SELECT CASE WHEN nextval($1::regclass) <= 2 THEN keel_raise('40001') ELSE 7 END",
            )
            .bind(name.clone())
        }))
        .await;
    seen.push(format!("{flaky:?}"));
    let mut conn = pool.get().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SEQUENCE {seq}")))
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let caller = stack
        .db
        .clone()
        .oneshot(op::fetch_one(|| sqlx::query_scalar("SELECT 1/0")))
        .await;
    seen.push(
        caller
            .map_err(|e| e.to_string().contains("division by zero"))
            .err()
            .map_or("ok?".into(), |b| b.to_string()),
    );
    stack.breaker.force_open();
    let rejected = stack
        .db
        .clone()
        .oneshot(op::fetch_one(|| sqlx::query_scalar("SELECT 1")))
        .await;
    seen.push(format!(
        "rejected: {}",
        rejected.is_err_and(|e| is_rejection(&*e))
    ));
    stack.breaker.reset();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_gives_the_caller_the_same_results() {
    let url: DatabaseUrl = POSTGRES_URL.parse().unwrap();
    let pool = Pool::builder(PgManager::from_url(&url).unwrap())
        .max_size(4)
        .build()
        .await
        .unwrap();
    install_sql_helpers(&pool).await;
    let mut all = Vec::new();
    for (i, order) in ORDERS.into_iter().enumerate() {
        let stack = stack(&pool, order, &format!("order-{i}-{}", std::process::id()));
        let seen = results(&pool, &stack).await;
        all.push((order, seen));
    }
    let expected = vec![
        "Ok(1)".to_owned(),
        "Ok(2)".to_owned(),
        "Ok(3)".to_owned(),
        "Ok(7)".to_owned(),
        "true".to_owned(),
        "rejected: true".to_owned(),
    ];
    for (order, seen) in all {
        assert_eq!(seen, expected, "order {order:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_recommended_order_a_rejected_call_is_never_retried() {
    let url: DatabaseUrl = POSTGRES_URL.parse().unwrap();
    let pool = Pool::builder(PgManager::from_url(&url).unwrap())
        .max_size(2)
        .build()
        .await
        .unwrap();
    let stack = stack(
        &pool,
        ORDERS[0],
        &format!("recommended-{}", std::process::id()),
    );
    stack.breaker.force_open();
    for _ in 0..5 {
        let err = stack
            .db
            .clone()
            .oneshot(op::fetch_one(|| sqlx::query_scalar("SELECT 1")))
            .await
            .unwrap_err();
        assert!(is_rejection(&*err), "{err}");
    }
    // One failed attempt per call, none retried; nothing reached the pool.
    assert_eq!(stack.failed_attempts.load(Ordering::SeqCst), 5);
    assert_eq!(stack.breaker.info().rejections, 5);
    assert_eq!(
        pool.stats().wait.count(),
        0,
        "no checkout: {:?}",
        pool.stats()
    );
}
