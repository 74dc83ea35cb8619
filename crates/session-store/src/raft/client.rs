//! The client of a replicated session store: a [`SessionStore`] that
//! finds the leader, follows its redirects and rides out leader changes
//! with keel-retry, over a few multiplexed connections per node.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_retry::{
    Classify, ErrorClass, Idempotency, Retrier, RetryError, RetryPolicy, Schedule, Verdict,
};

use super::command::{Op, Query, Reply, millis};
use super::mux::{CallError, Caller};
use super::network::{ConnectError, connect};
use super::rpc::{Admin, Bounce, Request, Response, Status};
use super::wire::{Secret, WireConfig};
use crate::backup::SessionDump;
use crate::config::ConfigError;
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{JournalEntry, JournalRecord, JournalStatus};
use crate::observer::{Event, Events, Observer};
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionExport, SessionJournal, SessionStore};

/// How reads are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// By the leader, after it confirms with a majority that it still
    /// leads (raft's read index): a read sees every write acknowledged
    /// before it started.
    #[default]
    Linearizable,
    /// By any node, from what it has applied: faster and spread over the
    /// cluster, but it may miss the latest writes (the trade-off of
    /// asynchronous replication, made explicit).
    Stale,
}

/// How a [`RaftSessionStore`] reaches its cluster.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RaftClientConfig {
    /// Some of the cluster's nodes (`host:port`); the client learns the
    /// leader from them.
    pub nodes: Vec<String>,
    /// The cluster's shared secret.
    pub secret: Secret,
    /// Connections kept to each node (default 4); calls are multiplexed
    /// over them.
    pub connections: usize,
    /// How long one attempt may wait for its answer (default 5 s).
    pub request_timeout: Duration,
    /// How leader changes and unreachable nodes are retried (default: up
    /// to 20 attempts from 25 ms, at most 500 ms apart, within 15 s; an
    /// election takes about a second).
    pub retry: RetryPolicy,
    /// How reads are served (default [`Consistency::Linearizable`]).
    pub consistency: Consistency,
}

impl RaftClientConfig {
    /// The defaults for a cluster reachable at `nodes`.
    pub fn new(nodes: impl IntoIterator<Item = impl Into<String>>, secret: Secret) -> Self {
        let schedule =
            Schedule::new(20, Duration::from_millis(25)).with_max_delay(Duration::from_millis(500));
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            secret,
            connections: 4,
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default()
                .with_default(schedule)
                .with_total_timeout(Duration::from_secs(15)),
            consistency: Consistency::Linearizable,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(ConfigError::new("nodes", "name at least one node"));
        }
        if let Some(bad) = self.nodes.iter().find(|n| n.rsplit_once(':').is_none()) {
            return Err(ConfigError::new(
                "nodes",
                format!("{bad:?} is not host:port"),
            ));
        }
        if self.connections == 0 {
            return Err(ConfigError::new("connections", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new("request_timeout", "must be above zero"));
        }
        self.retry
            .validate()
            .map_err(|e| ConfigError::new(format!("retry.{}", e.field()), e.reason().to_owned()))
    }
}

/// Builds a [`RaftSessionStore`] with an observer or a name.
#[must_use = "a builder does nothing until built"]
pub struct RaftStoreBuilder {
    config: RaftClientConfig,
    observer: Option<Arc<dyn Observer>>,
    name: String,
}

