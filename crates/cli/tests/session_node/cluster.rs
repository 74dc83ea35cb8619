//! Three `keel session-node` processes on 127.0.0.1, each with its data in
//! a temp dir and its log in a file, and the faults done to them: SIGKILL,
//! SIGSTOP / SIGCONT, restart.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_fault::free_port;
use keel_session_store::raft::wire::Secret;
use keel_session_store::raft::{Consistency, RaftClientConfig, RaftSessionStore, Status};
use tempfile::TempDir;

const SECRET: &str = "session-node fault tests share this secret";

pub(crate) fn secret() -> Secret {
    Secret::new(SECRET.as_bytes().to_vec()).unwrap()
}

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) addr: String,
    child: Option<Child>,
}

pub(crate) struct Cluster {
    dir: TempDir,
    pub(crate) nodes: Vec<Node>,
    /// The client the waits poll through (its connections kept between
    /// polls).
    probe: RaftSessionStore,
}

impl Cluster {
    /// `size` nodes, initialized as one cluster with a leader.
    pub(crate) async fn start(size: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        let nodes: Vec<Node> = (1..=size)
            .map(|id| Node {
                id,
                addr: format!("127.0.0.1:{}", free_port().unwrap()),
                child: None,
            })
            .collect();
        let addrs = nodes.iter().map(|n| n.addr.clone());
        let probe = RaftSessionStore::new(RaftClientConfig::new(addrs, secret())).unwrap();
        let mut cluster = Self { dir, nodes, probe };
        for id in 1..=size {
            cluster.spawn(id);
        }
        let members: BTreeMap<u64, String> = cluster
            .nodes
            .iter()
            .map(|n| (n.id, n.addr.clone()))
            .collect();
        cluster.client().initialize(members).await.unwrap();
        cluster.leader(&[]).await;
        cluster
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The node's log file (stderr).
    pub(crate) fn log_of(&self, id: u64) -> PathBuf {
        self.path().join(format!("node{id}.log"))
    }

    pub(crate) fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_of(id)).unwrap_or_default()
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    /// Starts node `id` (again) and waits for it to listen.
    pub(crate) fn spawn(&mut self, id: u64) {
        let addr = self.node(id).addr.clone();
        let data = self.data_of(id);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_of(id))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["session-node", "--id", &id.to_string(), "--listen", &addr])
            .arg("--data-dir")
            .arg(&data)
            .arg("--secret-file")
            .arg(self.path().join("secret"))
            .args(["--heartbeat", "100ms", "--election-min", "500ms"])
            .args(["--election-max", "1000ms", "--snapshot-every", "2000"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "node {id}: {line:?}");
        self.node(id).child = Some(child);
    }

    /// A new node, started but not a member; returns its id.
    pub(crate) fn add_node(&mut self) -> u64 {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        self.nodes.push(Node {
            id,
            addr: format!("127.0.0.1:{}", free_port().unwrap()),
            child: None,
        });
        self.spawn(id);
        id
    }

    /// Node `id`'s data directory.
    pub(crate) fn data_of(&self, id: u64) -> PathBuf {
        self.path().join(format!("node{id}"))
    }

    /// SIGKILL: no goodbye, nothing flushed that was not already.
    pub(crate) fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node(id).child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn signal(&mut self, id: u64, signal: &str) {
        let pid = self.node(id).child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGSTOP: the node is frozen, cut off from everyone.
    pub(crate) fn freeze(&mut self, id: u64) {
        self.signal(id, "-STOP");
    }

    /// SIGCONT.
    pub(crate) fn thaw(&mut self, id: u64) {
        self.signal(id, "-CONT");
    }

    pub(crate) fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub(crate) fn client(&self) -> RaftSessionStore {
        RaftSessionStore::new(RaftClientConfig::new(self.addrs(), secret())).unwrap()
    }

    /// A client of node `id` alone, reading what it has applied.
    pub(crate) fn local(&self, id: u64) -> RaftSessionStore {
        let addr = self.nodes.iter().find(|n| n.id == id).unwrap().addr.clone();
        RaftSessionStore::new(RaftClientConfig::new([addr], secret()))
            .unwrap()
            .with_consistency(Consistency::Stale)
    }

    /// Node `id`'s own view, if it answers.
    pub(crate) async fn status_of(&self, id: u64) -> Option<Status> {
        let addr = self.nodes.iter().find(|n| n.id == id)?.addr.clone();
        self.probe.node_status(&addr).await.ok()
    }

    /// The leader a majority of the nodes not in `down` agree on, and how
    /// long it took to find (bounded: 30 s).
    pub(crate) async fn leader(&self, down: &[u64]) -> (u64, Duration) {
        let started = Instant::now();
        let up: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !down.contains(id))
            .collect();
        while started.elapsed() < Duration::from_secs(30) {
            let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
            for id in &up {
                if let Some(leader) = self.status_of(*id).await.and_then(|s| s.leader)
                    && !down.contains(&leader)
                {
                    *votes.entry(leader).or_default() += 1;
                }
            }
            if let Some((leader, _)) = votes.into_iter().find(|(_, n)| *n * 2 > self.nodes.len()) {
                return (leader, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader among {up:?} within 30 s");
    }

    /// Waits (bounded: 30 s) until node `id` has applied what the leader
    /// has; returns how long that took.
    pub(crate) async fn caught_up(&self, id: u64) -> Duration {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let leader = self.probe.status().await.ok();
            let mine = self.status_of(id).await;
            if let (Some(leader), Some(mine)) = (leader, mine)
                && mine.last_applied >= leader.last_applied
            {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {id} did not catch up within 30 s");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A frozen node must be thawed to die.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
