//! A pool over several endpoints (feature `cluster`): one primary and any
//! number of replicas, or equal peers, each endpoint a [`Pool`] of its own.
//!
//! - Each new connection asks its server what it is
//!   ([`Manager::server_state`]): writes go to a server that takes them,
//!   reads to a replica when one is in rotation, else to the primary; a
//!   checkout can also name libpq's [`TargetSessionAttrs`].
//! - Reads are balanced by a [`Balance`] strategy.
//! - An endpoint that keeps failing is ejected by a circuit breaker of its
//!   own (keel-breaker), never more than `max_ejected_share` of the
//!   replicas at once; the cluster's refresh is its trial call back in.
//! - Failover: a refresh every `refresh_interval` (and at once when a new
//!   connection finds its server changed role) asks each endpoint what it
//!   is; writes follow the server that now takes them, and the idle
//!   connections of an endpoint whose role changed are retired.
//!   [`Cluster::set_role`] says so by hand.
//! - The cluster starts when endpoints are down and
//!   [`endpoints`](Cluster::endpoints) reports which.

mod attrs;
mod balance;
mod config;
mod endpoint;
mod error;
mod pooled;
#[cfg(feature = "tower")]
mod service;
#[cfg(all(test, feature = "tower"))]
mod service_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use keel_breaker::CircuitBreaker;

pub use attrs::{Access, TargetSessionAttrs, UnknownAttrs};
pub use balance::Balance;
pub use config::ClusterConfig;
pub use endpoint::{EndpointInfo, Role};
pub use error::ClusterError;
pub use pooled::ClusterPooled;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use service::ClusterService;

#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use crate::driver::ClusterUrl;

use crate::config::{ConfigError, PoolConfig};
use crate::error::{BuildError, Phase};
use crate::manager::Manager;
use crate::observer::Observer;
use crate::pool::Pool;
use balance::{Load, MAX_ENDPOINTS, Set};
use endpoint::{Endpoint, Observed, Probed};
use pooled::{Outcome, Ticket};

/// A pool over several endpoints. Clones share it.
///
/// ```
/// # use std::convert::Infallible;
/// # #[derive(Debug)] struct Db(&'static str);
/// # impl keel_pool_core::Manager for Db {
/// #     type Connection = &'static str; type Error = Infallible;
/// #     async fn connect(&self) -> Result<&'static str, Infallible> { Ok(self.0) }
/// #     async fn validate(&self, _: &mut &'static str) -> Result<(), Infallible> { Ok(()) }
/// #     fn endpoint(&self) -> Option<String> { Some(self.0.into()) }
/// # }
/// use keel_pool_core::cluster::{Access, Cluster, Role};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = Cluster::builder()
///     .endpoint(Db("db-1:5432/app"), Role::Primary)
///     .endpoint(Db("db-2:5432/app"), Role::Replica)
///     .build()
///     .await?;
/// assert_eq!(*cluster.get(Access::Write).await?, "db-1:5432/app");
/// assert_eq!(*cluster.get(Access::Read).await?, "db-2:5432/app");
/// # Ok(()) }
/// ```
pub struct Cluster<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Cluster<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Cluster<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("endpoints", &self.endpoints())
            .field("config", &self.inner.config)
            .finish()
    }
}

struct Inner<M: Manager> {
    endpoints: Vec<Arc<Endpoint<M>>>,
    config: ClusterConfig,
    turn: AtomicUsize,
    /// Woken when a connection found its server's role changed.
    changed: Arc<tokio::sync::Notify>,
}

impl<M: Manager> Cluster<M> {
    /// A builder: add endpoints, then [`build`](ClusterBuilder::build).
    pub fn builder() -> ClusterBuilder<M> {
        ClusterBuilder {
            endpoints: Vec::new(),
            config: ClusterConfig::default(),
            pool: PoolConfig::default(),
            name: "cluster".to_owned(),
            observer: None,
            ejection_observer: None,
        }
    }

