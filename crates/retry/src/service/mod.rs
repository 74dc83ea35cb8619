//! The tower integration: [`RetryLayer`] wraps a service in a [`RetryService`].
//!
//! The request must be `Clone`: each retry re-issues a clone after the
//! delay, once the inner service is ready again (readiness is honoured on
//! every attempt). Errors are boxed: a permanent error comes back unchanged;
//! giving up for any other reason returns a [`GaveUpError`] whose source is
//! the last error. The policy's `attempt_timeout` is not applied here: put
//! a timeout layer below this one.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use keel_retry::{Retrier, RetryPolicy, service::RetryLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = calls.clone();
//! let mut svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(Retrier::new(RetryPolicy::default())?))
//!     .service(service_fn(move |id: u32| {
//!         let n = counter.fetch_add(1, Ordering::SeqCst);
//!         async move { if n == 0 { Err("connection reset") } else { Ok(id) } }
//!     }));
//! assert_eq!(svc.ready().await?.call(7).await?, 7);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(()) }
//! ```
//!
//! With a classifier, an observer and a budget shared by every clone:
//!
//! ```
//! use keel_retry::{BudgetConfig, ErrorClass, Retrier, RetryBudget, RetryPolicy, Verdict};
//! use keel_retry::service::RetryLayer;
//!
//! # fn build() -> Result<(), keel_retry::ConfigError> {
//! let retrier = Retrier::builder(RetryPolicy::database())
//!     .classifier(|e: &std::io::Error| keel_retry::classify_io(e))
//!     .budget(RetryBudget::new(BudgetConfig::default())?)
//!     .observer(|e: &keel_retry::Event| eprintln!("{e:?}"))
//!     .build()?;
//! let _layer = RetryLayer::new(retrier);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::attempts::Attempts;
use crate::classify::{AlwaysTransient, Classify};
use crate::retry::Retrier;

pub mod future;
mod layer;

pub use crate::error::GaveUpError;
pub use layer::RetryLayer;

use future::ResponseFuture;

/// A boxed error, as tower middleware returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service whose failed calls are retried by a [`Retrier`].
#[derive(Debug)]
pub struct RetryService<S, C = AlwaysTransient> {
    inner: S,
    /// This clone's own handle: cloned per call without touching a count
    /// that other clones write.
    retrier: Arc<Retrier<C>>,
}

impl<S: Clone, C: Clone> Clone for RetryService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            retrier: Arc::new(Retrier::clone(&self.retrier)),
        }
    }
}

impl<S, C> RetryService<S, C> {
    /// Retries `inner`'s failed calls with `retrier`.
    pub fn new(inner: S, retrier: Retrier<C>) -> Self {
        Self {
            inner,
            retrier: Arc::new(retrier),
        }
    }

    /// The retrier.
    pub fn retrier(&self) -> &Retrier<C> {
        &self.retrier
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for RetryService<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Error>,
    Req: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(budget) = self.retrier.budget() {
            budget.deposit();
        }
        let future = self.inner.call(request.clone());
        // The clone, not yet ready, serves the retries.
        let service = self.inner.clone();
        // Stamped once the call is under way: one that is over at once
        // reads no clock.
        let attempts = Attempts::unstarted();
        ResponseFuture::new(
            future,
            service,
            request,
            Arc::clone(&self.retrier),
            attempts,
        )
    }
}
