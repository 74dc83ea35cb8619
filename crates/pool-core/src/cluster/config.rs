//! The cluster's own settings (each endpoint's pool takes a `PoolConfig`).

use std::time::Duration;

use keel_breaker::{BreakerConfig, OpenBackoff};
use serde::{Deserialize, Serialize};

use super::attrs::TargetSessionAttrs;
use super::balance::Balance;
use crate::config::ConfigError;

/// How a [`Cluster`](super::Cluster) routes, balances, ejects and
/// refreshes. Durations read as `"1s"`, `"250ms"` in serde formats.
///
/// ```
/// use keel_pool_core::cluster::{Balance, ClusterConfig};
///
/// let config: ClusterConfig = toml::from_str(r#"
///     balance = "least-connections"
///     refresh_interval = "500ms"
///     max_ejected_share = 0.34
/// "#).unwrap();
/// assert_eq!(config.balance, Balance::LeastConnections);
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// How reads pick among the endpoints in rotation (default
    /// round-robin).
    pub balance: Balance,
    /// What the cluster is for as a whole (from a URL's
    /// `target_session_attrs`; default `any`): with `read-write` or
    /// `primary`, a cluster of declared replicas is refused at build.
    pub target_session_attrs: TargetSessionAttrs,
    /// How often every endpoint is asked what it is (default 1 s): how
    /// soon writes follow a promoted replica and an ejected endpoint gets
    /// its trial call.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// The most replicas out of rotation at once, as a share of them in
    /// `[0, 1]` (default 0.5); past it, ejected replicas keep serving.
    pub max_ejected_share: f64,
    /// When an endpoint is ejected and for how long (default: 5 failures
    /// in a row; out 5 s, doubling on repeated ejections up to 1 min).
    pub ejection: BreakerConfig,
    /// A replica whose replay lag passes this is out of read rotation
    /// until it catches up (default none: lag is not checked).
    #[serde(with = "humantime_serde")]
    pub max_replica_lag: Option<Duration>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            balance: Balance::default(),
            target_session_attrs: TargetSessionAttrs::Any,
            refresh_interval: Duration::from_secs(1),
            max_ejected_share: 0.5,
            ejection: BreakerConfig::default()
                .with_consecutive_failures(Some(5))
                .with_open_duration(Duration::from_secs(5))
                .with_open_backoff(OpenBackoff::new(2.0, Duration::from_secs(60))),
            max_replica_lag: None,
        }
    }
}

impl ClusterConfig {
    /// Checks that the configuration can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.refresh_interval.is_zero() {
            return Err(ConfigError::new(
                "refresh_interval",
                "must be greater than zero",
            ));
        }
        if !(0.0..=1.0).contains(&self.max_ejected_share) {
            return Err(ConfigError::new(
                "max_ejected_share",
                format!("must be in [0, 1], got {}", self.max_ejected_share),
            ));
        }
        if self.max_replica_lag.is_some_and(|l| l.is_zero()) {
            return Err(ConfigError::new(
                "max_replica_lag",
                "must be greater than zero (leave it out to not check lag)",
            ));
        }
        self.ejection
            .validate()
            .map_err(|e| ConfigError::new(format!("ejection.{}", e.field()), e.reason().to_owned()))
    }
}
