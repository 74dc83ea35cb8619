//! The pool handle and its builder.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::{ConfigError, PoolConfig, QueueMode};
use crate::error::{BuildError, PoolError};
use crate::maintenance;
use crate::manager::Manager;
use crate::observer::{CloseReason, Observer, Observers};
use crate::pooled::Pooled;
use crate::shared::Shared;
use crate::stats::Stats;

/// An async connection pool. Cloning is cheap and shares the pool.
///
/// Checkouts are served in arrival order (a FIFO semaphore), every phase
/// has a timeout, and a checkout dropped at any await point gives back
/// whatever it held.
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Manager + fmt::Debug> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name())
            .field("manager", &self.shared.manager)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Why [`Pool::resize`] changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// The new size does not fit the pool's configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pool is closed.
    #[error("cannot resize a closed pool")]
    Closed,
}

/// Why [`Pool::close`] returned before every connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pool close deadline passed with {still_open} connection(s) still checked out")]
#[non_exhaustive]
pub struct CloseError {
    /// Connections still checked out; each is closed when it is returned.
    pub still_open: usize,
}

impl<M: Manager> Pool<M> {
    /// A pool over `manager` with `config`, built at once (see
    /// [`PoolBuilder::build`]); [`builder`](Self::builder) adds a name and
    /// an observer.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub async fn new(manager: M, config: PoolConfig) -> Result<Self, BuildError<M::Error>> {
        Self::builder(manager).config(config).build().await
    }

    /// Starts building a pool over `manager` with the default config.
    pub fn builder(manager: M) -> PoolBuilder<M> {
        PoolBuilder {
            manager,
            config: PoolConfig::default(),
            name: String::new(),
            observer: None,
        }
    }

    /// Checks out a connection: waits (FIFO) for a free slot, then takes an
    /// idle connection, validating it if it has been idle longer than
    /// `validate_after_idle`, or opens a new one.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] naming the phase that ran out of time,
    /// [`PoolError::Connect`] with the backend's error when a new
    /// connection cannot be opened, [`PoolError::Closed`] after
    /// [`close`](Self::close).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future at any point loses no connection
    /// and no slot. A connection being opened for it is finished in the
    /// background and lands in the idle queue.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<Pooled<M>, PoolError<M::Error>>> + Send + '_ {
        let at = Location::caller();
        async move {
            let pooled = match self.shared.try_fast() {
                crate::acquire::Fast::Ready(pooled) => pooled,
                // Boxed so the hot path's future stays a few words.
                other => Box::pin(self.shared.acquire_slow(other)).await?,
            };
            self.shared.track(&pooled, at);
            Ok(pooled)
        }
    }

    /// Whether a checkout now would not queue: an idle connection or room
    /// for a new one (one atomic load; the cluster's balancing reads it).
    #[cfg(feature = "cluster")]
    pub(crate) fn has_room(&self) -> bool {
        self.shared.permits.available_permits() > 0
    }

    /// The pool as a tower service of [`Operation`](crate::op::Operation)s.
    #[cfg(feature = "tower")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
    pub fn service(&self) -> crate::PoolService<M> {
        crate::PoolService::new(self.clone())
    }

    /// A snapshot of the pool's sizes and counters. The fields are read one
    /// after another, not under one lock: under load they may disagree by
    /// the checkouts that happened meanwhile.
    ///
    /// On a closed pool, `max_size` is the size it had when it closed and
    /// `size`, `idle` and `in_use` count down to zero as connections come
    /// back and close.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let size = s.open();
        let closing = s.slow.closing.load(Ordering::Acquire).min(size);
        let idle = s.idle_len().min(size - closing);
        let in_use = size - closing - idle;
        let max_size = s.max_size.load(Ordering::Acquire);
        Stats {
            size,
            idle,
            in_use,
            connecting: s.slow.connecting.load(Ordering::Acquire),
            closing,
            waiters: s.waiters.load(Ordering::Relaxed),
            max_size,
            overflow_in_use: in_use.saturating_sub(max_size),
            created: s.counters.created.load(Ordering::Relaxed),
            closed: s.counters.closed_counts(),
            timeouts: s.counters.timeout_counts(),
            wait: s.counters.wait_histogram(),
        }
    }

    /// The configuration the pool was built with (`max_size` as built;
    /// [`stats`](Self::stats) shows the current one).
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// The pool's name (empty unless given one).
    pub fn name(&self) -> &str {
        &self.shared.slow.name
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Changes `max_size`. Growing takes effect at once; shrinking closes
    /// idle connections beyond the new size now and checked-out ones as
    /// they come back.
    ///
    /// # Errors
    /// [`ResizeError::Config`] if `max_size` is zero or below `min_idle`;
    /// [`ResizeError::Closed`] on a closed pool, which keeps its size.
    pub fn resize(&self, max_size: usize) -> Result<(), ResizeError> {
        if self.is_closed() {
            return Err(ResizeError::Closed);
        }
        let mut config = self.shared.config.clone();
        config.max_size = max_size;
        config.validate()?;
        for conn in self.shared.resize(max_size) {
            self.shared.discard(conn, CloseReason::Shrunk);
        }
        Ok(())
    }

    /// Retires every connection open now (after a failover, say): idle ones
    /// close at once, checked-out ones when they are returned. Connections
    /// opened afterwards belong to the next generation.
    pub fn evict_all(&self) {
        self.shared.evict_all();
    }

    /// The current generation (bumped by [`evict_all`](Self::evict_all)).
    pub fn generation(&self) -> u64 {
        self.shared.generation()
    }

    /// Whether [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Closes the pool: queued and later checkouts fail with
    /// [`PoolError::Closed`], idle connections are closed gracefully, and
    /// the call waits up to `deadline` for checked-out connections to come
    /// back (each is closed as it does).
    ///
    /// # Errors
    /// [`CloseError`] when connections are still checked out at the deadline.
    ///
    /// # Cancel safety
    /// The pool is closed as soon as the call starts; dropping the future
    /// only stops the waiting.
    pub async fn close(&self, deadline: Duration) -> Result<(), CloseError> {
        let shared = &self.shared;
        shared.mark_closed();
        let drain = async {
            for conn in shared.drain_idle() {
                shared.close_gracefully(conn, CloseReason::Shrunk).await;
            }
            shared.wait_emptied().await;
        };
        tokio::time::timeout(deadline, drain)
            .await
            .map_err(|_| CloseError {
                still_open: shared.open(),
            })
    }
}

