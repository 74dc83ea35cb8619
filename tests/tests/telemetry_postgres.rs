//! A workload through pool + retry + breaker + telemetry on the real
//! PostgreSQL, then a scrape of `/metrics` parsed with a Prometheus
//! text-format parser: its counts equal the operations, retries and breaker
//! transitions the test caused, in both layer orders.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::atomic::{AtomicU32, Ordering};

use http_body_util::BodyExt;
use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use keel_pool_core::{DatabaseUrl, PgManager, Pool, op, sqlx};
use keel_retry::{Retrier, RetryLayer, RetryPolicy, SkipOpenBreaker, SqlxClassifier};
use keel_telemetry::{
    BreakerGauges, BreakerMetrics, MetricsService, PoolGauges, PoolMetrics, RetryMetrics,
    TelemetryLayer,
};
use keel_tests::{Metrics, POSTGRES_URL, install_sql_helpers, is_rejection, prometheus};
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

type Db = BoxCloneService<op::Statement<sqlx::PgConnection, i32>, i32, BoxError>;

static SEQUENCES: AtomicU32 = AtomicU32::new(0);

/// An operation whose first `failures` attempts fail with serialization
/// failure (40001), then return 1; and the sequence to drop afterwards.
async fn flaky(
    pool: &Pool<PgManager>,
    failures: i64,
) -> (op::Statement<sqlx::PgConnection, i32>, String) {
    let seq = format!(
        "keel_flaky_{}_{}",
        std::process::id(),
        SEQUENCES.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = pool.get().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SEQUENCE {seq}")))
        .execute(&mut *conn)
        .await
        .unwrap();
    let name = seq.clone();
    let op = op::fetch_one(move || {
        sqlx::query_scalar(
            "SELECT CASE WHEN nextval($1::regclass) <= $2 THEN keel_raise('40001') ELSE 1 END",
        )
        .bind(seq.clone())
        .bind(failures)
    });
    (op, name)
}

async fn drop_sequence(pool: &Pool<PgManager>, seq: &str) {
    let mut conn = pool.get().await.unwrap();
    let sql = format!("DROP SEQUENCE IF EXISTS {seq}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .unwrap();
}

fn select(n: i32) -> op::Statement<sqlx::PgConnection, i32> {
    op::fetch_one(move || sqlx::query_scalar("SELECT $1::int4").bind(n))
}

/// Internal error (XX000): not retryable, and a failure to the breaker.
fn broken() -> op::Statement<sqlx::PgConnection, i32> {
    op::fetch_one(|| sqlx::query_scalar("SELECT keel_raise('XX000')"))
}

#[derive(Clone, Copy, Debug)]
enum Order {
    /// Telemetry outermost: it sees what the caller sees.
    TelemetryOutside,
    /// Telemetry inside retry: it sees each attempt.
    TelemetryInsideRetry,
}

struct Stack {
    db: Db,
    pool: Pool<PgManager>,
    breaker: CircuitBreaker,
}

async fn stack(name: &str, order: Order) -> Stack {
    prometheus();
    let url: DatabaseUrl = POSTGRES_URL.parse().unwrap();
    let pool = Pool::builder(PgManager::from_url(&url).unwrap())
        .name(name)
        .max_size(4)
        .observer(PoolMetrics::new())
        .build()
        .await
        .unwrap();
    let breaker =
        CircuitBreaker::builder(BreakerConfig::default().with_consecutive_failures(Some(3)))
            .name(name)
            .observer(BreakerMetrics::new())
            .build()
            .unwrap();
    let retrier = Retrier::builder(RetryPolicy::database())
        .classifier(SkipOpenBreaker(SqlxClassifier))
        .observer(RetryMetrics::new(name))
        .build()
        .unwrap();
    let telemetry = TelemetryLayer::new(name)
        .db_system("postgresql")
        .server_address("127.0.0.1:5432");
    let breaker_layer =
        CircuitBreakerLayer::new(breaker.clone()).with_classifier(keel_breaker::SqlxClassifier);
    let db = match order {
        Order::TelemetryOutside => BoxCloneService::new(
            ServiceBuilder::new()
                .layer(telemetry)
                .layer(RetryLayer::new(retrier))
                .layer(breaker_layer)
                .service(pool.service()),
        ),
        Order::TelemetryInsideRetry => BoxCloneService::new(
            ServiceBuilder::new()
                .layer(RetryLayer::new(retrier))
                .layer(telemetry)
                .layer(breaker_layer)
                .service(pool.service()),
        ),
    };
    install_sql_helpers(&pool).await;
    Stack { db, pool, breaker }
}

/// What the callers saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    ok: u32,
    failed: u32,
    rejected: u32,
}

/// 20 plain reads from spawned tasks, 5 that fail twice with 40001 before
/// succeeding, 3 with an internal error (the third opens the breaker), 2
/// the open breaker rejects, a reset, one more read.
async fn workload(stack: &Stack) -> Seen {
    let mut seen = Seen::default();
    let mut tasks = Vec::new();
    for n in 0..20 {
        let db = stack.db.clone();
        tasks.push(tokio::spawn(async move {
            db.oneshot(select(n)).await.map(|v| (v, n))
        }));
    }
    for task in tasks {
        let (v, n) = task.await.unwrap().unwrap();
        assert_eq!(v, n);
        seen.ok += 1;
    }
    for _ in 0..5 {
        let (op, seq) = flaky(&stack.pool, 2).await;
        assert_eq!(stack.db.clone().oneshot(op).await.unwrap(), 1);
        drop_sequence(&stack.pool, &seq).await;
        seen.ok += 1;
    }
    for _ in 0..3 {
        let err = stack.db.clone().oneshot(broken()).await.unwrap_err();
        assert!(err.to_string().contains("keel test error XX000"), "{err}");
        seen.failed += 1;
    }
    for _ in 0..2 {
        let err = stack.db.clone().oneshot(select(1)).await.unwrap_err();
        assert!(is_rejection(&*err), "{err}");
        seen.rejected += 1;
    }
    stack.breaker.reset();
    assert_eq!(stack.db.clone().oneshot(select(7)).await.unwrap(), 7);
    seen.ok += 1;
    seen
}

async fn scrape(stack: &Stack) -> Metrics {
    let service = MetricsService::new(prometheus().clone())
        .collect(PoolGauges::new(stack.pool.clone()))
        .collect(BreakerGauges::new(stack.breaker.clone()));
    let response = service
        .oneshot(http::Request::get("/metrics").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Metrics::parse(std::str::from_utf8(&body).unwrap())
}

async fn run(name: &str, order: Order) -> (Seen, Metrics) {
    let stack = stack(name, order).await;
    let seen = workload(&stack).await;
    (seen, scrape(&stack).await)
}

/// Checks what does not depend on the order: retries, breaker, pool.
fn check_common(m: &Metrics, name: &str) {
    let n = [("name", name)];
    let with = |k: &'static str, v: &'static str| [("name", name), (k, v)];
    // Retries: 5 operations x 2 conflicts each.
    assert_eq!(m.count("keel_retry_retries_total", &n), 10.0);
    assert_eq!(
        m.count(
            "keel_retry_attempts_failed_total",
            &with("class", "conflict")
        ),
        10.0
    );
    // Not retried: 3 internal errors and 2 rejections.
    assert_eq!(
        m.count("keel_retry_attempts_failed_total", &with("class", "none")),
        5.0
    );
    assert_eq!(
        m.count("keel_retry_give_ups_total", &with("reason", "permanent")),
        5.0
    );
    // Breaker: opened by the third internal error, closed by the reset.
    let t = "keel_breaker_transitions_total";
    assert_eq!(
        m.count(t, &[("name", name), ("from", "closed"), ("to", "open")]),
        1.0
    );
    assert_eq!(
        m.count(t, &[("name", name), ("from", "open"), ("to", "closed")]),
        1.0
    );
    assert_eq!(m.count("keel_breaker_rejections_total", &n), 2.0);
    assert_eq!(
        m.get("keel_breaker_state", &with("state", "closed")),
        Some(1.0)
    );
    // Pool: every connection it opened was timed; none in use now.
    let pool = [("db_client_connection_pool_name", name)];
    let created = m.count("keel_pool_connections_created_total", &pool);
    assert!(created >= 1.0);
    assert_eq!(
        m.count("db_client_connection_create_time_seconds", &pool),
        created
    );
    let used = [
        ("db_client_connection_pool_name", name),
        ("db_client_connection_state", "used"),
    ];
    assert_eq!(m.get("db_client_connection_count", &used), Some(0.0));
    assert_eq!(m.get("db_client_connection_max", &pool), Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_counts_what_the_workload_did_in_both_layer_orders() {
    let (outside_seen, outside) = run("telemetry-outside", Order::TelemetryOutside).await;
    let (inside_seen, inside) = run("telemetry-inside", Order::TelemetryInsideRetry).await;

    // The callers see the same thing whatever the order.
    assert_eq!(
        outside_seen,
        Seen {
            ok: 26,
            failed: 3,
            rejected: 2
        }
    );
    assert_eq!(inside_seen, outside_seen);
    check_common(&outside, "telemetry-outside");
    check_common(&inside, "telemetry-inside");

    let d = "db_client_operation_duration_seconds";
    let by = |m: &Metrics, name: &str, outcome| m.count(d, &[("name", name), ("outcome", outcome)]);
    // Outermost, telemetry counts calls: what the callers saw.
    assert_eq!(by(&outside, "telemetry-outside", "ok"), 26.0);
    assert_eq!(by(&outside, "telemetry-outside", "error"), 3.0);
    assert_eq!(by(&outside, "telemetry-outside", "rejected"), 2.0);
    // Inside retry, it counts attempts: the 10 retried conflicts too.
    assert_eq!(by(&inside, "telemetry-inside", "ok"), 26.0);
    assert_eq!(by(&inside, "telemetry-inside", "error"), 13.0);
    assert_eq!(by(&inside, "telemetry-inside", "rejected"), 2.0);
    let errors = "keel_operation_errors_total";
    let database = [("name", "telemetry-inside"), ("error_type", "database")];
    assert_eq!(inside.count(errors, &database), 13.0);
    let open = [
        ("name", "telemetry-outside"),
        ("error_type", "breaker_open"),
    ];
    assert_eq!(outside.count(errors, &open), 2.0);
    for (m, name) in [
        (&outside, "telemetry-outside"),
        (&inside, "telemetry-inside"),
    ] {
        assert_eq!(
            m.get("keel_operation_in_flight", &[("name", name)]),
            Some(0.0)
        );
    }
}
