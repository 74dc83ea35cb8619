//! Checkout and return, reuse order, validation, reset, lifetimes, idle
//! timeout, overflow, resize and eviction, on the fake backend in paused time.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_pool_core::{CloseReason, Event, Pool, PoolConfig, QueueMode};
use support::{Fake, pool};

fn config() -> PoolConfig {
    let mut c = PoolConfig::default();
    c.max_size = 4;
    c
}

#[tokio::test(start_paused = true)]
async fn returned_connections_are_reused_lifo_by_default() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let (ida, idb) = (a.id, b.id);
    assert_eq!(pool.stats().in_use, 2);
    drop(a);
    drop(b);
    let s = pool.stats();
    assert_eq!((s.size, s.idle, s.in_use), (2, 2, 0));
    assert_eq!(pool.get().await.unwrap().id, idb);
    assert_eq!(fake.connects(), 2);
    let _ = ida;
}

#[tokio::test(start_paused = true)]
async fn fifo_mode_hands_out_the_oldest_idle_connection() {
    let fake = Fake::new();
    let mut c = config();
    c.queue = QueueMode::Fifo;
    let pool = pool(&fake, c).await;
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let ida = a.id;
    drop(a);
    drop(b);
    assert_eq!(pool.get().await.unwrap().id, ida);
}

