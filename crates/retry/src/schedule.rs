//! One class's retry schedule: how many attempts, and how long to wait
//! before each retry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// How the delay before a retry is randomised around the exponential curve
/// `d = min(max_delay, base * multiplier^(n-1))` for retry `n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d`.
    None,
    /// `U(0, d)`: the best spread in the AWS study, and the default.
    #[default]
    Full,
    /// `d/2 + U(0, d/2)`.
    Equal,
    /// `min(max_delay, U(base, 3 * previous))`.
    Decorrelated,
    /// `min(max_delay, d + U(0, d/4))`: the reference systems' formula.
    Proportional,
}

/// Attempts and delays for one class of error.
///
/// ```
/// use std::time::Duration;
/// use keel_retry::{Jitter, Schedule};
///
/// let schedule = Schedule::default()          // 3 attempts, 100 ms .. 10 s, ×2, full jitter
///     .with_max_attempts(5)
///     .with_jitter(Jitter::None);
/// let delays: Vec<_> = (1..5).map(|n| schedule.curve(n)).collect();
/// assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Schedule {
    /// Attempts in all, the first included (default 3).
    pub max_attempts: u32,
    /// The first retry's delay before jitter (default 100 ms).
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// The cap on any delay (default 10 s).
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Growth per retry, at least 1 (default 2).
    pub multiplier: f64,
    /// How delays are randomised (default [`Jitter::Full`]).
    pub jitter: Jitter,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl Schedule {
    /// A schedule of `max_attempts` attempts whose first retry waits about
    /// `base`, with the default cap, multiplier and jitter.
    pub fn new(max_attempts: u32, base: Duration) -> Self {
        Self {
            max_attempts,
            base,
            ..Self::default()
        }
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`max_delay`](Self::max_delay).
    #[must_use]
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets [`multiplier`](Self::multiplier).
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The curve before jitter for retry `n` (1-based):
    /// `min(max_delay, base * multiplier^(n-1))`.
    pub fn curve(&self, n: u32) -> Duration {
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.multiplier.powi(exponent);
        if secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
        }
    }

    /// The delay before retry `n` (1-based), given the previous delay (for
    /// decorrelated jitter; pass `base` before the first retry).
    pub fn delay(&self, n: u32, previous: Duration, rng: &mut fastrand::Rng) -> Duration {
        let d = self.curve(n);
        let uniform = |rng: &mut fastrand::Rng, lo: Duration, hi: Duration| {
            if hi <= lo {
                lo
            } else {
                lo + (hi - lo).mul_f64(rng.f64())
            }
        };
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => uniform(rng, Duration::ZERO, d),
            Jitter::Equal => d / 2 + uniform(rng, Duration::ZERO, d / 2),
            Jitter::Decorrelated => {
                let hi = previous.max(self.base).saturating_mul(3);
                uniform(rng, self.base, hi).min(self.max_delay)
            }
            Jitter::Proportional => (d + uniform(rng, Duration::ZERO, d / 4)).min(self.max_delay),
        }
    }

    pub(crate) fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        let bad = |what: &'static str, reason: String| Err(ConfigError::at(field, what, reason));
        if self.max_attempts == 0 {
            return bad(
                "max_attempts",
                "must be at least 1 (the first attempt counts)".into(),
            );
        }
        if self.base.is_zero() {
            return bad("base", "must be greater than zero".into());
        }
        if self.base > self.max_delay {
            return bad(
                "base",
                format!(
                    "must not exceed max_delay ({:?}), got {:?}",
                    self.max_delay, self.base
                ),
            );
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return bad(
                "multiplier",
                format!(
                    "must be a finite number of at least 1, got {}",
                    self.multiplier
                ),
            );
        }
        Ok(())
    }
}
