//! A newcomer's path, on the real PostgreSQL: a config file plus
//! environment overrides, connect, queries, a transaction, a failure that
//! opens the breaker, `reset_breaker`, `shutdown`; the metrics snapshot
//! adds up to what the test did.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use keel::sqlx::{self, PgConnection};
use keel::{DatabaseConfig, PgDatabase, Phase};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn config(name: &str) -> DatabaseConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\n\n[pool]\nmax_size = 4\n\n[breaker]\nconsecutive_failures = 3\nopen_duration = \"60s\"\n"
        ),
    )
    .unwrap();
    DatabaseConfig::from_file(&path)
        .unwrap()
        .with_vars([
            ("DATABASE_URL".to_owned(), URL.to_owned()),
            ("DATABASE_POOL_TIMEOUT".to_owned(), "5".to_owned()),
        ])
        .unwrap()
}

/// Fails on the server with an internal error (XX000): not retried, and a
/// failure to the breaker.
const BOOM: &str = "DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'XX000'; END $$";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_query_fail_recover_and_shut_down() {
    let name = format!("newcomer-{}", std::process::id());
    let table = format!("keel_newcomer_{}", std::process::id());
    let db = PgDatabase::connect(config(&name)).await.unwrap(); // 1 call: the ping
    assert_eq!(db.config().pool.max_size, 4);
    assert_eq!(db.config().pool.wait_timeout, Duration::from_secs(5));

    let create = format!("CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL)");
    db.execute(move || sqlx::query(sqlx::AssertSqlSafe(create.clone())))
        .await
        .unwrap();
    let insert = format!("INSERT INTO {table} VALUES ($1, $2)");
    for id in 0..3_i32 {
        let sql = insert.clone();
        let done = db
            .execute(move || {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(id)
                    .bind(id * 10)
            })
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }
    let select = format!("SELECT n FROM {table} WHERE id = $1");
    let sql = select.clone();
    let n: i32 = db
        .fetch_one(move || sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(2_i32))
        .await
        .unwrap();
    assert_eq!(n, 20);
    let sql = select.clone();
    let none: Option<i32> = db
        .fetch_optional(move || sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone())).bind(9_i32))
        .await
        .unwrap();
    assert_eq!(none, None);
    let all_sql = format!("SELECT id, n FROM {table} ORDER BY id");
    let rows: Vec<(i32, i32)> = db
        .fetch_all(move || sqlx::query_as(sqlx::AssertSqlSafe(all_sql.clone())))
        .await
        .unwrap();
    assert_eq!(rows, vec![(0, 0), (1, 10), (2, 20)]);

    // A transaction: both updates or neither.
    let update = format!("UPDATE {table} SET n = n + $2 WHERE id = $1");
    let sql = update.clone();
    db.transaction(move |tx: &mut PgConnection| {
        let sql = sql.clone();
        Box::pin(async move {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(0_i32)
                .bind(-5_i32)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(1_i32)
                .bind(5_i32)
                .execute(&mut *tx)
                .await?;
            Ok::<_, sqlx::Error>(())
        })
    })
    .await
    .unwrap();
    let sql = update.clone();
    let rolled_back = db
        .transaction(move |tx: &mut PgConnection| {
            let sql = sql.clone();
            Box::pin(async move {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(0_i32)
                    .bind(1000_i32)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SELECT 1/0").execute(&mut *tx).await?; // the caller's error
                Ok::<_, sqlx::Error>(())
            })
        })
        .await
        .unwrap_err();
    assert_eq!(rolled_back.phase(), Phase::Transaction);
    assert!(rolled_back.as_database_error().is_some(), "{rolled_back}");
    let sum_sql = format!("SELECT sum(n)::int4 FROM {table}");
    let sum: i32 = db
        .fetch_one(move || sqlx::query_scalar(sqlx::AssertSqlSafe(sum_sql.clone())))
        .await
        .unwrap();
    assert_eq!(
        sum, 30,
        "the first transaction kept, the second rolled back"
    );
    assert_eq!(
        db.breaker_info().state,
        keel::breaker::State::Closed,
        "the caller's error is not the database's"
    );

    // Three internal errors open the breaker; the next call is turned away.
    for _ in 0..3 {
        let err = db.execute(|| sqlx::query(BOOM)).await.unwrap_err();
        assert_eq!(err.phase(), Phase::Query);
        assert!(
            err.to_string()
                .starts_with(&format!("database `{name}`: running a statement: ")),
            "{err}"
        );
    }
    let rejected = db.execute(|| sqlx::query("SELECT 1")).await.unwrap_err();
    assert!(rejected.is_rejected(), "{rejected}");
    assert_eq!(rejected.phase(), Phase::Breaker);
    assert!(
        !db.health_registry().is_ready(),
        "the open breaker flips readiness"
    );

    db.reset_breaker();
    assert!(db.health_registry().is_ready());
    let drop_sql = format!("DROP TABLE {table}");
    db.execute(move || sqlx::query(sqlx::AssertSqlSafe(drop_sql.clone())))
        .await
        .unwrap();

    // ping, create, 3 inserts, fetch_one, fetch_optional, fetch_all, 2
    // transactions, sum, 3 failures, 1 rejection, drop.
    // The pool health check checks out too: once at start, once now.
    db.health_registry().refresh().await;
    let m = db.metrics_snapshot();
    assert_eq!(m.queries_total, 16, "{m:?}");
    assert_eq!(m.queries_ok, 11, "{m:?}");
    assert_eq!(m.queries_failed, 5, "{m:?}");
    assert_eq!(m.queries_rejected, 1, "{m:?}");
    assert_eq!(m.breaker_opens, 1, "{m:?}");
    assert_eq!(m.in_flight, 0);
    assert!(
        m.total_latency > Duration::ZERO && m.average_latency <= m.total_latency,
        "{m:?}"
    );
    assert!(m.connections_created >= 1, "{m:?}");
    assert!(m.connections_reused >= 10, "{m:?}");
    // The recovery probe may have checked out once while the breaker was open.
    let checkouts = m.connections_created + m.connections_reused;
    assert!(
        (15 + 2..=15 + 3).contains(&checkouts),
        "every call but the rejection checked out once, the health check twice: {m:?}"
    );

    db.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(!db.health_registry().is_ready());
    assert!(db.is_shut_down());
    let after = db.execute(|| sqlx::query("SELECT 1")).await.unwrap_err();
    assert_eq!(after.phase(), Phase::Shutdown);
    assert_eq!(db.stats().size, 0, "every connection closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_does_not_answer_fails_connect_with_its_name_and_no_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/orders")
        .parse()
        .unwrap();
    let mut config = DatabaseConfig::new(url).with_name("unreachable");
    config.retry = keel::retry::RetryPolicy::default();
    let err = PgDatabase::connect(config).await.unwrap_err();
    assert_eq!(err.phase(), Phase::Connect, "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with("database `unreachable`: connecting: "),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("127.0.0.1:{port}/orders")),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cret") && !format!("{err:?}").contains("s3cret"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_under_way_finish_before_shutdown_closes_the_pool() {
    let db = PgDatabase::connect(config(&format!("draining-{}", std::process::id())))
        .await
        .unwrap();
    let slow = {
        let db = db.clone();
        tokio::spawn(async move {
            db.fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 7 FROM pg_sleep(0.3)"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    db.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        slow.await.unwrap().unwrap(),
        7,
        "the call under way finished"
    );
}
