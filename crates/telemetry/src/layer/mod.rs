//! [`TelemetryLayer`]: latency, outcome, in-flight calls and a `tracing`
//! span for every operation through a tower stack.

mod future;

use std::sync::Arc;
use std::task::{Context, Poll};

use metrics::{Counter, Gauge, Histogram};
use tower_layer::Layer;
use tower_service::Service;

pub use future::ResponseFuture;

use crate::BoxError;
use crate::classify::{ERROR_TYPES, OperationOutcome};
use crate::names::{
    ERROR_TYPE, NAME, OPERATION_DURATION, OPERATION_ERRORS, OPERATIONS_IN_FLIGHT, OUTCOME,
};

/// Measures every call through the service it wraps: latency by outcome
/// (`db.client.operation.duration`, whose count is the outcome counter),
/// calls in flight, errors by `error.type`, and a `tracing` span per call
/// named `db.operation` with the OpenTelemetry attributes
/// (`db.system.name`, `server.address`, `error.type`).
///
/// Put it outermost, so it sees what the caller sees (retries included in
/// the latency, a rejection by the breaker as `rejected`). Labels are the
/// layer's name, the outcome and the error class: never SQL text, ids or
/// other input, so the series count stays flat however many distinct
/// statements run. The metric handles are resolved once, here, through the
/// recorder installed at that moment: install it first.
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
#[derive(Clone, Debug)]
pub struct TelemetryLayer {
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) db_system: Option<Arc<str>>,
    pub(crate) server_address: Option<Arc<str>>,
    /// By [`OperationOutcome::index`].
    pub(crate) durations: [Histogram; OperationOutcome::ALL.len()],
    /// By index into [`ERROR_TYPES`].
    pub(crate) errors: [Counter; ERROR_TYPES.len()],
    pub(crate) in_flight: Gauge,
}

impl TelemetryLayer {
    /// Measures calls under `name` (the `name` label; the database or stack
    /// the service talks to).
    pub fn new(name: impl Into<String>) -> Self {
        let name: Arc<str> = name.into().into();
        let label = name.to_string();
        let durations = OperationOutcome::ALL.map(|outcome| {
            metrics::histogram!(OPERATION_DURATION, NAME => label.clone(), OUTCOME => outcome.as_str())
        });
        let errors = ERROR_TYPES.map(|error_type| {
            metrics::counter!(OPERATION_ERRORS, NAME => label.clone(), ERROR_TYPE => error_type)
        });
        let in_flight = metrics::gauge!(OPERATIONS_IN_FLIGHT, NAME => label);
        Self {
            shared: Arc::new(Shared {
                name,
                db_system: None,
                server_address: None,
                durations,
                errors,
                in_flight,
            }),
        }
    }

    /// The `db.system.name` span attribute (`postgresql`, `mysql`, `sqlite`).
    #[must_use]
    pub fn db_system(mut self, system: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.shared).db_system = Some(system.into().into());
        self
    }

    /// The `server.address` span attribute (`host:port`, never a URL with
    /// credentials).
    #[must_use]
    pub fn server_address(mut self, address: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.shared).server_address = Some(address.into().into());
        self
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Telemetry<S> {
        Telemetry {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`TelemetryLayer`] wraps around another; its errors are
/// the inner service's, boxed.
#[derive(Clone, Debug)]
pub struct Telemetry<S> {
    inner: S,
    shared: Arc<Shared>,
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
        let shared = &self.shared;
        let span = tracing::info_span!(
            "db.operation",
            otel.name = &*shared.name,
            db.system.name = shared.db_system.as_deref(),
            server.address = shared.server_address.as_deref(),
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture::new(inner, span, Arc::clone(shared))
    }
}
