//! The retry loop, for plain async code: the async shell around the
//! decision core in `attempts`, which it hands the time.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::attempts::{Attempts, Idempotency, Next, Parts};
use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::classify::{AlwaysTransient, Classify, Verdict};
use crate::config::{ConfigError, RetryPolicy};
use crate::error::{Failure, RetryError};
use crate::observer::{Observer, SharedObserver};

pub(crate) type MakeBackoff = Arc<dyn Fn() -> Box<dyn Backoff> + Send + Sync>;

/// Retries operations by a policy. Build one, keep it, clone it freely.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use keel_retry::{Retrier, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calls = AtomicU32::new(0);
/// let retrier = Retrier::new(RetryPolicy::default())?;
/// let value = retrier
///     .run(|| async {
///         match calls.fetch_add(1, Ordering::SeqCst) {
///             0 => Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
///             _ => Ok(42),
///         }
///     })
///     .await?;
/// assert_eq!((value, calls.load(Ordering::SeqCst)), (42, 2));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Retrier<C = AlwaysTransient> {
    policy: RetryPolicy,
    classifier: C,
    idempotency: Idempotency,
    budget: Option<RetryBudget>,
    observer: Option<SharedObserver>,
    backoff: Option<MakeBackoff>,
}

impl<C: fmt::Debug> fmt::Debug for Retrier<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrier")
            .field("policy", &self.policy)
            .field("classifier", &self.classifier)
            .field("idempotency", &self.idempotency)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Retrier {
    /// A retrier for `policy` that treats every error as transient.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field of `policy`.
    pub fn new(policy: RetryPolicy) -> Result<Self, ConfigError> {
        Self::builder(policy).build()
    }

    /// A builder for a retrier with a classifier, budget, observer and more.
    pub fn builder(policy: RetryPolicy) -> RetrierBuilder {
        RetrierBuilder(Self::unchecked(policy))
    }

    fn unchecked(policy: RetryPolicy) -> Self {
        Self {
            policy,
            classifier: AlwaysTransient,
            idempotency: Idempotency::Idempotent,
            budget: None,
            observer: None,
            backoff: None,
        }
    }
}

/// Builds a [`Retrier`]: a classifier, idempotency, a budget, an observer or
/// a custom backoff, then [`build`](Self::build).
///
/// ```
/// use keel_retry::{BudgetConfig, Idempotency, Retrier, RetryBudget, RetryPolicy};
///
/// let retrier = Retrier::builder(RetryPolicy::database())
///     .classifier(keel_retry::classify_io)
///     .idempotency(Idempotency::NonIdempotent)
///     .budget(RetryBudget::new(BudgetConfig::default())?)
///     .observer(|e: &keel_retry::Event| eprintln!("{e:?}"))
///     .build()?;
/// # let _ = retrier;
/// # Ok::<(), keel_retry::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until built"]
pub struct RetrierBuilder<C = AlwaysTransient>(Retrier<C>);

impl<C: fmt::Debug> fmt::Debug for RetrierBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RetrierBuilder").field(&self.0).finish()
    }
}

impl<C> RetrierBuilder<C> {
    /// Decides which errors are retried, and on which schedule.
    pub fn classifier<C2>(self, classifier: C2) -> RetrierBuilder<C2> {
        let r = self.0;
        RetrierBuilder(Retrier {
            policy: r.policy,
            classifier,
            idempotency: r.idempotency,
            budget: r.budget,
            observer: r.observer,
            backoff: r.backoff,
        })
    }

    /// Marks the operations as idempotent or not (default idempotent).
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.0.idempotency = idempotency;
        self
    }

    /// Draws every retry from `budget` (shared with whoever holds a clone).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.0.budget = Some(budget);
        self
    }

    /// Reports attempts, retries and giving up to `observer`.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.0.observer = Some(SharedObserver(Arc::new(observer)));
        self
    }

    /// Takes delays from a fresh `make()` per operation instead of the
    /// policy's schedules (the policy's attempt limits still apply).
    pub fn backoff<B, F>(mut self, make: F) -> Self
    where
        B: Backoff + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        self.0.backoff = Some(Arc::new(move || Box::new(make()) as Box<dyn Backoff>));
        self
    }

    /// The retrier, once its policy checks out.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field of the policy.
    pub fn build(self) -> Result<Retrier<C>, ConfigError> {
        self.0.policy.validate()?;
        Ok(self.0)
    }
}

impl<C> Retrier<C> {
    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }

    /// Runs `operation` until it succeeds or a retry is not warranted.
    /// Each attempt calls `operation` anew, so it builds a fresh future (for
    /// a transaction, the whole transaction). The future may not borrow from
    /// the closure: share state through an `Arc` (async closures, which
    /// could, make the returned future fail `Send` checks in `tokio::spawn`).
    ///
    /// # Errors
    /// A [`RetryError`] with the last attempt's failure, the attempts made
    /// and why no other was made.
    ///
    /// # Cancel safety
    /// Dropping the future stops at once: during an attempt, the attempt's
    /// future is dropped; during a delay, no further attempt starts.
    pub async fn run<F, Fut, T, E>(&self, mut operation: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<E>,
    {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let mut state = Attempts::start(&self.policy, now);
        loop {
            let result = match self.policy.attempt_timeout {
                None => operation().await.map_err(Failure::Inner),
                Some(limit) => match tokio::time::timeout(limit, operation()).await {
                    Ok(r) => r.map_err(Failure::Inner),
                    Err(_) => Err(Failure::TimedOut(limit)),
                },
            };
            let failure = match result {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let verdict = match &failure {
                Failure::Inner(e) => self.classifier.classify(e),
                Failure::TimedOut(_) => Verdict::transient(crate::ErrorClass::Other),
            };
            match state.next(self.parts(), verdict, now) {
                Next::Retry(delay) => tokio::time::sleep(delay).await,
                Next::GiveUp(reason) => {
                    return Err(RetryError::new(failure, state.attempt(), reason));
                }
            }
        }
    }

    pub(crate) fn parts(&self) -> Parts<'_> {
        Parts {
            policy: &self.policy,
            idempotency: self.idempotency,
            budget: self.budget.as_ref(),
            observer: self.observer.as_ref(),
            backoff: self.backoff.as_ref(),
        }
    }

    #[cfg_attr(
        not(feature = "tower"),
        allow(dead_code, reason = "used by the tower service")
    )]
    pub(crate) fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }
}

/// Retries `operation` by `policy`, treating every error as transient.
/// For classifiers, budgets and observers, build a [`Retrier`].
///
/// ```
/// use keel_retry::{retry, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let n = retry(&RetryPolicy::default(), || async { Ok::<_, std::io::Error>(1) }).await;
/// assert_eq!(n.unwrap(), 1);
/// # }
/// ```
///
/// # Errors
/// A [`RetryError`]. An invalid policy (see [`RetryPolicy::validate`]) runs
/// the operation once, without retries: validate policies where they are
/// loaded, or build a [`Retrier`], which names the bad field.
///
/// # Cancel safety
/// As [`Retrier::run`].
pub async fn retry<F, Fut, T, E>(policy: &RetryPolicy, operation: F) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let retrier = Retrier::new(policy.clone()).unwrap_or_else(|_| {
        Retrier::unchecked(
            RetryPolicy::default().with_default(crate::Schedule::default().with_max_attempts(1)),
        )
    });
    retrier.run(operation).await
}

/// Now on tokio's clock (pausable in tests), for the decision core.
#[inline]
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
