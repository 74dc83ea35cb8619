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

use std::task::{Context, Poll};

use tower_service::Service;

use crate::breaker::{CircuitBreaker, Rejected, Source, Ticket};
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
    gate: Gate,
    classifier: C,
}

/// The breaker and the verdict `poll_ready` reserved for the next `call`:
/// one word for a ticket ([`Ticket::reserve`]), two for a rejection
/// ([`Rejected::reserve`]); the handle the call's future needs is taken
/// only in `call`. Dropped unused, the reservation is given back (a
/// half-open trial slot is freed).
#[derive(Debug)]
struct Gate {
    source: Source,
    /// 0: nothing reserved; odd: the reserved ticket; else turned away.
    reserved: u64,
    /// A rejection's second word. Two plain words, not an
    /// `Option<Rejected>`: the service is cloned into every retry layer's
    /// future, which stays small enough to move without `memcpy`.
    rejected_nanos: u64,
}

impl Gate {
    fn new(source: Source) -> Self {
        Self {
            source,
            reserved: 0,
            rejected_nanos: 0,
        }
    }

    /// Takes the reservation, or decides now if there is none.
    #[inline]
    fn take(&mut self) -> Result<Ticket, Rejected> {
        match std::mem::take(&mut self.reserved) {
            0 => self.source.acquire(),
            word if word & 1 == 1 => Ok(Ticket::reserved(word)),
            word => Err(Rejected::reserved(word, self.rejected_nanos)),
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if self.reserved & 1 == 1 {
            self.source.abandon(Ticket::reserved(self.reserved));
        }
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    /// A clone starts not ready: permits are never shared.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            gate: Gate::new(self.gate.source.clone()),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S> CircuitBreakerService<S> {
    /// Guards `inner` with `breaker`, counting every `Err` as a failure.
    pub fn new(inner: S, breaker: CircuitBreaker) -> Self {
        Self::with_classifier(inner, breaker, DefaultClassifier)
    }

    /// Guards `inner` with a breaker that lives as long as the process
    /// (a `static`, or one leaked at startup): its calls keep no reference
    /// count, the cheapest way through the layer (see
    /// [`CircuitBreakerLayer::from_static`]).
    pub fn from_static(inner: S, breaker: &'static CircuitBreaker) -> Self {
        Self::from_source(inner, Source::Static(breaker), DefaultClassifier)
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Guards `inner` with `breaker`, letting `classifier` judge results.
    pub fn with_classifier(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        Self::from_source(inner, Source::new(breaker), classifier)
    }

    pub(crate) fn from_source(inner: S, source: Source, classifier: C) -> Self {
        Self {
            inner,
            gate: Gate::new(source),
            classifier,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        self.gate.source.breaker()
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
        let gate = &mut self.gate;
        if gate.reserved == 0 {
            gate.source.claim();
            gate.reserved = match gate.source.acquire() {
                Ok(ticket) => ticket.reserve(),
                Err(rejected) => {
                    let (word, nanos) = rejected.reserve();
                    gate.rejected_nanos = nanos;
                    word
                }
            };
        }
        if gate.reserved & 1 == 0 {
            // Ready to answer with the rejection; the inner service is left alone.
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                // The inner service failing to become ready is the backend failing.
                let result = Err(e);
                if let Ok(ticket) = gate.take() {
                    gate.source
                        .record(ticket, self.classifier.classify(&result));
                }
                match result {
                    Err(e) => Poll::Ready(Err(e.into())),
                    Ok(_) => Poll::Ready(Ok(())),
                }
            }
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // Called without `poll_ready` is a caller bug; decide now rather than panic.
        let gate = &mut self.gate;
        match gate.take() {
            Err(rejected) => ResponseFuture::rejected(rejected, self.classifier.clone()),
            Ok(ticket) => ResponseFuture::called(
                self.inner.call(request),
                gate.source.permit(ticket),
                self.classifier.clone(),
            ),
        }
    }
}
