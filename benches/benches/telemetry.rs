//! What telemetry and health cost per call, with the Prometheus recorder
//! installed and no tracing subscriber (a service that has not configured
//! tracing: keel then makes no span).
//!
//! Groups:
//! - `telemetry layer, N task(s)`: a ready no-op `http` service (`bare`)
//!   wrapped by keel's `TelemetryLayer` (`keel`), tower-http's `TraceLayer`
//!   with its defaults, and a naive layer that calls `metrics::histogram!`
//!   and `counter!` by name on every call (a hand-written future, no box:
//!   only the by-name lookup differs from keel), and a floor: a layer that
//!   does only what any telemetry layer must (two reads of the same clock;
//!   keel's span only if a subscriber wants it, as keel does), so keel −
//!   floor is keel's own bookkeeping.
//! - `stack, N task(s)`: telemetry + retry + breaker together (keel's
//!   recommended order) around a ready no-op service (`bare`), with the
//!   breaker held by reference count and made once for the process
//!   (`from_static`), the stack cloned for each call (as axum handlers
//!   use a service), with the breaker `keel::Database` builds (a
//!   failure-rate window on top), next to each layer alone.
//! - `health probe, 1 task`: `/health/ready` and `/health/detailed`
//!   through keel-health's tower service, answered from cached results.

#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use keel_benches::{Subject, Tower, bare_service, bench, runtime, title};
use keel_health::{HealthConfig, HealthRegistry, HealthService, Outcome};
use keel_telemetry::TelemetryLayer;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};
use tower_http::trace::TraceLayer;

/// The bare service: answers at once.
#[derive(Clone, Copy)]
struct Noop;

impl Service<Request<String>> for Noop {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        ready(Ok(Response::new(String::new())))
    }
}

/// Calls a tower service over `http` types with a fresh request (the same
/// request cost in every entry, `bare` included).
#[derive(Clone)]
struct Http<S>(S);

impl<S> Subject for Http<S>
where
    S: Service<Request<String>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Send,
    S::Response: Send,
{
    async fn call(&mut self) {
        if let Ok(svc) = self.0.ready().await {
            let _ = black_box(svc.call(Request::new(String::new())).await);
        }
    }
}

/// Records latency and a call count through the `metrics!` macros, looked
/// up by name on every call.
#[derive(Clone)]
struct Naive<S>(S);

impl<S: Service<Request<String>>> Service<Request<String>> for Naive<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = NaiveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        NaiveFuture {
            inner: self.0.call(request),
            started: Instant::now(),
        }
    }
}

pin_project! {
    struct NaiveFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
    }
}

impl<F: Future<Output = Result<T, E>>, T, E> Future for NaiveFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        let outcome = if output.is_ok() { "ok" } else { "error" };
        metrics::histogram!("naive.duration", "name" => "orders", "outcome" => outcome)
            .record(this.started.elapsed());
        metrics::counter!("naive.calls", "name" => "orders", "outcome" => outcome).increment(1);
        Poll::Ready(output)
    }
}

/// The floor under any telemetry layer: the two clock reads a latency
/// needs, and keel's span when a subscriber wants it (here none does),
/// nothing recorded.
#[derive(Clone)]
struct Floor<S>(S);

impl<S: Service<Request<String>>> Service<Request<String>> for Floor<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        let span = tracing::level_enabled!(tracing::Level::INFO).then(|| {
            Box::new(tracing::info_span!(
                "db.operation",
                otel.name = "orders",
                db.system.name = "postgresql",
                server.address = tracing::field::Empty,
                error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            ))
        });
        let inner = match &span {
            Some(span) => span.in_scope(|| self.0.call(request)),
            None => self.0.call(request),
        };
        FloorFuture {
            inner,
            span,
            started: clock().raw(),
        }
    }
}

/// The cheapest clock read there is here: the TSC, raw, through one
/// `quanta::Clock` (as keel reads it).
fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

pin_project! {
    struct FloorFuture<F> {
        #[pin]
        inner: F,
        span: Option<Box<tracing::Span>>,
        started: u64,
    }
}

impl<F: Future> Future for FloorFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = match this.span {
            Some(span) => std::task::ready!(span.in_scope(|| this.inner.poll(cx))),
            None => std::task::ready!(this.inner.poll(cx)),
        };
        let clock = clock();
        black_box(clock.delta_as_nanos(*this.started, clock.raw()));
        Poll::Ready(output)
    }
}

fn layers(c: &mut Criterion) {
    keel_telemetry::install().expect("the only recorder of this process");
    let rt = runtime(2);
    for tasks in [1, 2] {
        let mut g = c.benchmark_group(title("telemetry layer", tasks));
        g.measurement_time(Duration::from_secs(3));
        bench(&mut g, &rt, tasks, "bare", Http(Noop));
        let keel = TelemetryLayer::new("orders").db_system("postgresql");
        bench(&mut g, &rt, tasks, "keel", Http(keel.layer(Noop)));
        bench(
            &mut g,
            &rt,
            tasks,
            "tower-http TraceLayer (defaults)",
            Http(TraceLayer::new_for_http().layer(Noop)),
        );
        bench(
            &mut g,
            &rt,
            tasks,
            "naive metrics! by name",
            Http(Naive(Noop)),
        );
        bench(
            &mut g,
            &rt,
            tasks,
            "floor: two clock reads",
            Http(Floor(Noop)),
        );
        g.finish();
    }
}

