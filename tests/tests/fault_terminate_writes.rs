//! Every pooled session killed by the server (`pg_terminate_backend`)
//! under a load of plain INSERTs, which must not run twice: the retrier,
//! told they are not idempotent, retries only what provably never reached
//! the server, and says "outcome unknown" only where the outcome is
//! unknown. Every acknowledged insert is stored; every other error left
//! nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_pool_core::{DatabaseUrl, PgManager, Pool, op, sqlx};
use keel_retry::{
    GaveUp, GaveUpError, Idempotency, Retrier, RetryLayer, RetryPolicy, SqlxClassifier,
};
use keel_tests::load::{Tally, spawn_load, stop_load};
use keel_tests::{proxied_url, throwaway_behind_proxy};
use tower::{BoxError, Layer as _, ServiceExt as _};

/// How one insert ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Acknowledged,
    /// The retrier could not know whether it ran.
    Unknown,
    /// Any other error: it must have left nothing.
    Failed,
}

fn ended(result: &Result<sqlx::postgres::PgQueryResult, BoxError>) -> Ended {
    match result {
        Ok(_) => Ended::Acknowledged,
        Err(e) => match e.downcast_ref::<GaveUpError>().map(GaveUpError::reason) {
            Some(GaveUp::NotIdempotent | GaveUp::OutcomeUnknown) => Ended::Unknown,
            _ => Ended::Failed,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_writes_say_outcome_unknown_only_where_it_is() {
    let (pg, proxy) = throwaway_behind_proxy().await;
    let url: DatabaseUrl = proxied_url(&proxy).parse().unwrap();
    let pool = Pool::builder(PgManager::from_url(&url).unwrap())
        .max_size(8)
        .build()
        .await
        .unwrap();
    let retrier = Retrier::builder(RetryPolicy::database())
        .classifier(SqlxClassifier)
        .idempotency(Idempotency::NonIdempotent)
        .build()
        .unwrap();
    let svc = RetryLayer::new(retrier).layer(pool.service());
    svc.clone()
        .oneshot(op::execute(|| {
            sqlx::query("CREATE TABLE w (id bigint PRIMARY KEY)")
        }))
        .await
        .unwrap();
    let tally = Tally::new();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&outcomes);
    let tasks = spawn_load(8, &tally, &stop, Duration::from_secs(15), move |task, n| {
        let (svc, noted) = (svc.clone(), Arc::clone(&noted));
        let id = i64::try_from(task * 10_000_000).unwrap() + i64::try_from(n).unwrap();
        async move {
            let insert = op::execute(move || sqlx::query("INSERT INTO w VALUES ($1)").bind(id));
            let result = svc.oneshot(insert).await;
            noted.lock().unwrap().push((id, ended(&result)));
            result
        }
    });
    let mut killed = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        killed += tokio::task::block_in_place(|| {
            pg.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
        })
        .unwrap()
        .parse::<u64>()
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load(&stop, tasks).await;

    let stored: HashSet<i64> = pg
        .psql("SELECT string_agg(id::text, ',') FROM w")
        .unwrap()
        .split(',')
        .map(|id| id.parse().unwrap())
        .collect();
    let outcomes = outcomes.lock().unwrap().clone();
    let count = |e: Ended| outcomes.iter().filter(|(_, o)| *o == e).count();
    let unknown_applied = outcomes
        .iter()
        .filter(|(id, o)| *o == Ended::Unknown && stored.contains(id))
        .count();
    tally.report(
        "pg_terminate_backend of every session x3, plain INSERTs",
        None,
        &format!(
            "{killed} sessions killed; {} outcome unknown ({unknown_applied} of them applied), {} other errors",
            count(Ended::Unknown),
            count(Ended::Failed)
        ),
    );
    assert!(killed >= 8, "sessions were killed: {killed}");
    assert_eq!(tally.hung(), 0);
    for (id, how) in &outcomes {
        match how {
            Ended::Acknowledged => assert!(stored.contains(id), "acknowledged {id} is stored"),
            Ended::Failed => assert!(!stored.contains(id), "{id} failed yet is stored"),
            Ended::Unknown => {}
        }
    }
    assert!(
        count(Ended::Unknown) > 0,
        "kills mid-INSERT were reported: {:?}",
        tally.errors()
    );
    // Each insert ran at most once: the primary key refused no retry.
    assert!(
        tally.errors().iter().all(|e| !e.contains("duplicate key")),
        "{:?}",
        tally.errors()
    );
    drop(pool);
}
