//! `keel session-node` clusters of separate processes on 127.0.0.1 under
//! the faults a replicated store must survive: the leader killed, a
//! minority frozen, every node restarted in turn, a node joining from a
//! snapshot, strangers and wrong secrets. Under each, concurrent clients'
//! histories must be linearizable and no acknowledged write may be lost.
//! Times are reported (`FAULT |` lines), never asserted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests fail loudly and report what they measured"
)]

#[path = "session_node/cluster.rs"]
mod cluster;
#[path = "session_node/load.rs"]
mod load;

use std::io::Write;
use std::time::Duration;

use cluster::Cluster;
use keel_session_store::raft::wire::{PeerStream, WireConfig};
use keel_session_store::raft::{RaftClientConfig, RaftSessionStore};
use keel_session_store::{Data, NewSession, SessionStore};
use load::Load;

/// One cluster at a time: three nodes each on two cores is plenty.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pause(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_loses_no_acknowledged_write() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    let store = cluster.client();
    let load = Load::start(&store, 8, 4).await;
    pause(1500).await;
    let (leader, _) = cluster.leader(&[]).await;
    cluster.kill(leader);
    let (successor, took) = cluster.leader(&[leader]).await;
    assert_ne!(successor, leader);
    pause(1500).await;
    cluster.spawn(leader);
    let caught_up = cluster.caught_up(leader).await;
    let tally = load.finish(&store).await;
    println!(
        "FAULT | raft leader SIGKILL | new leader seen after {took:?}; the old one caught up {caught_up:?} after restart | {tally:?}"
    );
    assert!(tally.acknowledged > 50, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_minority_acknowledges_nothing_and_catches_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    let store = cluster.client();

    // The leader frozen alone: the other two elect a new one and go on.
    let load = Load::start(&store, 8, 4).await;
    pause(1000).await;
    let (leader, _) = cluster.leader(&[]).await;
    cluster.freeze(leader);
    let (successor, took) = cluster.leader(&[leader]).await;
    pause(1000).await;
    cluster.thaw(leader);
    let caught_up = cluster.caught_up(leader).await;
    let tally = load.finish(&store).await;
    println!(
        "FAULT | raft leader SIGSTOP | node {successor} leads after {took:?}; the frozen one caught up {caught_up:?} after SIGCONT | {tally:?}"
    );
    assert!(tally.acknowledged > 20, "{tally:?}");

    // Both followers frozen: the leader is a minority of one and must
    // acknowledge no write, however long the client waits.
    let (leader, _) = cluster.leader(&[]).await;
    let s = store.create(NewSession::new("c", "http")).await.unwrap();
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.freeze(*id);
    }
    let mut config = RaftClientConfig::new(cluster.addrs(), cluster::secret());
    config.request_timeout = Duration::from_millis(700);
    config.retry = config.retry.with_total_timeout(Duration::from_secs(2));
    let impatient = RaftSessionStore::new(config).unwrap();
    for n in 0..5 {
        let data = Data::from_value(serde_json::json!({ "n": n })).unwrap();
        let answer = impatient.update(&s.id, s.version, data).await;
        assert!(
            answer.is_err(),
            "a minority acknowledged a write: {answer:?}"
        );
    }
    for id in &followers {
        cluster.thaw(*id);
    }
    cluster.leader(&[]).await;
    // Back to a majority: at most one of the unacknowledged updates was
    // applied (they all named version 1), and writes work again.
    let now = store.get(&s.id).await.unwrap().unwrap();
    assert!(now.version <= 2, "{now:?}");
    store.update(&s.id, now.version, Data::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    let store = cluster.client();
    let load = Load::start(&store, 8, 4).await;
    let mut report = Vec::new();
    for id in 1..=3 {
        pause(700).await;
        cluster.kill(id);
        pause(300).await;
        cluster.spawn(id);
        report.push(cluster.caught_up(id).await);
    }
    let tally = load.finish(&store).await;
    println!(
        "FAULT | raft rolling restart (SIGKILL, restart, catch up; each node) | catch-up times {report:?} | {tally:?}"
    );
    assert!(tally.acknowledged > 50, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_joins_from_a_snapshot() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    let store = cluster.client();
    // Past `--snapshot-every 2000` entries, one create each (a lone writer's
    // writes are never gathered into one entry): the log before the
    // snapshot is purged, so a new node can only start from the snapshot.
    for i in 0..2500 {
        store
            .create(NewSession::new(format!("c{i}"), "http"))
            .await
            .unwrap();
    }
    let id = cluster.add_node();
    let addr = cluster.nodes.last().unwrap().addr.clone();
    store.add_learner(id, addr).await.unwrap();
    let took = cluster.caught_up(id).await;
    store.promote(id, 100).await.unwrap();
    assert_eq!(cluster.local(id).len().await.unwrap(), 2500);
    assert!(
        cluster.data_of(id).join("snapshots/current.snap").exists(),
        "it was sent a snapshot"
    );
    println!(
        "FAULT | raft new node | joined from a snapshot of 2500 sessions and caught up in {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_and_logged_and_the_node_serves_on() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3).await;
    let addr = cluster.nodes[0].addr.clone();
    // Not the protocol; then a greeting cut short.
    let mut stranger = std::net::TcpStream::connect(&addr).unwrap();
    stranger.write_all(&[0xff; 64]).unwrap();
    drop(stranger);
    let mut short = std::net::TcpStream::connect(&addr).unwrap();
    short.write_all(b"KEELRFT1").unwrap();
    drop(short);
    // The right secret, then a frame past the node's 16 MiB limit: the
    // node refuses it after reading its length, and closes that connection.
    let mut wire = WireConfig::new(99, cluster::secret());
    wire.max_frame = u32::MAX;
    let mut peer = PeerStream::connect(addr.parse().unwrap(), &wire)
        .await
        .unwrap();
    peer.send(&vec![0; 17 << 20]).await.unwrap_or_default();
    assert!(
        peer.recv().await.map_or(true, |frame| frame.is_none()),
        "closed"
    );
    // The wrong secret.
    let wrong =
        keel_session_store::raft::wire::Secret::new(b"the wrong secret, long enough".to_vec())
            .unwrap();
    let intruder = RaftSessionStore::new(RaftClientConfig::new([addr], wrong)).unwrap();
    let err = intruder.len().await.unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
    let store = cluster.client();
    store.create(NewSession::new("c", "http")).await.unwrap();
    assert_eq!(store.len().await.unwrap(), 1);
    let log = cluster.log(1);
    let refused = log.matches("refused a raft peer").count();
    assert!(refused >= 3, "{refused} refusals logged:\n{log}");
    assert!(
        log.contains("refused a frame"),
        "the oversized frame is logged:\n{log}"
    );
    assert!(log.contains("secret"), "{log}");
    assert!(!log.contains("the wrong secret"), "a secret was logged");
}
