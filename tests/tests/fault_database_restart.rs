//! The database stopped under load and started again, through the keel
//! stack and keel-fault's proxy: no call hangs, the breaker opens during
//! the outage and closes after, service comes back, and the connection
//! attempts the outage causes stay bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use keel::PgDatabase;
use keel::sqlx;
use keel_tests::load::{Tally, spawn_load, stop_load};
use keel_tests::{proxied_config, throwaway_behind_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_is_survived_and_service_returns() {
    let (pg, proxy) = throwaway_behind_proxy().await;
    let mut config = proxied_config(&proxy, "restart");
    config.pool.wait_timeout = Duration::from_secs(2);
    config.pool.connect_timeout = Duration::from_secs(2);
    let db = PgDatabase::connect(config).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Tally::new();
    let load_db = db.clone();
    let workers = spawn_load(8, &tally, &stop, Duration::from_secs(15), move |_, _| {
        let db = load_db.clone();
        async move {
            db.fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 1"))
                .await
        }
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    let ok_before = tally.ok();
    assert!(ok_before > 0, "load runs before the outage");
    let stopper = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();
    let down_at = Instant::now();
    let attempts_before = proxy.attempts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let opened_during_outage = db.breaker_info().opens;
    let starter = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || starter.start_again())
        .await
        .unwrap()
        .unwrap();
    let outage = down_at.elapsed();
    tally.mark();
    let outage_attempts = proxy.attempts() - attempts_before;

    let recovery = tally.recovery(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_load(&stop, workers).await;
    tally.report(
        &format!(
            "database stopped {:.1} s, then started",
            outage.as_secs_f64()
        ),
        recovery,
        &format!(
            "{outage_attempts} connection attempts during the outage; breaker opened {} time(s)",
            db.breaker_info().opens
        ),
    );
    assert_eq!(tally.hung(), 0, "every call ended by its deadline");
    assert!(tally.failed() > 0, "the outage was seen");
    assert!(
        opened_during_outage >= 1,
        "the breaker opened during the outage"
    );
    assert!(recovery.is_some(), "service came back");
    assert!(tally.last_call_succeeded(), "the last calls succeeded");
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
