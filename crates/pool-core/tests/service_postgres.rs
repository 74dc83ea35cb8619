//! The pool's tower service on the real PostgreSQL: transactions roll back
//! on Err, on panic and on drop, and the connection comes back clean; the
//! command timeout closes the connection it interrupted.
#![cfg(all(feature = "postgres", feature = "tower"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_pool_core::op::{self, BoxError};
use keel_pool_core::{DatabaseUrl, Event, PgManager, Pool};
use sqlx::{Connection, PgConnection};
use tower::ServiceExt;

mod support;
use support::eventually;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn pool() -> Pool<PgManager> {
    let url: DatabaseUrl = URL.parse().unwrap();
    Pool::builder(PgManager::from_url(&url).unwrap())
        .max_size(1)
        .build()
        .await
        .unwrap()
}

/// A fresh table for one test.
async fn table(name: &str) -> String {
    let mut admin = PgConnection::connect(URL).await.unwrap();
    let table = format!("keel_pool_{name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    table
}

async fn rows(table: &str) -> i64 {
    let mut admin = PgConnection::connect(URL).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

fn insert_then(table: String, then: &'static str) -> impl op::Operation<PgConnection, Output = ()> {
    op::transaction(move |tx: &mut PgConnection| {
        let table = table.clone();
        Box::pin(async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} VALUES (1)"
            )))
            .execute(&mut *tx)
            .await?;
            match then {
                "err" => Err::<(), BoxError>("the caller's error".into()),
                "panic" => panic!("the closure panicked"),
                "hang" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    })
}

