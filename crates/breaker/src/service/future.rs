//! The response future of [`CircuitBreakerService`](super::CircuitBreakerService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::BoxError;
use crate::breaker::{OwnedPermit, Rejected};
use crate::classify::Classify;

pin_project! {
    /// Resolves to the inner response, or to the rejection; reports the
    /// outcome to the breaker when the inner future completes. Dropping it
    /// before then is neutral.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called { #[pin] future: F, permit: OwnedPermit },
        Rejected { rejected: Rejected },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn called(future: F, permit: OwnedPermit, classifier: C) -> Self {
        Self {
            kind: Kind::Called { future, permit },
            classifier,
        }
    }

    pub(super) fn rejected(rejected: Rejected, classifier: C) -> Self {
        Self {
            kind: Kind::Rejected { rejected },
            classifier,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Rejected { rejected } => Poll::Ready(Err(Box::new(*rejected))),
            KindProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                permit.settle(this.classifier.classify(&result));
                Poll::Ready(result.map_err(Into::into))
            }
        }
    }
}
