//! [`ResponseFuture`]: records the call when it ends, or is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use pin_project_lite::pin_project;
use tracing::Span;

use super::Shared;
use crate::BoxError;
use crate::classify::{ERROR_TYPES, OperationOutcome, classify};

pin_project! {
    /// The future of a [`Telemetry`](super::Telemetry) call.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        call: Call,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// One call in flight: counted in on creation, recorded once on the way
/// out (as `cancelled` when the future is dropped unfinished).
struct Call {
    shared: Arc<Shared>,
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, outcome: OperationOutcome) {
        if !self.done {
            self.done = true;
            self.shared.durations[outcome.index()].record(self.started.elapsed());
            self.shared.in_flight.decrement(1.0);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(OperationOutcome::Cancelled);
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, span: Span, shared: Arc<Shared>) -> Self {
        shared.in_flight.increment(1.0);
        Self {
            inner,
            span,
            call: Call {
                shared,
                started: Instant::now(),
                done: false,
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))
        };
        match result {
            Ok(response) => {
                this.call.finish(OperationOutcome::Ok);
                Poll::Ready(Ok(response))
            }
            Err(error) => {
                let error: BoxError = error.into();
                let (outcome, error_type) = classify(&*error);
                this.call.shared.errors[error_type].increment(1);
                if !this.span.is_disabled() {
                    this.span.record("error.type", ERROR_TYPES[error_type]);
                    this.span.record("otel.status_code", "ERROR");
                }
                this.call.finish(outcome);
                Poll::Ready(Err(error))
            }
        }
    }
}
