//! One endpoint of a cluster: its pool, its ejection breaker, what its
//! server last said about itself, and the counters balancing reads.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_breaker::{CircuitBreaker, State};

use crate::cancel::Canceller;
use crate::manager::{CheckIn, Manager, ServerState};
use crate::pool::Pool;
use crate::stats::Stats;

/// The role an endpoint is configured with: what the cluster assumes until
/// its server says otherwise (and for good, when the backend cannot tell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Takes writes.
    Primary,
    /// A read-only copy of the primary.
    Replica,
}

impl Role {
    pub(crate) fn state(self) -> ServerState {
        match self {
            Self::Primary => ServerState::PRIMARY,
            Self::Replica => ServerState::STANDBY,
        }
    }
}

/// What the cluster knows of an endpoint's server, shared with the
/// manager that opens its connections (each new connection asks).
#[derive(Debug)]
pub(crate) struct Observed {
    /// bit 0: known; bit 1: in recovery; bit 2: read-only.
    state: AtomicU8,
    declared: Role,
    /// Replay lag past the cluster's limit: out of read rotation.
    pub(crate) lagging: AtomicBool,
    /// The last failure to reach it, for reports.
    last_error: Mutex<Option<String>>,
}

const KNOWN: u8 = 1;
const RECOVERY: u8 = 2;
const READ_ONLY: u8 = 4;

impl Observed {
    pub(crate) fn new(declared: Role) -> Self {
        Self {
            state: AtomicU8::new(0),
            declared,
            lagging: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    /// The server's state as last reported, else the declared role's.
    pub(crate) fn state(&self) -> ServerState {
        let bits = self.state.load(Ordering::Acquire);
        if bits & KNOWN == 0 {
            return self.declared.state();
        }
        ServerState {
            in_recovery: bits & RECOVERY != 0,
            read_only: bits & READ_ONLY != 0,
        }
    }

    pub(crate) fn is_known(&self) -> bool {
        self.state.load(Ordering::Acquire) & KNOWN != 0
    }

    /// Records what the server said; true when that changed its role (so
    /// connections opened under the old one are retired).
    pub(crate) fn report(&self, state: ServerState) -> bool {
        let bits = KNOWN
            | if state.in_recovery { RECOVERY } else { 0 }
            | if state.read_only { READ_ONLY } else { 0 };
        let before = self.state.swap(bits, Ordering::AcqRel);
        before & KNOWN != 0 && before != bits
    }

    pub(crate) fn set_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
    }

    fn error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The user's manager, asking each new connection's server what it is.
#[derive(Debug)]
pub(crate) struct Probed<M> {
    pub(crate) inner: M,
    pub(crate) observed: Arc<Observed>,
    /// Set when a connect's answer changed the endpoint's role.
    pub(crate) changed: Arc<tokio::sync::Notify>,
}

impl<M: Manager> Manager for Probed<M> {
    type Connection = M::Connection;
    type Error = M::Error;

    async fn connect(&self) -> Result<M::Connection, M::Error> {
        let mut conn = self.inner.connect().await?;
        if let Some(state) = self.inner.server_state(&mut conn).await?
            && self.observed.report(state)
        {
            self.changed.notify_one();
        }
        Ok(conn)
    }

    fn validate(
        &self,
        conn: &mut M::Connection,
    ) -> impl Future<Output = Result<(), M::Error>> + Send {
        self.inner.validate(conn)
    }

    fn check_in(&self, conn: &mut M::Connection) -> CheckIn {
        self.inner.check_in(conn)
    }

    fn reset(&self, conn: &mut M::Connection) -> impl Future<Output = Result<(), M::Error>> + Send {
        self.inner.reset(conn)
    }

    fn close(&self, conn: M::Connection) -> impl Future<Output = ()> + Send {
        self.inner.close(conn)
    }

    fn canceller(
        &self,
        conn: &mut M::Connection,
    ) -> impl Future<Output = Result<Option<Canceller>, M::Error>> + Send {
        self.inner.canceller(conn)
    }

    fn is_fatal(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        self.inner.is_fatal(error)
    }

    fn endpoint(&self) -> Option<String> {
        self.inner.endpoint()
    }

    fn is_exhausted(&self, error: &M::Error) -> bool {
        self.inner.is_exhausted(error)
    }

    fn server_state(
        &self,
        conn: &mut M::Connection,
    ) -> impl Future<Output = Result<Option<ServerState>, M::Error>> + Send {
        self.inner.server_state(conn)
    }

    fn replay_lag(
        &self,
        conn: &mut M::Connection,
    ) -> impl Future<Output = Result<Option<Duration>, M::Error>> + Send {
        self.inner.replay_lag(conn)
    }
}

/// One endpoint of a cluster.
pub(crate) struct Endpoint<M: Manager> {
    pub(crate) name: Arc<str>,
    pub(crate) pool: Pool<Probed<M>>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) observed: Arc<Observed>,
    /// Checkouts held now (least-connections balancing).
    pub(crate) in_use: AtomicUsize,
    /// Exponentially weighted checkout-to-release time in ns, failures
    /// counted as a penalty (health balancing).
    pub(crate) ewma_ns: AtomicU64,
}

/// Weight of the newest sample in the latency average.
const EWMA_NEW: f64 = 0.2;
/// What a failure counts as in the latency average.
pub(crate) const FAILURE_PENALTY: Duration = Duration::from_secs(1);

impl<M: Manager> Endpoint<M> {
    pub(crate) fn record_latency(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX) as f64;
        // A lost race between two updates drops one sample: harmless.
        let old = self.ewma_ns.load(Ordering::Relaxed) as f64;
        let new = if old == 0.0 {
            sample
        } else {
            old + EWMA_NEW * (sample - old)
        };
        self.ewma_ns.store(new as u64, Ordering::Relaxed);
    }