impl fmt::Debug for RaftStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftStoreBuilder")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl RaftStoreBuilder {
    /// Sends the client's events (created, conflict, deleted, expired, as
    /// this client saw them acknowledged) to `observer`.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Names the store; its events carry the name (default empty).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The client. It connects on first use.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming the bad field.
    pub fn build(self) -> Result<RaftSessionStore, StoreError> {
        let Self {
            config,
            observer,
            name,
        } = self;
        config.validate()?;
        let build = |idempotency| {
            Retrier::builder(config.retry.clone())
                .classifier(Classifier)
                .idempotency(idempotency)
                .build()
                .map_err(|e| {
                    ConfigError::new(format!("retry.{}", e.field()), e.reason().to_owned())
                })
        };
        let inner = Inner {
            events: Events::new(Arc::from(name.as_str()), observer),
            wire: WireConfig::new(0, config.secret.clone()),
            nodes: config.nodes.iter().map(|n| Arc::from(n.as_str())).collect(),
            leader: Mutex::new(None),
            peers: Mutex::default(),
            turn: AtomicUsize::new(0),
            writes: build(Idempotency::NonIdempotent)?,
            reads: build(Idempotency::Idempotent)?,
            config,
        };
        let consistency = inner.config.consistency;
        Ok(RaftSessionStore {
            inner: Arc::new(inner),
            consistency,
        })
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    /// The node is not the leader (it said who is, if it knew): nothing
    /// was proposed.
    #[error("node is not the leader")]
    Redirected,
    /// The call never left: no effect.
    #[error("{0}")]
    Unsent(String),
    /// The call left and its answer was lost: it may have taken effect.
    #[error(transparent)]
    Lost(CallError),
    /// The node could not serve it; for a write, it may have taken effect.
    #[error("{0}")]
    Unavailable(String),
    /// The call cannot succeed.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Copy, Debug)]
struct Classifier;

impl Classify<Attempt> for Classifier {
    fn classify(&self, error: &Attempt) -> Verdict {
        match error {
            Attempt::Redirected | Attempt::Unsent(_) => Verdict::no_effect(ErrorClass::Connection),
            Attempt::Lost(_) | Attempt::Unavailable(_) => {
                Verdict::transient(ErrorClass::Connection)
            }
            Attempt::Invalid(_) => Verdict::Permanent,
        }
    }
}

struct Inner {
    config: RaftClientConfig,
    events: Events,
    wire: WireConfig,
    /// The nodes named in the config, shared so picking one copies nothing.
    nodes: Vec<Arc<str>>,
    leader: Mutex<Option<Arc<str>>>,
    peers: Mutex<HashMap<String, Peer>>,
    turn: AtomicUsize,
    /// Writes are retried only when they certainly had no effect.
    writes: Retrier<Classifier>,
    /// Reads and admin status are retried on any transient failure.
    reads: Retrier<Classifier>,
}

/// A node this client talks to.
#[derive(Default)]
struct Peer {
    callers: Vec<Caller>,
    /// Held while a connection to the node is being opened.
    opening: Arc<tokio::sync::Mutex<()>>,
}

/// Sessions in a replicated cluster of [`RaftNode`](super::RaftNode)s.
/// Writes go to the leader and are acknowledged once a majority holds
/// them; reads are linearizable unless asked otherwise
/// ([`with_consistency`](Self::with_consistency)). Clones share the
/// connections.
///
/// A write whose answer is lost (the leader died after receiving it) fails
/// with [`StoreError::OutcomeUnknown`]: it may or may not have been
/// applied, and it is not repeated behind the caller's back.
#[derive(Clone)]
pub struct RaftSessionStore {
    inner: Arc<Inner>,
    consistency: Consistency,
}

impl fmt::Debug for RaftSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftSessionStore")
            .field("nodes", &self.inner.config.nodes)
            .field("consistency", &self.consistency)
            .finish_non_exhaustive()
    }
}

impl RaftSessionStore {
    /// A client of the cluster `config` names. It connects on first use.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming the bad field.
    pub fn new(config: RaftClientConfig) -> Result<Self, StoreError> {
        Self::builder(config).build()
    }

    /// A builder for a client with an observer or a name.
    pub fn builder(config: RaftClientConfig) -> RaftStoreBuilder {
        RaftStoreBuilder {
            config,
            observer: None,
            name: String::new(),
        }
    }

    /// The store's name (empty unless given one).
    pub fn name(&self) -> &str {
        self.inner.events.name()
    }

    /// The connections this client (and its clones) holds open, to all
    /// nodes: at most `connections` per node it has talked to.
    pub fn open_connections(&self) -> usize {
        self.peers()
            .values()
            .map(|peer| peer.callers.iter().filter(|c| c.is_alive()).count())
            .sum()
    }

