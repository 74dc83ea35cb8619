//! The decision core of retrying: after each failure, wait how long or give
//! up, and why. No I/O and no clock of its own (the caller passes `now`),
//! so the plain retry loop and the tower service share it.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::classify::{Delivery, Verdict};
use crate::config::RetryPolicy;
use crate::error::GaveUp;
use crate::observer::{Event, SharedObserver};
use crate::retry::MakeBackoff;

/// Whether running an operation twice is harmless.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Idempotency {
    /// Running it twice is harmless (reads, upserts, whole transactions
    /// that the server rolled back): every transient error is retried.
    #[default]
    Idempotent,
    /// Running it twice could apply it twice (a plain INSERT): only errors
    /// that prove the attempt had no effect are retried.
    NonIdempotent,
}

/// What the decision needs of a retrier, borrowed.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) idempotency: Idempotency,
    pub(crate) budget: Option<&'a RetryBudget>,
    pub(crate) observer: Option<&'a SharedObserver>,
    pub(crate) backoff: Option<&'a MakeBackoff>,
}

impl Parts<'_> {
    fn emit(&self, event: Event) {
        if let Some(observer) = self.observer {
            observer.0.on_event(&event);
        }
    }
}

pub(crate) enum Next {
    Retry(Duration),
    GiveUp(GaveUp),
}

/// One operation's progress through its attempts. Starting one costs
/// nothing (no clock read unless a total timeout is set, no allocation);
/// what only retries need is allocated on the first failure. Two words:
/// a tower future carries it on every call.
pub(crate) struct Attempts(Progress);

enum Progress {
    /// The first attempt, its start not taken (no total timeout, or not
    /// stamped yet).
    Fresh,
    /// The first attempt, started then.
    Started(Instant),
    /// At least one attempt failed.
    Retrying(Box<Retrying>),
}

/// The state of an operation that has failed at least once.
struct Retrying {
    started: Option<Instant>,
    /// The attempt under way.
    attempt: u32,
    previous: Option<Duration>,
    rng: Option<fastrand::Rng>,
    custom: Option<Box<dyn Backoff>>,
}

impl Attempts {
    /// `now` is read only when the policy has a total timeout.
    #[inline]
    pub(crate) fn start(policy: &RetryPolicy, now: impl FnOnce() -> Instant) -> Self {
        let mut attempts = Self::unstarted();
        attempts.stamp(policy, now);
        attempts
    }

    /// Attempts whose start is stamped later: by [`stamp`](Self::stamp)
    /// once the first attempt is under way, or at its failure. An attempt
    /// that succeeds at once then reads no clock.
    #[inline]
    pub(crate) fn unstarted() -> Self {
        Self(Progress::Fresh)
    }

    /// Takes the first attempt's start as now, unless it was taken or the
    /// policy has no total timeout.
    #[inline]
    pub(crate) fn stamp(&mut self, policy: &RetryPolicy, now: impl FnOnce() -> Instant) {
        if matches!(self.0, Progress::Fresh) && policy.total_timeout.is_some() {
            self.0 = Progress::Started(now());
        }
    }

    /// The attempt under way, from 1.
    #[inline]
    pub(crate) fn attempt(&self) -> u32 {
        match &self.0 {
            Progress::Retrying(r) => r.attempt,
            Progress::Fresh | Progress::Started(_) => 1,
        }
    }

    /// The retry state, made on the first failure.
    fn retrying(&mut self) -> &mut Retrying {
        let started = match self.0 {
            Progress::Retrying(ref mut r) => return r,
            Progress::Fresh => None,
            Progress::Started(at) => Some(at),
        };
        self.0 = Progress::Retrying(Box::new(Retrying {
            started,
            attempt: 1,
            previous: None,
            rng: None,
            custom: None,
        }));
        // Now `Retrying`: answered by the first arm.
        self.retrying()
    }

    /// After the attempt under way failed with `verdict`: wait and retry,
    /// or give up. `now` is read only to hold a total timeout.
    pub(crate) fn next(
        &mut self,
        parts: Parts<'_>,
        verdict: Verdict,
        now: impl FnOnce() -> Instant,
    ) -> Next {
        let attempt = self.attempt();
        let class = match verdict {
            Verdict::Transient { class, .. } | Verdict::RetryAfter { class, .. } => Some(class),
            Verdict::Permanent | Verdict::OutcomeUnknown => None,
        };
        parts.emit(Event::AttemptFailed { attempt, class });
        let (class, delivery, hint) = match verdict {
            Verdict::Transient { class, delivery } => (class, delivery, None),
            Verdict::RetryAfter {
                after,
                class,
                delivery,
            } => (class, delivery, Some(after)),
            Verdict::Permanent => return self.give_up(parts, GaveUp::Permanent),
            Verdict::OutcomeUnknown => return self.give_up(parts, GaveUp::OutcomeUnknown),
        };
        if parts.idempotency == Idempotency::NonIdempotent && delivery != Delivery::NoEffect {
            return self.give_up(parts, GaveUp::NotIdempotent);
        }
        let schedule = parts.policy.schedule(class);
        if attempt >= schedule.max_attempts {
            return self.give_up(parts, GaveUp::Exhausted);
        }
        let retrying = self.retrying();
        let delay = match (hint, parts.backoff) {
            (Some(after), _) => Some(after),
            (None, Some(make)) => retrying
                .custom
                .get_or_insert_with(|| make())
                .next_delay(class),
            (None, None) => {
                let seed = parts.policy.seed;
                let rng = retrying.rng.get_or_insert_with(|| match seed {
                    Some(seed) => fastrand::Rng::with_seed(seed),
                    None => fastrand::Rng::new(),
                });
                let previous = retrying.previous.unwrap_or(schedule.base);
                Some(schedule.delay(attempt, previous, rng))
            }
        };
        let Some(delay) = delay else {
            return self.give_up(parts, GaveUp::Exhausted);
        };
        if let Some(total) = parts.policy.total_timeout {
            let now = now();
            // Not stamped: the first attempt failed as soon as it ran.
            let started = *retrying.started.get_or_insert(now);
            if now.saturating_duration_since(started).saturating_add(delay) > total {
                return self.give_up(parts, GaveUp::Deadline);
            }
        }
        if let Some(budget) = parts.budget
            && !budget.withdraw()
        {
            parts.emit(Event::BudgetExhausted { attempt });
            return self.give_up(parts, GaveUp::Budget);
        }
        parts.emit(Event::RetryScheduled { attempt, delay });
        retrying.previous = Some(delay);
        retrying.attempt += 1;
        Next::Retry(delay)
    }

    fn give_up(&self, parts: Parts<'_>, reason: GaveUp) -> Next {
        parts.emit(Event::GaveUp {
            attempts: self.attempt(),
            reason,
        });
        Next::GiveUp(reason)
    }
}
