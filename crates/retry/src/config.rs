//! The retry policy: one schedule per error class, time limits, a seed.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::ErrorClass;
use crate::schedule::Schedule;

/// How to retry: a schedule per error class (a dropped connection, a lock
/// conflict and an exhausted server want different treatment), an optional
/// total-time budget and per-attempt timeout, and an optional seed.
///
/// `Default` is 3 attempts in all, 100 ms base, 10 s cap, ×2, full jitter,
/// for every class. [`RetryPolicy::database`] is tuned per class.
///
/// ```
/// use std::time::Duration;
/// use keel_retry::{RetryPolicy, Schedule};
///
/// let policy: RetryPolicy = toml::from_str(r#"
///     total_timeout = "30s"
///     [connection]
///     max_attempts = 5
///     base = "2s"
///     [conflict]
///     max_attempts = 3
///     base = "10ms"
///     max_delay = "200ms"
/// "#)?;
/// policy.validate()?;
/// assert_eq!(policy.connection.unwrap().base, Duration::from_secs(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// For errors of no more specific class, and for classes left unset.
    #[serde(rename = "default")]
    pub fallback: Schedule,
    /// Lost, refused or broken connections ([`ErrorClass::Connection`]).
    pub connection: Option<Schedule>,
    /// Serialization failures and deadlocks ([`ErrorClass::Conflict`]).
    pub conflict: Option<Schedule>,
    /// An exhausted server: too many connections, out of memory or disk
    /// ([`ErrorClass::Exhausted`]).
    pub exhausted: Option<Schedule>,
    /// Give up once the next sleep would pass this much time since the first
    /// attempt began (default: no limit). The tower service takes that
    /// start when the first attempt first waits (or fails), so a call that
    /// is over at once reads no clock.
    #[serde(with = "humantime_serde")]
    pub total_timeout: Option<Duration>,
    /// Each attempt gets at most this long; a timed-out attempt counts as a
    /// transient failure whose outcome is unknown (default: no limit).
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// Seeds the jitter, for reproducible delays in tests and simulations
    /// (default: random). Every operation then draws the same delays, so
    /// leave it unset in production, or concurrent retries fall into step.
    pub seed: Option<u64>,
}

impl RetryPolicy {
    /// Per-class schedules for database work that give up within about 5 s
    /// (`total_timeout`), so a caller against a dead database hears so soon
    /// and a breaker below sees the failures early: connection errors 4
    /// attempts from 250 ms (up to 2 s), conflicts 3 attempts from 10 ms
    /// (up to 200 ms), an exhausted server 2 attempts from 1 s; anything
    /// else the default. [`database_patient`](Self::database_patient) waits
    /// out longer outages.
    pub fn database() -> Self {
        Self {
            connection: Some(
                Schedule::new(4, Duration::from_millis(250)).with_max_delay(Duration::from_secs(2)),
            ),
            conflict: Some(
                Schedule::new(3, Duration::from_millis(10))
                    .with_max_delay(Duration::from_millis(200)),
            ),
            exhausted: Some(
                Schedule::new(2, Duration::from_secs(1)).with_max_delay(Duration::from_secs(2)),
            ),
            total_timeout: Some(Duration::from_secs(5)),
            ..Self::default()
        }
    }

    /// The long schedule, for batch work that would rather wait out a
    /// restart than fail: connection errors 4 attempts from 2 s (up to
    /// 30 s), conflicts as [`database`](Self::database), an exhausted server
    /// 2 attempts from 5 s, all within 60 s.
    pub fn database_patient() -> Self {
        Self {
            connection: Some(
                Schedule::new(4, Duration::from_secs(2)).with_max_delay(Duration::from_secs(30)),
            ),
            exhausted: Some(
                Schedule::new(2, Duration::from_secs(5)).with_max_delay(Duration::from_secs(30)),
            ),
            total_timeout: Some(Duration::from_secs(60)),
            ..Self::database()
        }
    }

    /// The schedule that governs `class`.
    pub fn schedule(&self, class: ErrorClass) -> &Schedule {
        let specific = match class {
            ErrorClass::Connection => self.connection.as_ref(),
            ErrorClass::Conflict => self.conflict.as_ref(),
            ErrorClass::Exhausted => self.exhausted.as_ref(),
            ErrorClass::Other => None,
        };
        specific.unwrap_or(&self.fallback)
    }

    /// Sets the [`fallback`](Self::fallback) schedule.
    #[must_use]
    pub fn with_default(mut self, schedule: Schedule) -> Self {
        self.fallback = schedule;
        self
    }

    /// Sets the schedule for `class` ([`ErrorClass::Other`] sets the fallback).
    #[must_use]
    pub fn with_class(mut self, class: ErrorClass, schedule: Schedule) -> Self {
        match class {
            ErrorClass::Connection => self.connection = Some(schedule),
            ErrorClass::Conflict => self.conflict = Some(schedule),
            ErrorClass::Exhausted => self.exhausted = Some(schedule),
            ErrorClass::Other => self.fallback = schedule,
        }
        self
    }

    /// Sets [`total_timeout`](Self::total_timeout).
    #[must_use]
    pub fn with_total_timeout(mut self, total: Duration) -> Self {
        self.total_timeout = Some(total);
        self
    }

    /// Sets [`attempt_timeout`](Self::attempt_timeout).
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Sets [`seed`](Self::seed).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every field; the error names the first bad one.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field, e.g. `conflict.base`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.fallback.validate("default")?;
        for (name, schedule) in [
            ("connection", &self.connection),
            ("conflict", &self.conflict),
            ("exhausted", &self.exhausted),
        ] {
            if let Some(s) = schedule {
                s.validate(name)?;
            }
        }
        for (name, value) in [
            ("total_timeout", self.total_timeout),
            ("attempt_timeout", self.attempt_timeout),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::at(
                    name,
                    "",
                    "must be greater than zero".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A configuration value that cannot work: the path of the field (as it
/// appears in a config file) and what is wrong with it. The same shape in
/// every keel crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry policy config `{field}`: {reason}")]
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

    /// The path of the offending field, e.g. `conflict.multiplier`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl ConfigError {
    /// The error for `section.field` (either may be empty).
    pub(crate) fn at(section: &str, field: &str, reason: String) -> Self {
        let path = match (section.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (_, true) => section.to_string(),
            _ => format!("{section}.{field}"),
        };
        Self::new(path, reason)
    }
}
