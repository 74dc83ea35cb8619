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

use keel_pool_core::{DatabaseUrl, Manager, PgManager, Pool, PoolError};
use sqlx::Connection;

mod support;

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
    let PoolError::Connect {
        source: sqlx::Error::Database(db),
        ..
    } = &err
    else {
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
    let mut admin = manager(URL).connect_unpooled().await.unwrap();
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
    let pg = keel_fault::ThrowawayPostgres::start_with_passwords().unwrap();
    let as_app =
        |password: &str| format!("postgres://app:{password}@127.0.0.1:{}/postgres", pg.port());
    let mut admin = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE ROLE app LOGIN PASSWORD 'right-secret'")
        .execute(&mut admin)
        .await
        .unwrap();

    let wrong = as_app("wrong-secret");
    let pool = Pool::builder(manager(&wrong))
        .connect_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let err = pool.get().await.unwrap_err();
    let PoolError::Connect { source: cause, .. } = &err else {
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

    let right = Pool::builder(manager(&as_app("right-secret")))
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

#[tokio::test]
async fn a_refused_connection_names_the_endpoint_but_never_the_password() {
    // Port 1 on loopback: nothing listens there.
    let pool = Pool::builder(manager("postgres://app:pw-secret@127.0.0.1:1/orders"))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let err = pool.get().await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("127.0.0.1:1/orders"), "{shown}");
    assert!(matches!(
        err.connect_error(),
        Some(sqlx::Error::Io(io)) if io.kind() == std::io::ErrorKind::ConnectionRefused
    ));
    for shown in [shown, format!("{err:?}"), format!("{:?}", pool.manager())] {
        assert!(!shown.contains("pw-secret"), "password shown: {shown}");
    }
}

/// Connections of this pool in `pg_stat_activity`, by application name.
async fn sessions_named(admin: &mut sqlx::PgConnection, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// PostgreSQL connections whose graceful close takes 50 ms, as over a slow
/// network: the session stays open on the server meanwhile.
#[derive(Debug)]
struct SlowClose(PgManager);

impl Manager for SlowClose {
    type Connection = sqlx::PgConnection;
    type Error = sqlx::Error;

    async fn connect(&self) -> Result<sqlx::PgConnection, sqlx::Error> {
        self.0.connect().await
    }

    async fn validate(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        self.0.validate(conn).await
    }

    fn check_in(&self, conn: &mut sqlx::PgConnection) -> keel_pool_core::CheckIn {
        self.0.check_in(conn)
    }

    async fn reset(&self, conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
        self.0.reset(conn).await
    }

    async fn close(&self, conn: sqlx::PgConnection) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.close(conn).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_churn_the_server_never_holds_more_sessions_than_the_pool_allows() {
    let name = format!("keel-churn-{}", std::process::id());
    let url = format!("{URL}?application_name={name}");
    let (max_size, max_overflow) = (3, 1);
    let pool = Pool::builder(SlowClose(manager(&url)))
        .max_size(max_size)
        .max_overflow(max_overflow)
        .idle_timeout(Some(Duration::from_millis(30)))
        .max_lifetime(Some(Duration::from_millis(200)))
        .build()
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for t in 0..8u64 {
        let (pool, stop) = (pool.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut conn = pool.get().await.unwrap();
                sqlx::query("SELECT pg_sleep(0.002)")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                drop(conn);
                i += 1;
                tokio::time::sleep(Duration::from_millis((t * 7 + i * 13) % 40)).await;
            }
        }));
    }
    let mut admin = sqlx::PgConnection::connect(URL).await.unwrap();
    let mut peak = 0;
    for _ in 0..300 {
        peak = peak.max(sessions_named(&mut admin, &name).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let closed = pool.stats().closed.total();
    pool.close(Duration::from_secs(5)).await.unwrap();
    assert!(closed > 5, "the churn closed only {closed} connections");
    assert!(peak > 0);
    let allowed = i64::try_from(max_size + max_overflow).unwrap();
    assert!(
        peak <= allowed,
        "the server held {peak} of this pool's sessions at once"
    );
}

/// A transaction dropped without commit gives its locks back at once: the
/// pool rolls it back when the connection returns, not at its next
/// checkout (a quiet pool may not check it out for a long time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_releases_its_locks_without_another_checkout() {
    let table = format!("keel_pool_lock_{:08x}", fastrand::u32(..));
    let mut other = sqlx::PgConnection::connect(URL).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id int primary key); INSERT INTO {table} VALUES (1)"
    )))
    .execute(&mut other)
    .await
    .unwrap();
    let pool = Pool::builder(manager(URL))
        .max_size(2)
        .build()
        .await
        .unwrap();
    let mut conn = pool.get().await.unwrap();
    let mut tx = (*conn).begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE id = 1 FOR UPDATE"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    // An early return in the caller's code: no commit, no rollback.
    drop(tx);
    drop(conn);
    let lock = format!("SELECT id FROM {table} WHERE id = 1 FOR UPDATE NOWAIT");
    let mut freed = false;
    for _ in 0..250 {
        let mut tx = other.begin().await.unwrap();
        let taken = sqlx::query(sqlx::AssertSqlSafe(lock.clone()))
            .execute(&mut *tx)
            .await
            .is_ok();
        tx.rollback().await.unwrap();
        if taken {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the row stayed locked with the pool idle");
    // The server frees the lock when it runs the rollback; the pool
    // shelves the connection once it has read the answer, a moment later.
    for _ in 0..250 {
        if pool.stats().idle == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pool.stats().idle, 1, "the connection is idle again");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&mut other)
        .await
        .unwrap();
}
