//! The probes as a tower service over `http` types: mount it in axum, hyper
//! or any tower server.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use crate::{HealthRegistry, Status};

/// How much `/health/detailed` tells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detail {
    /// Every check with its message, latency and details (the default).
    /// Messages and details never hold a password or a full URL, but they
    /// do name hosts and errors: serve them where operators look.
    #[default]
    Full,
    /// Only the overall status and readiness, as `/health/ready` gives:
    /// for probes exposed to the public.
    StatusOnly,
}

/// Answers the health probes from a [`HealthRegistry`]'s cached results:
///
/// | path | answers |
/// |---|---|
/// | `/health`, `/health/live` | liveness: 200 `{"status":"alive"}` while the process serves |
/// | `/health/ready` | readiness: 200, or 503 when Unhealthy or draining; `{"status":..}` |
/// | `/health/detailed` | the [`Report`](crate::Report) as JSON (see [`Detail`]); 200 or 503 as readiness |
///
/// Other paths get 404, methods other than GET and HEAD 405. Answers are
/// never cached by proxies (`Cache-Control: no-store`).
///
/// ```
/// use keel_health::{HealthConfig, HealthRegistry, HealthService};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let health = HealthRegistry::builder(HealthConfig::default())
///     .check("cache", || async { keel_health::Outcome::healthy() })
///     .build()?;
/// health.refresh().await;
/// let probes = HealthService::new(health);
/// let response = probes
///     .oneshot(http::Request::get("/health/ready").body(())?)
///     .await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HealthService {
    registry: HealthRegistry,
    detail: Detail,
}

impl HealthService {
    /// Probes over `registry`, with full detail.
    pub fn new(registry: HealthRegistry) -> Self {
        Self {
            registry,
            detail: Detail::Full,
        }
    }

    /// Sets how much `/health/detailed` tells.
    #[must_use]
    pub fn detail(mut self, detail: Detail) -> Self {
        self.detail = detail;
        self
    }

    /// The registry it answers from.
    pub fn registry(&self) -> &HealthRegistry {
        &self.registry
    }

    /// The answer to one request.
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path.trim_end_matches('/') {
            "/health" | "/health/live" => json(StatusCode::OK, Bytes::from_static(ALIVE)),
            "/health/ready" => self.ready(),
            "/health/detailed" => match self.detail {
                Detail::Full => {
                    let report = self.registry.report();
                    let code = readiness_code(report.is_ready());
                    json(code, Bytes::from(report.to_json().to_string()))
                }
                Detail::StatusOnly => self.ready(),
            },
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn ready(&self) -> Response<Full<Bytes>> {
        let ready = self.registry.is_ready();
        let body: &'static [u8] = match (self.registry.is_draining(), self.registry.status()) {
            (true, _) => br#"{"status":"draining","ready":false}"#,
            (false, Status::Healthy) => br#"{"status":"healthy","ready":true}"#,
            (false, Status::Degraded) => br#"{"status":"degraded","ready":true}"#,
            (false, _) => br#"{"status":"unhealthy","ready":false}"#,
        };
        json(readiness_code(ready), Bytes::from_static(body))
    }
}

const ALIVE: &[u8] = br#"{"status":"alive"}"#;

fn readiness_code(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn json(code: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    respond(code, "application/json", body)
}

fn plain(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(
        code,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn respond(code: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<B> tower_service::Service<Request<B>> for HealthService {
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

/// The probes as an axum `Router` (`/health`, `/health/live`,
/// `/health/ready`, `/health/detailed`), to `merge` into an application's.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keel_health::{HealthConfig, HealthRegistry, HealthService};
///
/// let health = HealthRegistry::builder(HealthConfig::default()).build()?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .merge(keel_health::router(HealthService::new(health)));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub fn router<S>(service: HealthService) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    [
        "/health",
        "/health/live",
        "/health/ready",
        "/health/detailed",
    ]
    .into_iter()
    .fold(axum::Router::new(), |router, path| {
        router.route_service(path, service.clone())
    })
}
