//! One member of a replicated session store: openraft over the log store
//! and the state machine, serving peers and clients on one port.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Raft, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::SessionRaft;
use super::command::{self, Command, Op, Query, Reply};
use super::gather::{Reads, Writes, write_bounce};
use super::log::LogStore;
use super::machine::Machine;
use super::mux;
use super::network::Network;
use super::rpc::{Admin, Bounce, Request, Response, Status};
use super::wire::{PeerStream, Secret, WireConfig};
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, StoreConfig};
use crate::data::Data;
use crate::id::SessionId;
use crate::memory::MemoryStore;

type NodeId = u64;

/// How a [`RaftNode`] runs. Every node of a cluster should share the
/// timing settings and the secret.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// This node's id, unique in the cluster.
    pub id: NodeId,
    /// Where to listen for peers and clients.
    pub listen: SocketAddr,
    /// The address others reach this node at (default: `listen`).
    pub advertise: Option<String>,
    /// Where the log, the vote and the snapshots live.
    pub data_dir: PathBuf,
    /// The cluster's shared secret.
    pub secret: Secret,
    /// The sessions' defaults and limits; `cleanup_interval` is how often
    /// the leader proposes removing expired sessions.
    pub store: StoreConfig,
    /// How often the leader reminds followers it is alive (default 150 ms).
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in this range
    /// stands for election (default 750 ms to 1.5 s).
    pub election_timeout: (Duration, Duration),
    /// A snapshot is taken after this many entries (default 50,000).
    pub snapshot_every: u64,
    /// The longest frame a peer may send (default 16 MiB).
    pub max_frame: u32,
    /// The time source for the leader's stamps and for hiding expired
    /// sessions on reads (default [`SystemClock`]; a
    /// [`ManualClock`](crate::ManualClock) in tests).
    pub clock: Arc<dyn Clock>,
}

impl NodeConfig {
    /// The defaults for node `id` listening on `listen`, keeping its data
    /// in `data_dir`.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        data_dir: impl Into<PathBuf>,
        secret: Secret,
    ) -> Self {
        Self {
            id,
            listen,
            advertise: None,
            data_dir: data_dir.into(),
            secret,
            store: StoreConfig::default(),
            heartbeat_interval: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(750), Duration::from_millis(1500)),
            snapshot_every: 50_000,
            max_frame: 16 << 20,
            clock: Arc::new(SystemClock),
        }
    }

    /// Checks that the settings can work together.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.store.validate()?;
        let (min, max) = self.election_timeout;
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::new("heartbeat_interval", "must be above zero"));
        }
        if min <= self.heartbeat_interval * 2 {
            return Err(ConfigError::new(
                "election_timeout",
                "its lower end must be more than twice heartbeat_interval, or followers stand for election while the leader is well",
            ));
        }
        if max <= min {
            return Err(ConfigError::new(
                "election_timeout",
                "its upper end must be above its lower end",
            ));
        }
        if self.snapshot_every == 0 {
            return Err(ConfigError::new("snapshot_every", "must be above zero"));
        }
        if self.max_frame < 1 << 20 {
            return Err(ConfigError::new(
                "max_frame",
                "must be at least 1 MiB (a snapshot chunk and a batch of entries must fit)",
            ));
        }
        if self.advertise.as_deref().is_some_and(|a| !a.contains(':')) {
            return Err(ConfigError::new("advertise", "must be host:port"));
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let chunk = u64::from(self.max_frame / 2);
        openraft::Config {
            cluster_name: "keel-sessions".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            snapshot_max_chunk_size: chunk.min(4 << 20),
            max_in_snapshot_log_to_keep: 1000,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| ConfigError::new("election_timeout", e.to_string()))
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The data directory cannot be opened (another node may hold it).
    #[error("data directory {dir}: {reason}")]
    Storage {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// Raft failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

struct Inner {
    id: NodeId,
    raft: Raft<SessionRaft>,
    store: MemoryStore,
    clock: Arc<dyn Clock>,
    writes: Writes,
    reads: Reads,
}

/// A running member of a replicated session store. It serves until
/// [`shutdown`](Self::shutdown) or until it is dropped.
///
/// ```no_run
/// use keel_session_store::raft::{NodeConfig, RaftNode, wire::Secret};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = Secret::new(b"a secret of at least sixteen bytes".to_vec())?;
/// let config = NodeConfig::new(1, "127.0.0.1:7001".parse()?, "/var/lib/keel/node1", secret);
/// let node = RaftNode::start(config).await?;
/// node.shutdown().await;
/// # Ok(()) }
/// ```
pub struct RaftNode {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.inner.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RaftNode {
    /// Opens the node's data, starts raft and serves on `config.listen`.
    /// A new node waits to be made a member ([`RaftSessionStore::initialize`]
    /// or [`add_learner`](super::RaftSessionStore::add_learner)); a
    /// restarted one rejoins its cluster.
    ///
    /// [`RaftSessionStore::initialize`]: super::RaftSessionStore::initialize
    ///
    /// # Errors
    /// [`NodeError`] naming the bad setting, the address or the directory.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let storage = |reason: String| NodeError::Storage {
            dir: config.data_dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| storage(e.to_string()))?;
        let log =
            LogStore::open(&config.data_dir.join("log")).map_err(|e| storage(e.to_string()))?;
        let store = MemoryStore::builder(config.store.clone())
            .name(format!("raft-node-{}", config.id))
            .clock(Arc::clone(&config.clock))
            .build_unswept()
            .map_err(|e| storage(e.to_string()))?;
        let machine = Machine::open(
            store.clone(),
            config.store.default_ttl,
            &config.data_dir.join("snapshots"),
        )
        .await
        .map_err(|e| storage(e.to_string()))?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
        let mut wire = WireConfig::new(config.id, config.secret.clone());
        wire.max_frame = config.max_frame;
        let wire = Arc::new(wire);
        let network = Network::new(Arc::clone(&wire));
        let raft = Raft::new(config.id, raft_config, network, log, machine)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let (writes, gathering_writes) = Writes::start(raft.clone());
        let (reads, gathering_reads) = Reads::start(raft.clone());
        let inner = Arc::new(Inner {
            id: config.id,
            raft,
            store,
            clock: Arc::clone(&config.clock),
            writes,
            reads,
        });
        let tasks = vec![
            tokio::spawn(accept(listener, wire, Arc::clone(&inner))),
            tokio::spawn(expire(Arc::clone(&inner), config.store.cleanup_interval)),
            gathering_writes,
            gathering_reads,
        ];
        Ok(Self {
            inner,
            local_addr,
            tasks,
        })
    }

    /// The address the node listens on (with the port the OS picked when
    /// `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> Status {
        status(&self.inner)
    }

    /// Stops serving and stops raft.
    pub async fn shutdown(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let _ = self.inner.raft.shutdown().await;
    }
}

