use tower_layer::Layer;

use super::CircuitBreakerService;
use crate::breaker::{CircuitBreaker, Source};
use crate::classify::DefaultClassifier;

/// Wraps services in a [`CircuitBreakerService`] sharing one breaker.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    source: Source,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer over `breaker` that counts every `Err` as a failure.
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            source: Source::new(breaker),
            classifier: DefaultClassifier,
        }
    }

    /// A layer over a breaker that lives as long as the process (a
    /// `static`, or one leaked at startup). Its calls keep no reference
    /// count on the breaker: each call through [`new`](Self::new)'s layer
    /// takes and drops one, two locked instructions that are most of the
    /// layer's cost. For breakers made once per process (one per
    /// database); a breaker made and dropped repeatedly belongs in `new`.
    ///
    /// ```
    /// use std::sync::LazyLock;
    /// use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// static ORDERS_DB: LazyLock<CircuitBreaker> = LazyLock::new(|| {
    ///     CircuitBreaker::builder(BreakerConfig::default())
    ///         .name("orders")
    ///         .build()
    ///         .expect("the default config is valid")
    /// });
    ///
    /// # async fn run() -> Result<(), keel_breaker::BoxError> {
    /// let svc = ServiceBuilder::new()
    ///     .layer(CircuitBreakerLayer::from_static(&ORDERS_DB))
    ///     .service(service_fn(|n: u64| async move { Ok::<_, std::io::Error>(n) }));
    /// assert_eq!(svc.oneshot(7).await?, 7);
    /// # Ok(()) }
    /// ```
    pub fn from_static(breaker: &'static CircuitBreaker) -> Self {
        Self {
            source: Source::Static(breaker),
            classifier: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Judges results with `classifier` instead.
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            source: self.source,
            classifier,
        }
    }

    /// The breaker the layer's services share.
    pub fn breaker(&self) -> &CircuitBreaker {
        self.source.breaker()
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        // Borrows the layer's handle until first polled.
        CircuitBreakerService::from_source(inner, self.source.clone(), self.classifier.clone())
    }
}
