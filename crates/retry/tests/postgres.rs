//! Against the real PostgreSQL (KEEL_TEST_PG_URL, default
//! postgres://postgres@127.0.0.1:5432/test): conflicts and deadlocks are
//! retried to success, constraint violations are not, and a non-idempotent
//! statement is not retried after the connection breaks under it.
#![cfg(feature = "sqlx")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_retry::{
    ErrorClass, Event, GaveUp, Idempotency, Jitter, Retrier, RetryPolicy, Schedule, SqlxClassifier,
};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Barrier, Notify};

fn url() -> String {
    std::env::var("KEEL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn connect() -> PgConnection {
    PgConnection::connect(&url())
        .await
        .expect("PostgreSQL at KEEL_TEST_PG_URL")
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(drop)
}

/// A table of its own for each test, dropped at the end.
struct Table {
    name: String,
}

impl Table {
    async fn create(test: &str, columns: &str) -> Self {
        let name = format!("keel_retry_{test}_{}", std::process::id());
        let mut c = connect().await;
        exec(
            &mut c,
            format!("DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({columns})"),
        )
        .await
        .unwrap();
        Self { name }
    }

    async fn count(&self) -> i64 {
        let mut c = connect().await;
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", self.name)))
            .fetch_one(&mut c)
            .await
            .unwrap()
    }

    async fn drop_it(self) {
        let mut c = connect().await;
        exec(&mut c, format!("DROP TABLE {}", self.name))
            .await
            .unwrap();
    }
}

/// Runs `body` in a transaction; rolls back on error so the connection can
/// be reused by the next attempt.
async fn transaction(
    conn: &mut PgConnection,
    begin: &str,
    body: Vec<String>,
    barrier: Option<&Barrier>,
) -> Result<(), sqlx::Error> {
    let result = async {
        exec(conn, begin.to_string()).await?;
        for (i, sql) in body.into_iter().enumerate() {
            if i == 1
                && let Some(b) = barrier
            {
                b.wait().await;
            }
            exec(conn, sql).await?;
        }
        exec(conn, "COMMIT".into()).await
    }
    .await;
    if result.is_err() {
        let _ = exec(conn, "ROLLBACK".into()).await;
    }
    result
}

fn conflict_retrier(events: &Arc<Mutex<Vec<Event>>>) -> Retrier<SqlxClassifier> {
    let sink = events.clone();
    Retrier::builder(RetryPolicy::default().with_class(
        ErrorClass::Conflict,
        // Room for a loaded machine: the loser's retries fail again while
        // the winner has not committed yet (seen with 4 attempts in CI).
        Schedule::new(10, Duration::from_millis(10)).with_max_delay(Duration::from_millis(200)),
    ))
    .classifier(SqlxClassifier)
    .observer(move |e: &Event| sink.lock().unwrap().push(*e))
    .build()
    .unwrap()
}

fn conflicts_seen(events: &Mutex<Vec<Event>>) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::AttemptFailed {
                    class: Some(ErrorClass::Conflict),
                    ..
                }
            )
        })
        .count()
}

