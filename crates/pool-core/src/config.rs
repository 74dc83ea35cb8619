//! Pool configuration: serde, a production-sane `Default`, and `validate()`
//! naming the field that is wrong.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which idle connection a checkout takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum QueueMode {
    /// The most recently returned connection: a small hot set stays warm
    /// and the rest age out through the idle timeout (the default).
    #[default]
    Lifo,
    /// The least recently returned connection: work spreads over every
    /// open connection, which keeps them all from idling out.
    Fifo,
}

/// How a pool sizes itself, how long each phase may take, and when
/// connections are validated, recycled and retired.
///
/// ```
/// use std::time::Duration;
/// use keel_pool_core::PoolConfig;
///
/// let config: PoolConfig = toml::from_str(r#"
///     max_size = 16
///     min_idle = 2
///     wait_timeout = "2s"
///     max_lifetime = "15m"
/// "#).unwrap();
/// assert_eq!(config.max_size, 16);
/// assert_eq!(config.wait_timeout, Duration::from_secs(2));
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Connections the pool keeps open for regular load (default 10; zero
    /// is rejected).
    pub max_size: usize,
    /// Idle connections kept open and ready; the idle timeout never closes
    /// one below this number and maintenance replaces those that die
    /// (default 0; must not exceed `max_size`).
    pub min_idle: usize,
    /// Extra connections opened under pressure beyond `max_size`. They stay
    /// idle for `idle_timeout` after use instead of being closed at once,
    /// so a burst does not churn connections (default 0).
    pub max_overflow: usize,
    /// Open `min_idle` connections in `build()`, which then fails with the
    /// connect error if the database cannot be reached (default false: they
    /// are opened in the background).
    pub warm: bool,
    /// Which idle connection a checkout takes (default LIFO).
    pub queue: QueueMode,
    /// How long a checkout waits in the queue for a free slot (default 30s;
    /// zero is rejected).
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// How long opening a connection may take (default 10s; zero is
    /// rejected).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long validating an idle connection may take (default 5s; zero is
    /// rejected).
    #[serde(with = "humantime_serde")]
    pub validate_timeout: Duration,
    /// How long resetting a returned connection may take (default 5s; zero
    /// is rejected).
    #[serde(with = "humantime_serde")]
    pub reset_timeout: Duration,
    /// How long closing a connection gracefully may take before it is
    /// dropped (default 5s; zero is rejected).
    #[serde(with = "humantime_serde")]
    pub close_timeout: Duration,
    /// Idle connections above `min_idle` are closed after this long unused
    /// (default 10 min; `None` keeps them, which `max_overflow` forbids;
    /// zero is rejected).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Connections are retired after about this long (default 30 min;
    /// `None` never; zero is rejected).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    /// Each connection's lifetime is shortened by a random fraction up to
    /// this, so connections opened together do not expire together
    /// (default 0.05; from 0 to 0.5).
    pub lifetime_jitter: f64,
    /// A connection idle at least this long is validated before it is
    /// handed out; a hot checkout makes no round trip (default 1s; zero
    /// validates every checkout, `None` never).
    #[serde(with = "humantime_serde")]
    pub validate_after_idle: Option<Duration>,
    /// A checkout held longer than this emits
    /// [`Event::LeakSuspected`](crate::Event::LeakSuspected) with where it
    /// was acquired (default off; zero is rejected).
    #[serde(with = "humantime_serde")]
    pub leak_threshold: Option<Duration>,
    /// The deadline of an operation run through the pool's service (an
    /// operation may set its own). When it passes, the connection is closed
    /// (default 30s; `None` for no deadline; zero is rejected).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 10,
            min_idle: 0,
            max_overflow: 0,
            warm: false,
            queue: QueueMode::Lifo,
            wait_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            validate_timeout: Duration::from_secs(5),
            reset_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            lifetime_jitter: 0.05,
            validate_after_idle: Some(Duration::from_secs(1)),
            leak_threshold: None,
            command_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// A configuration value that cannot work: the path of the field (as it
/// appears in a config file) and what is wrong with it. The same shape in
/// every keel crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid pool config `{field}`: {reason}")]
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

    /// The path of the offending field, e.g. `max_size`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

fn invalid(field: &'static str, reason: &'static str) -> ConfigError {
    ConfigError::new(field, reason)
}

impl PoolConfig {
    /// The most connections the pool opens at once: `max_size + max_overflow`.
    pub fn capacity(&self) -> usize {
        self.max_size.saturating_add(self.max_overflow)
    }

    /// Checks that the configuration can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_size == 0 {
            return Err(invalid("max_size", "must be at least 1"));
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits.
        if self.capacity() > (usize::MAX >> 4) {
            return Err(invalid("max_size", "max_size + max_overflow is too large"));
        }
        if self.min_idle > self.max_size {
            return Err(invalid("min_idle", "must not exceed max_size"));
        }
        for (field, value) in [
            ("wait_timeout", self.wait_timeout),
            ("connect_timeout", self.connect_timeout),
            ("validate_timeout", self.validate_timeout),
            ("reset_timeout", self.reset_timeout),
            ("close_timeout", self.close_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must be greater than zero"));
            }
        }
        for (field, value) in [
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("leak_threshold", self.leak_threshold),
            ("command_timeout", self.command_timeout),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(invalid(
                    field,
                    "must be greater than zero (or absent to disable)",
                ));
            }
        }
        if self.max_overflow > 0 && self.idle_timeout.is_none() {
            return Err(invalid(
                "idle_timeout",
                "must be set when max_overflow > 0, or overflow connections would never close",
            ));
        }
        if !(0.0..=0.5).contains(&self.lifetime_jitter) {
            return Err(invalid("lifetime_jitter", "must be between 0 and 0.5"));
        }
        Ok(())
    }

    /// How often maintenance runs: often enough to honour the shortest of
    /// the configured durations to within a quarter of it, at most once a
    /// second and at least every 10 ms.
    pub(crate) fn tick(&self) -> Duration {
        let shortest = [
            self.validate_after_idle.filter(|d| !d.is_zero()),
            self.idle_timeout,
            self.max_lifetime,
            self.leak_threshold,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(4));
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        PoolConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_names_the_field() {
        type Case = (fn(&mut PoolConfig), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.max_size = 0, "max_size"),
            (|c| c.min_idle = 11, "min_idle"),
            (|c| c.wait_timeout = Duration::ZERO, "wait_timeout"),
            (|c| c.connect_timeout = Duration::ZERO, "connect_timeout"),
            (|c| c.idle_timeout = Some(Duration::ZERO), "idle_timeout"),
            (|c| c.lifetime_jitter = 0.9, "lifetime_jitter"),
            (
                |c| {
                    c.max_overflow = 2;
                    c.idle_timeout = None;
                },
                "idle_timeout",
            ),
        ];
        for (mutate, field) in cases {
            let mut config = PoolConfig::default();
            mutate(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn reads_human_durations_and_rejects_unknown_fields() {
        let config: PoolConfig =
            toml::from_str("idle_timeout = \"90s\"\nqueue = \"fifo\"").unwrap();
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(config.queue, QueueMode::Fifo);
        assert!(toml::from_str::<PoolConfig>("max_sise = 3").is_err());
    }

    #[test]
    fn tick_follows_the_shortest_duration() {
        let mut config = PoolConfig::default();
        assert_eq!(config.tick(), Duration::from_millis(250));
        config.validate_after_idle = None;
        config.max_lifetime = Some(Duration::from_millis(100));
        assert_eq!(config.tick(), Duration::from_millis(25));
    }
}
