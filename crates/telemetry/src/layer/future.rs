//! [`ResponseFuture`]: records the call when it ends, or is dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
// quanta reads the TSC: ~8 ns a read here, against ~18 ns for std.
use quanta::Instant;

use pin_project_lite::pin_project;
use tracing::Span;

use super::LayerStats;
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
    stats: &'static LayerStats,
    started: Instant,
    done: bool,
}

impl Call {
    #[inline]
    fn finish(&mut self, outcome: OperationOutcome) {
        if !self.done {
            self.done = true;
            self.stats.finish(outcome, self.started.elapsed());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(OperationOutcome::Cancelled);
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, span: Span, stats: &'static LayerStats) -> Self {
        stats.start();
        Self {
            inner,
            span,
            call: Call {
                stats,
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
                this.call.stats.error(error_type);
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
