//! `PoolCheck` over an in-process manager: the verdicts its stats lead to.
//! (Against a real PostgreSQL: keel-tests' `health_postgres.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel_health::checks::PoolCheck;
use keel_health::{HealthCheck, Status};
use keel_pool_core::{Manager, Pool};

#[derive(Debug, Default)]
struct Fake {
    down: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("connection refused by db.internal:5432")]
struct Refused;

impl Manager for Fake {
    type Connection = ();
    type Error = Refused;

    async fn connect(&self) -> Result<(), Refused> {
        if self.down.load(Ordering::SeqCst) {
            Err(Refused)
        } else {
            Ok(())
        }
    }

    async fn validate(&self, _conn: &mut ()) -> Result<(), Refused> {
        if self.down.load(Ordering::SeqCst) {
            Err(Refused)
        } else {
            Ok(())
        }
    }
}

async fn pool(max_size: usize) -> (Pool<Fake>, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(false));
    let pool = Pool::builder(Fake {
        down: Arc::clone(&down),
    })
    .name("orders")
    .max_size(max_size)
    .wait_timeout(Duration::from_millis(100))
    .build()
    .await
    .unwrap();
    (pool, down)
}

#[tokio::test(start_paused = true)]
async fn healthy_with_the_stats_in_the_details() {
    let (pool, _) = pool(4).await;
    let outcome = PoolCheck::new(pool).check().await;
    assert_eq!(outcome.status(), Status::Healthy, "{outcome:?}");
    let stats = &outcome.details()["pool"];
    assert_eq!(stats["name"], "orders");
    assert_eq!(stats["max_size"], 4);
    assert_eq!(stats["in_use"], 0);
}

#[tokio::test(start_paused = true)]
async fn degraded_only_when_utilisation_stays_high() {
    let (pool, _) = pool(5).await;
    let check = PoolCheck::new(pool.clone());
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get().await.unwrap());
    }
    // 4 of 5 in use: at the threshold once is a spike, twice in a row stays.
    assert_eq!(check.check().await.status(), Status::Healthy);
    let outcome = check.check().await;
    assert_eq!(outcome.status(), Status::Degraded);
    assert!(outcome.message().unwrap().contains("80%"), "{outcome:?}");
    held.pop();
    assert_eq!(check.check().await.status(), Status::Healthy);
    let relaxed = PoolCheck::new(pool.clone()).utilisation_threshold(0.95);
    held.push(pool.get().await.unwrap());
    assert_eq!(relaxed.check().await.status(), Status::Healthy);
    assert_eq!(relaxed.check().await.status(), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn degraded_when_callers_queued_since_the_last_run() {
    let (pool, _) = pool(2).await;
    let check = PoolCheck::new(pool.clone());
    assert_eq!(check.check().await.status(), Status::Healthy);
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(first);
    waiter.await.unwrap().unwrap();
    drop(second);
    let outcome = check.check().await;
    assert_eq!(outcome.status(), Status::Degraded, "{outcome:?}");
    assert!(outcome.message().unwrap().contains("queued"), "{outcome:?}");
    assert_eq!(check.check().await.status(), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn unhealthy_when_no_connection_can_be_had() {
    let (pool, down) = pool(2).await;
    down.store(true, Ordering::SeqCst);
    let outcome = PoolCheck::new(pool).check().await;
    assert_eq!(outcome.status(), Status::Unhealthy);
    assert!(
        outcome
            .message()
            .unwrap()
            .contains("connection refused by db.internal:5432"),
        "{outcome:?}"
    );
}
