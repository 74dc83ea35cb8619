//! Breaker configuration: serde, a production-sane `Default`, and `validate()`.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most trial calls (and trial successes) a half-open breaker can track;
/// both counters live in 14 bits of the breaker's state word.
pub const MAX_HALF_OPEN_CALLS: u32 = (1 << 14) - 1;

/// Everything that decides when a breaker trips and how it recovers.
///
/// Trip policies combine: the breaker opens as soon as any enabled policy
/// says so. Durations read as `"30s"`, `"250ms"`, `"1m 30s"` in serde formats.
///
/// ```
/// use std::time::Duration;
/// use keel_breaker::{BreakerConfig, Window};
///
/// // Open after 5 consecutive failures, or when at least half of the
/// // calls of the last 30 s failed (once 10 calls were seen).
/// let config = BreakerConfig::default()
///     .with_failure_rate(0.5)
///     .with_window(Window::Time { duration: Duration::from_secs(30), buckets: 10 })
///     .with_min_calls(10);
/// config.validate()?;
/// # Ok::<(), keel_breaker::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Open after this many failures in a row (default 5); `None` turns the
    /// policy off.
    pub consecutive_failures: Option<u32>,
    /// Open when the failure ratio in the window reaches this value, in
    /// `(0, 1]` (default off).
    pub failure_rate: Option<f64>,
    /// Open when the ratio of slow calls in the window reaches this value, in
    /// `(0, 1]` (default off).
    pub slow_call_rate: Option<f64>,
    /// A call that takes at least this long counts as slow (default 5 s).
    #[serde(with = "humantime_serde")]
    pub slow_call_threshold: Duration,
    /// The sliding window the rate policies read (default: 30 s in 10 buckets).
    pub window: Window,
    /// The rate policies judge only once the window holds this many calls
    /// (default 10).
    pub min_calls: u32,
    /// How long the breaker stays open after a trip (default 60 s).
    #[serde(with = "humantime_serde")]
    pub open_duration: Duration,
    /// Grow the open duration on repeated trips (default off: fixed).
    pub open_backoff: Option<OpenBackoff>,
    /// How the breaker probes the backend once the open duration has passed.
    pub half_open: HalfOpenConfig,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            failure_rate: None,
            slow_call_rate: None,
            slow_call_threshold: Duration::from_secs(5),
            window: Window::default(),
            min_calls: 10,
            open_duration: Duration::from_secs(60),
            open_backoff: None,
            half_open: HalfOpenConfig::default(),
        }
    }
}

/// The sliding window over which failure and slow-call ratios are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Window {
    /// The last `calls` calls.
    Count {
        /// How many of the most recent calls the window holds.
        calls: u32,
    },
    /// The calls of the last `duration`, kept in `buckets` equal slices
    /// (the oldest slice is dropped whole as time moves on).
    Time {
        /// The span of the window.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// How many slices the span is cut into.
        buckets: u32,
    },
}

impl Default for Window {
    fn default() -> Self {
        Window::Time {
            duration: Duration::from_secs(30),
            buckets: 10,
        }
    }
}

/// Growth of the open duration on repeated trips: the `n`th trip in a row
/// (counted until the breaker closes again) stays open for
/// `min(max, open_duration * multiplier^(n-1))`, less up to `jitter` of it at
/// random, so that many breakers do not probe at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OpenBackoff {
    /// Growth factor per trip, at least 1 (default 2).
    pub multiplier: f64,
    /// The cap (default 10 minutes).
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Fraction in `[0, 1)` taken off at random (default 0.1).
    pub jitter: f64,
}

impl Default for OpenBackoff {
    fn default() -> Self {
        Self {
            multiplier: 2.0,
            max: Duration::from_secs(600),
            jitter: 0.1,
        }
    }
}

/// The half-open probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HalfOpenConfig {
    /// Trial calls admitted at once (default 1); everyone else is rejected
    /// while they are in flight.
    pub permitted_calls: u32,
    /// Trial successes needed to close (default 1). Any trial failure reopens.
    pub success_threshold: u32,
    /// A trial slot held this long without a verdict is taken back, so a lost
    /// or hung trial can never keep the breaker half-open (default 30 s).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Move an Open breaker to HalfOpen when its open duration has passed,
    /// from a timer, instead of on the first call after that (default on;
    /// resilience4j's `automaticTransitionFromOpenToHalfOpenEnabled`).
    ///
    /// With it, a rejection while Open reads no clock, and [`state`] and
    /// health reports show HalfOpen on time even when no call comes. The
    /// timer is one thread for the whole process (`keel-breaker-timer`),
    /// started when the first breaker trips; transition events of timed
    /// moves are delivered on it. Only breakers on the [`SystemClock`] use
    /// it; others always move on the next call.
    ///
    /// [`state`]: crate::CircuitBreaker::state
    /// [`SystemClock`]: crate::SystemClock
    pub automatic: bool,
}

