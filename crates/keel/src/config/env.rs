//! The `DATABASE_*` environment variables the reference systems' users
//! know, laid over a config. Durations there are plain seconds (`30`,
//! `2.5`), as those systems read them, or carry a unit (`30s`).

use std::time::Duration;

use keel_retry::Schedule;

use super::{ConfigError, DatabaseConfig};

/// Every variable read, and the field it sets.
pub const ENV_VARS: [(&str, &str); 10] = [
    ("DATABASE_URL", "url"),
    (
        "DATABASE_POOL_SIZE",
        "pool.min_idle (connections kept open)",
    ),
    ("DATABASE_MAX_CONNECTIONS", "pool.max_size"),
    ("DATABASE_MAX_OVERFLOW", "pool.max_overflow"),
    ("DATABASE_POOL_TIMEOUT", "pool.wait_timeout (seconds)"),
    ("DATABASE_POOL_RECYCLE", "pool.max_lifetime (seconds)"),
    (
        "DATABASE_HEALTH_CHECK_INTERVAL",
        "health.interval (seconds)",
    ),
    (
        "DATABASE_RETRY_ATTEMPTS",
        "retry: attempts in all, for connection and exhausted errors and the default",
    ),
    (
        "DATABASE_RETRY_DELAY",
        "retry: the first delay (seconds), same schedules",
    ),
    (
        "DATABASE_MAX_RETRY_DELAY",
        "retry: the longest delay (seconds), same schedules",
    ),
];

impl DatabaseConfig {
    /// Lays the `DATABASE_*` variables of this process over the config
    /// (see [`ENV_VARS`]); unset and empty ones change nothing.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the variable and what it should hold.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        self.with_vars(ENV_VARS.iter().filter_map(|(name, _)| {
            std::env::var(name)
                .ok()
                .map(|value| ((*name).to_owned(), value))
        }))
    }

    /// Lays `vars` (name, value) over the config as
    /// [`with_env`](Self::with_env) does with the process's environment.
    ///
    /// ```
    /// use std::time::Duration;
    /// use keel::DatabaseConfig;
    ///
    /// let config = DatabaseConfig::default().with_vars([
    ///     ("DATABASE_URL".to_owned(), "postgres://app@db/orders".to_owned()),
    ///     ("DATABASE_MAX_CONNECTIONS".to_owned(), "50".to_owned()),
    ///     ("DATABASE_POOL_TIMEOUT".to_owned(), "2.5".to_owned()),
    /// ])?;
    /// assert_eq!(config.pool.max_size, 50);
    /// assert_eq!(config.pool.wait_timeout, Duration::from_millis(2500));
    /// # Ok::<(), keel::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`] naming the variable and what it should hold.
    pub fn with_vars(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        for (name, value) in vars {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let var = |reason: String| ConfigError::new(name.clone(), reason);
            match name.as_str() {
                "DATABASE_URL" => {
                    self.url = Some(value.parse().map_err(|e| var(format!("{e}")))?);
                }
                "DATABASE_POOL_SIZE" => self.pool.min_idle = count(value).map_err(var)?,
                "DATABASE_MAX_CONNECTIONS" => self.pool.max_size = count(value).map_err(var)?,
                "DATABASE_MAX_OVERFLOW" => self.pool.max_overflow = count(value).map_err(var)?,
                "DATABASE_POOL_TIMEOUT" => self.pool.wait_timeout = seconds(value).map_err(var)?,
                "DATABASE_POOL_RECYCLE" => {
                    self.pool.max_lifetime = Some(seconds(value).map_err(var)?);
                }
                "DATABASE_HEALTH_CHECK_INTERVAL" => {
                    self.health.interval = seconds(value).map_err(var)?;
                }
                "DATABASE_RETRY_ATTEMPTS" => {
                    let attempts = u32::try_from(count(value).map_err(var)?)
                        .map_err(|_| var("too large".to_owned()))?;
                    self.retry_schedules(|s| s.max_attempts = attempts);
                }
                "DATABASE_RETRY_DELAY" => {
                    let delay = seconds(value).map_err(var)?;
                    self.retry_schedules(|s| s.base = delay);
                }
                "DATABASE_MAX_RETRY_DELAY" => {
                    let delay = seconds(value).map_err(var)?;
                    self.retry_schedules(|s| s.max_delay = delay);
                }
                _ => {}
            }
        }
        self.validate_fields()?;
        Ok(self)
    }

    /// The schedules the reference systems' one retry setting maps to:
    /// connection errors, an exhausted server and the default (conflicts
    /// keep their own fast schedule: a transaction rerun wants no wait).
    fn retry_schedules(&mut self, mut set: impl FnMut(&mut Schedule)) {
        set(&mut self.retry.fallback);
        for schedule in [&mut self.retry.connection, &mut self.retry.exhausted] {
            set(schedule.get_or_insert_with(Schedule::default));
        }
    }
}

fn count(value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| format!("expected a whole number of connections or attempts, got `{value}`"))
}

/// Plain seconds (`30`, `2.5`), or a duration with a unit (`30s`, `250ms`).
fn seconds(value: &str) -> Result<Duration, String> {
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("expected a duration of zero or more seconds, got `{value}`"));
    }
    humantime::parse_duration(value).map_err(|_| {
        format!("expected seconds (`30`, `2.5`) or a duration with a unit (`30s`), got `{value}`")
    })
}
