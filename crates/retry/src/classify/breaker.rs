//! keel-breaker's rejections are never retried.

use keel_breaker::{CallError, Rejected};

use crate::classify::{Classify, Verdict};

/// Wraps a classifier so that a keel-breaker rejection is permanent: the
/// breaker is open precisely so that nobody retries against the backend.
///
/// ```
/// use keel_breaker::{BreakerConfig, CircuitBreaker, CallError};
/// use keel_retry::{AlwaysTransient, Classify, SkipOpenBreaker, Verdict};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::new(BreakerConfig::default())?;
/// breaker.force_open();
/// let error = breaker.call(|| async { Ok::<(), std::io::Error>(()) }).await.unwrap_err();
/// assert_eq!(SkipOpenBreaker(AlwaysTransient).classify(&error), Verdict::Permanent);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SkipOpenBreaker<C>(pub C);

impl<C, E> Classify<CallError<E>> for SkipOpenBreaker<C>
where
    C: Classify<E>,
{
    fn classify(&self, error: &CallError<E>) -> Verdict {
        match error {
            CallError::Inner(e) => self.0.classify(e),
            _ => Verdict::Permanent,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// For boxed errors (tower stacks): a [`Rejected`] anywhere in the source
/// chain is permanent; anything else goes to the inner classifier.
impl<C> Classify<BoxError> for SkipOpenBreaker<C>
where
    C: Classify<BoxError>,
{
    fn classify(&self, error: &BoxError) -> Verdict {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
        while let Some(e) = next {
            if e.is::<Rejected>() {
                return Verdict::Permanent;
            }
            next = e.source();
        }
        self.0.classify(error)
    }
}