impl Default for HalfOpenConfig {
    fn default() -> Self {
        Self {
            permitted_calls: 1,
            success_threshold: 1,
            max_wait: Duration::from_secs(30),
            automatic: true,
        }
    }
}

/// A configuration value that cannot work: the path of the field (as it
/// appears in a config file) and what is wrong with it. The same shape in
/// every keel crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid breaker config `{field}`: {reason}")]
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

    /// The path of the offending field, e.g. `half_open.permitted_calls`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

fn check_ratio(field: &'static str, value: Option<f64>) -> Result<(), ConfigError> {
    match value {
        Some(r) if !(r > 0.0 && r <= 1.0) => Err(ConfigError::new(
            field,
            format!("must be in (0, 1], got {r}"),
        )),
        _ => Ok(()),
    }
}

fn check_range(field: &'static str, value: u32, max: u32) -> Result<(), ConfigError> {
    if value == 0 || value > max {
        return Err(ConfigError::new(
            field,
            format!("must be between 1 and {max}, got {value}"),
        ));
    }
    Ok(())
}

impl BreakerConfig {
    /// Checks every field; the error names the first bad one.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(n) = self.consecutive_failures {
            check_range("consecutive_failures", n, u32::MAX)?;
        }
        check_ratio("failure_rate", self.failure_rate)?;
        check_ratio("slow_call_rate", self.slow_call_rate)?;
        if self.slow_call_rate.is_some() && self.slow_call_threshold.is_zero() {
            return Err(ConfigError::new(
                "slow_call_threshold",
                "must be greater than zero when slow_call_rate is set",
            ));
        }
        match self.window {
            Window::Count { calls } => check_range("window.calls", calls, 1 << 20)?,
            Window::Time { duration, buckets } => {
                check_range("window.buckets", buckets, 1024)?;
                if duration < Duration::from_millis(u64::from(buckets)) {
                    return Err(ConfigError::new(
                        "window.duration",
                        format!(
                            "must be at least 1ms per bucket ({buckets} buckets), got {duration:?}"
                        ),
                    ));
                }
            }
        }
        check_range("min_calls", self.min_calls, u32::MAX)?;
        if self.open_duration.is_zero() {
            return Err(ConfigError::new(
                "open_duration",
                "must be greater than zero",
            ));
        }
        if let Some(b) = &self.open_backoff {
            if !(b.multiplier >= 1.0 && b.multiplier.is_finite()) {
                return Err(ConfigError::new(
                    "open_backoff.multiplier",
                    format!(
                        "must be a finite number of at least 1, got {}",
                        b.multiplier
                    ),
                ));
            }
            if !(0.0..1.0).contains(&b.jitter) {
                return Err(ConfigError::new(
                    "open_backoff.jitter",
                    format!("must be in [0, 1), got {}", b.jitter),
                ));
            }
            if b.max < self.open_duration {
                return Err(ConfigError::new(
                    "open_backoff.max",
                    format!(
                        "must be at least open_duration ({:?}), got {:?}",
                        self.open_duration, b.max
                    ),
                ));
            }
        }
        check_range(
            "half_open.permitted_calls",
            self.half_open.permitted_calls,
            MAX_HALF_OPEN_CALLS,
        )?;
        check_range(
            "half_open.success_threshold",
            self.half_open.success_threshold,
            MAX_HALF_OPEN_CALLS,
        )?;
        if self.half_open.max_wait.is_zero() {
            return Err(ConfigError::new(
                "half_open.max_wait",
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    /// Whether any policy reads the sliding window.
    pub(crate) fn uses_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow_call_rate.is_some()
    }

    /// Sets [`consecutive_failures`](Self::consecutive_failures).
    #[must_use]
    pub fn with_consecutive_failures(mut self, threshold: Option<u32>) -> Self {
        self.consecutive_failures = threshold;
        self
    }

    /// Sets [`failure_rate`](Self::failure_rate).
    #[must_use]
    pub fn with_failure_rate(mut self, ratio: f64) -> Self {
        self.failure_rate = Some(ratio);
        self
    }

    /// Sets [`slow_call_rate`](Self::slow_call_rate) and
    /// [`slow_call_threshold`](Self::slow_call_threshold).
    #[must_use]
    pub fn with_slow_calls(mut self, ratio: f64, threshold: Duration) -> Self {
        self.slow_call_rate = Some(ratio);
        self.slow_call_threshold = threshold;
        self
    }

    /// Sets [`window`](Self::window).
    #[must_use]
    pub fn with_window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// Sets [`min_calls`](Self::min_calls).
    #[must_use]
    pub fn with_min_calls(mut self, min_calls: u32) -> Self {
        self.min_calls = min_calls;
        self
    }

    /// Sets [`open_duration`](Self::open_duration).
    #[must_use]
    pub fn with_open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration;
        self
    }

    /// Sets [`open_backoff`](Self::open_backoff).
    #[must_use]
    pub fn with_open_backoff(mut self, backoff: OpenBackoff) -> Self {
        self.open_backoff = Some(backoff);
        self
    }

    /// Sets [`half_open`](Self::half_open).
    #[must_use]
    pub fn with_half_open(mut self, half_open: HalfOpenConfig) -> Self {
        self.half_open = half_open;
        self
    }
}