fn stack(c: &mut Criterion) {
    let rt = runtime(2);
    let retrier = || {
        keel_retry::Retrier::builder(keel_retry::RetryPolicy::database())
            .build()
            .expect("the database policy is valid")
    };
    let breaker = || {
        keel_breaker::CircuitBreaker::new(keel_breaker::BreakerConfig::default())
            .expect("the default config is valid")
    };
    for tasks in [1, 2] {
        let mut g = c.benchmark_group(title("stack", tasks));
        g.measurement_time(Duration::from_secs(3));
        bench(
            &mut g,
            &rt,
            tasks,
            "bare",
            Tower(bare_service::<std::io::Error>()),
        );
        let keel = tower::ServiceBuilder::new()
            .layer(TelemetryLayer::new("stack"))
            .layer(keel_retry::RetryLayer::new(retrier()))
            .layer(keel_breaker::CircuitBreakerLayer::new(breaker()))
            .service(bare_service::<std::io::Error>());
        bench(&mut g, &rt, tasks, "keel", Tower(keel.clone()));
        // A clone per call, as axum handlers use a service.
        bench(&mut g, &rt, tasks, "keel, a clone per call", Oneshot(keel));
        // With the breaker `keel::Database` builds (a failure-rate window
        // too), as its calls run.
        let as_database = tower::ServiceBuilder::new()
            .layer(TelemetryLayer::new("stack"))
            .layer(keel_retry::RetryLayer::new(retrier()))
            .layer(keel_breaker::CircuitBreakerLayer::new(
                keel_breaker::CircuitBreaker::new(keel::DatabaseConfig::default_breaker())
                    .expect("the database breaker is valid"),
            ))
            .service(bare_service::<std::io::Error>());
        bench(
            &mut g,
            &rt,
            tasks,
            "keel, Database's breaker",
            Tower(as_database),
        );
        // The breaker made once for the process: no reference count per call.
        let process_wide: &'static keel_breaker::CircuitBreaker = Box::leak(Box::new(breaker()));
        let keel_static = tower::ServiceBuilder::new()
            .layer(TelemetryLayer::new("stack"))
            .layer(keel_retry::RetryLayer::new(retrier()))
            .layer(keel_breaker::CircuitBreakerLayer::from_static(process_wide))
            .service(bare_service::<std::io::Error>());
        bench(
            &mut g,
            &rt,
            tasks,
            "keel (static breaker)",
            Tower(keel_static),
        );
        let telemetry =
            TelemetryLayer::new("stack-telemetry").layer(bare_service::<std::io::Error>());
        bench(&mut g, &rt, tasks, "telemetry alone", Tower(telemetry));
        let retry = keel_retry::RetryLayer::new(retrier()).layer(bare_service::<std::io::Error>());
        bench(&mut g, &rt, tasks, "retry alone", Tower(retry));
        let cb = keel_breaker::CircuitBreakerLayer::new(breaker())
            .layer(bare_service::<std::io::Error>());
        bench(&mut g, &rt, tasks, "breaker alone", Tower(cb));
        g.finish();
    }
}

/// A service cloned for each call (`svc.clone().oneshot(request)`).
#[derive(Clone)]
struct Oneshot<S>(S);

impl<S> Subject for Oneshot<S>
where
    S: Service<(), Future: Send> + Clone + Send + Sync + 'static,
{
    async fn call(&mut self) {
        let _ = black_box(self.0.clone().oneshot(()).await);
    }
}

/// A registry with a passing and a failing check and a signal, refreshed
/// once: probes read only the cache.
fn probes(c: &mut Criterion) {
    let rt = runtime(2);
    let health = rt.block_on(async {
        let health = HealthRegistry::builder(HealthConfig::default())
            .check("orders-db", || async {
                Outcome::healthy().with_detail("pool", 4)
            })
            .check("cache", || async { Outcome::degraded("slow") })
            .signal("orders-db breaker", &keel_health::Signal::new())
            .build()
            .expect("valid schedule");
        health.refresh().await;
        health
    });
    let service = HealthService::new(health);
    let mut g = c.benchmark_group(title("health probe", 1));
    g.measurement_time(Duration::from_secs(3));
    for path in ["/health/ready", "/health/detailed"] {
        let subject = Probe(service.clone(), path);
        bench(&mut g, &rt, 1, path, subject);
    }
    g.finish();
}

#[derive(Clone)]
struct Probe(HealthService, &'static str);

impl Subject for Probe {
    async fn call(&mut self) {
        let request = Request::get(self.1).body(()).expect("a valid path");
        let _ = black_box(self.0.call(request).await);
    }
}

criterion_group!(benches, layers, stack, probes);
criterion_main!(benches);
