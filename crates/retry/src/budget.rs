//! A retry budget shared across requests, after Finagle's and tower's: every
//! request deposits, every retry withdraws, so that an outage cannot
//! multiply the load on a struggling server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::ConfigError;

/// The budget's terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// The span over which deposits and withdrawals are counted (default 10 s).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Retries allowed per second whatever the traffic, so that a quiet
    /// service can still retry (default 10).
    pub min_per_sec: u32,
    /// Extra load allowed: retries per request made (default 0.2, i.e. at
    /// most 20% more requests than without retries).
    pub retry_ratio: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// Terms of `min_per_sec` retries a second plus `retry_ratio` per
    /// request, counted over `ttl`.
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f64) -> Self {
        Self {
            ttl,
            min_per_sec,
            retry_ratio,
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl < Duration::from_millis(10) || self.ttl > Duration::from_secs(3600) {
            return Err(ConfigError::at(
                "budget",
                "ttl",
                format!("must be between 10ms and 1h, got {:?}", self.ttl),
            ));
        }
        if !(0.0..=1000.0).contains(&self.retry_ratio) {
            return Err(ConfigError::at(
                "budget",
                "retry_ratio",
                format!("must be between 0 and 1000, got {}", self.retry_ratio),
            ));
        }
        Ok(())
    }
}

/// The cumulative deposit count at one instant.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    deposits: u64,
}

#[derive(Debug)]
struct Ledger {
    /// Oldest first; the first is at or before the window's start.
    marks: VecDeque<Mark>,
    /// Withdrawals per slice of `ttl / 10`, by the slice's start.
    spent: VecDeque<(Instant, u64)>,
}

/// Deposits land on one of these, chosen per budget clone, so that clones
/// held by different tasks do not write one cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

const SHARDS: usize = 8;

#[derive(Debug)]
struct Inner {
    config: BudgetConfig,
    deposits: [Shard; SHARDS],
    next_shard: AtomicUsize,
    ledger: Mutex<Ledger>,
}

/// A retry budget; clones share it (give each service or task its own clone).
///
/// A deposit costs one uncontended atomic add and reads no clock; the
/// accounting happens on withdrawal, which only retries pay for.
///
/// ```
/// use keel_retry::{BudgetConfig, RetryBudget};
///
/// let budget = RetryBudget::new(BudgetConfig::default())?;
/// for _ in 0..100 {
///     budget.deposit();
/// }
/// // 10/s floor over 10 s, plus 20% of 100 requests.
/// let granted = (0..1000).filter(|_| budget.withdraw()).count();
/// assert_eq!(granted, 120);
/// # Ok::<(), keel_retry::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    inner: Arc<Inner>,
    shard: usize,
}

impl Clone for RetryBudget {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            shard: self.inner.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS,
        }
    }
}

impl RetryBudget {
    /// A budget on these terms, starting now with only its floor.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn new(config: BudgetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut marks = VecDeque::with_capacity(12);
        marks.push_back(Mark {
            at: Instant::now(),
            deposits: 0,
        });
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                deposits: Default::default(),
                next_shard: AtomicUsize::new(1),
                ledger: Mutex::new(Ledger {
                    marks,
                    spent: VecDeque::with_capacity(12),
                }),
            }),
            shard: 0,
        })
    }

    /// Records a request (every first attempt deposits).
    #[inline]
    pub fn deposit(&self) {
        self.inner.deposits[self.shard]
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` if it is spent.
    pub fn withdraw(&self) -> bool {
        let now = Instant::now();
        let mut ledger = self.ledger();
        let allowed = self.allowed(&mut ledger, now);
        if allowed.withdrawals + 1.0 > allowed.limit {
            return false;
        }
        let slice = self.inner.config.ttl / 10;
        match ledger.spent.back_mut() {
            Some((start, count)) if now < *start + slice => *count += 1,
            _ => ledger.spent.push_back((now, 1)),
        }
        true
    }

    /// Retries still available in the current window (never negative).
    pub fn balance(&self) -> f64 {
        let now = Instant::now();
        let mut ledger = self.ledger();
        let allowed = self.allowed(&mut ledger, now);
        (allowed.limit - allowed.withdrawals).max(0.0)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn deposits(&self) -> u64 {
        self.inner
            .deposits
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Rolls the window to `now` and returns what it allows and what it used.
    ///
    /// Withdrawals are counted per slice of `ttl / 10` (a slice that reaches
    /// into the window counts whole: the error errs toward fewer retries).
    /// Deposits, counted without a clock, are known only at the marks taken
    /// here; after a quiet spell longer than the window, those since the
    /// last mark are scaled to the window as if spread evenly.
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn allowed(&self, ledger: &mut Ledger, now: Instant) -> Allowed {
        let config = &self.inner.config;
        let ttl = config.ttl;
        let slice = ttl / 10;
        let deposits = self.deposits();
        if ledger
            .marks
            .back()
            .is_none_or(|m| now.saturating_duration_since(m.at) >= slice)
        {
            ledger.marks.push_back(Mark { at: now, deposits });
        }
        if let Some(start) = now.checked_sub(ttl) {
            while ledger.marks.len() >= 2 && ledger.marks[1].at <= start {
                ledger.marks.pop_front();
            }
            while ledger
                .spent
                .front()
                .is_some_and(|(at, _)| *at + slice <= start)
            {
                ledger.spent.pop_front();
            }
        }
        let base = ledger
            .marks
            .front()
            .copied()
            .unwrap_or(Mark { at: now, deposits });
        let span = now.saturating_duration_since(base.at);
        let scale = if span > ttl {
            ttl.as_secs_f64() / span.as_secs_f64()
        } else {
            1.0
        };
        let deposited = deposits.saturating_sub(base.deposits) as f64 * scale;
        let withdrawn: u64 = ledger.spent.iter().map(|(_, n)| n).sum();
        Allowed {
            limit: f64::from(config.min_per_sec) * ttl.as_secs_f64()
                + config.retry_ratio * deposited,
            withdrawals: withdrawn as f64,
        }
    }
}

struct Allowed {
    limit: f64,
    withdrawals: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(min_per_sec: u32, ratio: f64) -> RetryBudget {
        RetryBudget::new(BudgetConfig::new(
            Duration::from_secs(10),
            min_per_sec,
            ratio,
        ))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn floor_alone_allows_min_per_sec_over_the_window() {
        let b = budget(2, 0.0);
        assert_eq!((0..100).filter(|_| b.withdraw()).count(), 20);
        assert_eq!(b.balance(), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_buy_a_ratio_of_retries() {
        let b = budget(0, 0.1);
        for _ in 0..1000 {
            b.clone().deposit();
        }
        assert_eq!((0..1000).filter(|_| b.withdraw()).count(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn old_withdrawals_leave_the_window() {
        let b = budget(1, 0.0);
        assert_eq!((0..100).filter(|_| b.withdraw()).count(), 10);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(b.withdraw(), "the spent window has passed");
    }

    #[test]
    fn bad_terms_are_named() {
        let err = RetryBudget::new(BudgetConfig {
            retry_ratio: -1.0,
            ..BudgetConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field(), "budget.retry_ratio");
    }
}
