//! keel's PostgreSQL session store while its server restarts under load (a
//! throwaway server of the test's own, stopped for 3 s): no call hangs,
//! calls during the outage fail with an error, the store serves again once
//! the server is back, and no acknowledged write is lost.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "tests"
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_pool_core::{PgManager, Pool};
use keel_session_store::{Data, NewSession, PgStore, SessionId, SessionStore, StoreError};
use keel_tests::{pg_session_store, proxied_url, throwaway_behind_proxy};

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
    hung: AtomicU64,
    /// Milliseconds since the start of the last success.
    last_ok_ms: AtomicU64,
    /// Sessions whose create was acknowledged, with the version last
    /// acknowledged for each.
    acknowledged: Mutex<Vec<(SessionId, u64)>>,
}

/// A create, then updates of it, each under a 15 s deadline; every
/// acknowledged write noted.
async fn work(store: PgStore, stop: Arc<AtomicBool>, tally: Arc<Tally>, start: Instant) {
    let deadline = Duration::from_secs(15);
    while !stop.load(Ordering::Relaxed) {
        let at = u64::try_from(start.elapsed().as_millis()).unwrap();
        let new = NewSession::new("load", "http")
            .with_data(Data::from_value(serde_json::json!({ "at": at })).unwrap());
        let created = tokio::time::timeout(deadline, store.create(new)).await;
        let session = match created {
            Err(_) => {
                tally.hung.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                let counter = if matches!(e, StoreError::OutcomeUnknown(_)) {
                    &tally.unknown
                } else {
                    &tally.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        tally.ok.fetch_add(1, Ordering::Relaxed);
        tally.last_ok_ms.fetch_max(at, Ordering::Relaxed);
        let slot = {
            let mut acked = tally.acknowledged.lock().unwrap();
            acked.push((session.id, session.version));
            acked.len() - 1
        };
        let update = store.update(&session.id, session.version, Data::new());
        match tokio::time::timeout(deadline, update).await {
            Err(_) => {
                tally.hung.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(updated)) => {
                tally.acknowledged.lock().unwrap()[slot].1 = updated.version;
            }
            Ok(Err(_)) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_store_survives_a_restart_and_loses_no_acknowledged_write() {
    let (pg, proxy) = throwaway_behind_proxy().await;
    let manager = PgManager::from_url(&proxied_url(&proxy).parse().unwrap()).unwrap();
    let pool = Pool::builder(manager)
        .max_size(8)
        .connect_timeout(Duration::from_secs(2))
        .wait_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let store = pg_session_store(pool).await;

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (store, stop, tally) = (store.clone(), Arc::clone(&stop), Arc::clone(&tally));
            tokio::spawn(work(store, stop, tally, start))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        tally.ok.load(Ordering::Relaxed) > 0,
        "load runs before the outage"
    );
    let stopper = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || stopper.stop())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let starter = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || starter.start_again())
        .await
        .unwrap()
        .unwrap();
    let back_ms = u64::try_from(start.elapsed().as_millis()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally.last_ok_ms.load(Ordering::Relaxed) < back_ms && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    let acknowledged = std::mem::take(&mut *tally.acknowledged.lock().unwrap());
    let mut lost = 0;
    for (id, version) in &acknowledged {
        match store.get(id).await.unwrap() {
            Some(session) if session.version >= *version => {}
            _ => lost += 1,
        }
    }
    let (ok, failed, unknown, hung) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.unknown.load(Ordering::Relaxed),
        tally.hung.load(Ordering::Relaxed),
    );
    println!(
        "session store restart: {ok} creates acknowledged, {failed} calls failed cleanly, \
         {unknown} writes of unknown outcome, {hung} hung, {lost} acknowledged writes lost, \
         service back {} ms after the server",
        tally
            .last_ok_ms
            .load(Ordering::Relaxed)
            .saturating_sub(back_ms)
    );
    assert_eq!(hung, 0, "every call ended by its deadline");
    assert!(failed + unknown > 0, "the outage was seen");
    assert!(
        tally.last_ok_ms.load(Ordering::Relaxed) > back_ms,
        "the store served again"
    );
    assert_eq!(lost, 0, "every acknowledged write survived the restart");
    assert!(!acknowledged.is_empty());
}