    /// A connection for `access`: a write goes to a server that takes
    /// writes; a read to a replica in rotation, else the primary.
    ///
    /// An endpoint whose pool fails the checkout (down, timed out) counts
    /// a failure towards its ejection, and the next endpoint that may serve
    /// is tried, each at most once.
    ///
    /// # Errors
    /// [`ClusterError::NoEndpoint`] with every endpoint's state when none
    /// may serve it; [`ClusterError::Pool`] with the last endpoint's error
    /// when every one that may serve failed.
    pub async fn get(&self, access: Access) -> Result<ClusterPooled<M>, ClusterError<M::Error>> {
        self.get_for(access.attrs()).await
    }

    /// A connection on a server that satisfies `attrs`, as libpq's
    /// `target_session_attrs` means it.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_for(
        &self,
        attrs: TargetSessionAttrs,
    ) -> Result<ClusterPooled<M>, ClusterError<M::Error>> {
        let inner = &*self.inner;
        let mut passed_over: Set = 0;
        let mut last_error = None;
        loop {
            let Some((i, wanted)) = inner.choose(attrs, passed_over) else {
                return Err(last_error.unwrap_or_else(|| ClusterError::NoEndpoint {
                    attrs,
                    endpoints: self.endpoints(),
                }));
            };
            passed_over |= 1 << i;
            let endpoint = &inner.endpoints[i];
            // An ejected endpoint kept in rotation by the share cap, or a
            // half-open one out of trial slots, is used without a permit.
            let permit = endpoint.breaker.try_acquire_owned().ok();
            // Only health balancing reads checkout latency: the others
            // spare the clock.
            let started = (inner.config.balance == Balance::Health).then(Instant::now);
            match endpoint.pool.get().await {
                Ok(conn) => {
                    endpoint.in_use.fetch_add(1, Ordering::Relaxed);
                    let pooled = ClusterPooled {
                        conn,
                        ticket: Ticket {
                            endpoint: Arc::clone(endpoint),
                            permit,
                            started,
                            outcome: Outcome::Success,
                        },
                    };
                    // A new connection may just have found its server
                    // changed role: then it is not what was asked for.
                    if accepts(wanted, endpoint) {
                        return Ok(pooled);
                    }
                }
                Err(source) => {
                    // The next endpoint that may serve is tried. A server
                    // that cannot be reached counts a failure towards its
                    // ejection; a pool that is merely full does not.
                    let busy = source.timeout_phase() == Some(Phase::Wait) || source.is_closed();
                    if let Some(p) = permit {
                        if busy { p.ignore() } else { p.failure() }
                    }
                    if !busy {
                        endpoint.observed.set_error(Some(source.to_string()));
                        endpoint.record_latency(endpoint::FAILURE_PENALTY);
                    }
                    last_error = Some(ClusterError::Pool {
                        endpoint: endpoint.name.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Every endpoint: its name, role, whether it is in rotation, its
    /// counters and its pool's.
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        let out = self.inner.ejected();
        self.inner
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| e.info(out & 1 << i != 0))
            .collect()
    }

    /// Asks every endpoint what it is now (a checkout and one query each,
    /// concurrently), as the background refresh does; returns the report.
    pub async fn refresh(&self) -> Vec<EndpointInfo> {
        refresh_all(&self.inner).await;
        self.endpoints()
    }

    /// Tells the cluster an endpoint's role (a failover the caller
    /// performed), overriding what its server said until the next refresh
    /// asks again; its idle connections are retired when the role changes.
    /// Returns false when no endpoint has that name.
    pub fn set_role(&self, endpoint: &str, role: Role) -> bool {
        let Some(e) = self.inner.endpoints.iter().find(|e| &*e.name == endpoint) else {
            return false;
        };
        if e.observed.report(role.state()) {
            e.pool.evict_all();
        }
        true
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }
}

fn accepts<M: Manager>(attrs: TargetSessionAttrs, e: &Endpoint<M>) -> bool {
    let state = e.observed.state();
    attrs.accepts(state) && !(state.in_recovery && e.observed.lagging.load(Ordering::Relaxed))
}

impl<M: Manager> Inner<M> {
    /// The endpoint to try and what it must still be when its connection
    /// arrives (`Any` on prefer-standby's second pass), or None when none
    /// may serve `attrs`.
    fn choose(
        &self,
        mut attrs: TargetSessionAttrs,
        passed_over: Set,
    ) -> Option<(usize, TargetSessionAttrs)> {
        let out = self.ejected() | passed_over;
        let mut in_rotation = self.accepting(attrs) & !out;
        if in_rotation == 0 && attrs == TargetSessionAttrs::PreferStandby {
            // No standby serves: libpq's second pass takes any server.
            attrs = TargetSessionAttrs::Any;
            in_rotation = self.accepting(attrs) & !out;
        }
        if in_rotation == 0 {
            return None;
        }
        // Two pools of 8 are worse than one of 16 if a checkout can queue
        // on a full one while the other has room: pick among those with
        // room when there are any.
        let with_room = self.with_room(in_rotation);
        let candidates = if with_room == 0 {
            in_rotation
        } else {
            with_room
        };
        let at = self.config.balance.pick(candidates, &self.turn, |i| {
            let e = &self.endpoints[i];
            Load {
                in_use: e.in_use.load(Ordering::Relaxed),
                ewma_ns: e.ewma_ns.load(Ordering::Relaxed),
            }
        });
        Some((at, attrs))
    }

    /// The members of `set` whose pool would not make a checkout queue.
    fn with_room(&self, set: Set) -> Set {
        let mut rest = set;
        let mut room = 0;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if self.endpoints[i].pool.has_room() {
                room |= 1 << i;
            }
        }
        room
    }

    /// The endpoints whose server may serve `attrs`.
    fn accepting(&self, attrs: TargetSessionAttrs) -> Set {
        let mut set = 0;
        for (i, e) in self.endpoints.iter().enumerate() {
            if accepts(attrs, e) {
                set |= 1 << i;
            }
        }
        set
    }

    /// Which endpoints are out of rotation: their breaker is open, and,
    /// for replicas, no more than `max_ejected_share` of the replicas are
    /// out at once (past it, the first by position keep serving).
    fn ejected(&self) -> Set {
        let (mut open, mut open_replicas, mut replicas): (Set, Set, usize) = (0, 0, 0);
        for (i, e) in self.endpoints.iter().enumerate() {
            let replica = e.observed.state().in_recovery;
            replicas += usize::from(replica);
            if e.is_ejected() {
                open |= 1 << i;
                if replica {
                    open_replicas |= 1 << i;
                }
            }
        }
        // The common case: every endpoint in rotation.
        if open_replicas == 0 {
            return open;
        }
        let may_eject = (self.config.max_ejected_share * replicas as f64).floor() as u32;
        let mut keep = open_replicas.count_ones().saturating_sub(may_eject);
        let mut out = open;
        while keep > 0 {
            // The first open replica by position keeps serving.
            out &= !(1 << (open_replicas & out).trailing_zeros());
            keep -= 1;
        }
        out
    }
}

/// Asks one endpoint what it is: the breaker's trial call when it is
/// ejected, a latency sample for health balancing.
async fn refresh_one<M: Manager>(e: &Endpoint<M>, max_lag: Option<std::time::Duration>) {
    let permit = e.breaker.try_acquire_owned().ok();
    let started = Instant::now();
    let result = async {
        let mut conn = e.pool.get().await.map_err(|err| err.to_string())?;
        let state = e
            .pool
            .manager()
            .inner
            .server_state(&mut conn)
            .await
            .map_err(|err| {
                conn.mark_unknown();
                err.to_string()
            })?;
        let lag = match (state, max_lag) {
            (Some(s), Some(_)) if s.in_recovery => e
                .pool
                .manager()
                .inner
                .replay_lag(&mut conn)
                .await
                .map_err(|err| err.to_string())?,
            _ => None,
        };
        Ok::<_, String>((state, lag))
    }
    .await;
    match result {
        Ok((state, lag)) => {
            e.record_latency(started.elapsed());
            let lagging = matches!((lag, max_lag), (Some(lag), Some(max)) if lag > max);
            e.observed.lagging.store(lagging, Ordering::Relaxed);
            e.observed.set_error(None);
            if let Some(state) = state
                && e.observed.report(state)
            {
                e.pool.evict_all();
            }
            if let Some(p) = permit {
                p.success();
            } else if e.is_ejected() {
                // Reachable again: end the open period rather than wait it
                // out; the next checkouts are its trial calls.
                e.breaker.end_open_period();
            }
        }
        Err(reason) => {
            e.observed.set_error(Some(reason));
            e.record_latency(endpoint::FAILURE_PENALTY);
            if let Some(p) = permit {
                p.failure();
            }
        }
    }
}

async fn refresh_all<M: Manager>(inner: &Inner<M>) {
    let max_lag = inner.config.max_replica_lag;
    let probes = inner.endpoints.iter().map(|e| refresh_one(e, max_lag));
    futures_join_all(probes).await;
}

/// Runs the futures concurrently (a handful: one per endpoint).
async fn futures_join_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Refreshes every `refresh_interval`, and at once when a connection found
/// its server's role changed; stops when the cluster is dropped.
fn spawn_refresh<M: Manager>(inner: &Arc<Inner<M>>, runtime: &tokio::runtime::Handle) {
    let weak: Weak<Inner<M>> = Arc::downgrade(inner);
    let changed = Arc::clone(&inner.changed);
    let every = inner.config.refresh_interval;
    runtime.spawn(async move {
        loop {
            // Whichever comes first: the interval, or a role change.
            let _ = tokio::time::timeout(every, changed.notified()).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.endpoints.iter().all(|e| e.pool.is_closed()) {
                return;
            }
            refresh_all(&inner).await;
        }
    });
}

/// Builds a [`Cluster`].
pub struct ClusterBuilder<M: Manager> {
    endpoints: Vec<(M, Role)>,
    config: ClusterConfig,
    pool: PoolConfig,
    name: String,
    observer: Option<Arc<dyn Observer>>,
    ejection_observer: Option<Arc<dyn keel_breaker::Observer>>,
}

/// One observer shared by every endpoint's pool.
struct SharedObserver(Arc<dyn Observer>);

impl Observer for SharedObserver {
    fn on_event(&self, event: &crate::observer::Event<'_>) {
        self.0.on_event(event);
    }
}

impl<M: Manager> ClusterBuilder<M> {
    /// Adds an endpoint with the role it is assumed to have until its
    /// server says (equal peers: all [`Role::Primary`]).
    pub fn endpoint(mut self, manager: M, role: Role) -> Self {
        self.endpoints.push((manager, role));
        self
    }

    /// The cluster's own settings.
    pub fn config(mut self, config: ClusterConfig) -> Self {
        self.config = config;
        self
    }

    /// The settings of every endpoint's pool (`max_size` is per endpoint).
    pub fn pool_config(mut self, config: PoolConfig) -> Self {
        self.pool = config;
        self
    }

    /// Sends every endpoint pool's events to `observer` (each event names
    /// its pool, `{cluster}/{endpoint}`: keel-telemetry's `PoolMetrics`
    /// labels by it).
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Sends every endpoint's ejection breaker's events to `observer`
    /// (each breaker is named after its endpoint): a transition to Open
    /// ejects the endpoint, unless `max_ejected_share` keeps it serving.
    pub fn ejection_observer(mut self, observer: impl keel_breaker::Observer) -> Self {
        self.ejection_observer = Some(Arc::new(observer));
        self
    }

    /// Names the cluster: each endpoint's pool is named
    /// `{name}/{endpoint}` in its events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the pools, asks each endpoint what it is (endpoints that are
    /// down are reported by [`Cluster::endpoints`], not an error), and
    /// starts the refresh on the current tokio runtime.
    ///
    /// # Errors
    /// [`BuildError::Config`] for an empty endpoint list, a bad setting or
    /// a cluster of declared replicas whose `target_session_attrs` needs a
    /// primary (the field named); [`BuildError::NoRuntime`] outside a tokio
    /// runtime.
    pub async fn build(self) -> Result<Cluster<M>, BuildError<M::Error>> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new("endpoints", "the list is empty").into());
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(ConfigError::new(
                "endpoints",
                format!(
                    "{} endpoints; a cluster takes at most {MAX_ENDPOINTS}",
                    self.endpoints.len()
                ),
            )
            .into());
        }
        self.config.validate()?;
        if self.config.target_session_attrs.needs_writer()
            && self.endpoints.iter().all(|(_, r)| *r == Role::Replica)
        {
            return Err(ConfigError::new(
                "target_session_attrs",
                format!(
                    "`{}` needs a primary, and every endpoint is a replica",
                    self.config.target_session_attrs
                ),
            )
            .into());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (n, (manager, role)) in self.endpoints.into_iter().enumerate() {
            let name: Arc<str> = manager
                .endpoint()
                .unwrap_or_else(|| format!("endpoint-{n}"))
                .into();
            let observed = Arc::new(Observed::new(role));
            let probed = Probed {
                inner: manager,
                observed: Arc::clone(&observed),
                changed: Arc::clone(&changed),
            };
            // Warming would fail the build on an endpoint that is down.
            let mut pool = Pool::builder(probed)
                .config(PoolConfig {
                    warm: false,
                    ..self.pool.clone()
                })
                .name(format!("{}/{name}", self.name));
            if let Some(observer) = &self.observer {
                pool = pool.observer(SharedObserver(Arc::clone(observer)));
            }
            let pool = pool.build().await?;
            let mut breaker =
                CircuitBreaker::builder(self.config.ejection.clone()).name(name.to_string());
            if let Some(observer) = &self.ejection_observer {
                breaker = breaker.shared_observer(Arc::clone(observer));
            }
            let breaker = breaker.build().map_err(|e| {
                ConfigError::new(format!("ejection.{}", e.field()), e.reason().to_owned())
            })?;
            endpoints.push(Arc::new(Endpoint {
                name,
                pool,
                breaker,
                observed,
                in_use: AtomicUsize::new(0),
                ewma_ns: std::sync::atomic::AtomicU64::new(0),
            }));
        }
        let inner = Arc::new(Inner {
            endpoints,
            config: self.config,
            turn: AtomicUsize::new(0),
            changed,
        });
        refresh_all(&inner).await;
        spawn_refresh(&inner, &runtime);
        Ok(Cluster { inner })
    }
}

#[cfg(feature = "sqlx")]
impl<C: crate::driver::SqlxConnection + 'static> ClusterBuilder<crate::driver::SqlxManager<C>> {
    /// Adds every host of a multi-host URL, the first as the primary and
    /// the rest as replicas until their servers say what they are, and
    /// takes its `target_session_attrs` and `load_balance_hosts` (call it
    /// after [`config`](Self::config), which replaces every setting).
    ///
    /// # Errors
    /// [`UrlError`](crate::UrlError) naming the part (and the host) the
    /// driver rejects.
    pub fn url(mut self, url: &ClusterUrl) -> Result<Self, crate::UrlError> {
        for (n, endpoint) in url.endpoints().iter().enumerate() {
            let role = if n == 0 { Role::Primary } else { Role::Replica };
            self = self.endpoint(crate::driver::SqlxManager::from_url(endpoint)?, role);
        }
        self.config.target_session_attrs = url.target_session_attrs();
        if let Some(balance) = url.balance() {
            self.config.balance = balance;
        }
        Ok(self)
    }
}

impl<M: Manager> std::fmt::Debug for ClusterBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("endpoints", &self.endpoints.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
