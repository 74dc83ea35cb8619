//! Fairness, lost wake-ups and cancellation under load.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel_pool_core::{Pool, PoolConfig};
use support::Fake;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn one_connection_a_hundred_tasks_nobody_waits_more_than_a_hundred_holds() {
    let fake = Fake::new();
    let pool = Pool::builder(fake.clone())
        .max_size(1)
        .wait_timeout(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let hold = Duration::from_millis(1);
    let rounds = 10;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            for _ in 0..rounds {
                let asked = Instant::now();
                let conn = pool.get().await.unwrap();
                waits.push(asked.elapsed());
                tokio::time::sleep(hold).await;
                drop(conn);
            }
            waits
        }));
    }
    let mut waits = Vec::new();
    for t in tasks {
        waits.extend(t.await.unwrap());
    }
    waits.sort();
    let max = *waits.last().unwrap();
    assert!(
        max <= hold * 101,
        "a waiter waited {max:?}: more than 100 holds"
    );
    // In steady state every waiter waits for the 99 others: the tail is
    // the median (a queue-jumping pool makes p99 many times p50).
    let p50 = waits[waits.len() / 2];
    let p99 = waits[waits.len() * 99 / 100];
    assert!(p99 <= p50 * 3 / 2, "p50 {p50:?}, p99 {p99:?}");
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let fake = Fake::new();
    let pool = Pool::builder(fake.clone())
        .max_size(1)
        .build()
        .await
        .unwrap();
    let held = pool.get().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (pool, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let conn = pool.get().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(conn);
        }));
        // Let it queue before the next one arrives.
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.stats().waiters, 20);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_a_small_pool_without_timeouts_never_hang() {
    let fake = Fake::new();
    let pool = Pool::builder(fake.clone())
        .max_size(4)
        .wait_timeout(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let work = async {
        let mut tasks = Vec::new();
        for _ in 0..256 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200u32 {
                    let conn = pool.get().await.unwrap();
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                    drop(conn);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    };
    // A lost wake-up shows as a hang: bound it.
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("a checkout never woke up");
    let s = pool.stats();
    assert_eq!((s.waiters, s.in_use), (0, 0));
    assert!(s.size <= 4);
    assert_eq!(s.wait.count(), 256 * 200);
}

/// Checkouts cancelled at random points (queued, connecting, validating,
/// holding) under load: no connection and no slot is ever lost, and the
/// pool never exceeds its capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_at_random_points_loses_nothing() {
    let fake = Fake::new();
    fake.set_connect_delay(Duration::from_micros(200));
    fake.set_validate_delay(Duration::from_micros(100));
    let mut config = PoolConfig::default();
    config.max_size = 4;
    config.max_overflow = 2;
    config.validate_after_idle = Some(Duration::ZERO);
    config.wait_timeout = Duration::from_secs(3600);
    let capacity = config.capacity();
    let pool = Pool::builder(fake.clone())
        .config(config)
        .build()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (pool, fake, stop) = (pool.clone(), fake.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let s = pool.stats();
                assert!(s.size <= capacity, "{s:?}");
                assert!(fake.open() <= capacity, "fake has {} open", fake.open());
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for seed in 0..64u64 {
        let (pool, fake) = (pool.clone(), fake.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (mut served, mut cancelled) = (0, 0);
            for _ in 0..300 {
                let budget = Duration::from_micros(rng.u64(0..4000));
                match tokio::time::timeout(budget, pool.get()).await {
                    Ok(Ok(conn)) => {
                        if rng.u8(0..10) == 0 {
                            conn.alive.store(false, Ordering::SeqCst);
                        }
                        if rng.bool() {
                            tokio::task::yield_now().await;
                        }
                        drop(conn);
                        served += 1;
                    }
                    Ok(Err(e)) => panic!("unexpected error {e}"),
                    Err(_) => cancelled += 1,
                }
                if rng.u8(0..50) == 0 {
                    fake.kill_all();
                }
            }
            (served, cancelled)
        }));
    }
    let (mut served, mut cancelled) = (0, 0);
    for t in tasks {
        let (s, c) = t.await.unwrap();
        served += s;
        cancelled += c;
    }
    assert!(
        served > 1000 && cancelled > 1000,
        "served {served}, cancelled {cancelled}"
    );
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    // Background connects finish and land in the idle queue.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = pool.stats();
    assert_eq!((s.in_use, s.waiters), (0, 0), "{s:?}");
    assert_eq!(
        fake.open(),
        s.size,
        "pool and backend agree on open connections"
    );
    // Every slot is still there: the whole capacity can be checked out.
    let mut all = Vec::new();
    for _ in 0..capacity {
        all.push(
            tokio::time::timeout(Duration::from_secs(5), pool.get())
                .await
                .expect("a slot was lost")
                .unwrap(),
        );
    }
    assert_eq!(pool.stats().in_use, capacity);
}
