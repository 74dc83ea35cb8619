//! The Prometheus recorder, with buckets for database latencies, and
//! `/metrics` as a tower service.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
pub use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

use crate::{Collect, LATENCY_BUCKETS};

/// How often [`install`] drains recorded histogram samples into buckets,
/// so memory stays flat between scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A Prometheus builder with keel's settings: [`LATENCY_BUCKETS`] for every
/// histogram and the recommended naming (`_total` on counters, the unit in
/// the name: `db_client_operation_duration_seconds`). Add your own settings
/// and install it yourself, or call [`install`].
///
/// # Errors
///
/// None in practice: the bucket list is not empty.
pub fn prometheus_builder() -> Result<PrometheusBuilder, BuildError> {
    Ok(PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .with_recommended_naming(true))
}

/// Installs [`prometheus_builder`]'s recorder as the process's global
/// `metrics` recorder, describes every keel metric, and starts a thread
/// (`keel-metrics-upkeep`) that drains histogram samples every
/// [`UPKEEP_INTERVAL`]. [`TelemetryLayer`](crate::TelemetryLayer)s made
/// after it keep their latency histogram in their own per-thread buckets,
/// which [`MetricsService`] renders: the exporter would store each call as
/// a sample until the scrape. Call it once, at startup, before building the
/// layers and observers: they resolve their handles through the recorder
/// installed when they are made.
///
/// # Errors
///
/// [`BuildError::FailedToSetGlobalRecorder`] when a recorder is already
/// installed; [`BuildError::FailedToCreateRuntime`] when the upkeep thread
/// cannot start.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = prometheus_builder()?.install_recorder()?;
    crate::describe();
    #[cfg(feature = "tower")]
    crate::layer::render_natively();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("keel-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| BuildError::FailedToCreateRuntime(format!("the upkeep thread: {e}")))?;
    Ok(handle)
}

/// Serves `GET /metrics` in the Prometheus text format from a
/// [`PrometheusHandle`], running its [`Collect`]ors first so gauges read
/// from pools and breakers are current. Other paths get 404, other methods
/// 405. Mount it beside the health probes.
///
/// ```
/// use keel_telemetry::MetricsService;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let recorder = keel_telemetry::prometheus_builder()?.build_recorder();
/// let metrics = MetricsService::new(recorder.handle())
///     .collect(|| metrics::gauge!("queue.depth").set(3.0));
/// let response = metrics.oneshot(http::Request::get("/metrics").body(())?).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MetricsService {
    handle: PrometheusHandle,
    collectors: Arc<[Arc<dyn Collect>]>,
}

impl std::fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("collectors", &self.collectors.len())
            .finish_non_exhaustive()
    }
}

impl MetricsService {
    /// Serves what `handle`'s recorder holds.
    pub fn new(handle: PrometheusHandle) -> Self {
        Self {
            handle,
            collectors: Arc::new([]),
        }
    }

    /// Adds a collector run before each scrape ([`PoolGauges`](crate::PoolGauges),
    /// [`BreakerGauges`](crate::BreakerGauges), or a closure).
    #[must_use]
    pub fn collect(self, collector: impl Collect) -> Self {
        let mut collectors: Vec<_> = self.collectors.iter().cloned().collect();
        collectors.push(Arc::new(collector));
        Self {
            handle: self.handle,
            collectors: collectors.into(),
        }
    }

    /// Runs the collectors and renders the text format.
    pub fn render(&self) -> String {
        #[cfg(feature = "tower")]
        crate::flush();
        for collector in self.collectors.iter() {
            collector.collect();
        }
        #[allow(unused_mut, reason = "appended to with the tower feature only")]
        let mut text = self.handle.render();
        #[cfg(feature = "tower")]
        crate::layer::render_histograms(&mut text);
        text
    }

    /// The answer to one request.
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let (code, content_type, body) = if method != Method::GET && method != Method::HEAD {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"method not allowed\n"),
            )
        } else if path.trim_end_matches('/') == "/metrics" {
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(self.render()),
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found\n"),
            )
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = code;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl<B> tower_service::Service<Request<B>> for MetricsService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.uri().path())))
    }
}
