//! A round trip through a keel-pool-core pool, judged with its stats.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use keel_pool_core::{Manager, Pool, Stats};
use serde_json::{Value, json};

use crate::status::error_chain;
use crate::{HealthCheck, Outcome};

/// Checks a pool: checks out a connection and pings it (the manager's
/// `validate`, `SELECT 1` for the sqlx managers).
///
/// - **Unhealthy** when no connection can be had (the checkout or the ping
///   fails or times out); the message names the cause and the endpoint,
///   never a password.
/// - **Degraded** when utilisation (in use / max size) has stayed at or
///   above the threshold (default 80 %) at this run and the one before, or
///   when callers queued for a connection since the last run.
/// - **Healthy** otherwise.
///
/// The details carry the pool's stats under `pool`.
///
/// ```no_run
/// use keel_health::{HealthConfig, HealthRegistry, checks::PoolCheck};
/// use keel_pool_core::{DatabaseUrl, PgManager, Pool};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let url: DatabaseUrl = "postgres://app@db:5432/orders".parse()?;
/// let pool = Pool::builder(PgManager::from_url(&url)?).name("orders").build().await?;
/// let health = HealthRegistry::builder(HealthConfig::default())
///     .check("orders-db", PoolCheck::new(pool.clone()))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PoolCheck<M: Manager> {
    pool: Pool<M>,
    threshold: f64,
    was_busy: AtomicBool,
    queued_before: AtomicU64,
}

impl<M: Manager> PoolCheck<M> {
    /// Checks `pool`, with the default utilisation threshold (0.8).
    pub fn new(pool: Pool<M>) -> Self {
        let queued_before = AtomicU64::new(queued(&pool.stats()));
        Self {
            pool,
            threshold: 0.8,
            was_busy: AtomicBool::new(false),
            queued_before,
        }
    }

    /// Degraded when utilisation stays at or above `threshold`, a share in
    /// `(0, 1]`; values outside are clamped into it.
    #[must_use]
    pub fn utilisation_threshold(mut self, threshold: f64) -> Self {
        self.threshold = if threshold.is_nan() {
            0.8
        } else {
            threshold.clamp(f64::EPSILON, 1.0)
        };
        self
    }
}

impl<M: Manager> HealthCheck for PoolCheck<M> {
    async fn check(&self) -> Outcome {
        let before = self.pool.stats();
        let started = Instant::now();
        let round_trip = match self.pool.get().await {
            Err(error) => Err(error_chain(&error)),
            Ok(mut conn) => match self.pool.manager().validate(&mut conn).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    conn.discard();
                    Err(format!(
                        "the connection failed its ping: {}",
                        error_chain(&error)
                    ))
                }
            },
        };
        let took = started.elapsed();
        let details = self.details(&before, took.as_secs_f64() * 1e3);
        if let Err(message) = round_trip {
            self.was_busy.store(false, Ordering::Relaxed);
            return Outcome::unhealthy(message).with_detail("pool", details);
        }

        let utilisation = utilisation(&before);
        let busy = utilisation >= self.threshold;
        let stayed_busy = busy && self.was_busy.swap(busy, Ordering::Relaxed);
        if !busy {
            self.was_busy.store(false, Ordering::Relaxed);
        }
        let queued_now = queued(&before);
        let newly_queued =
            queued_now.saturating_sub(self.queued_before.swap(queued_now, Ordering::Relaxed));
        let outcome = if stayed_busy {
            Outcome::degraded(format!(
                "pool utilisation {:.0}% has stayed at or above {:.0}%",
                utilisation * 100.0,
                self.threshold * 100.0
            ))
        } else if before.waiters > 0 || newly_queued > 0 {
            Outcome::degraded(format!(
                "callers queued for a connection ({} waiting now, {newly_queued} since the last check)",
                before.waiters
            ))
        } else {
            Outcome::healthy()
        };
        outcome.with_detail("pool", details)
    }
}

impl<M: Manager> PoolCheck<M> {
    fn details(&self, stats: &Stats, round_trip_ms: f64) -> Value {
        json!({
            "name": self.pool.name(),
            "endpoint": self.pool.manager().endpoint(),
            "size": stats.size,
            "idle": stats.idle,
            "in_use": stats.in_use,
            "connecting": stats.connecting,
            "waiters": stats.waiters,
            "max_size": stats.max_size,
            "utilisation": utilisation(stats),
            "created": stats.created,
            "closed": stats.closed.total(),
            "timeouts": stats.timeouts.wait + stats.timeouts.connect + stats.timeouts.validate
                + stats.timeouts.reset + stats.timeouts.close,
            "round_trip_ms": round_trip_ms,
        })
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "connection counts are far below 2^53"
)]
fn utilisation(stats: &Stats) -> f64 {
    stats.in_use as f64 / stats.max_size.max(1) as f64
}

/// Checkouts that had to queue, since the pool was built.
fn queued(stats: &Stats) -> u64 {
    stats.wait.count() - stats.wait.buckets()[0]
}
