//! The tower integration: [`CircuitBreakerLayer`] wraps a service in a
//! [`CircuitBreakerService`].
//!
//! The service takes a permit in `poll_ready` before it polls the inner
//! service; a rejected call is answered at once and never reaches, nor
//! polls, the inner service (a pool behind the breaker reserves nothing for
//! a call that will not run). Errors are boxed; a rejection downcasts to
//! [`Rejected`].
//!
//! ```
//! use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer, Rejected};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let breaker = CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(Some(1)))?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(service_fn(|fail: bool| async move {
//!         if fail { Err("database down") } else { Ok("row") }
//!     }));
//! assert_eq!(svc.ready().await?.call(false).await?, "row");
//! assert!(svc.ready().await?.call(true).await.is_err());
//! let err = svc.ready().await?.call(false).await.unwrap_err();
//! assert!(err.downcast_ref::<Rejected>().is_some());
//! # Ok(()) }
//! ```
//!
//! With a classifier that keeps the caller's own errors from tripping it:
//!
//! ```
//! use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer, Outcome};
//! use tower::{ServiceBuilder, service_fn};
//!
//! # fn build() -> Result<(), keel_breaker::ConfigError> {
//! let layer = CircuitBreakerLayer::new(CircuitBreaker::new(BreakerConfig::default())?)
//!     .with_classifier(|r: &Result<u64, std::io::Error>| match r {
//!         Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Outcome::Ignored,
//!         Err(_) => Outcome::Failure,
//!         Ok(_) => Outcome::Success,
//!     });
//! let _svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|n: u64| async move { Ok::<_, std::io::Error>(n) }));
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::breaker::{CircuitBreaker, OwnedPermit, Rejected};
use crate::classify::{Classify, DefaultClassifier};

pub mod future;
mod layer;

pub use layer::CircuitBreakerLayer;

use future::ResponseFuture;

/// A boxed error, as tower middleware returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service guarded by a [`CircuitBreaker`].
#[derive(Debug)]
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    /// A handle to the shared breaker: this service's own once it has been
    /// polled (see `try_acquire_local`); a fresh clone borrows its parent's
    /// until then, so a clone that is never polled (the spare a retry layer
    /// takes per call) costs one reference count and no allocation.
    breaker: Arc<CircuitBreaker>,
    own: bool,
    classifier: C,
    /// Taken in `poll_ready`, spent in `call`.
    ready: Option<Result<OwnedPermit, Rejected>>,
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    /// A clone starts not ready: permits are never shared.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: Arc::clone(&self.breaker),
            own: false,
            classifier: self.classifier.clone(),
            ready: None,
        }
    }
}

impl<S> CircuitBreakerService<S> {
    /// Guards `inner` with `breaker`, counting every `Err` as a failure.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self::with_classifier(inner, breaker, DefaultClassifier)
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Guards `inner` with `breaker`, letting `classifier` judge results.
    pub fn with_classifier(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        Self {
            inner,
            breaker: Arc::new(breaker),
            own: true,
            classifier,
            ready: None,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
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

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.own {
            // Polled: this clone makes calls, so it gets a handle no other
            // clone's calls touch.
            self.breaker = Arc::new(CircuitBreaker::clone(&self.breaker));
            self.own = true;
        }
        let ready = self
            .ready
            .get_or_insert_with(|| CircuitBreaker::try_acquire_local(&self.breaker));
        if ready.is_err() {
            // Ready to answer with the rejection; the inner service is left alone.
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                // The inner service failing to become ready is the backend failing.
                if let Some(Ok(permit)) = self.ready.take() {
                    let result = Err(e);
                    permit.record(self.classifier.classify(&result));
                    if let Err(e) = result {
                        return Poll::Ready(Err(e.into()));
                    }
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // Called without `poll_ready` is a caller bug; decide now rather than panic.
        let ready = self
            .ready
            .take()
            .unwrap_or_else(|| CircuitBreaker::try_acquire_local(&self.breaker));
        match ready {
            Err(rejected) => ResponseFuture::rejected(rejected, self.classifier.clone()),
            Ok(mut permit) => {
                permit.restart_timer();
                ResponseFuture::called(self.inner.call(request), permit, self.classifier.clone())
            }
        }
    }
}
