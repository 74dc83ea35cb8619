//! Calls cancelled while they wait for a connection, on the real
//! PostgreSQL: nothing is leaked or left reserved, and the calls after
//! them, from many spawned tasks, all get through (a database reuses the
//! stack clones its calls are done with).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use keel::sqlx::{self, PgConnection};
use keel::{DatabaseConfig, PgDatabase};
use tokio::sync::Notify;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cancelled_while_waiting_leave_the_pool_whole() {
    let mut config = DatabaseConfig::new(URL.parse().unwrap())
        .with_name(format!("cancelled-{}", std::process::id()));
    config.pool.max_size = 1;
    config.pool.min_idle = 0;
    config.pool.max_overflow = 0;
    let db = PgDatabase::connect(config).await.unwrap();

    // The only connection, held for a while. (The health probe checks a
    // connection out now and then too, so the holder says when it has it.)
    let held = Arc::new(Notify::new());
    let holder = tokio::spawn({
        let (db, held) = (db.clone(), held.clone());
        async move {
            db.with_connection(move |conn: &mut PgConnection| {
                let held = held.clone();
                Box::pin(async move {
                    held.notify_one();
                    sqlx::query("SELECT pg_sleep(0.5)").execute(conn).await?;
                    Ok::<_, sqlx::Error>(())
                })
            })
            .await
        }
    });
    held.notified().await;
    for _ in 0..10 {
        let waiting = db.fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 1"));
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err(),
            "no connection to be had while it is held"
        );
    }
    holder.await.unwrap().unwrap();

    let calls: Vec<_> = (0..64)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.fetch_one(move || sqlx::query_scalar::<_, i32>("SELECT $1").bind(i))
                    .await
            })
        })
        .collect();
    for (i, call) in (0..).zip(calls) {
        assert_eq!(call.await.unwrap().unwrap(), i);
    }
    // Nothing left checked out or waiting (give a health probe's round
    // trip time to finish).
    let mut stats = db.stats();
    for _ in 0..500 {
        if (stats.in_use, stats.waiters) == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stats = db.stats();
    }
    assert_eq!((stats.in_use, stats.waiters), (0, 0), "{stats:?}");
    assert!(stats.size <= 1, "{stats:?}");
    db.shutdown(Duration::from_secs(5)).await.unwrap();
}
