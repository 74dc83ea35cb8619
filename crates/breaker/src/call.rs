//! The async API: run a future under the breaker.

use std::fmt;
use std::future::Future;

use crate::breaker::{CircuitBreaker, Rejected};
use crate::classify::{Classify, DefaultClassifier};

/// The error of a call made through [`CircuitBreaker::call`].
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The breaker turned the call away; the operation never ran.
    Rejected(Rejected),
    /// The operation ran and failed.
    Inner(E),
}

impl<E> CallError<E> {
    /// Whether the breaker turned the call away.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected(_))
    }

    /// The operation's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            CallError::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(r) => r.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Rejected(r) => Some(r),
            CallError::Inner(e) => Some(e),
        }
    }
}

impl CircuitBreaker {
    /// Runs `operation` if the breaker admits it, and counts `Ok` as a
    /// success and `Err` as a failure. Works on any executor.
    ///
    /// ```
    /// use keel_breaker::{BreakerConfig, CallError, CircuitBreaker};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let breaker = CircuitBreaker::new(BreakerConfig::default())?;
    /// let rows = breaker.call(|| async { Ok::<_, std::io::Error>(42) }).await?;
    /// assert_eq!(rows, 42);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`CallError::Rejected`] when the breaker turns the call away (the
    /// operation is not run); [`CallError::Inner`] with the operation's error.
    ///
    /// # Cancel safety
    /// Dropping the returned future is neutral: the call is counted neither a
    /// success nor a failure, and a half-open trial slot is freed.
    pub async fn call<F, Fut, T, E>(&self, operation: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(&DefaultClassifier, operation).await
    }

    /// Like [`call`](Self::call), with a classifier that decides which
    /// results count as failures.
    ///
    /// ```
    /// use keel_breaker::{BreakerConfig, CircuitBreaker, Outcome};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let breaker = CircuitBreaker::new(BreakerConfig::default())?;
    /// // A "not found" is the caller's business, not the database being down.
    /// let classify = |r: &Result<u32, std::io::Error>| match r {
    ///     Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Ignored,
    ///     Err(_) => Outcome::Failure,
    ///     Ok(_) => Outcome::Success,
    /// };
    /// let result = breaker
    ///     .call_with(&classify, || async { Err(std::io::ErrorKind::NotFound.into()) })
    ///     .await;
    /// assert!(result.is_err());
    /// assert_eq!(breaker.info().ignored, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`call`](Self::call).
    ///
    /// # Cancel safety
    /// As [`call`](Self::call).
    pub async fn call_with<C, F, Fut, T, E>(
        &self,
        classifier: &C,
        operation: F,
    ) -> Result<T, CallError<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        let result = operation().await;
        permit.record(classifier.classify(&result));
        result.map_err(CallError::Inner)
    }
}
