//! The pool against the real MariaDB at 127.0.0.1:3306 (root, empty
//! password, database `test`).
#![cfg(all(feature = "mysql", feature = "tower"))]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use keel_pool_core::op;
use keel_pool_core::{DatabaseUrl, MySqlManager, Pool};
use sqlx::Connection;

mod support;
use support::scenarios;

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
    scenarios::a_refused_waiter_gets_the_released_connection(
        manager("mysql://keel_limited@127.0.0.1:3306"),
        |c| Box::pin(async move { i64::try_from(connection_id(c).await).unwrap() }),
    )
    .await;
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
    scenarios::the_command_timeout_stops_the_statement_on_the_server(&pool, sleep, || {
        running(&marker)
    })
    .await;
}
