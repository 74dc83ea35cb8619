//! The pool never holds more connections than `max_size + max_overflow`,
//! also while connections close, and its stats say where each one is.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use keel_pool_core::{PoolConfig, ResizeError};
use support::{Fake, pool};

#[tokio::test(start_paused = true)]
async fn a_slow_close_keeps_its_slot_until_the_connection_is_gone() {
    let fake = Fake::new();
    let mut c = PoolConfig::default();
    c.max_size = 2;
    c.idle_timeout = Some(Duration::from_secs(2));
    c.validate_after_idle = None;
    let pool = pool(&fake, c).await;
    // Two connections go idle, time out, and take 1 s each to close.
    drop((pool.get().await.unwrap(), pool.get().await.unwrap()));
    fake.set_close_delay(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let s = pool.stats();
    assert_eq!((s.size, s.idle, s.closing, s.in_use), (2, 0, 2, 0), "{s:?}");
    // Two checkouts now: while the closes run, neither may open a third
    // connection next to the two that are still open on the server.
    let (a, b) = tokio::join!(pool.get(), pool.get());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        fake.peak() <= 2,
        "the backend held {} connections",
        fake.peak()
    );
    let s = pool.stats();
    assert!(s.size <= 2, "{s:?}");
    assert_eq!((s.size, s.in_use, s.closing), (2, 2, 0), "{s:?}");
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn churn_with_slow_closes_never_exceeds_capacity() {
    let fake = Fake::new();
    let mut c = PoolConfig::default();
    c.max_size = 3;
    c.max_overflow = 1;
    c.idle_timeout = Some(Duration::from_millis(40));
    c.max_lifetime = Some(Duration::from_millis(300));
    c.validate_after_idle = None;
    let pool = pool(&fake, c).await;
    fake.set_close_delay(Duration::from_millis(70));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60u64 {
                let conn = pool.get().await.unwrap();
                tokio::time::sleep(Duration::from_millis((t * 7 + i * 13) % 50)).await;
                drop(conn);
                tokio::time::sleep(Duration::from_millis((t * 11 + i * 3) % 90)).await;
                assert!(pool.stats().size <= 4);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        fake.peak() <= 4,
        "the backend held {} connections",
        fake.peak()
    );
    assert!(pool.stats().closed.total() > 10, "{:?}", pool.stats());
}

#[tokio::test(start_paused = true)]
async fn a_connect_in_progress_is_counted() {
    let fake = Fake::new();
    fake.set_connect_delay(Duration::from_secs(1));
    let pool = pool(&fake, PoolConfig::default()).await;
    let checkout = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = pool.stats();
    assert_eq!((s.connecting, s.size, s.in_use), (1, 0, 0), "{s:?}");
    checkout.await.unwrap().unwrap();
    let s = pool.stats();
    assert_eq!((s.connecting, s.size, s.idle), (0, 1, 1), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_closed_pool_refuses_to_resize_and_keeps_its_size() {
    let fake = Fake::new();
    let pool = pool(&fake, PoolConfig::default()).await;
    drop(pool.get().await.unwrap());
    pool.close(Duration::from_secs(1)).await.unwrap();
    assert_eq!(pool.resize(16), Err(ResizeError::Closed));
    let s = pool.stats();
    assert_eq!((s.max_size, s.size, s.idle), (10, 0, 0), "{s:?}");
}
