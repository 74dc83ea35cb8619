//! Each phase's timeout, connect errors returned as they are, acquire
//! storms, a server out of connection slots, and close().
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use keel_pool_core::{Phase, PoolConfig, PoolError};
use support::{Fake, FakeError, pool};
use tokio::time::Instant;

fn config(max_size: usize) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.max_size = max_size;
    c.wait_timeout = Duration::from_millis(100);
    c.connect_timeout = Duration::from_secs(1);
    c
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_times_out_in_the_wait_phase() {
    let fake = Fake::new();
    let pool = pool(&fake, config(1)).await;
    let _held = pool.get().await.unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(err, PoolError::Timeout { phase: Phase::Wait, waited } if waited >= Duration::from_millis(100)),
        "{err:?}"
    );
    assert_eq!(pool.stats().timeouts.wait, 1);
}

#[tokio::test(start_paused = true)]
async fn a_nested_checkout_on_a_full_pool_ends_with_the_wait_timeout() {
    let fake = Fake::new();
    let pool = pool(&fake, config(1)).await;
    let outer = pool.get().await.unwrap();
    // The same task asks for a second connection while holding the only one.
    let inner = pool.get().await;
    assert_eq!(inner.unwrap_err().timeout_phase(), Some(Phase::Wait));
    drop(outer);
}

#[tokio::test(start_paused = true)]
async fn a_slow_connect_times_out_in_the_connect_phase() {
    let fake = Fake::new();
    fake.set_connect_delay(Duration::from_secs(5));
    let pool = pool(&fake, config(1)).await;
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Connect));
    assert_eq!(pool.stats().timeouts.connect, 1);
    // The slot came back.
    fake.set_connect_delay(Duration::ZERO);
    drop(pool.get().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_fails_at_once_with_the_auth_error() {
    let fake = Fake::new();
    fake.fail_next(&[FakeError::Auth]);
    let pool = pool(&fake, config(4)).await;
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Connect {
                source: FakeError::Auth,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("password authentication failed"));
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no retry loop, no timeout"
    );
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_acquire_storm_opens_no_connection_for_waiters_that_timed_out() {
    let fake = Fake::new();
    fake.set_connect_delay(Duration::from_millis(50));
    let mut c = config(4);
    c.wait_timeout = Duration::from_millis(10);
    let pool = pool(&fake, c).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move { pool.get().await.map(drop) }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    // Four slots, four connects; the 196 others timed out in the queue and
    // started nothing.
    assert_eq!(fake.attempts(), 4);
    assert_eq!(ok, 4);
    assert_eq!(pool.stats().timeouts.wait, 196);
    assert_eq!(pool.stats().idle, 4);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_checkout_keeps_the_connection_being_opened_for_it() {
    let fake = Fake::new();
    fake.set_connect_delay(Duration::from_millis(50));
    let pool = pool(&fake, config(1)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(10), pool.get())
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = pool.stats();
    assert_eq!((s.size, s.idle), (1, 1));
    drop(pool.get().await.unwrap());
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn too_many_connections_waits_for_a_released_connection() {
    let fake = Fake::new();
    let pool = pool(&fake, config(4)).await;
    let held = pool.get().await.unwrap();
    let held_id = held.id;
    fake.fail_next(&[FakeError::TooMany]);
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|c| c.id) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), held_id);
}

#[tokio::test(start_paused = true)]
async fn too_many_connections_with_nothing_released_returns_the_server_error() {
    let fake = Fake::new();
    let pool = pool(&fake, config(4)).await;
    let _held = pool.get().await.unwrap();
    fake.fail_next(&[FakeError::TooMany]);
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Connect {
                source: FakeError::TooMany,
                ..
            }
        ),
        "{err:?}"
    );
    // With nothing checked out there is nothing to wait for.
    drop(_held);
    pool.evict_all();
    fake.fail_next(&[FakeError::TooMany]);
    let started = Instant::now();
    assert!(pool.get().await.is_err());
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn close_drains_within_the_deadline() {
    let fake = Fake::new();
    let pool = pool(&fake, config(2)).await;
    let held = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    let blocker = pool.get().await.unwrap();
    let queued = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    tokio::task::yield_now().await;
    assert_eq!(pool.stats().waiters, 1);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
        drop(blocker);
    });
    pool.close(Duration::from_secs(1)).await.unwrap();
    assert!(queued.await.unwrap().unwrap_err().is_closed());
    assert_eq!(pool.stats().size, 0);
    assert_eq!(fake.open(), 0, "no connection is open after close returns");
    assert!(pool.get().await.unwrap_err().is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_guard_dropped_after_the_close_deadline_closes_its_connection() {
    let fake = Fake::new();
    let pool = pool(&fake, config(2)).await;
    let held = pool.get().await.unwrap();
    let err = pool.close(Duration::from_millis(50)).await.unwrap_err();
    assert_eq!(err.still_open, 1);
    assert_eq!(fake.open(), 1);
    drop(held);
    assert_eq!(fake.open(), 0);
    assert_eq!(pool.stats().size, 0);
}
