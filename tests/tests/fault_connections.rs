//! Connections broken under load, through the keel stack: every pooled
//! session terminated by the server (reads see no error), and a black hole
//! in the middle of queries (every call ends within its timeouts; service
//! resumes when traffic passes again).
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
use keel_fault::Fault;
use keel_tests::throwaway_behind_proxy;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    hung: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

/// Eight tasks reading until `stop`; each call bounded by `deadline`.
fn load(
    db: &PgDatabase,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
    deadline: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|_| {
            let (db, stop, tally) = (db.clone(), Arc::clone(stop), Arc::clone(tally));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let call = db.fetch_one(|| {
                        sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_sleep(0.005)")
                    });
                    match tokio::time::timeout(deadline, call).await {
                        Ok(Ok(1)) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(result) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = result {
                                tally.errors.lock().unwrap().push(e.to_string());
                            }
                            // A rejection is answered at once: back off, as
                            // a caller should, rather than spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(_) => {
                            tally.hung.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_no_error_when_the_server_terminates_every_session() {
    let (pg, proxy) = throwaway_behind_proxy().await;
    let mut config = DatabaseConfig::new(
        format!("postgres://postgres@{}/postgres", proxy.address())
            .parse()
            .unwrap(),
    )
    .with_name("terminated");
    config.pool.max_size = 8;
    let db = PgDatabase::connect(config).await.unwrap();
    // The killer goes straight to the server, not through the stack.
    let admin = PgDatabase::connect(
        DatabaseConfig::new(pg.url("postgres").parse().unwrap()).with_name("admin"),
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
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
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed, hung) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.hung.load(Ordering::Relaxed),
    );
    let m = db.metrics_snapshot();
    println!(
        "terminate every session x3: {killed} sessions killed, {ok} reads ok, {failed} failed, {hung} hung, {} retries",
        m.retries
    );
    assert!(killed >= 8, "sessions were killed: {killed}");
    assert_eq!(
        (failed, hung),
        (0, 0),
        "idempotent reads see no error: {:?}",
        tally.errors.lock().unwrap()
    );
    assert!(m.retries > 0, "the retries hid the kills: {m:?}");
    db.shutdown(Duration::from_secs(5)).await.unwrap();
    admin.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_mid_query_ends_every_call_in_time_and_service_resumes() {
    let (_pg, proxy) = throwaway_behind_proxy().await;
    let mut config = DatabaseConfig::new(
        format!("postgres://postgres@{}/postgres", proxy.address())
            .parse()
            .unwrap(),
    )
    .with_name("blackhole");
    config.pool.max_size = 8;
    config.pool.wait_timeout = Duration::from_secs(1);
    config.pool.connect_timeout = Duration::from_secs(1);
    config.pool.validate_timeout = Duration::from_secs(1);
    config.pool.command_timeout = Some(Duration::from_secs(1));
    let db = PgDatabase::connect(config).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Timeouts of 1 s per phase, retries within 5 s: 15 s means hung.
    let workers = load(&db, &stop, &tally, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set(Fault::Blackhole);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let felt = tally.failed.load(Ordering::Relaxed) + db.metrics_snapshot().retries;
    proxy.set(Fault::None);
    proxy.drop_connections(); // the silent ones are dead to the client anyway
    let lifted = Instant::now();
    let ok_at_lift = tally.ok.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tally.ok.load(Ordering::Relaxed) < ok_at_lift + 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = lifted.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed, hung) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.hung.load(Ordering::Relaxed),
    );
    println!(
        "black hole 3 s: {ok} ok, {failed} failed cleanly, {hung} hung, {} retries, service resumed {resumed:?} after it lifted",
        db.metrics_snapshot().retries
    );
    assert_eq!(hung, 0, "every call ended within its timeouts");
    assert!(
        felt > 0,
        "the black hole was felt (timeouts retried or failed)"
    );
    assert!(
        tally.ok.load(Ordering::Relaxed) >= ok_at_lift + 100,
        "service resumed"
    );
    db.shutdown(Duration::from_secs(5)).await.unwrap();
}
