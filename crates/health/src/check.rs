//! The [`HealthCheck`] trait, and closures as checks.

use std::future::Future;
use std::pin::Pin;

use crate::Outcome;

/// Something the registry runs periodically to learn whether a dependency
/// works. The registry times each run, bounds it by the check's timeout and
/// runs one at a time per check, so an implementation only does the probe.
///
/// An `async` closure returning anything `Into<Outcome>` is a check:
///
/// ```
/// use keel_health::{HealthCheck, Outcome};
///
/// fn disk_space() -> impl HealthCheck {
///     || async { Outcome::healthy().with_detail("free_gib", 120) }
/// }
/// ```
///
/// A type of your own implements it with an `async fn`:
///
/// ```
/// use keel_health::{HealthCheck, Outcome};
///
/// struct Queue;
///
/// impl HealthCheck for Queue {
///     async fn check(&self) -> Outcome {
///         Outcome::degraded("consumer lag 2 min")
///     }
/// }
/// ```
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the probe once.
    ///
    /// # Cancel safety
    ///
    /// The registry drops the future when the check's timeout passes; a
    /// check must leave nothing half done when dropped.
    fn check(&self) -> impl Future<Output = Outcome> + Send;
}

impl<F, Fut, O> HealthCheck for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = O> + Send,
    O: Into<Outcome>,
{
    async fn check(&self) -> Outcome {
        self().await.into()
    }
}

/// The object-safe form the registry stores.
pub(crate) trait DynCheck: Send + Sync + 'static {
    fn check_boxed(&self) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;
}

impl<C: HealthCheck> DynCheck for C {
    fn check_boxed(&self) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(self.check())
    }
}
