use tower_layer::Layer;

use super::RetryService;
use crate::retry::Retrier;

/// Wraps services in a [`RetryService`] with clones of one [`Retrier`] (a budget
/// in it is shared by all).
#[derive(Clone, Debug)]
pub struct RetryLayer<C> {
    retrier: Retrier<C>,
}

impl<C> RetryLayer<C> {
    /// A layer that retries with `retrier`.
    pub fn new(retrier: Retrier<C>) -> Self {
        Self { retrier }
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = RetryService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService::new(inner, self.retrier.clone())
    }
}
