//! Failed attempts, retries and give-ups, by class and reason.

use keel_retry::{ErrorClass, Event, GaveUp, Observer};
use metrics::Counter;

use crate::names::{
    NAME, RETRY_ATTEMPTS_FAILED, RETRY_BUDGET_EXHAUSTED, RETRY_GIVE_UPS, RETRY_RETRIES,
};

const CLASSES: [&str; 5] = ["connection", "conflict", "exhausted", "other", "none"];
const REASONS: [&str; 7] = [
    "permanent",
    "exhausted",
    "deadline",
    "budget",
    "not_idempotent",
    "outcome_unknown",
    "other",
];

fn class_index(class: Option<ErrorClass>) -> usize {
    match class {
        Some(ErrorClass::Connection) => 0,
        Some(ErrorClass::Conflict) => 1,
        Some(ErrorClass::Exhausted) => 2,
        Some(_) => 3,
        None => 4,
    }
}

fn reason_index(reason: GaveUp) -> usize {
    match reason {
        GaveUp::Permanent => 0,
        GaveUp::Exhausted => 1,
        GaveUp::Deadline => 2,
        GaveUp::Budget => 3,
        GaveUp::NotIdempotent => 4,
        GaveUp::OutcomeUnknown => 5,
        _ => 6,
    }
}

/// A retrier observer: failed attempts by `class` (`none`: not
/// retryable), retries scheduled, budget refusals, and give-ups by
/// `reason`. Retry events carry no name, so each observer is made for the
/// retrier it labels; its handles are resolved here, once.
///
/// ```
/// use keel_retry::{Retrier, RetryPolicy};
/// use keel_telemetry::RetryMetrics;
///
/// let retrier = Retrier::builder(RetryPolicy::database())
///     .observer(RetryMetrics::new("orders"))
///     .build()?;
/// # Ok::<(), keel_retry::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryMetrics {
    failed: [Counter; CLASSES.len()],
    retries: Counter,
    budget: Counter,
    give_ups: [Counter; REASONS.len()],
}

impl RetryMetrics {
    /// Metrics labelled `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            failed: CLASSES.map(|class| {
                metrics::counter!(RETRY_ATTEMPTS_FAILED, NAME => name.clone(), "class" => class)
            }),
            retries: metrics::counter!(RETRY_RETRIES, NAME => name.clone()),
            budget: metrics::counter!(RETRY_BUDGET_EXHAUSTED, NAME => name.clone()),
            give_ups: REASONS.map(|reason| {
                metrics::counter!(RETRY_GIVE_UPS, NAME => name.clone(), "reason" => reason)
            }),
        }
    }
}

impl Observer for RetryMetrics {
    fn on_event(&self, event: &Event) {
        match *event {
            Event::AttemptFailed { class, .. } => self.failed[class_index(class)].increment(1),
            Event::RetryScheduled { .. } => self.retries.increment(1),
            Event::BudgetExhausted { .. } => self.budget.increment(1),
            Event::GaveUp { reason, .. } => self.give_ups[reason_index(reason)].increment(1),
            _ => {}
        }
    }
}
