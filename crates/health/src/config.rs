//! How often a check runs and how long it may take.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The schedule of a check: the registry's default for every check, or one
/// check's own.
///
/// ```
/// use std::time::Duration;
/// use keel_health::HealthConfig;
///
/// let config: HealthConfig = toml::from_str("interval = \"10s\"\ntimeout = \"2s\"").unwrap();
/// assert_eq!(config.interval, Duration::from_secs(10));
/// config.validate()?;
/// # Ok::<(), keel_health::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Time between the end of one run and the start of the next (default
    /// 30 s, as the reference systems use).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A run that takes longer is abandoned and reported Unhealthy (default
    /// 5 s); shorter than `interval`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

impl HealthConfig {
    /// A schedule with the given interval and timeout.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Self { interval, timeout }
    }

    /// Checks that the schedule can work.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `interval` or `timeout`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() {
            return Err(ConfigError::new("interval", "must be greater than zero"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        if self.timeout >= self.interval {
            return Err(ConfigError::new(
                "timeout",
                format!(
                    "must be shorter than the interval ({:?} is not shorter than {:?})",
                    self.timeout, self.interval
                ),
            ));
        }
        Ok(())
    }

    /// The same error with the field under `prefix` (a check's name).
    pub(crate) fn validate_as(&self, prefix: &str) -> Result<(), ConfigError> {
        self.validate()
            .map_err(|e| ConfigError::new(format!("{prefix}.{}", e.field), e.reason))
    }
}

/// A configuration value that cannot work: the path of the field (as it
/// appears in a config file) and what is wrong with it. The same shape in
/// every keel crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid health config `{field}`: {reason}")]
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

    /// The path of the offending field, e.g. `checks.postgres.timeout`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_schedules_name_the_field() {
        let zero = HealthConfig::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(zero.validate().unwrap_err().field(), "interval");
        let no_timeout = HealthConfig::new(Duration::from_secs(1), Duration::ZERO);
        assert_eq!(no_timeout.validate().unwrap_err().field(), "timeout");
        let long = HealthConfig::new(Duration::from_secs(5), Duration::from_secs(5));
        let err = long.validate_as("checks.db").unwrap_err();
        assert_eq!(err.field(), "checks.db.timeout");
        assert!(
            err.to_string().contains("shorter than the interval"),
            "{err}"
        );
        assert!(HealthConfig::default().validate().is_ok());
    }
}