impl OpenBackoff {
    /// A backoff with the given multiplier and cap, and the default jitter.
    pub fn new(multiplier: f64, max: Duration) -> Self {
        Self {
            multiplier,
            max,
            ..Self::default()
        }
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }
}

impl HalfOpenConfig {
    /// `permitted_calls` trials at once, closing after `success_threshold`
    /// trial successes, with the default `max_wait`.
    pub fn new(permitted_calls: u32, success_threshold: u32) -> Self {
        Self {
            permitted_calls,
            success_threshold,
            ..Self::default()
        }
    }

    /// Sets [`max_wait`](Self::max_wait).
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Sets [`automatic`](Self::automatic).
    #[must_use]
    pub fn with_automatic(mut self, automatic: bool) -> Self {
        self.automatic = automatic;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        BreakerConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(BreakerConfig, &str)> = vec![
            (
                BreakerConfig::default().with_consecutive_failures(Some(0)),
                "consecutive_failures",
            ),
            (
                BreakerConfig::default().with_failure_rate(0.0),
                "failure_rate",
            ),
            (
                BreakerConfig::default().with_failure_rate(1.5),
                "failure_rate",
            ),
            (
                BreakerConfig::default().with_failure_rate(f64::NAN),
                "failure_rate",
            ),
            (
                BreakerConfig::default().with_slow_calls(0.5, Duration::ZERO),
                "slow_call_threshold",
            ),
            (
                BreakerConfig::default().with_window(Window::Count { calls: 0 }),
                "window.calls",
            ),
            (
                BreakerConfig::default().with_window(Window::Time {
                    duration: Duration::ZERO,
                    buckets: 10,
                }),
                "window.duration",
            ),
            (
                BreakerConfig::default().with_window(Window::Time {
                    duration: Duration::from_secs(1),
                    buckets: 0,
                }),
                "window.buckets",
            ),
            (BreakerConfig::default().with_min_calls(0), "min_calls"),
            (
                BreakerConfig::default().with_open_duration(Duration::ZERO),
                "open_duration",
            ),
            (
                BreakerConfig::default().with_open_backoff(OpenBackoff::new(0.5, Duration::MAX)),
                "open_backoff.multiplier",
            ),
            (
                BreakerConfig::default()
                    .with_open_backoff(OpenBackoff::new(2.0, Duration::MAX).with_jitter(1.0)),
                "open_backoff.jitter",
            ),
            (
                BreakerConfig::default()
                    .with_open_backoff(OpenBackoff::new(2.0, Duration::from_secs(1))),
                "open_backoff.max",
            ),
            (
                BreakerConfig::default().with_half_open(HalfOpenConfig::new(0, 1)),
                "half_open.permitted_calls",
            ),
            (
                BreakerConfig::default().with_half_open(HalfOpenConfig::new(1, 1 << 14)),
                "half_open.success_threshold",
            ),
            (
                BreakerConfig::default()
                    .with_half_open(HalfOpenConfig::new(1, 1).with_max_wait(Duration::ZERO)),
                "half_open.max_wait",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn reads_human_durations_from_toml() {
        let config: BreakerConfig = toml::from_str(
            r#"
            consecutive_failures = 3
            failure_rate = 0.5
            open_duration = "30s"
            window = { kind = "time", duration = "1m", buckets = 6 }
            [open_backoff]
            max = "5m"
            [half_open]
            permitted_calls = 2
            max_wait = "250ms"
            "#,
        )
        .unwrap();
        assert_eq!(config.consecutive_failures, Some(3));
        assert_eq!(config.open_duration, Duration::from_secs(30));
        assert_eq!(
            config.window,
            Window::Time {
                duration: Duration::from_secs(60),
                buckets: 6
            }
        );
        assert_eq!(config.open_backoff.as_ref().unwrap().multiplier, 2.0);
        assert_eq!(config.half_open.permitted_calls, 2);
        assert_eq!(config.half_open.success_threshold, 1);
        assert_eq!(config.half_open.max_wait, Duration::from_millis(250));
        config.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<BreakerConfig>("threshold = 3").unwrap_err();
        assert!(err.to_string().contains("threshold"), "{err}");
    }

    #[test]
    fn json_round_trip() {
        let config = BreakerConfig::default().with_open_backoff(OpenBackoff::default());
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<BreakerConfig>(&json).unwrap(),
            config
        );
    }
}
