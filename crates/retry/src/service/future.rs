//! The response future of [`RetryService`](super::RetryService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::{BoxError, GaveUpError};
use crate::attempts::{Attempts, Next};
use crate::classify::Classify;
use crate::error::GaveUp;
use crate::retry::{Retrier, now};

pin_project! {
    /// Resolves to the first successful response, or to the error that
    /// ended the retries. Dropping it stops at once.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        service: S,
        request: Req,
        retrier: Arc<Retrier<C>>,
        attempts: Attempts,
        #[pin]
        state: State<S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        // Boxed: a `Sleep` is large, and only retries need one, so the
        // success path does not carry (and copy) it.
        Sleeping { sleep: Pin<Box<Sleep>> },
        Readying,
    }
}

impl<S: Service<Req>, Req, C> fmt::Debug for ResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempt", &self.attempts.attempt())
            .finish_non_exhaustive()
    }
}

impl<S: Service<Req>, Req, C> ResponseFuture<S, Req, C> {
    pub(super) fn new(
        future: S::Future,
        service: S,
        request: Req,
        retrier: Arc<Retrier<C>>,
        attempts: Attempts,
    ) -> Self {
        Self {
            service,
            request,
            retrier,
            attempts,
            state: State::Called { future },
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Error>,
    Req: Clone,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let error = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => return Poll::Ready(Ok(response)),
                        Poll::Ready(Err(error)) => error,
                        Poll::Pending => {
                            this.attempts.stamp(this.retrier.policy(), now);
                            return Poll::Pending;
                        }
                    };
                    let verdict = this.retrier.classifier().classify(&error);
                    match this.attempts.next(this.retrier.parts(), verdict, now) {
                        Next::Retry(delay) => this.state.set(State::Sleeping {
                            sleep: Box::pin(tokio::time::sleep(delay)),
                        }),
                        Next::GiveUp(GaveUp::Permanent) => return Poll::Ready(Err(error.into())),
                        Next::GiveUp(reason) => {
                            let attempts = this.attempts.attempt();
                            let error = GaveUpError::new(reason, attempts, error.into());
                            return Poll::Ready(Err(Box::new(error)));
                        }
                    }
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    let future = this.service.call(this.request.clone());
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}