/// The pool's one connection is usable and outside any transaction.
async fn assert_clean(pool: &Pool<PgManager>) {
    let mut conn = pool.get().await.unwrap();
    assert!(!conn.is_in_transaction());
    let status: String = sqlx::query_scalar("SELECT 'ok'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(status, "ok");
    // SAVEPOINT outside a transaction block fails with 25P01.
    let probe = sqlx::raw_sql("SAVEPOINT keel_probe")
        .execute(&mut *conn)
        .await;
    let code = probe
        .unwrap_err()
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(
        code.as_deref(),
        Some("25P01"),
        "a transaction is still open on the connection"
    );
}

#[tokio::test]
async fn a_transaction_commits_on_ok() {
    let (pool, table) = (pool().await, table("tx_ok").await);
    pool.service()
        .oneshot(insert_then(table.clone(), "ok"))
        .await
        .unwrap();
    assert_eq!(rows(&table).await, 1);
    assert_clean(&pool).await;
}

#[tokio::test]
async fn a_transaction_rolls_back_on_err() {
    let (pool, table) = (pool().await, table("tx_err").await);
    let err = pool
        .service()
        .oneshot(insert_then(table.clone(), "err"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the caller's error");
    assert_eq!(rows(&table).await, 0);
    assert_clean(&pool).await;
    assert_eq!(pool.stats().created, 1, "the connection was reused");
}

#[tokio::test]
async fn a_transaction_rolls_back_on_panic() {
    let (pool, table) = (pool().await, table("tx_panic").await);
    let svc = pool.service();
    let joined = tokio::spawn(svc.oneshot(insert_then(table.clone(), "panic"))).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(rows(&table).await, 0);
    assert_clean(&pool).await;
}

#[tokio::test]
async fn a_transaction_rolls_back_when_its_future_is_dropped() {
    let (pool, table) = (pool().await, table("tx_drop").await);
    let call = pool.service().oneshot(insert_then(table.clone(), "hang"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    let pool = &pool;
    // Abandoned: the server is asked to cancel, then the connection closes.
    eventually("its connection is closed, not reused", || async move {
        pool.stats().closed.broken == 1
    })
    .await;
    assert_eq!(rows(&table).await, 0);
    assert_clean(pool).await;
}

/// Sessions running a statement that contains `marker`.
async fn running(marker: &str) -> i64 {
    let mut admin = PgConnection::connect(URL).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
    )
    .bind(marker)
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_command_timeout_cancels_the_statement_on_the_server_and_closes_the_connection() {
    let cancelled = Arc::new(Mutex::new(Vec::new()));
    let seen = cancelled.clone();
    let url: DatabaseUrl = URL.parse().unwrap();
    let pool = Pool::builder(PgManager::from_url(&url).unwrap())
        .max_size(1)
        .observer(move |e: &Event<'_>| {
            if let Event::Cancelled { id, error, .. } = e {
                seen.lock()
                    .unwrap()
                    .push((*id, error.map(ToString::to_string)));
            }
        })
        .build()
        .await
        .unwrap();
    let marker = format!("keel_cancel_{}", std::process::id());
    let sql = format!("SELECT pg_sleep(30) /* {marker} */");
    let sleep = op::with_connection(move |c: &mut PgConnection| {
        let sql = sql.clone();
        Box::pin(async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(c)
                .await
                .map(drop)
        })
    })
    .timeout(Duration::from_millis(300));
    // Without the cancel the server would sleep on for 30 s: PostgreSQL
    // does not notice a closed client socket until it writes.
    support::scenarios::the_command_timeout_stops_the_statement_on_the_server(&pool, sleep, || {
        running(&marker)
    })
    .await;
    let pool = &pool;
    assert_eq!(cancelled.lock().unwrap().as_slice(), &[(1, None)]);
    assert_clean(pool).await;
}

#[tokio::test]
async fn a_pool_error_reaches_the_caller_as_itself() {
    let url: DatabaseUrl = "postgres://keel_no_such_role@127.0.0.1:5432/test"
        .parse()
        .unwrap();
    let pool = Pool::builder(PgManager::from_url(&url).unwrap())
        .build()
        .await
        .unwrap();
    let noop =
        op::with_connection(|_: &mut PgConnection| Box::pin(async { Ok::<_, BoxError>(()) }));
    let err = pool.service().oneshot(noop).await.unwrap_err();
    assert!(
        err.downcast_ref::<keel_pool_core::PoolError<sqlx::Error>>()
            .is_some()
    );
}

#[tokio::test]
async fn statement_helpers_execute_and_fetch() {
    let (pool, table) = (pool().await, table("statements").await);
    let mut svc = pool.service();
    let insert = {
        let table = table.clone();
        op::execute(move || {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} SELECT generate_series(1, 3)"
            )))
        })
    };
    let done = (&mut svc).oneshot(insert).await.unwrap();
    assert_eq!(done.rows_affected(), 3);

    let select = format!("SELECT id FROM {table} ORDER BY id");
    let ids: Vec<i32> = {
        let select = select.clone();
        (&mut svc)
            .oneshot(op::fetch_all(move || {
                sqlx::query_scalar(sqlx::AssertSqlSafe(select.clone()))
            }))
            .await
            .unwrap()
    };
    assert_eq!(ids, [1, 2, 3]);

    let where_id = format!("SELECT id, id * 10 FROM {table} WHERE id = $1");
    let one = {
        let where_id = where_id.clone();
        op::fetch_one(move || {
            sqlx::query_as::<_, (i32, i32)>(sqlx::AssertSqlSafe(where_id.clone())).bind(2)
        })
    };
    assert_eq!((&mut svc).oneshot(one).await.unwrap(), (2, 20));

    let missing = {
        let where_id = where_id.clone();
        move || sqlx::query_as::<_, (i32, i32)>(sqlx::AssertSqlSafe(where_id.clone())).bind(9)
    };
    let none = (&mut svc)
        .oneshot(op::fetch_optional(missing.clone()))
        .await
        .unwrap();
    assert_eq!(none, None);
    let err = (&mut svc)
        .oneshot(op::fetch_one(missing))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::RowNotFound)
        ),
        "{err}"
    );
    let rows = (&mut svc)
        .oneshot(op::fetch_all(move || {
            sqlx::query(sqlx::AssertSqlSafe(select.clone()))
        }))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_clean(&pool).await;
}
