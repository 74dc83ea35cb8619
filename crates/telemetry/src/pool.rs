//! Pool metrics under OpenTelemetry's `db.client.connection.*` names.

use std::sync::Arc;

use keel_pool_core::{CloseReason, Event, Manager, Observer, Phase, Pool};
use metrics::{Counter, Gauge, Histogram};

use crate::Collect;
use crate::cache::ByName;
use crate::names::{
    CONNECTION_COUNT, CONNECTION_CREATE_TIME, CONNECTION_IDLE_MIN, CONNECTION_MAX,
    CONNECTION_PENDING, CONNECTION_STATE, CONNECTION_TIMEOUTS, CONNECTION_WAIT_TIME,
    CONNECTIONS_CLOSED, CONNECTIONS_CREATED, POOL_NAME,
};

/// A pool observer recording connection create times and checkout waits
/// (`db.client.connection.create_time`, `.wait_time`), labelled by each
/// event's pool name; one observer serves any number of pools. Pair it with
/// [`PoolGauges`] for the counts the pool keeps itself.
///
/// ```
/// use keel_telemetry::{PoolGauges, PoolMetrics};
/// # use keel_pool_core::{Manager, Pool};
/// # #[derive(Debug)] struct M;
/// # impl Manager for M { type Connection = (); type Error = std::convert::Infallible;
/// #   async fn connect(&self) -> Result<(), Self::Error> { Ok(()) }
/// #   async fn validate(&self, _: &mut ()) -> Result<(), Self::Error> { Ok(()) } }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = Pool::builder(M).name("orders").observer(PoolMetrics::new()).build().await?;
/// let gauges = PoolGauges::new(pool.clone()); // give it to MetricsService::collect
/// # let _ = gauges;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct PoolMetrics {
    pools: Arc<ByName<EventHandles>>,
}

#[derive(Debug)]
struct EventHandles {
    create_time: Histogram,
    wait_time: Histogram,
}

impl PoolMetrics {
    /// An observer for any number of pools.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Observer for PoolMetrics {
    fn on_event(&self, event: &Event<'_>) {
        let (name, histogram, took): (_, fn(&EventHandles) -> &Histogram, _) = match *event {
            Event::Connected { name, took, .. } => (name, |h| &h.create_time, took),
            Event::Waited { name, took } => (name, |h| &h.wait_time, took),
            _ => return,
        };
        let handles = self.pools.get(name, |name| EventHandles {
            create_time: metrics::histogram!(CONNECTION_CREATE_TIME, POOL_NAME => name.to_owned()),
            wait_time: metrics::histogram!(CONNECTION_WAIT_TIME, POOL_NAME => name.to_owned()),
        });
        histogram(&handles).record(took);
    }
}

/// Reads a pool's stats at scrape time into `db.client.connection.count`
/// (state idle / used), `.max`, `.idle.min`, `.pending_requests`,
/// `.timeouts` (by phase) and keel's created / closed (by reason)
/// counters, labelled by the pool's name.
#[derive(Debug)]
pub struct PoolGauges<M: Manager> {
    pool: Pool<M>,
    idle: Gauge,
    used: Gauge,
    max: Gauge,
    idle_min: Gauge,
    pending: Gauge,
    timeouts: [Counter; 5],
    created: Counter,
    closed: [Counter; CloseReason::ALL.len()],
}

const PHASES: [Phase; 5] = [
    Phase::Wait,
    Phase::Connect,
    Phase::Validate,
    Phase::Reset,
    Phase::Close,
];

impl<M: Manager> PoolGauges<M> {
    /// Gauges for `pool`, under its name; resolved once, here.
    pub fn new(pool: Pool<M>) -> Self {
        let name = pool.name().to_owned();
        let state = |state: &'static str| metrics::gauge!(CONNECTION_COUNT, POOL_NAME => name.clone(), CONNECTION_STATE => state);
        Self {
            idle: state("idle"),
            used: state("used"),
            max: metrics::gauge!(CONNECTION_MAX, POOL_NAME => name.clone()),
            idle_min: metrics::gauge!(CONNECTION_IDLE_MIN, POOL_NAME => name.clone()),
            pending: metrics::gauge!(CONNECTION_PENDING, POOL_NAME => name.clone()),
            timeouts: PHASES.map(|phase| {
                metrics::counter!(CONNECTION_TIMEOUTS, POOL_NAME => name.clone(), "phase" => phase.as_str())
            }),
            created: metrics::counter!(CONNECTIONS_CREATED, POOL_NAME => name.clone()),
            closed: CloseReason::ALL.map(|reason| {
                metrics::counter!(CONNECTIONS_CLOSED, POOL_NAME => name.clone(), "reason" => reason.as_str())
            }),
            pool,
        }
    }
}

impl<M: Manager> Collect for PoolGauges<M> {
    #[expect(
        clippy::cast_precision_loss,
        reason = "connection counts are far below 2^53"
    )]
    fn collect(&self) {
        let stats = self.pool.stats();
        self.idle.set(stats.idle as f64);
        self.used.set(stats.in_use as f64);
        self.max.set(stats.max_size as f64);
        self.idle_min.set(self.pool.config().min_idle as f64);
        self.pending.set(stats.waiters as f64);
        let t = stats.timeouts;
        for (counter, n) in self
            .timeouts
            .iter()
            .zip([t.wait, t.connect, t.validate, t.reset, t.close])
        {
            counter.absolute(n);
        }
        self.created.absolute(stats.created);
        let c = stats.closed;
        let closed = [c.broken, c.invalid, c.lifetime, c.idle, c.evicted, c.shrunk];
        for (counter, n) in self.closed.iter().zip(closed) {
            counter.absolute(n);
        }
    }
}
