//! The database stopped under load and started again, through the keel
//! stack and keel-fault's proxy: no call hangs, the breaker opens during
//! the outage and closes after, service comes back, and the connection
//! attempts the outage causes stay bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "tests"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel::sqlx;
use keel::{DatabaseConfig, PgDatabase};
use keel_tests::throwaway_behind_proxy;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    hung: AtomicU64,
    /// Milliseconds since the start of the last success, and of the last
    /// failure.
    last_ok_ms: AtomicU64,
    last_failed_ms: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_is_survived_and_service_returns() {
    let (pg, proxy) = throwaway_behind_proxy().await;
    let url = format!("postgres://postgres@{}/postgres", proxy.address());
    let mut config = DatabaseConfig::new(url.parse().unwrap()).with_name("restart");
    config.pool.max_size = 8;
    config.pool.wait_timeout = Duration::from_secs(2);
    config.pool.connect_timeout = Duration::from_secs(2);
    let db = PgDatabase::connect(config).await.unwrap();

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (db, stop, tally) = (db.clone(), Arc::clone(&stop), Arc::clone(&tally));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let call = db.fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 1"));
                    let at = u64::try_from(start.elapsed().as_millis()).unwrap();
                    match tokio::time::timeout(Duration::from_secs(15), call).await {
                        Ok(Ok(1)) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            tally.last_ok_ms.fetch_max(at, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            tally.last_failed_ms.fetch_max(at, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(_) => {
                            tally.hung.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let ok_before = tally.ok.load(Ordering::Relaxed);
    assert!(ok_before > 0, "load runs before the outage");
    let stopper = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();
    let down_at = start.elapsed();
    let attempts_before = proxy.attempts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let opened_during_outage = db.breaker_info().opens;
    let starter = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || starter.start_again())
        .await
        .unwrap()
        .unwrap();
    let back_at = start.elapsed();
    let outage_attempts = proxy.attempts() - attempts_before;

    // Wait (bounded) for full service: a success after the database is back.
    let back_ms = u64::try_from(back_at.as_millis()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tally.last_ok_ms.load(Ordering::Relaxed) < back_ms && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_ok_after = Duration::from_millis(
        tally
            .last_ok_ms
            .load(Ordering::Relaxed)
            .saturating_sub(back_ms),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    let (ok, failed, hung) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.hung.load(Ordering::Relaxed),
    );
    println!(
        "restart under load: outage {:.1}s, {ok} ok, {failed} failed cleanly, {hung} hung, \
         service back {first_ok_after:?} after the database, {outage_attempts} connection attempts during the outage, \
         breaker opened {} time(s)",
        (back_at - down_at).as_secs_f64(),
        db.breaker_info().opens,
    );
    assert_eq!(hung, 0, "every call ended by its deadline");
    assert!(failed > 0, "the outage was seen");
    assert!(
        opened_during_outage >= 1,
        "the breaker opened during the outage"
    );
    assert!(
        tally.last_ok_ms.load(Ordering::Relaxed) > back_ms,
        "service came back"
    );
    assert!(
        tally.last_failed_ms.load(Ordering::Relaxed) < tally.last_ok_ms.load(Ordering::Relaxed),
        "the last calls succeeded"
    );
    assert_eq!(
        db.breaker_info().state,
        keel::breaker::State::Closed,
        "{:?}",
        db.breaker_info()
    );
    assert!(
        outage_attempts < 500,
        "bounded reconnects: {outage_attempts}"
    );
    db.shutdown(Duration::from_secs(5)).await.unwrap();
}
