//! Connections broken under load, through the keel stack: every pooled
//! session terminated by the server (reads see no error), and a black hole
//! in the middle of queries (every call ends within its timeouts; service
//! resumes when traffic passes again).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use keel::sqlx;
use keel::{DatabaseConfig, PgDatabase};
use keel_fault::Fault;
use keel_tests::load::{Tally, spawn_load, stop_load};
use keel_tests::{one_second_timeouts, proxied_config, throwaway_behind_proxy};

/// Eight tasks reading until `stop`; each call bounded by `deadline`.
fn load(
    db: &PgDatabase,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
    deadline: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let db = db.clone();
    spawn_load(8, tally, stop, deadline, move |_, _| {
        let db = db.clone();
        async move {
            db.fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_sleep(0.005)"))
                .await
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_no_error_when_the_server_terminates_every_session() {
    let (pg, proxy) = throwaway_behind_proxy().await;
    let config = proxied_config(&proxy, "terminated");
    let db = PgDatabase::connect(config).await.unwrap();
    // The killer goes straight to the server, not through the stack.
    let admin = PgDatabase::connect(
        DatabaseConfig::new(pg.url("postgres").parse().unwrap()).with_name("admin"),
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Tally::new();
    let workers = load(&db, &stop, &tally, Duration::from_secs(15));
    let mut killed = 0_i64;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        killed += admin
            .fetch_one(|| {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                )
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load(&stop, workers).await;
    let m = db.metrics_snapshot();
    tally.report(
        "pg_terminate_backend of every session x3, reads",
        None,
        &format!("{killed} sessions killed; {} retries hid them", m.retries),
    );
    assert!(killed >= 8, "sessions were killed: {killed}");
    assert_eq!(
        (tally.failed(), tally.hung()),
        (0, 0),
        "idempotent reads see no error: {:?}",
        tally.errors()
    );
    assert!(m.retries > 0, "the retries hid the kills: {m:?}");
    db.shutdown(Duration::from_secs(5)).await.unwrap();
    admin.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_mid_query_ends_every_call_in_time_and_service_resumes() {
    let (_pg, proxy) = throwaway_behind_proxy().await;
    let mut config = proxied_config(&proxy, "blackhole");
    one_second_timeouts(&mut config);
    let db = PgDatabase::connect(config).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Tally::new();
    // Timeouts of 1 s per phase, retries within 5 s: 15 s means hung.
    let workers = load(&db, &stop, &tally, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set(Fault::Blackhole);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let felt = tally.failed() + db.metrics_snapshot().retries;
    proxy.set(Fault::None);
    proxy.drop_connections(); // the silent ones are dead to the client anyway
    tally.mark();
    let resumed = tally.recovery(Duration::from_secs(20)).await;
    let ok_at_lift = tally.ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tally.ok() < ok_at_lift + 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_load(&stop, workers).await;
    tally.report(
        "black hole mid-query 3 s",
        resumed,
        &format!(
            "1 s timeouts per phase; {} retries",
            db.metrics_snapshot().retries
        ),
    );
    assert_eq!(tally.hung(), 0, "every call ended within its timeouts");
    assert!(
        felt > 0,
        "the black hole was felt (timeouts retried or failed)"
    );
    assert!(tally.ok() >= ok_at_lift + 100, "service resumed");
    db.shutdown(Duration::from_secs(5)).await.unwrap();
}
