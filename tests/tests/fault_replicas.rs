//! Real replicas (keel-fault's throwaway primary and `pg_basebackup -R`
//! standbys) under load through a cluster service and retry: a replica
//! lost and back (reads see no error; it is ejected, then re-admitted),
//! and a failover (the primary crashes, the replica is promoted: writes
//! follow it with no user action).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_fault::ThrowawayPostgres;
use keel_pool_core::cluster::{Cluster, ClusterUrl, EndpointInfo};
use keel_pool_core::{PgManager, PoolConfig, op, sqlx};
use keel_retry::{Retrier, RetryLayer, RetryPolicy, SqlxClassifier};
use keel_tests::load::{Tally, spawn_load, stop_load, wait_for};
use tower::util::BoxCloneService;
use tower::{BoxError, Layer as _, ServiceExt as _};

type Svc<T> = BoxCloneService<op::ReadOnly<op::Statement<sqlx::PgConnection, T>>, T, BoxError>;
type WriteSvc<T> = BoxCloneService<op::Statement<sqlx::PgConnection, T>, T, BoxError>;
type Done = sqlx::postgres::PgQueryResult;

/// Starts a primary and `replicas` standbys of it (blocking work, off the
/// runtime's threads).
async fn servers(replicas: usize) -> (ThrowawayPostgres, Vec<ThrowawayPostgres>) {
    tokio::task::spawn_blocking(move || {
        let primary = ThrowawayPostgres::start().unwrap();
        let standbys = (0..replicas)
            .map(|_| primary.start_replica().unwrap())
            .collect();
        (primary, standbys)
    })
    .await
    .unwrap()
}

/// A cluster over the servers, as a user configures one from a URL, with
/// the recommended settings but small pools.
async fn cluster(servers: &[&ThrowawayPostgres], attrs: &str) -> Cluster<PgManager> {
    let hosts: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect();
    let url: ClusterUrl = format!(
        "postgres://postgres@{}/postgres?target_session_attrs={attrs}&connect_timeout=1",
        hosts.join(",")
    )
    .parse()
    .unwrap();
    let mut pool = PoolConfig::default();
    pool.max_size = 4;
    pool.wait_timeout = Duration::from_secs(2);
    Cluster::builder()
        .name("replicas")
        .pool_config(pool)
        .url(&url)
        .unwrap()
        .build()
        .await
        .unwrap()
}

fn retrier() -> Retrier<SqlxClassifier> {
    Retrier::builder(RetryPolicy::database())
        .classifier(SqlxClassifier)
        .build()
        .unwrap()
}

fn endpoint_on(report: &[EndpointInfo], port: u16) -> EndpointInfo {
    report
        .iter()
        .find(|e| e.name.contains(&format!(":{port}/")))
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_replica_is_ejected_reads_go_on_and_it_is_readmitted_when_back() {
    let (primary, replicas) = servers(2).await;
    let (lost, other) = (&replicas[0], &replicas[1]);
    let c = cluster(&[&primary, lost, other], "any").await;
    let reads: Svc<i32> = BoxCloneService::new(RetryLayer::new(retrier()).layer(c.service()));
    let tally = Tally::new();
    let stop = Arc::new(AtomicBool::new(false));
    // Reads served by the lost replica.
    let on_lost = Arc::new(AtomicU64::new(0));
    let lost_port = i32::from(lost.port());
    let counted = Arc::clone(&on_lost);
    let tasks = spawn_load(6, &tally, &stop, Duration::from_secs(15), move |_, _| {
        let (reads, counted) = (reads.clone(), Arc::clone(&counted));
        async move {
            let read = op::read_only(op::fetch_one(|| {
                sqlx::query_scalar::<_, i32>("SELECT inet_server_port()")
            }));
            let port = reads.oneshot(read).await?;
            if port == lost_port {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, BoxError>(port)
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(on_lost.load(Ordering::Relaxed) > 0, "it served before");
    tokio::task::block_in_place(|| lost.stop()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = endpoint_on(&c.endpoints(), lost.port());
    tokio::task::block_in_place(|| lost.start_again()).unwrap();
    tally.mark();
    let served_at_return = on_lost.load(Ordering::Relaxed);
    // Re-admitted: it serves reads again (bounded wait).
    let readmitted = wait_for(Duration::from_secs(15), || {
        on_lost.load(Ordering::Relaxed) > served_at_return
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load(&stop, tasks).await;
    let after = endpoint_on(&c.endpoints(), lost.port());
    tally.report(
        "replica stopped 3 s, then started",
        readmitted,
        "reads stay on the primary and the other replica; time to re-admission",
    );
    assert_eq!(tally.hung(), 0);
    assert_eq!(tally.failed(), 0, "{:?}", tally.errors());
    assert!(during.ejected, "ejected while down: {during:?}");
    assert!(during.last_error.is_some(), "{during:?}");
    assert!(readmitted.is_some(), "re-admitted: {after:?}");
    assert!(!after.ejected && after.last_error.is_none(), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promoted_replica_without_user_action() {
    let (primary, mut replicas) = servers(1).await;
    let standby = replicas.pop().unwrap();
    let c = cluster(&[&primary, &standby], "read-write").await;
    let writes: WriteSvc<Done> =
        BoxCloneService::new(RetryLayer::new(retrier()).layer(c.service()));
    writes
        .clone()
        .oneshot(op::execute(|| {
            sqlx::query("CREATE TABLE w (id bigint PRIMARY KEY)")
        }))
        .await
        .unwrap();
    let tally = Tally::new();
    let stop = Arc::new(AtomicBool::new(false));
    // Writes acknowledged once the old primary was gone: they can only
    // be on the new one.
    let gone = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (gone_seen, acked_by) = (Arc::clone(&gone), Arc::clone(&acked));
    let tasks = spawn_load(4, &tally, &stop, Duration::from_secs(15), move |task, n| {
        let (writes, gone, acked) = (
            writes.clone(),
            Arc::clone(&gone_seen),
            Arc::clone(&acked_by),
        );
        let id = i64::try_from(task).unwrap() * 1_000_000 + i64::try_from(n).unwrap();
        async move {
            let insert = op::execute(move || {
                sqlx::query("INSERT INTO w VALUES ($1) ON CONFLICT DO NOTHING").bind(id)
            });
            writes.oneshot(insert).await?;
            if gone.load(Ordering::SeqCst) {
                acked.lock().unwrap().push(id);
            }
            Ok::<_, BoxError>(())
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| primary.crash()).unwrap();
    gone.store(true, Ordering::SeqCst);
    // The time a failover tool takes to decide.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| standby.promote()).unwrap();
    tally.mark();
    let recovery = tally.recovery(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load(&stop, tasks).await;
    tally.report(
        "primary crashed, replica promoted 1 s later",
        recovery,
        "time from the promotion to the first write on the new primary",
    );
    assert_eq!(tally.hung(), 0);
    assert!(recovery.is_some(), "writes resumed: {:?}", tally.errors());
    assert!(tally.last_call_succeeded());
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    let missing = standby
        .psql(&format!(
            "SELECT count(*) FROM unnest('{{{}}}'::bigint[]) AS a(id) WHERE id NOT IN (SELECT id FROM w)",
            acked.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ))
        .unwrap();
    assert_eq!(
        missing, "0",
        "writes acknowledged after the crash are on the new primary"
    );
}
