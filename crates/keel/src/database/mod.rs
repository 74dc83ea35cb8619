//! [`Database`]: pool, retry, breaker and telemetry stacked in the
//! recommended order, with health checks, behind the calls the reference
//! systems offer.

mod gate;
mod probe;
mod snapshot;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keel_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService, Info};
use keel_health::checks::PoolCheck;
use keel_health::{HealthRegistry, Report, Signal};
use keel_pool_core::SqlxConnection;
use keel_pool_core::op::{self, BoxFuture, Operation};
use keel_pool_core::sqlx::{self, Executor, IntoArguments};
use keel_pool_core::{Pool, PoolService, SqlxManager, Stats};
use keel_retry::{Retrier, RetryLayer, RetryService, SkipOpenBreaker};
use keel_telemetry::{BreakerMetrics, PoolMetrics, RetryMetrics, Telemetry, TelemetryLayer};
use thread_local::ThreadLocal;
use tower::{Service, ServiceBuilder, ServiceExt};

pub use snapshot::MetricsSnapshot;

use crate::DatabaseConfig;
use crate::error::{BoxError, Error, Phase};
use gate::Gate;

/// The stack, outermost first: telemetry (it sees what the caller sees:
/// one call however many attempts, a rejection as `rejected`), retry
/// (outside the breaker, so a call the open breaker rejects is not
/// retried), the breaker (it counts every attempt, and a database that
/// keeps failing opens it), the pool service.
pub type Stack<C> = Telemetry<
    RetryService<
        CircuitBreakerService<PoolService<SqlxManager<C>>, keel_breaker::SqlxClassifier>,
        SkipOpenBreaker<keel_retry::SqlxClassifier>,
    >,
>;

/// A PostgreSQL [`Database`].
#[cfg(feature = "postgres")]
pub type PgDatabase = Database<sqlx::PgConnection>;
/// A MySQL or MariaDB [`Database`].
#[cfg(feature = "mysql")]
pub type MySqlDatabase = Database<sqlx::MySqlConnection>;
/// A SQLite [`Database`].
#[cfg(feature = "sqlite")]
pub type SqliteDatabase = Database<sqlx::SqliteConnection>;

/// One database behind the standard stack ([`Stack`]), with its health
/// checks: what a service needs from one config. Clones share it.
///
/// ```no_run
/// use keel::{DatabaseConfig, PgDatabase, sqlx};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let db = PgDatabase::connect(DatabaseConfig::load(None)?).await?; // DATABASE_URL, ...
/// let id = 7_i64;
/// let name: String = db
///     .fetch_one(move || sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(id))
///     .await?;
/// db.transaction(|tx: &mut sqlx::PgConnection| {
///     Box::pin(async move {
///         sqlx::query("UPDATE stock SET n = n - 1 WHERE id = 1").execute(&mut *tx).await?;
///         sqlx::query("INSERT INTO orders (item) VALUES (1)").execute(&mut *tx).await?;
///         Ok::<_, sqlx::Error>(())
///     })
/// })
/// .await?;
/// db.shutdown(std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
pub struct Database<C: SqlxConnection + 'static> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: SqlxConnection + 'static> {
    name: Arc<str>,
    config: DatabaseConfig,
    pool: Pool<SqlxManager<C>>,
    breaker: CircuitBreaker,
    telemetry: TelemetryLayer,
    stack: Stack<C>,
    /// Stack clones a call made and is done with, per thread: the next
    /// call on that thread reuses one instead of cloning `stack`, which
    /// bumps reference counts every core shares and allocates the breaker
    /// and retry handles a polled clone takes.
    spares: ThreadLocal<RefCell<Vec<Stack<C>>>>,
    health: HealthRegistry,
    gate: Gate,
    counts: Arc<Counts>,
}

/// Spare stack clones kept per thread. A call holds its clone only until
/// its future is made (while it waits for a connection, under load); the
/// clones of a burst past four are dropped, and the next burst clones.
const SPARES_PER_THREAD: usize = 4;

impl<C: SqlxConnection + 'static> Inner<C> {
    /// A stack clone: a spare of this thread's, or a fresh one.
    fn take_stack(&self) -> Stack<C> {
        self.spares
            .get()
            .and_then(|spares| spares.try_borrow_mut().ok()?.pop())
            .unwrap_or_else(|| self.stack.clone())
    }

    /// Keeps `stack` (which has made its call) for this thread's next.
    fn give_back(&self, stack: Stack<C>) {
        if let Ok(mut spares) = self.spares.get_or_default().try_borrow_mut()
            && spares.len() < SPARES_PER_THREAD
        {
            spares.push(stack);
        }
    }
}

