//! A latency spike under load, through the keel stack and keel-fault's
//! proxy: the breaker's slow-call rate trips it (callers are answered at
//! once rather than queueing behind a slow server), and once the latency
//! is gone service returns and the breaker closes, by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use keel::breaker::State;
use keel::sqlx;
use keel::{DatabaseConfig, PgDatabase};
use keel_fault::Fault;
use keel_tests::load::{Tally, spawn_load, stop_load, wait_for};
use keel_tests::{proxied_config, throwaway_behind_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_trip_the_breaker_and_it_closes_when_latency_is_gone() {
    let (_pg, proxy) = throwaway_behind_proxy().await;
    let mut config = proxied_config(&proxy, "spike");
    // Half the calls of the last 2 s slower than 250 ms is a sick server.
    // (Over the default 10 s window the fast calls from before the spike
    // outnumber the slow ones until they leave it: a spike is seen after
    // about the window's length.)
    config.breaker = DatabaseConfig::default_breaker()
        .with_slow_calls(0.5, Duration::from_millis(250))
        .with_window(keel::breaker::Window::Time {
            duration: Duration::from_secs(2),
            buckets: 10,
        });
    let db = PgDatabase::connect(config).await.unwrap();
    let tally = Tally::new();
    let stop = Arc::new(AtomicBool::new(false));
    let load_db = db.clone();
    let tasks = spawn_load(8, &tally, &stop, Duration::from_secs(15), move |_, _| {
        let db = load_db.clone();
        async move {
            db.fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 1"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opens_before = db.breaker_info().opens;
    // 200 ms each way: a round trip takes 400 ms or more.
    proxy.set(Fault::Latency(Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = db.breaker_info();
    proxy.set(Fault::None);
    tally.mark();
    let recovery = tally.recovery(Duration::from_secs(30)).await;
    let closed = wait_for(Duration::from_secs(15), || {
        db.breaker_info().state == State::Closed
    })
    .await
    .is_some();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load(&stop, tasks).await;
    tally.report(
        "latency +400 ms per round trip for 4 s",
        recovery,
        "slow calls open the breaker; time from the latency's end to the first success",
    );
    assert_eq!(tally.hung(), 0);
    assert!(
        during.opens > opens_before,
        "the slow calls tripped it: {during:?}"
    );
    assert!(
        during.rejections > 0,
        "callers were answered at once: {during:?}"
    );
    assert!(recovery.is_some(), "service returned");
    assert!(closed, "the breaker closed: {:?}", db.breaker_info());
    assert!(tally.last_call_succeeded());
    db.shutdown(Duration::from_secs(5)).await.unwrap();
}
