//! The conformance suite against three-node raft clusters on 127.0.0.1
//! (in this process, over real TCP and the authenticated wire; one
//! cluster per store the suite asks for, all nodes on the suite's manual
//! clock), and the client's side of a cluster: redirects, stale reads,
//! cluster commands, bad settings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_session_store::raft::wire::Secret;
use keel_session_store::raft::{
    Consistency, NodeConfig, RaftClientConfig, RaftNode, RaftSessionStore,
};
use keel_session_store::{
    ManualClock, NewSession, Observer, SessionStore, StoreConfig, StoreError,
};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

#[allow(
    dead_code,
    reason = "the suite's sweep helpers are for backends that sweep by themselves"
)]
mod conformance;

const SECRET: &[u8] = b"raft conformance secret, 32 bytes";

fn secret() -> Secret {
    Secret::new(SECRET.to_vec()).unwrap()
}

/// A running cluster; dropping it stops the nodes and removes their data.
struct Cluster {
    nodes: Vec<Option<RaftNode>>,
    addrs: Vec<String>,
    _dir: TempDir,
}

impl Cluster {
    async fn start(size: u64, store: StoreConfig, clock: ManualClock) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for id in 1..=size {
            let mut config = node_config(id, dir.path());
            config.store = store.clone();
            config.clock = Arc::new(clock.clone());
            nodes.push(Some(RaftNode::start(config).await.unwrap()));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| n.as_ref().unwrap().local_addr().to_string())
            .collect();
        let cluster = Self {
            nodes,
            addrs,
            _dir: dir,
        };
        let members: BTreeMap<u64, String> = (1..=size).zip(cluster.addrs.clone()).collect();
        cluster.client().initialize(members).await.unwrap();
        cluster
    }

    fn client_config(&self) -> RaftClientConfig {
        RaftClientConfig::new(self.addrs.clone(), secret())
    }

    fn client(&self) -> RaftSessionStore {
        RaftSessionStore::new(self.client_config()).unwrap()
    }

    fn node(&self, id: u64) -> &RaftNode {
        self.nodes[usize::try_from(id - 1).unwrap()]
            .as_ref()
            .unwrap()
    }

    /// The leader's id, once one is known to node 1.
    async fn leader(&self) -> u64 {
        for _ in 0..200 {
            if let Some(leader) = self.node(1).status().leader {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no leader within 5 s");
    }
}

fn node_config(id: u64, dir: &std::path::Path) -> NodeConfig {
    let mut config = NodeConfig::new(
        id,
        "127.0.0.1:0".parse().unwrap(),
        dir.join(id.to_string()),
        secret(),
    );
    config.heartbeat_interval = Duration::from_millis(50);
    config.election_timeout = (Duration::from_millis(300), Duration::from_millis(600));
    config
}

#[derive(Default)]
struct Raft {
    clusters: Mutex<Vec<Cluster>>,
}

impl Raft {
    fn store(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: Option<Box<dyn Observer>>,
    ) -> RaftSessionStore {
        let cluster = conformance::block_on(Cluster::start(3, config, clock));
        let builder = RaftSessionStore::builder(cluster.client_config());
        let store = match observer {
            Some(o) => builder
                .observer(move |e: &keel_session_store::Event<'_>| o.on_event(e))
                .name("conformance")
                .build(),
            None => builder.build(),
        }
        .unwrap();
        self.clusters.lock().unwrap().push(cluster);
        store
    }
}

impl conformance::Factory for Raft {
    type Store = RaftSessionStore;
    fn make(&self, config: StoreConfig, clock: ManualClock) -> RaftSessionStore {
        self.store(config, clock, None)
    }
    fn make_observed(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: impl Observer,
    ) -> RaftSessionStore {
        self.store(config, clock, Some(Box::new(observer)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_conforms() {
    let f = Raft::default();
    conformance::run_all(&f).await;
}

/// A client that knows only a follower is redirected to the leader; a
/// stale read from a follower catches up with what the leader acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_redirects_writes_and_serves_stale_reads() {
    let cluster = Cluster::start(3, StoreConfig::default(), ManualClock::at(1_000)).await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let addr = cluster.node(follower).local_addr().to_string();
    let client = RaftSessionStore::new(RaftClientConfig::new([addr], secret())).unwrap();
    let s = client.create(NewSession::new("c", "http")).await.unwrap();
    assert_eq!(client.get(&s.id).await.unwrap().unwrap().version, 1);
    let stale = client.with_consistency(Consistency::Stale);
    for _ in 0..200 {
        if stale.get(&s.id).await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the follower never applied the write");
}

/// Cluster commands: a fourth node joins as a learner, is promoted once
/// caught up, and is removed; an unknown node cannot be promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_is_promoted_and_removed() {
    let cluster = Cluster::start(3, StoreConfig::default(), ManualClock::at(1_000)).await;
    let client = cluster.client();
    for i in 0..50 {
        client
            .create(NewSession::new(format!("c{i}"), "http"))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(4, dir.path());
    config.clock = Arc::new(ManualClock::at(1_000));
    let fourth = RaftNode::start(config).await.unwrap();
    let err = client.promote(4, 10).await.unwrap_err();
    assert!(err.to_string().contains("not a learner"), "{err}");
    let status = client
        .add_learner(4, fourth.local_addr().to_string())
        .await
        .unwrap();
    assert!(status.learners.contains_key(&4), "{status:?}");
    let mut promoted = None;
    for _ in 0..200 {
        match client.promote(4, 10).await {
            Ok(status) => {
                promoted = Some(status);
                break;
            }
            Err(e) if e.to_string().contains("caught up") => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let status = promoted.expect("the learner caught up within 5 s");
    assert_eq!(
        status.voters.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // The new voter holds every session.
    let stale = RaftSessionStore::new(RaftClientConfig::new(
        [fourth.local_addr().to_string()],
        secret(),
    ))
    .unwrap()
    .with_consistency(Consistency::Stale);
    let mut held = 0;
    for _ in 0..200 {
        held = stale.len().await.unwrap();
        if held == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(held, 50);
    let status = client.remove(4).await.unwrap();
    assert_eq!(status.voters.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(status.learners.is_empty(), "{status:?}");
    fourth.shutdown().await;
}

/// A stranger's bytes and a client with the wrong secret are refused; the
/// node serves on; a wrong secret is not retried for 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_refused_and_the_node_serves_on() {
    let cluster = Cluster::start(3, StoreConfig::default(), ManualClock::at(1_000)).await;
    let mut stranger = tokio::net::TcpStream::connect(cluster.node(1).local_addr())
        .await
        .unwrap();
    stranger.write_all(&[0xff; 4096]).await.unwrap();
    drop(stranger);
    let wrong = Secret::new(b"not the cluster's secret at all".to_vec()).unwrap();
    let intruder =
        RaftSessionStore::new(RaftClientConfig::new(cluster.addrs.clone(), wrong)).unwrap();
    let started = std::time::Instant::now();
    let err = intruder.len().await.unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a wrong secret is final"
    );
    cluster
        .client()
        .create(NewSession::new("c", "http"))
        .await
        .unwrap();
    assert_eq!(cluster.client().len().await.unwrap(), 1);
}

#[tokio::test]
async fn bad_settings_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(1, dir.path());
    config.election_timeout = (Duration::from_millis(80), Duration::from_millis(600));
    let err = RaftNode::start(config).await.unwrap_err();
    assert!(err.to_string().contains("election_timeout"), "{err}");
    let err =
        RaftSessionStore::new(RaftClientConfig::new(Vec::<String>::new(), secret())).unwrap_err();
    let StoreError::Config(config) = &err else {
        panic!("{err}");
    };
    assert_eq!(config.field(), "nodes");
    let err = RaftSessionStore::new(RaftClientConfig::new(["localhost"], secret())).unwrap_err();
    assert!(err.to_string().contains("host:port"), "{err}");
}

/// 256 calls at once from a fresh client share its few connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_share_a_few_connections() {
    let cluster = Cluster::start(3, StoreConfig::default(), ManualClock::at(1_000)).await;
    let mut config = cluster.client_config();
    config.connections = 2;
    let store = RaftSessionStore::new(config).unwrap();
    let calls: Vec<_> = (0..256)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create(NewSession::new(format!("c{i}"), "http"))
                    .await
                    .unwrap();
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(store.len().await.unwrap(), 256);
    let open = store.open_connections();
    assert!(
        (1..=6).contains(&open),
        "{open} connections for 3 nodes at 2 each"
    );
}