    /// Whether its breaker has it out of rotation.
    pub(crate) fn is_ejected(&self) -> bool {
        matches!(self.breaker.state(), State::Open | State::ForcedOpen)
    }

    pub(crate) fn info(&self, ejected: bool) -> EndpointInfo {
        let state = self.observed.state();
        EndpointInfo {
            name: self.name.to_string(),
            role: if self.observed.is_known() {
                Some(state)
            } else {
                None
            },
            ejected,
            lagging: self.observed.lagging.load(Ordering::Relaxed),
            in_use: self.in_use.load(Ordering::Relaxed),
            latency: Duration::from_nanos(self.ewma_ns.load(Ordering::Relaxed)),
            last_error: self.observed.error(),
            stats: self.pool.stats(),
        }
    }
}

/// An endpoint as [`Cluster::endpoints`](super::Cluster::endpoints)
/// reports it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EndpointInfo {
    /// `host:port/db` (never a password), or `endpoint-N` when the manager
    /// names none.
    pub name: String,
    /// What its server last said it is; `None` until one answered.
    pub role: Option<ServerState>,
    /// Out of rotation: its breaker opened on repeated failures (a replica
    /// kept serving by `max_ejected_share` is not).
    pub ejected: bool,
    /// Out of read rotation: its replay lag is past the limit.
    pub lagging: bool,
    /// Checkouts held now.
    pub in_use: usize,
    /// Average time of the refresh's probes and (with
    /// [`Balance::Health`](super::Balance::Health), which reads it) of
    /// checkout to release; failures count as 1 s.
    pub latency: Duration,
    /// Why it could last not be reached, if it could not.
    pub last_error: Option<String>,
    /// Its pool's counters.
    pub stats: Stats,
}

impl EndpointInfo {
    /// Whether the endpoint serves now: reachable, in rotation, caught up.
    pub fn is_up(&self) -> bool {
        self.last_error.is_none() && !self.ejected && !self.lagging
    }
}

impl fmt::Display for EndpointInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            None => "unknown",
            Some(s) if s.in_recovery => "standby",
            Some(s) if s.read_only => "read-only primary",
            Some(_) => "primary",
        };
        write!(f, "{} ({role}", self.name)?;
        if self.ejected {
            f.write_str(", ejected")?;
        }
        if self.lagging {
            f.write_str(", lagging")?;
        }
        if let Some(e) = &self.last_error {
            write!(f, ", unreachable: {e}")?;
        }
        f.write_str(")")
    }
}