#[tokio::test(start_paused = true)]
async fn one_broken_connection_gets_its_idle_siblings_validated_once() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    let (a, b, c) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    drop(b);
    drop(c);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A failover broke `a`; its idle siblings were idle through it.
    a.discard();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    assert_eq!(
        fake.validations(),
        2,
        "each idle sibling is checked before use"
    );
    drop((first, second));
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(
        fake.validations(),
        2,
        "returned after the breakage: trusted again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hot_checkout_makes_no_validation_round_trip() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    for _ in 0..100 {
        drop(pool.get().await.unwrap());
    }
    assert_eq!(fake.validations(), 0);
    // Idle for longer than validate_after_idle (1 s): validated once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(pool.get().await.unwrap());
    assert_eq!(fake.validations(), 1);
    drop(pool.get().await.unwrap());
    assert_eq!(fake.validations(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_idle_connection_is_replaced_never_handed_out() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    let conns: Vec<_> = futures_join(&pool, 3).await;
    drop(conns);
    fake.kill_all();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = pool.get().await.unwrap();
    assert!(
        c.alive.load(Ordering::SeqCst),
        "a dead connection was handed out"
    );
    assert_eq!(pool.stats().closed.invalid, 3);
    assert_eq!(pool.stats().size, 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_is_closed_at_check_in() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    let c = pool.get().await.unwrap();
    c.alive.store(false, Ordering::SeqCst);
    drop(c);
    let s = pool.stats();
    assert_eq!((s.size, s.closed.broken), (0, 1));
    assert_eq!(fake.open(), 0);
}

/// A connection returned mid-transaction is reset at once, off the
/// caller's path, not at its next checkout: until reset it would keep the
/// transaction's locks, however long the pool stays quiet.
#[tokio::test(start_paused = true)]
async fn a_dirty_connection_is_reset_at_once_in_the_background() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    let mut c = pool.get().await.unwrap();
    c.dirty = true;
    drop(c);
    assert_eq!(
        fake.state.resets.load(Ordering::SeqCst),
        0,
        "release does no I/O on the caller's path"
    );
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fake.state.resets.load(Ordering::SeqCst),
        1,
        "reset with no checkout"
    );
    assert_eq!(pool.stats().idle, 1, "then idle");
    let c = pool.get().await.unwrap();
    assert!(!c.dirty);
    assert_eq!(fake.state.resets.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_connection_dropped_mid_validation_is_closed() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    drop(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.set_validate_delay(Duration::from_secs(1));
    let attempt = tokio::time::timeout(Duration::from_millis(100), pool.get()).await;
    assert!(attempt.is_err());
    let s = pool.stats();
    assert_eq!((s.size, s.closed.broken), (0, 1));
    assert_eq!(fake.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_recycles_connections_with_jitter() {
    let fake = Fake::new();
    let mut c = config();
    c.max_lifetime = Some(Duration::from_secs(60));
    c.lifetime_jitter = 0.1;
    let pool = pool(&fake, c).await;
    drop(futures_join(&pool, 4).await);
    tokio::time::sleep(Duration::from_secs(53)).await;
    assert_eq!(pool.stats().size, 4, "no connection retires before 54 s");
    tokio::time::sleep(Duration::from_secs(9)).await;
    let s = pool.stats();
    assert_eq!((s.size, s.closed.lifetime), (0, 4));
    assert_eq!(fake.state.graceful_closes.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_checked_out_connection_past_its_lifetime_closes_on_return() {
    let fake = Fake::new();
    let mut c = config();
    c.max_lifetime = Some(Duration::from_secs(10));
    let pool = pool(&fake, c).await;
    let conn = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    drop(conn);
    assert_eq!(pool.stats().closed.lifetime, 1);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_shrinks_to_min_idle_and_never_below() {
    let fake = Fake::new();
    let mut c = config();
    c.min_idle = 2;
    c.idle_timeout = Some(Duration::from_secs(30));
    c.max_lifetime = None;
    let pool = pool(&fake, c).await;
    drop(futures_join(&pool, 4).await);
    assert_eq!(pool.stats().idle, 4);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(pool.stats().idle, 4);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let s = pool.stats();
    assert_eq!((s.idle, s.closed.idle), (2, 2));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(pool.stats().idle, 2);
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_kept_open_in_the_background() {
    let fake = Fake::new();
    let mut c = config();
    c.min_idle = 3;
    let pool = pool(&fake, c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.stats().idle, 3);
    let conn = pool.get().await.unwrap();
    conn.alive.store(false, Ordering::SeqCst);
    drop(conn);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.stats().idle, 3, "maintenance replaced the broken one");
}

#[tokio::test(start_paused = true)]
async fn warm_opens_min_idle_in_build_and_fails_fast() {
    let fake = Fake::new();
    let mut c = config();
    c.min_idle = 2;
    c.warm = true;
    let pool = pool(&fake, c.clone()).await;
    assert_eq!(pool.stats().idle, 2);

    let failing = Fake::new();
    failing.fail_next(&[support::FakeError::Auth]);
    let err = Pool::builder(failing).config(c).build().await.unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn overflow_connections_linger_for_the_idle_timeout() {
    let fake = Fake::new();
    let mut c = config();
    c.max_size = 2;
    c.max_overflow = 2;
    c.idle_timeout = Some(Duration::from_secs(30));
    let pool = pool(&fake, c).await;
    let conns = futures_join(&pool, 4).await;
    let s = pool.stats();
    assert_eq!((s.in_use, s.overflow_in_use), (4, 2));
    drop(conns);
    // Returned overflow connections are not closed at check-in...
    assert_eq!(pool.stats().idle, 4);
    // ...so a second burst reuses them without connecting.
    drop(futures_join(&pool, 4).await);
    assert_eq!(fake.connects(), 4);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(pool.stats().size, 0);
}

#[tokio::test(start_paused = true)]
async fn evict_all_retires_the_generation() {
    let fake = Fake::new();
    let pool = pool(&fake, config()).await;
    let held = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    pool.evict_all();
    assert_eq!(pool.stats().closed.evicted, 1);
    let fresh = pool.get().await.unwrap();
    assert_ne!(fresh.id, held.id);
    drop(held);
    assert_eq!(pool.stats().closed.evicted, 2);
    drop(fresh);
    assert_eq!(pool.stats().idle, 1);
    assert_eq!(pool.generation(), 1);
}

#[tokio::test(start_paused = true)]
async fn resize_grows_at_once_and_shrinks_as_connections_return() {
    let fake = Fake::new();
    let mut c = config();
    c.max_size = 2;
    c.wait_timeout = Duration::from_millis(50);
    let pool = pool(&fake, c).await;
    let two = futures_join(&pool, 2).await;
    assert!(pool.get().await.unwrap_err().is_timeout());
    pool.resize(3).unwrap();
    let third = pool.get().await.unwrap();
    pool.resize(1).unwrap();
    drop(two);
    drop(third);
    let s = pool.stats();
    assert_eq!((s.size, s.max_size, s.closed.shrunk), (1, 1, 2));
    let one = pool.get().await.unwrap();
    assert!(pool.get().await.unwrap_err().is_timeout());
    drop(one);
    assert!(pool.resize(0).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_held_checkout_is_reported_as_a_suspected_leak_with_its_location() {
    let fake = Fake::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let pool = Pool::builder(fake.clone())
        .max_size(2)
        .leak_threshold(Some(Duration::from_secs(5)))
        .observer(move |e: &Event<'_>| {
            if let Event::LeakSuspected {
                id, acquired_at, ..
            } = e
            {
                sink.lock()
                    .unwrap()
                    .push((*id, acquired_at.line(), acquired_at.file()));
            }
        })
        .build()
        .await
        .unwrap();
    let line = line!() + 1;
    let held = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_secs(7)).await;
    let seen = events.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "reported once: {seen:?}");
    assert_eq!(seen[0].0, held.id());
    assert_eq!(seen[0].1, line);
    assert!(seen[0].2.ends_with("pool_lifecycle.rs"));
}

#[tokio::test(start_paused = true)]
async fn events_report_connects_and_closes_with_the_pool_name() {
    let fake = Fake::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let pool = Pool::builder(fake.clone())
        .name("orders")
        .observer(move |e: &Event<'_>| {
            let seen = match e {
                Event::Connected { name, .. } => format!("{name} connected"),
                Event::Closed { name, reason, .. } => format!("{name} closed:{}", reason.as_str()),
                _ => return,
            };
            sink.lock().unwrap().push(seen);
        })
        .build()
        .await
        .unwrap();
    assert_eq!(pool.name(), "orders");
    let c = pool.get().await.unwrap();
    c.alive.store(false, Ordering::SeqCst);
    drop(c);
    assert_eq!(
        *events.lock().unwrap(),
        ["orders connected", "orders closed:broken"]
    );
    assert_eq!(CloseReason::ALL.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn detach_takes_the_connection_out_and_frees_the_slot() {
    let fake = Fake::new();
    let mut c = config();
    c.max_size = 1;
    let pool = pool(&fake, c).await;
    let raw = pool.get().await.unwrap().detach();
    assert_eq!(pool.stats().size, 0);
    let other = pool.get().await.unwrap();
    assert_ne!(other.id, raw.id);
}

/// Checks out `n` connections at once.
async fn futures_join(pool: &Pool<Fake>, n: usize) -> Vec<keel_pool_core::Pooled<Fake>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(pool.get().await.unwrap());
    }
    out
}
