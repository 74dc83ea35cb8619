//! [`TelemetryLayer`]: latency, outcome, in-flight calls and a `tracing`
//! span for every operation through a tower stack.

mod future;
mod stats;

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

pub use future::ResponseFuture;
pub use stats::{FLUSH_INTERVAL, OperationCounts, flush};
#[cfg(feature = "prometheus")]
pub(crate) use stats::{render_histograms, render_natively};

use crate::BoxError;
use stats::{Labels, LayerStats};

/// Measures every call through the service it wraps: latency by outcome
/// (`db.client.operation.duration`, whose count is the outcome counter),
/// calls in flight, errors by `error.type`, and a `tracing` span per call
/// named `db.operation` with the OpenTelemetry attributes
/// (`db.system.name`, `server.address`, `error.type`), made only when a
/// `tracing` subscriber wants INFO spans.
///
/// Put it outermost, so it sees what the caller sees (retries included in
/// the latency, a rejection by the breaker as `rejected`). Labels are the
/// layer's name, the outcome and the error class: never SQL text, ids or
/// other input, so the series count stays flat however many distinct
/// statements run.
///
/// A call only adds to counters of its own thread (no lock, no shared
/// cache line, no reference count); [`flush`] moves them into the metric
/// handles, at each scrape of [`MetricsService`](crate::MetricsService)
/// and every [`FLUSH_INTERVAL`] on a thread of its own. The handles are
/// resolved once per label set (name, system, address), through the
/// recorder installed when that set is first seen: install it first.
///
/// ```
/// use keel_telemetry::TelemetryLayer;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let db = ServiceBuilder::new()
///     .layer(TelemetryLayer::new("orders").db_system("postgresql").server_address("db:5432"))
///     .service(service_fn(|sql: &'static str| async move { Ok::<_, std::io::Error>(sql.len()) }));
/// assert_eq!(db.oneshot("SELECT 1").await?, 8);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TelemetryLayer {
    stats: &'static LayerStats,
}

impl TelemetryLayer {
    /// Measures calls under `name` (the `name` label; the database or stack
    /// the service talks to).
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_labels(Labels {
            name: name.into().into_boxed_str(),
            db_system: None,
            server_address: None,
        })
    }

    fn with_labels(labels: Labels) -> Self {
        // Calibrated here (up to a few ms, once), not on the first call.
        future::clock();
        Self {
            stats: LayerStats::intern(labels),
        }
    }

    fn labels(&self) -> Labels {
        let l = &self.stats.labels;
        Labels {
            name: l.name.clone(),
            db_system: l.db_system.clone(),
            server_address: l.server_address.clone(),
        }
    }

    /// What calls through this layer (and every other layer with the same
    /// name, system and address) have done so far: counts by outcome and
    /// total latency, read at once from the per-thread counters.
    pub fn snapshot(&self) -> OperationCounts {
        self.stats.snapshot()
    }

    /// The `db.system.name` span attribute (`postgresql`, `mysql`, `sqlite`).
    #[must_use]
    pub fn db_system(self, system: impl Into<String>) -> Self {
        Self::with_labels(Labels {
            db_system: Some(system.into().into_boxed_str()),
            ..self.labels()
        })
    }

    /// The `server.address` span attribute (`host:port`, never a URL with
    /// credentials).
    #[must_use]
    pub fn server_address(self, address: impl Into<String>) -> Self {
        Self::with_labels(Labels {
            server_address: Some(address.into().into_boxed_str()),
            ..self.labels()
        })
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Telemetry<S> {
        Telemetry {
            inner,
            stats: self.stats,
        }
    }
}

/// The service [`TelemetryLayer`] wraps around another; its errors are
/// the inner service's, boxed.
#[derive(Clone, Debug)]
pub struct Telemetry<S> {
    inner: S,
    stats: &'static LayerStats,
}

impl<S> Telemetry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Request> Service<Request> for Telemetry<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let labels = &self.stats.labels;
        // No subscriber wants INFO spans (or none is set): none is made.
        // Made anyway, a disabled span still costs ~20 ns a call through
        // tracing's `log` bridge (which sqlx turns on), which would only
        // turn the span's lifecycle into `log` records.
        // Boxed, and only when made: the future stays small enough to be
        // moved without a call to `memcpy` when no span is wanted.
        let span = tracing::level_enabled!(tracing::Level::INFO).then(|| {
            Box::new(tracing::info_span!(
                "db.operation",
                otel.name = &*labels.name,
                db.system.name = labels.db_system.as_deref(),
                server.address = labels.server_address.as_deref(),
                error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            ))
        });
        let inner = match &span {
            Some(span) => span.in_scope(|| self.inner.call(request)),
            None => self.inner.call(request),
        };
        ResponseFuture::new(inner, span, self.stats)
    }
}