/// Runs two transactions that collide on their first attempt (a barrier
/// holds each after its first statement until both got there), each retried
/// by [`conflict_retrier`]. Returns each one's attempts, sorted, and the
/// conflicts the observers saw.
async fn race(
    begin: &'static str,
    session_setup: &'static str,
    bodies: [Vec<String>; 2],
) -> (Vec<u32>, usize) {
    let barrier = Arc::new(Barrier::new(2));
    let events = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (barrier, retrier) = (barrier.clone(), conflict_retrier(&events));
            tokio::spawn(async move {
                let mut conn = connect().await;
                if !session_setup.is_empty() {
                    exec(&mut conn, session_setup.into()).await.unwrap();
                }
                let conn = Arc::new(tokio::sync::Mutex::new(conn));
                let attempts = AtomicU32::new(0);
                retrier
                    .run(|| {
                        let first = attempts.fetch_add(1, Ordering::SeqCst) == 0;
                        let (conn, barrier, body) = (conn.clone(), barrier.clone(), body.clone());
                        async move {
                            let b = if first { Some(&*barrier) } else { None };
                            transaction(&mut *conn.lock().await, begin, body, b).await
                        }
                    })
                    .await
                    .map(|()| attempts.load(Ordering::SeqCst))
            })
        })
        .collect();
    let mut attempts = Vec::new();
    for w in workers {
        attempts.push(
            w.await
                .unwrap()
                .expect("both transactions commit in the end"),
        );
    }
    attempts.sort_unstable();
    (attempts, conflicts_seen(&events))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failure_is_retried_as_a_whole_transaction() {
    let table = Table::create("serializable", "id int primary key").await;
    let name = &table.name;
    // Both read the whole table before either writes: write skew.
    let body = |worker: u32| {
        vec![
            format!("SELECT count(*) FROM {name}"),
            format!("INSERT INTO {name} SELECT coalesce(max(id), 0) + {worker} FROM {name}"),
        ]
    };
    let (attempts, conflicts) =
        race("BEGIN ISOLATION LEVEL SERIALIZABLE", "", [body(1), body(2)]).await;
    assert_eq!(attempts[0], 1, "the winner commits at once");
    assert!(attempts[1] >= 2, "the loser is retried: {attempts:?}");
    assert!(conflicts >= 1, "a 40001 was seen");
    assert_eq!(table.count().await, 2);
    table.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_is_retried_to_success() {
    let table = Table::create("deadlock", "id int primary key, v int").await;
    let name = &table.name;
    exec(
        &mut connect().await,
        format!("INSERT INTO {name} VALUES (1, 0), (2, 0)"),
    )
    .await
    .unwrap();
    // Each locks one row, then wants the other's.
    let body = |first: u32, second: u32| {
        vec![
            format!("UPDATE {name} SET v = v + 1 WHERE id = {first}"),
            format!("UPDATE {name} SET v = v + 1 WHERE id = {second}"),
        ]
    };
    let (attempts, conflicts) = race(
        "BEGIN",
        "SET deadlock_timeout = '50ms'",
        [body(1, 2), body(2, 1)],
    )
    .await;
    assert!(
        attempts[1] >= 2,
        "the deadlock victim is retried: {attempts:?}"
    );
    assert!(conflicts >= 1, "a 40P01 was seen");
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT sum(v) FROM {name}")))
        .fetch_one(&mut connect().await)
        .await
        .unwrap();
    assert_eq!(total, 4, "each transaction applied exactly once");
    table.drop_it().await;
}

#[tokio::test]
async fn unique_violation_is_not_retried() {
    let table = Table::create("unique", "id int primary key").await;
    let conn = Arc::new(tokio::sync::Mutex::new(connect().await));
    let calls = AtomicU32::new(0);
    let retrier = Retrier::builder(RetryPolicy::default())
        .classifier(SqlxClassifier)
        .build()
        .unwrap();
    let insert = format!("INSERT INTO {} VALUES (1)", table.name);
    let attempt = || {
        calls.fetch_add(1, Ordering::SeqCst);
        let (conn, insert) = (conn.clone(), insert.clone());
        async move { exec(&mut *conn.lock().await, insert).await }
    };
    retrier.run(attempt).await.unwrap();
    let err = retrier.run(attempt).await.unwrap_err();
    assert_eq!((err.reason(), err.attempts()), (GaveUp::Permanent, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one call each");
    let code = match err.inner() {
        Some(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
        other => panic!("expected a database error, got {other:?}"),
    };
    assert_eq!(code.as_deref(), Some("23505"));
    table.drop_it().await;
}

/// A TCP proxy in front of PostgreSQL whose connections can be cut.
struct Proxy {
    port: u16,
    cut: Arc<Notify>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(Notify::new());
        let cutter = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let cutter = cutter.clone();
                tokio::spawn(async move {
                    let mut server = TcpStream::connect("127.0.0.1:5432").await.unwrap();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cutter.notified() => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }
}

/// Inserts one row through the proxy, cutting the connection mid-statement
/// on the first attempt. Returns the attempts made and the outcome.
async fn insert_through_a_breaking_connection(
    idempotency: Idempotency,
    table: &str,
) -> (u32, Option<GaveUp>) {
    let proxy = Proxy::start().await;
    let retrier = Retrier::builder(
        RetryPolicy::default()
            .with_default(Schedule::new(3, Duration::from_millis(50)).with_jitter(Jitter::None)),
    )
    .classifier(SqlxClassifier)
    .idempotency(idempotency)
    .build()
    .unwrap();
    let attempts = AtomicU32::new(0);
    let insert = format!("INSERT INTO {table} SELECT 1 FROM pg_sleep(0.5)");
    let result = retrier
        .run(|| {
            let first = attempts.fetch_add(1, Ordering::SeqCst) == 0;
            let (url, cut, insert) = (proxy.url(), proxy.cut.clone(), insert.clone());
            async move {
                let mut conn = PgConnection::connect(&url).await?;
                if first {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        cut.notify_waiters();
                    });
                }
                exec(&mut conn, insert).await
            }
        })
        .await;
    if let Err(e) = &result {
        assert!(
            matches!(e.inner(), Some(sqlx::Error::Io(_))),
            "the break surfaces as an I/O error: {e:?}"
        );
    }
    (
        attempts.load(Ordering::SeqCst),
        result.err().map(|e| e.reason()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_insert_is_not_retried_after_connection_loss() {
    let table = Table::create("nonidem", "v int").await;
    let (attempts, gave_up) =
        insert_through_a_breaking_connection(Idempotency::NonIdempotent, &table.name).await;
    assert_eq!((attempts, gave_up), (1, Some(GaveUp::NotIdempotent)));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(table.count().await <= 1, "never written twice");
    table.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_work_is_retried_after_connection_loss() {
    let table = Table::create("idem", "v int").await;
    let (attempts, gave_up) =
        insert_through_a_breaking_connection(Idempotency::Idempotent, &table.name).await;
    assert_eq!((attempts, gave_up), (2, None));
    assert!(table.count().await >= 1);
    table.drop_it().await;
}