/// What the stack's observers count for [`MetricsSnapshot`].
#[derive(Debug, Default)]
struct Counts {
    retries: std::sync::atomic::AtomicU64,
    transitions: std::sync::atomic::AtomicU64,
}

impl<C: SqlxConnection + 'static> Clone for Database<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: SqlxConnection + 'static> fmt::Debug for Database<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The check a database pings itself with.
fn ping<C: SqlxConnection>() -> impl Operation<C, Output = ()> {
    op::with_connection(|conn: &mut C| Box::pin(conn.ping()))
}

impl<C: SqlxConnection + 'static> Database<C> {
    /// Builds the stack from `config`, then checks out a connection and
    /// pings it through the stack (retried as any call is), so a service
    /// that starts learns at once whether its database answers.
    ///
    /// # Errors
    /// [`Phase::Config`] for a config that cannot work (the field named),
    /// [`Phase::Connect`] when the database does not answer.
    pub async fn connect(config: DatabaseConfig) -> Result<Self, Error> {
        let db = Self::connect_lazy(config).await?;
        db.call(Phase::Connect, ping::<C>()).await?;
        Ok(db)
    }

    /// Builds the stack without connecting: the first call opens the first
    /// connection (for a service that may start before its database).
    ///
    /// # Errors
    /// [`Phase::Config`] for a config that cannot work, or when called
    /// outside a tokio runtime.
    pub async fn connect_lazy(config: DatabaseConfig) -> Result<Self, Error> {
        config
            .validate()
            .map_err(|e| Error::config(&config.name, e))?;
        let name: Arc<str> = config.name.as_str().into();
        let url = config.url.clone().ok_or_else(|| {
            Error::config(&config.name, crate::ConfigError::new("url", "missing"))
        })?;
        let manager =
            SqlxManager::<C>::from_url(&url).map_err(|e| Error::new(&name, Phase::Config, e))?;
        let endpoint = keel_pool_core::Manager::endpoint(&manager);
        let pool = Pool::builder(manager)
            .name(&*name)
            .config(config.pool.clone())
            .observer(PoolMetrics::new())
            .build()
            .await
            .map_err(|e| Error::new(&name, Phase::Connect, e.to_string()))?;
        let signal = Signal::new();
        signal.set(keel_health::Outcome::healthy().with_detail("state", "closed"));
        let counts = Arc::new(Counts::default());
        let transitions = Arc::clone(&counts);
        let breaker = CircuitBreaker::builder(config.breaker.clone())
            .name(&*name)
            .observer((
                (BreakerMetrics::new(), signal.clone()),
                move |e: &keel_breaker::Event<'_>| {
                    if matches!(e, keel_breaker::Event::Transition { .. }) {
                        transitions.transitions.fetch_add(1, Ordering::Relaxed);
                    }
                },
            ))
            .build()
            .map_err(|e| Error::new(&name, Phase::Config, e))?;
        let retrier = Retrier::builder(config.retry.clone())
            .classifier(SkipOpenBreaker(keel_retry::SqlxClassifier))
            .observer((RetryMetrics::new(&*name), {
                let counts = Arc::clone(&counts);
                move |e: &keel_retry::Event| {
                    if matches!(e, keel_retry::Event::RetryScheduled { .. }) {
                        counts.retries.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }))
            .build()
            .map_err(|e| Error::new(&name, Phase::Config, e))?;
        let mut telemetry = TelemetryLayer::new(&*name).db_system(system_name(&url));
        if let Some(endpoint) = &endpoint {
            let address = endpoint.split('/').next().unwrap_or(endpoint);
            telemetry = telemetry.server_address(address);
        }
        let stack = ServiceBuilder::new()
            .layer(telemetry)
            .layer(RetryLayer::new(retrier))
            .layer(
                CircuitBreakerLayer::new(breaker.clone())
                    .with_classifier(keel_breaker::SqlxClassifier),
            )
            .service(pool.service());
        let health = HealthRegistry::builder(config.health)
            .check(format!("{name} pool"), PoolCheck::new(pool.clone()))
            .signal(format!("{name} breaker"), &signal)
            .version(env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| Error::new(&name, Phase::Config, e))?;
        let db = Self {
            inner: Arc::new(Inner {
                name,
                config,
                pool,
                breaker,
                telemetry,
                stack,
                spares: ThreadLocal::new(),
                health,
                gate: Gate::default(),
                counts,
            }),
        };
        tokio::spawn(probe::run(Arc::downgrade(&db.inner)));
        Ok(db)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The config it was built from (the URL's password stays redacted in
    /// `Debug`).
    pub fn config(&self) -> &DatabaseConfig {
        &self.inner.config
    }

    /// Runs any pool-core [`Operation`] through the stack.
    ///
    /// # Errors
    /// An [`Error`] naming the database, the phase and the cause.
    pub async fn run<O>(&self, operation: O) -> Result<O::Output, Error>
    where
        O: Operation<C>,
        Stack<C>: Service<O, Response = O::Output, Error = BoxError>,
    {
        self.call(Phase::Query, operation).await
    }

    async fn call<O>(&self, during: Phase, operation: O) -> Result<O::Output, Error>
    where
        O: Operation<C>,
        Stack<C>: Service<O, Response = O::Output, Error = BoxError>,
    {
        let inner = &self.inner;
        let _inside = inner.gate.enter().ok_or_else(|| {
            Error::new(
                &inner.name,
                Phase::Shutdown,
                "the database is shutting down",
            )
        })?;
        let failed = |e| Error::from_stack(&inner.name, during, e);
        let mut stack = inner.take_stack();
        // A clone dropped while waiting here may hold a reservation, so
        // only one that has made its call goes back.
        let future = stack.ready().await.map_err(failed)?.call(operation);
        inner.give_back(stack);
        future.await.map_err(failed)
    }

    /// Runs a statement and returns the driver's result (rows affected);
    /// `make` builds the query afresh for each attempt.
    ///
    /// # Errors
    /// An [`Error`] naming the database, the phase and the cause.
    pub async fn execute<F, A>(
        &self,
        make: F,
    ) -> Result<<C::Database as sqlx::Database>::QueryResult, Error>
    where
        F: Fn() -> sqlx::query::Query<'static, C::Database, A> + Send + Sync + 'static,
        A: IntoArguments<C::Database> + Send + 'static,
        for<'c> &'c mut C: Executor<'c, Database = C::Database>,
        Stack<C>: Service<
                op::Statement<C, <C::Database as sqlx::Database>::QueryResult>,
                Response = <C::Database as sqlx::Database>::QueryResult,
                Error = BoxError,
            >,
    {
        self.run(op::execute(make)).await
    }

    /// The first row (an error when there is none); `make` builds a
    /// `query`, `query_as` or `query_scalar` afresh for each attempt.
    ///
    /// # Errors
    /// An [`Error`]; "no row" is the database's `RowNotFound`.
    pub async fn fetch_one<F, Q>(&self, make: F) -> Result<Q::Row, Error>
    where
        F: Fn() -> Q + Send + Sync + 'static,
        Q: op::Fetch<C> + 'static,
        Stack<C>: Service<op::Statement<C, Q::Row>, Response = Q::Row, Error = BoxError>,
    {
        self.run(op::fetch_one(make)).await
    }

    /// The first row, if any.
    ///
    /// # Errors
    /// An [`Error`] naming the database, the phase and the cause.
    pub async fn fetch_optional<F, Q>(&self, make: F) -> Result<Option<Q::Row>, Error>
    where
        F: Fn() -> Q + Send + Sync + 'static,
        Q: op::Fetch<C> + 'static,
        Stack<C>:
            Service<op::Statement<C, Option<Q::Row>>, Response = Option<Q::Row>, Error = BoxError>,
    {
        self.run(op::fetch_optional(make)).await
    }

    /// Every row.
    ///
    /// # Errors
    /// An [`Error`] naming the database, the phase and the cause.
    pub async fn fetch_all<F, Q>(&self, make: F) -> Result<Vec<Q::Row>, Error>
    where
        F: Fn() -> Q + Send + Sync + 'static,
        Q: op::Fetch<C> + 'static,
        Stack<C>: Service<op::Statement<C, Vec<Q::Row>>, Response = Vec<Q::Row>, Error = BoxError>,
    {
        self.run(op::fetch_all(make)).await
    }

    /// Runs `f` on one connection (several statements, one checkout).
    ///
    /// Give the closure a concrete error type (`sqlx::Error`, an enum of
    /// your own) and, if rustc asks, its return type
    /// (`-> BoxFuture<'_, Result<T, sqlx::Error>>`): with a boxed `dyn
    /// Error` rustc cannot prove the call's future `Send` through the
    /// closure's higher-ranked lifetime, and `tokio::spawn` refuses it.
    ///
    /// # Errors
    /// An [`Error`] naming the database, the phase and the cause.
    pub async fn with_connection<F, T, E>(&self, f: F) -> Result<T, Error>
    where
        F: for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, E>> + Clone + Send + Sync + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
        Stack<C>: Service<op::WithConnection<F>, Response = T, Error = BoxError>,
        op::WithConnection<F>: Operation<C, Output = T>,
    {
        self.run(op::with_connection(f)).await
    }

    /// Runs `f` in a transaction: COMMIT when it returns `Ok`, ROLLBACK
    /// when it returns `Err`, panics or is dropped; rerun as a whole on a
    /// serialization failure or a deadlock.
    ///
    /// # Errors
    /// An [`Error`] in [`Phase::Transaction`] (or the phase its cause
    /// names).
    pub async fn transaction<F, T, E>(&self, f: F) -> Result<T, Error>
    where
        F: for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, E>> + Clone + Send + Sync + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
        Stack<C>: Service<op::Transaction<F>, Response = T, Error = BoxError>,
        op::Transaction<F>: Operation<C, Output = T>,
    {
        self.call(Phase::Transaction, op::transaction(f)).await
    }

    /// The pool's state now.
    pub fn stats(&self) -> Stats {
        self.inner.pool.stats()
    }

    /// The last health report (cached: never waits on the database).
    pub fn health(&self) -> Report {
        self.inner.health.report()
    }

    /// The health registry, to serve as probes
    /// (`keel::health::HealthService::new(db.health_registry().clone())`).
    pub fn health_registry(&self) -> &HealthRegistry {
        &self.inner.health
    }

    /// The breaker's state and counts.
    pub fn breaker_info(&self) -> Info {
        self.inner.breaker.info()
    }

    /// Closes the breaker by hand (after the database is known to be back).
    pub fn reset_breaker(&self) {
        self.inner.breaker.reset();
    }

    /// The pool, for its stats or a metrics collector.
    pub fn pool(&self) -> &Pool<SqlxManager<C>> {
        &self.inner.pool
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// What the database has done since it started.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let calls = self.inner.telemetry.snapshot();
        let stats = self.stats();
        let checkouts = stats.wait.count();
        MetricsSnapshot {
            queries_total: calls.total(),
            queries_ok: calls.ok,
            queries_failed: calls.failed(),
            queries_rejected: calls.rejected,
            queries_timed_out: calls.timeout,
            in_flight: calls.in_flight,
            retries: self.inner.counts.retries.load(Ordering::Relaxed),
            breaker_opens: self.breaker_info().opens,
            breaker_transitions: self.inner.counts.transitions.load(Ordering::Relaxed),
            total_latency: calls.total_latency,
            average_latency: calls.mean_latency(),
            connections_created: stats.created,
            connections_reused: checkouts.saturating_sub(stats.created),
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.inner.gate.is_closed()
    }

    /// Shuts down: readiness answers 503 at once, new calls fail with
    /// [`Phase::Shutdown`], calls under way get until `deadline` to finish,
    /// the health checks stop and every connection closes.
    ///
    /// # Errors
    /// [`Phase::Shutdown`] when calls or connections were still busy at the
    /// deadline (the pool is closed anyway).
    ///
    /// # Cancel safety
    /// The database is closed to new calls as soon as this starts; dropping
    /// the future stops only the waiting.
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), Error> {
        let inner = &self.inner;
        let started = tokio::time::Instant::now();
        inner.health.drain();
        inner.gate.close();
        let drained = tokio::time::timeout(deadline, inner.gate.idle())
            .await
            .is_ok();
        inner.health.stop();
        let left = deadline.saturating_sub(started.elapsed());
        let closed = inner.pool.close(left).await;
        tracing::info!(database = &*inner.name, drained, "database shut down");
        if !drained {
            return Err(Error::new(
                &inner.name,
                Phase::Shutdown,
                format!("calls were still running after {deadline:?}"),
            ));
        }
        closed.map_err(|e| Error::new(&inner.name, Phase::Shutdown, e))
    }
}

/// `db.system.name` for the URL's backend.
fn system_name(url: &keel_pool_core::DatabaseUrl) -> &'static str {
    match url.backend() {
        keel_pool_core::Backend::Postgres => "postgresql",
        keel_pool_core::Backend::MySql => "mysql",
        keel_pool_core::Backend::Sqlite => "sqlite",
        _ => "other",
    }
}
