//! The pool against the real MariaDB at 127.0.0.1:3306 (root, empty
//! password, database `test`).
#![cfg(all(feature = "mysql", feature = "tower"))]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use keel_pool_core::op::{self, CommandTimeout};
use keel_pool_core::{DatabaseUrl, Event, MySqlManager, Pool, PoolError};
use sqlx::Connection;
use tower::ServiceExt;

mod support;
use support::eventually;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

fn manager(url: &str) -> MySqlManager {
    MySqlManager::from_url(&url.parse::<DatabaseUrl>().unwrap()).unwrap()
}

async fn connection_id(conn: &mut sqlx::MySqlConnection) -> u64 {
    sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn killed_sessions_are_replaced_never_handed_out() {
    let pool = Pool::builder(manager(URL))
        .max_size(3)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .await
        .unwrap();
    let mut held = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut c = pool.get().await.unwrap();
        ids.push(connection_id(&mut c).await);
        held.push(c);
    }
    drop(held);
    let mut admin = sqlx::MySqlConnection::connect(URL).await.unwrap();
    for id in &ids {
        sqlx::query("KILL ?")
            .bind(id)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    for _ in 0..6 {
        let mut c = pool.get().await.unwrap();
        assert!(!ids.contains(&connection_id(&mut c).await));
    }
    assert_eq!(pool.stats().closed.invalid, 3);
}

#[tokio::test]
async fn a_users_connection_limit_hands_the_waiter_a_released_connection() {
    let mut admin = sqlx::MySqlConnection::connect(URL).await.unwrap();
    sqlx::raw_sql(
        "CREATE USER IF NOT EXISTS 'keel_limited'@'%' WITH MAX_USER_CONNECTIONS 2;
         CREATE USER IF NOT EXISTS 'keel_limited'@'localhost' WITH MAX_USER_CONNECTIONS 2;
         GRANT USAGE ON *.* TO 'keel_limited'@'%';
         GRANT USAGE ON *.* TO 'keel_limited'@'localhost';",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let refused = Arc::new(tokio::sync::Notify::new());
    let seen = refused.clone();
    let pool = Pool::builder(manager("mysql://keel_limited@127.0.0.1:3306"))
        .max_size(4)
        .wait_timeout(Duration::from_secs(10))
        .observer(move |e: &Event<'_>| {
            if matches!(e, Event::ConnectFailed { .. }) {
                seen.notify_one();
            }
        })
        .build()
        .await
        .unwrap();
    let mut a = pool.get().await.unwrap();
    let a_id = connection_id(&mut a).await;
    let _b = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut c = pool.get().await?;
            Ok::<_, PoolError<sqlx::Error>>(connection_id(&mut c).await)
        })
    };
    refused.notified().await;
    drop(a);
    assert_eq!(waiter.await.unwrap().unwrap(), a_id);
}

/// Sessions running a statement that contains `marker`.
async fn running(marker: &str) -> i64 {
    let mut admin = sqlx::MySqlConnection::connect(URL).await.unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.PROCESSLIST \
         WHERE COMMAND <> 'Sleep' AND INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
    )
    .bind(marker)
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_command_timeout_kills_the_query_on_the_server() {
    let pool = Pool::builder(manager(URL))
        .max_size(1)
        .build()
        .await
        .unwrap();
    let marker = format!("keel_kill_{}", std::process::id());
    // BENCHMARK, unlike SLEEP, never notices the client has gone.
    let sql = format!("SELECT BENCHMARK(500000000, MD5('keel')) /* {marker} */");
    let sleep = op::with_connection(move |c: &mut sqlx::MySqlConnection| {
        let sql = sql.clone();
        Box::pin(async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(c)
                .await
                .map(drop)
        })
    })
    .timeout(Duration::from_millis(300));
    let err = pool.service().oneshot(sleep).await.unwrap_err();
    assert!(err.downcast_ref::<CommandTimeout>().is_some(), "{err}");
    eventually("the server stops the query", || async {
        running(&marker).await == 0
    })
    .await;
    let pool = &pool;
    eventually("the interrupted connection is closed", || async move {
        pool.stats().closed.broken == 1
    })
    .await;
}
