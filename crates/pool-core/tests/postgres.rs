//! The pool against the real PostgreSQL at 127.0.0.1:5432 (user postgres,
//! trust auth, database `test`).
#![cfg(feature = "postgres")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use keel_pool_core::{DatabaseUrl, PgManager, Pool, PoolError};
use sqlx::Connection;

mod support;
use support::cluster::Cluster;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn manager(url: &str) -> PgManager {
    PgManager::from_url(&url.parse::<DatabaseUrl>().unwrap()).unwrap()
}

async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn checkouts_run_queries_and_reuse_connections() {
    let pool = Pool::builder(manager(URL))
        .max_size(2)
        .build()
        .await
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    let pid = backend_pid(&mut conn).await;
    drop(conn);
    let mut again = pool.get().await.unwrap();
    assert_eq!(
        backend_pid(&mut again).await,
        pid,
        "LIFO hands back the same session"
    );
    assert!(!format!("{:?}", pool.manager()).contains("password"));
}

#[tokio::test]
async fn an_unknown_role_fails_at_once_with_the_servers_auth_error() {
    let pool = Pool::builder(manager(
        "postgres://keel_no_such_role:pw@127.0.0.1:5432/test",
    ))
    .connect_timeout(Duration::from_secs(30))
    .build()
    .await
    .unwrap();
    let err = pool.get().await.unwrap_err();
    let PoolError::Connect(sqlx::Error::Database(db)) = &err else {
        panic!("expected the server's error, got {err:?}");
    };
    assert_eq!(db.code().as_deref(), Some("28000"), "{db}");
    assert!(err.to_string().contains("keel_no_such_role"), "{err}");
    assert!(!err.to_string().contains(":pw@"));
}

#[tokio::test]
async fn terminated_sessions_are_replaced_never_handed_out() {
    let pool = Pool::builder(manager(URL))
        .max_size(4)
        .validate_after_idle(Some(Duration::ZERO))
        .build()
        .await
        .unwrap();
    let mut held = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..4 {
        let mut c = pool.get().await.unwrap();
        pids.push(backend_pid(&mut c).await);
        held.push(c);
    }
    drop(held);
    let mut admin = sqlx::PgConnection::connect_with(manager(URL).options())
        .await
        .unwrap();
    for pid in &pids {
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(killed);
    }
    // Every checkout works, on a live session that is none of the dead ones.
    for _ in 0..8 {
        let mut c = pool.get().await.unwrap();
        let pid = backend_pid(&mut c).await;
        assert!(!pids.contains(&pid), "a terminated session was handed out");
    }
    assert_eq!(pool.stats().closed.invalid, 4);
}

/// A role allowed two connections: the server refuses a third with 53300.
#[cfg(feature = "tower")]
async fn limited_role() -> String {
    let mut admin = sqlx::PgConnection::connect(URL).await.unwrap();
    sqlx::raw_sql(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keel_limited') THEN
                CREATE ROLE keel_limited LOGIN CONNECTION LIMIT 2;
            END IF;
         END $$",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    "postgres://keel_limited@127.0.0.1:5432/test".to_owned()
}

#[tokio::test]
#[cfg(feature = "tower")]
async fn too_many_connections_hands_the_waiter_a_released_connection() {
    // The server refuses the third connection (role limit: 53300).
    support::scenarios::a_refused_waiter_gets_the_released_connection(
        manager(&limited_role().await),
        |c| Box::pin(async move { i64::from(backend_pid(c).await) }),
    )
    .await;
}

#[tokio::test]
async fn a_wrong_password_fails_at_once_with_the_auth_error_and_never_shows_the_password() {
    let cluster = Cluster::start();
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres", None))
        .await
        .unwrap();
    sqlx::query("CREATE ROLE app LOGIN PASSWORD 'right-secret'")
        .execute(&mut admin)
        .await
        .unwrap();

    let wrong = cluster.url("app", Some("wrong-secret"));
    let pool = Pool::builder(manager(&wrong))
        .connect_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let err = pool.get().await.unwrap_err();
    let PoolError::Connect(cause) = &err else {
        panic!("expected the auth error, got {err:?}");
    };
    let code = cause.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("28P01"), "invalid_password: {cause}");
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{pool:?}"),
        format!("{:?}", pool.manager()),
    ] {
        assert!(!shown.contains("wrong-secret"), "password shown: {shown}");
    }
    let stats = pool.stats();
    assert_eq!((stats.size, stats.timeouts.connect), (0, 0));

    let right = Pool::builder(manager(&cluster.url("app", Some("right-secret"))))
        .build()
        .await
        .unwrap();
    let mut conn = right.get().await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(user, "app");
}