/// Builds a [`Pool`]: consuming setters over a [`PoolConfig`], then
/// [`build`](Self::build).
///
/// ```
/// # use std::convert::Infallible;
/// # use std::time::Duration;
/// # use keel_pool_core::{Manager, Pool};
/// # #[derive(Debug)]
/// # struct Noop;
/// # impl Manager for Noop {
/// #     type Connection = ();
/// #     type Error = Infallible;
/// #     async fn connect(&self) -> Result<(), Infallible> { Ok(()) }
/// #     async fn validate(&self, _: &mut ()) -> Result<(), Infallible> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = Pool::builder(Noop)
///     .max_size(16)
///     .min_idle(2)
///     .wait_timeout(Duration::from_secs(2))
///     .build()
///     .await
///     .unwrap();
/// let conn = pool.get().await.unwrap();
/// assert_eq!(pool.stats().in_use, 1);
/// drop(conn);
/// # }
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder<M: Manager> {
    manager: M,
    config: PoolConfig,
    name: String,
    observer: Option<Box<dyn Observer>>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: $ty) -> Self {
                self.config.$field = value;
                self
            }
        )*
    };
}

impl<M: Manager> PoolBuilder<M> {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: PoolConfig) -> Self {
        self.config = config;
        self
    }

    setters! {
        /// See [`PoolConfig::max_size`].
        max_size: usize;
        /// See [`PoolConfig::min_idle`].
        min_idle: usize;
        /// See [`PoolConfig::max_overflow`].
        max_overflow: usize;
        /// See [`PoolConfig::warm`].
        warm: bool;
        /// See [`PoolConfig::queue`].
        queue: QueueMode;
        /// See [`PoolConfig::wait_timeout`].
        wait_timeout: Duration;
        /// See [`PoolConfig::connect_timeout`].
        connect_timeout: Duration;
        /// See [`PoolConfig::validate_timeout`].
        validate_timeout: Duration;
        /// See [`PoolConfig::reset_timeout`].
        reset_timeout: Duration;
        /// See [`PoolConfig::close_timeout`].
        close_timeout: Duration;
        /// See [`PoolConfig::idle_timeout`].
        idle_timeout: Option<Duration>;
        /// See [`PoolConfig::max_lifetime`].
        max_lifetime: Option<Duration>;
        /// See [`PoolConfig::lifetime_jitter`].
        lifetime_jitter: f64;
        /// See [`PoolConfig::validate_after_idle`].
        validate_after_idle: Option<Duration>;
        /// See [`PoolConfig::leak_threshold`].
        leak_threshold: Option<Duration>;
        /// See [`PoolConfig::command_timeout`].
        command_timeout: Option<Duration>;
    }

    /// Names the pool: its events carry the name, so that metrics and
    /// logs can tell pools apart.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sends the pool's events to `observer`.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Builds the pool and starts its maintenance task on the current tokio
    /// runtime. With `warm`, opens `min_idle` connections first.
    ///
    /// # Errors
    /// [`BuildError::Config`] naming a bad field, [`BuildError::Warm`] with
    /// the connect error when warming fails, [`BuildError::NoRuntime`]
    /// outside a tokio runtime.
    pub async fn build(self) -> Result<Pool<M>, BuildError<M::Error>> {
        self.config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let warm = self.config.warm;
        let shared = Arc::new(Shared::new(
            self.name.into_boxed_str(),
            self.manager,
            self.config,
            runtime,
            Observers::new(self.observer),
        ));
        if warm {
            shared.fill_idle().await.map_err(BuildError::Warm)?;
        }
        maintenance::spawn(&shared);
        Ok(Pool { shared })
    }
}

impl<M: Manager + fmt::Debug> fmt::Debug for PoolBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("name", &self.name)
            .field("manager", &self.manager)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
