//! [`DatabaseConfig`]: one value that configures the whole stack, read from
//! defaults, a TOML file and the `DATABASE_*` environment variables.

mod env;
mod url_serde;

use std::borrow::Cow;
use std::path::Path;

use keel_breaker::BreakerConfig;
use keel_health::HealthConfig;
use keel_pool_core::{DatabaseUrl, PoolConfig};
use keel_retry::RetryPolicy;
use serde::{Deserialize, Serialize};

pub use env::ENV_VARS;

/// Everything [`Database::connect`](crate::Database::connect) needs:
/// where the database is and how each layer of the stack behaves. Every
/// field has a production-sane default but `url`; durations read as
/// `"30s"` or `"250ms"`.
///
/// ```
/// use keel::DatabaseConfig;
///
/// let config = DatabaseConfig::from_toml(r#"
///     name = "orders"
///     url = "postgres://app:s3cret@db.internal:5432/orders"
///
///     [pool]
///     max_size = 32
///     wait_timeout = "2s"
///
///     [breaker]
///     open_duration = "30s"
/// "#)?;
/// assert_eq!(config.pool.max_size, 32);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), keel::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// The database's name, in errors, metrics labels, health reports and
    /// the registry (default `default`).
    pub name: String,
    /// Where the database is (`DATABASE_URL`); required. The password never
    /// appears in `Debug`, in errors, or when the config is serialised.
    #[serde(with = "url_serde")]
    pub url: Option<DatabaseUrl>,
    /// The pool (keel-pool-core's defaults: 10 connections, 30 s wait).
    pub pool: PoolConfig,
    /// Retries (default [`RetryPolicy::database`]: connection errors 4
    /// attempts from 250 ms, conflicts 3 from 10 ms, all within 5 s).
    pub retry: RetryPolicy,
    /// The breaker (default [`DatabaseConfig::default_breaker`]: 20
    /// failures in a row, or half the calls of the last 10 s).
    pub breaker: BreakerConfig,
    /// The health check schedule (default every 30 s, 5 s timeout).
    pub health: HealthConfig,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            url: None,
            pool: PoolConfig::default(),
            retry: RetryPolicy::database(),
            breaker: Self::default_breaker(),
            health: HealthConfig::default(),
        }
    }
}

impl DatabaseConfig {
    /// The breaker a database gets by default: open after 20 failures in a
    /// row, or when half the calls of the last 10 s failed (at least 20 of
    /// them), for 30 s (the recovery probe ends it as soon as the database
    /// answers). Not 5 in a row, the breaker's own default: under
    /// concurrency one event that breaks every pooled connection (a
    /// failover, `pg_terminate_backend`) gives as many failures in a row as
    /// there are connections in use, a blip the retries absorb; an outage
    /// gives 20 within a second or two.
    pub fn default_breaker() -> BreakerConfig {
        BreakerConfig::default()
            .with_consecutive_failures(Some(20))
            .with_failure_rate(0.5)
            .with_window(keel_breaker::Window::Time {
                duration: std::time::Duration::from_secs(10),
                buckets: 10,
            })
            .with_min_calls(20)
            .with_open_duration(std::time::Duration::from_secs(30))
    }

    /// The defaults with this URL.
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url: Some(url),
            ..Self::default()
        }
    }

    /// Sets the name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Reads a TOML document; missing keys keep their defaults.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key path (`pool.max_size`) and what
    /// was expected, for an unknown key, a value of the wrong type, a
    /// duration without a unit or a URL that does not parse; or what
    /// [`validate`](Self::validate) finds.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("(document)", e.message().to_owned()))?;
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(path, e.into_inner().message().to_owned())
        })?;
        config.validate_fields()?;
        Ok(config)
    }

    /// Reads a TOML file.
    ///
    /// # Errors
    /// As [`from_toml`](Self::from_toml), or the file cannot be read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("(file)", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_toml(&text)
    }

    /// The defaults, then `file` if given, then the `DATABASE_*`
    /// environment variables (see [`with_env`](Self::with_env)); checked.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming the key or variable.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let config = config.with_env()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field, and that a URL is set.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field path: `url`, `pool.min_idle`,
    /// `retry.connection.max_attempts`, `breaker.window`, `health.timeout`...
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.is_none() {
            return Err(ConfigError::new(
                "url",
                "missing: set `url` in the file or DATABASE_URL",
            ));
        }
        self.validate_fields()
    }

    /// Everything but the presence of the URL (which the environment may
    /// still supply).
    fn validate_fields(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        self.pool
            .validate()
            .map_err(|e| ConfigError::new(format!("pool.{}", e.field()), e.reason().to_owned()))?;
        self.retry
            .validate()
            .map_err(|e| ConfigError::new(format!("retry.{}", e.field()), e.reason().to_owned()))?;
        self.breaker.validate().map_err(|e| {
            ConfigError::new(format!("breaker.{}", e.field()), e.reason().to_owned())
        })?;
        self.health.validate().map_err(|e| {
            ConfigError::new(format!("health.{}", e.field()), e.reason().to_owned())
        })?;
        Ok(())
    }
}

/// A configuration value that cannot work: the path of the field (as in
/// the TOML file, or the environment variable) and what is wrong with it.
/// The same shape in every keel crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid database config `{field}`: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The path of the offending field (`pool.max_size`) or the variable
    /// (`DATABASE_POOL_SIZE`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