/// Dropped without [`shutdown`](RaftNode::shutdown): stops serving and
/// has raft stop in the background (on the runtime the drop happens in).
impl Drop for RaftNode {
    fn drop(&mut self) {
        if self.tasks.is_empty() {
            return; // shut down already
        }
        for task in &self.tasks {
            task.abort();
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.inner.raft.clone();
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

async fn accept(listener: TcpListener, wire: Arc<WireConfig>, inner: Arc<Inner>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let wire = Arc::clone(&wire);
        let inner = Arc::clone(&inner);
        tokio::spawn(async move {
            // A refused peer is logged by `accept`.
            if let Ok(stream) = PeerStream::accept(stream, &wire).await {
                mux::serve(stream, move |request| {
                    let inner = Arc::clone(&inner);
                    async move { handle(&inner, request).await }
                })
                .await;
            }
        });
    }
}

/// On the leader, proposes removing expired sessions every `every`.
async fn expire(inner: Arc<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if inner.raft.metrics().borrow().current_leader == Some(inner.id) {
            let _ = inner
                .writes
                .propose(stamped(&inner, None, Op::Expire))
                .await;
        }
    }
}

fn stamped(inner: &Inner, new_id: Option<SessionId>, op: Op) -> Command {
    Command {
        at: inner.clock.now_millis(),
        new_id,
        op,
    }
}

/// Answers one request. Raft's own calls and the admin commands are
/// boxed: their futures run to kilobytes, and unboxed they would set the
/// size of every client call's task (3.1 KB, copied in and out of each;
/// 0.9 KB boxed).
async fn handle(inner: &Inner, request: Request) -> Response {
    match request {
        Request::Append(rpc) => Response::Append(Box::pin(inner.raft.append_entries(rpc)).await),
        Request::Vote(rpc) => Response::Vote(Box::pin(inner.raft.vote(rpc)).await),
        Request::Snapshot(rpc) => {
            Response::Snapshot(Box::pin(inner.raft.install_snapshot(rpc)).await)
        }
        Request::Write(op) => Response::Client(write(inner, op).await),
        Request::Read {
            query,
            linearizable,
        } => Response::Client(read(inner, query, linearizable).await),
        Request::Admin(admin) => Response::Admin(Box::pin(manage(inner, admin)).await),
    }
}

/// Stamps `op` with this (leader) node's time, and a create with a fresh
/// id, and proposes it; answers once a majority has it and it is applied.
async fn write(inner: &Inner, op: Op) -> Result<Reply, Bounce> {
    let reply = match op {
        Op::Create { .. } => loop {
            let id = SessionId::random().map_err(|e| Bounce::Unavailable(e.to_string()))?;
            match propose(inner, stamped(inner, Some(id), op.clone())).await? {
                // A 128-bit id drawn twice: draw again.
                Reply::Taken => continue,
                reply => break reply,
            }
        },
        Op::Update { .. } => propose(inner, stamped(inner, None, op)).await?,
        _ => return propose(inner, stamped(inner, None, op)).await,
    };
    // The writer has the data it wrote.
    Ok(match reply {
        Reply::Session(s) => Reply::Written(Arc::new(s.with_data(Data::new()))),
        other => other,
    })
}

async fn propose(inner: &Inner, command: Command) -> Result<Reply, Bounce> {
    inner.writes.propose(command).await
}

async fn read(inner: &Inner, query: Query, linearizable: bool) -> Result<Reply, Bounce> {
    if linearizable {
        inner.reads.barrier().await?;
    }
    Ok(command::read(&inner.store, query).await)
}

fn status(inner: &Inner) -> Status {
    let metrics = inner.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let addr = |id: NodeId| {
        membership
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default()
    };
    let last_log = metrics.last_log_index.unwrap_or(0);
    Status {
        id: inner.id,
        leader: metrics.current_leader,
        term: metrics.current_term,
        voters: membership.voter_ids().map(|id| (id, addr(id))).collect(),
        learners: membership.learner_ids().map(|id| (id, addr(id))).collect(),
        last_applied: metrics.last_applied.map_or(0, |l| l.index),
        last_log,
        lag: metrics
            .replication
            .map(|r| {
                r.into_iter()
                    .map(|(id, matched)| (id, matched.map(|m| last_log.saturating_sub(m.index))))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The redirect to the leader `current` knows of.
fn leader_of(current: &Status) -> Bounce {
    Bounce::NotLeader {
        leader: current
            .leader
            .and_then(|l| current.voters.get(&l).map(|addr| (l, addr.clone()))),
    }
}

async fn manage(inner: &Inner, admin: Admin) -> Result<Status, Bounce> {
    let raft = &inner.raft;
    match admin {
        Admin::LocalStatus => return Ok(status(inner)),
        Admin::Status => {
            let current = status(inner);
            if current.leader == Some(inner.id) {
                return Ok(current);
            }
            return Err(leader_of(&current));
        }
        Admin::Init(members) => {
            let nodes: BTreeMap<NodeId, BasicNode> = members
                .into_iter()
                .map(|(id, addr)| (id, BasicNode { addr }))
                .collect();
            raft.initialize(nodes)
                .await
                .map_err(|e| Bounce::Invalid(e.to_string()))?;
        }
        Admin::AddLearner { id, addr } => {
            raft.add_learner(id, BasicNode { addr }, false)
                .await
                .map_err(write_bounce)?;
        }
        Admin::Promote { id, max_lag } => {
            let current = status(inner);
            if current.leader != Some(inner.id) {
                return Err(leader_of(&current));
            }
            match current.lag.get(&id) {
                None => {
                    return Err(Bounce::Invalid(format!(
                        "node {id} is not a learner of this cluster; add it first"
                    )));
                }
                Some(lag) if lag.is_none_or(|lag| lag > max_lag) => {
                    return Err(Bounce::Invalid(format!(
                        "node {id} has not caught up ({} entries behind; at most {max_lag} allowed): try again shortly",
                        lag.map_or_else(|| "all".to_owned(), |l| l.to_string())
                    )));
                }
                Some(_) => {}
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(write_bounce)?;
        }
        Admin::Remove { id } => {
            let ids = BTreeSet::from([id]);
            if status(inner).voters.contains_key(&id) {
                raft.change_membership(ChangeMembers::RemoveVoters(ids.clone()), false)
                    .await
                    .map_err(write_bounce)?;
            }
            raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
                .await
                .map_err(write_bounce)?;
        }
    }
    Ok(status(inner))
}
