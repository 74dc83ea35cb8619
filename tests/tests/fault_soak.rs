//! A soak: mixed reads and writes through the keel stack while keel-fault's
//! proxy injects random faults (latency, dropped connections, refusals,
//! black holes, cuts) for a bounded time, `KEEL_SOAK_SECS` (default 40;
//! `KEEL_SOAK_SEED` replays a run). At the end every invariant holds: no
//! call hung, no acknowledged write is missing, no connection is leaked,
//! the breaker is closed, and memory is flat.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel::breaker::State;
use keel::sqlx;
use keel::{DatabaseConfig, PgDatabase};
use keel_fault::Fault;
use keel_tests::load::{Tally, rss_kib, spawn_load, stop_load, wait_for};
use keel_tests::{one_second_timeouts, proxied_config, throwaway_behind_proxy};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// One random fault for a random while, then a clear spell.
async fn one_fault(proxy: &keel_fault::FaultProxy, rng: &mut fastrand::Rng) -> &'static str {
    let (name, fault) = match rng.u8(..6) {
        0 => (
            "latency",
            Fault::Latency(Duration::from_millis(rng.u64(20..150))),
        ),
        1 => ("refuse", Fault::Refuse),
        2 => ("black hole", Fault::Blackhole),
        3 => ("cut", Fault::CutAfter(rng.u64(100..5_000))),
        4 => ("drop", Fault::None),
        _ => ("none", Fault::None),
    };
    proxy.set(fault);
    if name == "drop" || name == "black hole" {
        proxy.drop_connections();
    }
    tokio::time::sleep(Duration::from_millis(rng.u64(300..1_500))).await;
    proxy.set(Fault::None);
    if name == "black hole" {
        // What was held is dead to the client already.
        proxy.drop_connections();
    }
    tokio::time::sleep(Duration::from_millis(rng.u64(500..1_500))).await;
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_under_random_faults_keeps_every_invariant() {
    let secs = env_u64("KEEL_SOAK_SECS").unwrap_or(40);
    let seed = env_u64("KEEL_SOAK_SEED").unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let (pg, proxy) = throwaway_behind_proxy().await;
    let mut config = proxied_config(&proxy, "soak");
    one_second_timeouts(&mut config);
    let db = PgDatabase::connect(config).await.unwrap();
    db.execute(|| sqlx::query("CREATE TABLE soak (id bigint PRIMARY KEY)"))
        .await
        .unwrap();

    let tally = Tally::new();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (load_db, acked_by) = (db.clone(), Arc::clone(&acked));
    let tasks = spawn_load(8, &tally, &stop, Duration::from_secs(15), move |task, n| {
        let (db, acked) = (load_db.clone(), Arc::clone(&acked_by));
        let id = i64::try_from(task * 10_000_000).unwrap() + i64::try_from(n).unwrap();
        async move {
            if n % 2 == 0 {
                db.fetch_one(|| sqlx::query_scalar::<_, i64>("SELECT count(*) FROM soak"))
                    .await?;
            } else {
                db.execute(move || sqlx::query("INSERT INTO soak VALUES ($1)").bind(id))
                    .await?;
                acked.lock().unwrap().push(id);
            }
            Ok::<_, keel::Error>(())
        }
    });

    let started = Instant::now();
    let mut faults = Vec::new();
    faults.push(one_fault(&proxy, &mut rng).await);
    // Memory once everything has been allocated once.
    let rss_start = rss_kib();
    while started.elapsed() < Duration::from_secs(secs) {
        faults.push(one_fault(&proxy, &mut rng).await);
    }
    tally.mark();
    let recovery = tally.recovery(Duration::from_secs(30)).await;
    let closed = wait_for(Duration::from_secs(30), || {
        db.breaker_info().state == State::Closed
    })
    .await
    .is_some();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_load(&stop, tasks).await;
    let rss_end = rss_kib();

    // Every acknowledged write is in the table (read past the proxy).
    let acked = acked.lock().unwrap().clone();
    let admin = PgDatabase::connect(
        DatabaseConfig::new(pg.url("postgres").parse().unwrap()).with_name("soak-admin"),
    )
    .await
    .unwrap();
    let ids: Vec<i64> = admin
        .fetch_all(|| sqlx::query_scalar::<_, i64>("SELECT id FROM soak"))
        .await
        .unwrap();
    let stored: std::collections::HashSet<i64> = ids.into_iter().collect();
    let missing = acked.iter().filter(|id| !stored.contains(id)).count();
    let stats = db.stats();
    let (start_mb, end_mb) = (
        rss_start.unwrap_or(0) as f64 / 1024.0,
        rss_end.unwrap_or(0) as f64 / 1024.0,
    );
    tally.report(
        &format!(
            "soak {secs} s: {} random faults (seed {seed})",
            faults.len()
        ),
        recovery,
        &format!(
            "{} writes acknowledged, {missing} missing; RSS {start_mb:.1} -> {end_mb:.1} MiB",
            acked.len()
        ),
    );
    assert_eq!(tally.hung(), 0, "seed {seed}");
    assert_eq!(missing, 0, "acknowledged writes lost (seed {seed})");
    assert!(recovery.is_some(), "service returned (seed {seed})");
    assert!(closed, "the breaker closed: {:?}", db.breaker_info());
    assert_eq!(stats.in_use, 0, "no checkout leaked: {stats:?}");
    assert!(stats.size <= stats.max_size, "{stats:?}");
    assert!(tally.ok() > 0 && !acked.is_empty());
    if let (Some(start), Some(end)) = (rss_start, rss_end) {
        assert!(
            end < start + 32 * 1024,
            "memory is flat: {start} KiB -> {end} KiB"
        );
    }
    db.shutdown(Duration::from_secs(5)).await.unwrap();
    admin.shutdown(Duration::from_secs(5)).await.unwrap();
}