    /// This store, reading with `consistency` (sharing the connections).
    #[must_use]
    pub fn with_consistency(&self, consistency: Consistency) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            consistency,
        }
    }

    /// Makes `members` (id to `host:port`) the cluster's first voters. Ask
    /// once, of any of them.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the cluster is initialized already or
    /// cannot be reached.
    pub async fn initialize(&self, members: BTreeMap<u64, String>) -> Result<Status, StoreError> {
        self.admin(Admin::Init(members)).await
    }

    /// Adds node `id`, reachable at `addr`, as a learner: it receives the
    /// log (a snapshot first) without voting.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the change cannot be made.
    pub async fn add_learner(
        &self,
        id: u64,
        addr: impl Into<String>,
    ) -> Result<Status, StoreError> {
        self.admin(Admin::AddLearner {
            id,
            addr: addr.into(),
        })
        .await
    }

    /// Makes learner `id` a voter, if it is at most `max_lag` entries
    /// behind the leader.
    ///
    /// # Errors
    /// [`StoreError::Backend`] saying how far behind it is, or why the
    /// change cannot be made.
    pub async fn promote(&self, id: u64, max_lag: u64) -> Result<Status, StoreError> {
        self.admin(Admin::Promote { id, max_lag }).await
    }

    /// Takes node `id` out of the cluster.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the change cannot be made.
    pub async fn remove(&self, id: u64) -> Result<Status, StoreError> {
        self.admin(Admin::Remove { id }).await
    }

    /// The leader's view of the cluster: members, term, how far each is.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when no leader can be reached.
    pub async fn status(&self) -> Result<Status, StoreError> {
        self.admin(Admin::Status).await
    }

    /// The view of the node at `addr` (leader or not).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it cannot be reached.
    pub async fn node_status(&self, addr: &str) -> Result<Status, StoreError> {
        let caller = self
            .caller(addr)
            .await
            .map_err(|e| StoreError::Backend(e.into()))?;
        match caller
            .call(
                &Request::Admin(Admin::LocalStatus),
                self.inner.config.request_timeout,
            )
            .await
        {
            Ok(Response::Admin(Ok(status))) => Ok(status),
            Ok(Response::Admin(Err(bounce))) => {
                Err(StoreError::Backend(format!("{bounce:?}").into()))
            }
            Ok(_) => Err(StoreError::Backend("unexpected answer".into())),
            Err(e) => Err(StoreError::Backend(Box::new(e))),
        }
    }

    async fn admin(&self, admin: Admin) -> Result<Status, StoreError> {
        let retrier = match admin {
            Admin::Status | Admin::LocalStatus => &self.inner.reads,
            _ => &self.inner.writes,
        };
        let request = Arc::new(Request::Admin(admin));
        match self.run(retrier, request, true).await? {
            Answer::Status(status) => Ok(status),
            Answer::Reply(_) => Err(StoreError::Backend("unexpected answer".into())),
        }
    }

    /// The node to call: the leader when known (or any node for a stale
    /// read), else the next in turn.
    fn target(&self, to_leader: bool) -> Arc<str> {
        let nodes = &self.inner.nodes;
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        if to_leader && let Some(leader) = self.leader().clone() {
            return leader;
        }
        Arc::clone(&nodes[turn % nodes.len()])
    }

    fn leader(&self) -> std::sync::MutexGuard<'_, Option<Arc<str>>> {
        self.inner
            .leader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One of the `connections` open connections to `addr`, if there are
    /// that many.
    fn open_caller(&self, addr: &str) -> Option<Caller> {
        let turn = self.inner.turn.load(Ordering::Relaxed);
        let peers = self.peers();
        let list = &peers.get(addr)?.callers;
        let live = list.iter().filter(|c| c.is_alive()).count();
        if live < self.inner.config.connections {
            return None;
        }
        list.iter()
            .filter(|c| c.is_alive())
            .nth(turn % live)
            .cloned()
    }

    /// One of the connections to `addr`, opened if need be.
    async fn caller(&self, addr: &str) -> Result<Caller, ConnectError> {
        if let Some(open) = self.open_caller(addr) {
            return Ok(open);
        }
        // One connection to a node opened at a time: 256 first calls at
        // once must not open 256 connections, and a node that hangs in its
        // handshake holds up only the calls waiting for it.
        let opening = Arc::clone(&self.peers().entry(addr.to_owned()).or_default().opening);
        let _opening = opening.lock().await;
        if let Some(open) = self.open_caller(addr) {
            return Ok(open);
        }
        let caller = connect(addr, &self.inner.wire, None).await?;
        let mut peers = self.peers();
        let list = &mut peers.entry(addr.to_owned()).or_default().callers;
        list.retain(Caller::is_alive);
        list.push(caller.clone());
        Ok(caller)
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Peer>> {
        self.inner
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn attempt(&self, request: &Request, to_leader: bool) -> Result<Answer, Attempt> {
        let addr = self.target(to_leader);
        let forget = |this: &Self| {
            let mut leader = this.leader();
            if leader.as_deref() == Some(&*addr) {
                *leader = None;
            }
        };
        let caller = self.caller(&addr).await.map_err(|e| {
            forget(self);
            match e {
                ConnectError::Down(m) => Attempt::Unsent(m),
                ConnectError::Refused(m) => Attempt::Invalid(m),
            }
        })?;
        let response = caller
            .call(request, self.inner.config.request_timeout)
            .await
            .map_err(|e| {
                forget(self);
                match e {
                    CallError::Unsent(m) => Attempt::Unsent(m),
                    CallError::TooLarge { .. } => Attempt::Invalid(e.to_string()),
                    other => Attempt::Lost(other),
                }
            })?;
        let bounced = match response {
            Response::Client(Ok(reply)) => return Ok(Answer::Reply(reply)),
            Response::Admin(Ok(status)) => return Ok(Answer::Status(status)),
            Response::Client(Err(b)) | Response::Admin(Err(b)) => b,
            _ => return Err(Attempt::Invalid("the node answered another call".into())),
        };
        if to_leader {
            *self.leader() = None;
        }
        match bounced {
            Bounce::NotLeader { leader } => {
                if let Some((_, addr)) = leader {
                    *self.leader() = Some(Arc::from(addr));
                }
                Err(Attempt::Redirected)
            }
            Bounce::Unavailable(m) => Err(Attempt::Unavailable(m)),
            Bounce::Invalid(m) => Err(Attempt::Invalid(m)),
        }
    }

    async fn run(
        &self,
        retrier: &Retrier<Classifier>,
        request: Arc<Request>,
        to_leader: bool,
    ) -> Result<Answer, StoreError> {
        retrier
            .run(|| {
                let this = self.clone();
                let request = Arc::clone(&request);
                async move { this.attempt(&request, to_leader).await }
            })
            .await
            .map_err(gave_up)
    }

    async fn write(&self, op: Op) -> Result<Reply, StoreError> {
        let answer = self
            .run(&self.inner.writes, Arc::new(Request::Write(op)), true)
            .await?;
        reply(answer)
    }

    async fn read(&self, query: Query) -> Result<Reply, StoreError> {
        let linearizable = self.consistency == Consistency::Linearizable;
        let request = Arc::new(Request::Read {
            query,
            linearizable,
        });
        let answer = self.run(&self.inner.reads, request, linearizable).await?;
        reply(answer)
    }
}

enum Answer {
    Reply(Reply),
    Status(Status),
}

fn reply(answer: Answer) -> Result<Reply, StoreError> {
    match answer {
        Answer::Reply(Reply::Refused(refusal)) => Err(refusal.into()),
        Answer::Reply(reply) => Ok(reply),
        Answer::Status(_) => Err(StoreError::Backend("unexpected answer".into())),
    }
}

fn gave_up(e: RetryError<Attempt>) -> StoreError {
    let attempts = e.attempts();
    match e.into_inner() {
        Some(Attempt::Lost(lost)) => StoreError::OutcomeUnknown(Box::new(lost)),
        Some(Attempt::Unavailable(m)) => StoreError::OutcomeUnknown(m.into()),
        Some(Attempt::Invalid(m)) => StoreError::Backend(m.into()),
        Some(other) => StoreError::Backend(
            format!("no leader reachable after {attempts} attempts: {other}").into(),
        ),
        None => StoreError::OutcomeUnknown(
            format!("no answer after {attempts} attempts (timed out)").into(),
        ),
    }
}

fn unexpected(reply: &Reply) -> StoreError {
    StoreError::Backend(format!("unexpected answer {reply:?}").into())
}

/// The session a create or update wrote, given back the data it sent.
fn written(reply: Reply, data: Data) -> Result<Arc<Session>, StoreError> {
    match reply {
        Reply::Written(s) => Ok(Arc::new(s.with_data(data))),
        other => session(other),
    }
}

fn session(reply: Reply) -> Result<Arc<Session>, StoreError> {
    match reply {
        Reply::Session(s) => Ok(s),
        other => Err(unexpected(&other)),
    }
}

impl SessionStore for RaftSessionStore {
    async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
        let data = new.data.clone();
        let created = written(self.write(Op::create(new)).await?, data)?;
        self.inner.events.emit(|name| Event::Created { name });
        Ok(created)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        match self.read(Query::Get(*id)).await? {
            Reply::Session(s) => Ok(Some(s)),
            Reply::Missing => Ok(None),
            other => Err(unexpected(&other)),
        }
    }

    async fn update_with_ttl(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
    ) -> Result<Arc<Session>, StoreError> {
        let sent = data.clone();
        let updated = self
            .write(Op::Update {
                id: *id,
                expected_version,
                data,
                ttl_ms: ttl.map(millis),
            })
            .await
            .and_then(|reply| written(reply, sent));
        if let Err(StoreError::Conflict { .. }) = &updated {
            self.inner.events.emit(|name| Event::Conflict { name });
        }
        updated
    }

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        session(self.write(Op::Touch(*id)).await?)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        match self.write(Op::Delete(*id)).await? {
            Reply::Removed(removed) => {
                if removed {
                    self.inner.events.emit(|name| Event::Deleted { name });
                }
                Ok(removed)
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn len(&self) -> Result<usize, StoreError> {
        match self.read(Query::Len).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        match self.read(Query::ByClient(client_id.to_owned())).await? {
            Reply::Sessions(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }
}

impl ExpiredCleanup for RaftSessionStore {
    /// Has the leader propose removing what has expired now (it also does
    /// so every `cleanup_interval` by itself).
    async fn cleanup_expired(&self) -> Result<usize, StoreError> {
        match self.write(Op::Expire).await? {
            Reply::Count(count) => {
                if count > 0 {
                    self.inner
                        .events
                        .emit(|name| Event::Expired { name, count });
                }
                Ok(count)
            }
            other => Err(unexpected(&other)),
        }
    }
}

impl SessionJournal for RaftSessionStore {
    async fn journal_append(&self, id: &SessionId, entry: JournalEntry) -> Result<u64, StoreError> {
        match self.write(Op::JournalAppend { id: *id, entry }).await? {
            Reply::Seq(seq) => Ok(seq),
            other => Err(unexpected(&other)),
        }
    }

    async fn journal_mark(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
    ) -> Result<(), StoreError> {
        match self
            .write(Op::JournalMark {
                id: *id,
                seq,
                status,
            })
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn journal(&self, id: &SessionId) -> Result<Vec<JournalRecord>, StoreError> {
        match self.read(Query::Journal(*id)).await? {
            Reply::Journal(records) => Ok(records),
            other => Err(unexpected(&other)),
        }
    }
}

impl SessionExport for RaftSessionStore {
    async fn export(&self) -> Result<Vec<SessionDump>, StoreError> {
        match self.read(Query::Export).await? {
            Reply::Dumps(dumps) => Ok(dumps),
            other => Err(unexpected(&other)),
        }
    }

    /// Replaces every session in one log entry, so it must fit in a frame
    /// (`max_frame`, 16 MiB by default); a larger restore is refused with
    /// nothing changed.
    async fn import(&self, dumps: Vec<SessionDump>) -> Result<usize, StoreError> {
        match self.write(Op::Import(dumps)).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }
}
