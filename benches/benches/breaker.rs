//! Per-call overhead of a Closed circuit breaker around an immediately-ready
//! future, next to the breakers users would pick instead, measured in the
//! same run. Each subject is built once, outside the timed loop.
//!
//! Groups:
//! - `breaker call, N task(s)`: the closure/future APIs (`bare` = no wrapper).
//! - `breaker tower, N task(s)`: tower layers (`bare` = the service alone).
//! - `breaker reject`: a rejected call (Open, ForcedOpen) next to a
//!   successful one, and the anchors' rejections.
//!
//! With 2 tasks, both run on a 2-worker runtime against one shared breaker;
//! the time per call is the slower task's time divided by its calls.

#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keel_benches::{Bare, Subject, Tower, bare_service, bench, ready_ok, runtime, title};
use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use tower::Layer;

#[derive(Clone)]
struct Keel(CircuitBreaker);
impl Subject for Keel {
    async fn call(&mut self) {
        let _ = black_box(self.0.call(ready_ok::<std::io::Error>).await);
    }
}

#[derive(Clone)]
struct Failsafe<B>(B);
impl<B> Subject for Failsafe<B>
where
    B: failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static,
{
    async fn call(&mut self) {
        let _ = black_box(self.0.call(ready_ok::<std::io::Error>()).await);
    }
}

#[derive(Clone)]
struct Recloser(Arc<recloser::AsyncRecloser>);
impl Subject for Recloser {
    async fn call(&mut self) {
        let _ = black_box(self.0.call(ready_ok::<std::io::Error>()).await);
    }
}

fn keel_breaker() -> CircuitBreaker {
    CircuitBreaker::new(BreakerConfig::default()).expect("default config is valid")
}

fn closure_apis(c: &mut Criterion) {
    let rt = runtime(2);
    for tasks in [1, 2] {
        let mut g = c.benchmark_group(title("breaker call", tasks));
        g.measurement_time(Duration::from_secs(3));
        bench(&mut g, &rt, tasks, "bare", Bare);
        bench(&mut g, &rt, tasks, "keel", Keel(keel_breaker()));
        bench(
            &mut g,
            &rt,
            tasks,
            "failsafe (default)",
            Failsafe(failsafe::Config::new().build()),
        );
        let consecutive = failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(Duration::from_secs(60)),
        );
        bench(
            &mut g,
            &rt,
            tasks,
            "failsafe (consecutive_failures)",
            Failsafe(failsafe::Config::new().failure_policy(consecutive).build()),
        );
        bench(
            &mut g,
            &rt,
            tasks,
            "recloser",
            Recloser(Arc::new(recloser::Recloser::default().into())),
        );
        g.finish();
    }
}

fn tower_layers(c: &mut Criterion) {
    let rt = runtime(2);
    for tasks in [1, 2] {
        let mut g = c.benchmark_group(title("breaker tower", tasks));
        g.measurement_time(Duration::from_secs(3));
        bench(
            &mut g,
            &rt,
            tasks,
            "bare",
            Tower(bare_service::<std::io::Error>()),
        );
        let keel = CircuitBreakerLayer::new(keel_breaker()).layer(bare_service::<std::io::Error>());
        bench(&mut g, &rt, tasks, "keel", Tower(keel));
        // Made once for the process, as a service's breaker per database is.
        let process_wide: &'static CircuitBreaker = Box::leak(Box::new(keel_breaker()));
        let keel_static =
            CircuitBreakerLayer::from_static(process_wide).layer(bare_service::<std::io::Error>());
        bench(
            &mut g,
            &rt,
            tasks,
            "keel (static breaker)",
            Tower(keel_static),
        );
        // The breaker `keel::Database` builds: a failure-rate window too.
        let windowed = CircuitBreakerLayer::new(
            CircuitBreaker::new(keel::DatabaseConfig::default_breaker()).expect("valid config"),
        )
        .layer(bare_service::<std::io::Error>());
        bench(
            &mut g,
            &rt,
            tasks,
            "keel (Database's breaker: failure-rate window)",
            Tower(windowed),
        );
        let resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
            .build()
            .expect("default config is valid")
            .layer(bare_service::<std::io::Error>());
        bench(&mut g, &rt, tasks, "tower-resilience", Tower(resilience));
        bench(
            &mut g,
            &rt,
            tasks,
            "floor: a handle per call",
            Tower(HandlePerCall::new(bare_service::<std::io::Error>())),
        );
        g.finish();
    }
}

/// The least a tower breaker does per call: its response future must be
/// `'static` yet report back, so it takes a reference-counted handle in
/// `call` (one per service clone, as keel's, so no line is shared between
/// cores) and counts the outcome through it when the inner future ends.
struct HandlePerCall<S> {
    inner: S,
    handle: Arc<std::sync::atomic::AtomicU64>,
}

impl<S: Clone> Clone for HandlePerCall<S> {
    /// A handle of its own per clone, as keel's service takes.
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S> HandlePerCall<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            handle: Arc::default(),
        }
    }
}

impl<S: tower::Service<()>> tower::Service<()> for HandlePerCall<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = HandleFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ()) -> Self::Future {
        HandleFuture {
            inner: self.inner.call(request),
            handle: Some(Arc::clone(&self.handle)),
        }
    }
}

pin_project_lite::pin_project! {
    struct HandleFuture<F> {
        #[pin]
        inner: F,
        handle: Option<Arc<std::sync::atomic::AtomicU64>>,
    }
}

impl<F: std::future::Future<Output = Result<T, E>>, T, E> std::future::Future for HandleFuture<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Some(handle) = this.handle.take() {
            handle.fetch_add(
                u64::from(output.is_ok()),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        std::task::Poll::Ready(output)
    }
}

fn rejection(c: &mut Criterion) {
    let rt = runtime(2);
    let mut g = c.benchmark_group("breaker reject, 1 task");
    g.measurement_time(Duration::from_secs(3));
    bench(&mut g, &rt, 1, "bare", Bare);
    bench(&mut g, &rt, 1, "keel", Keel(keel_breaker()));
    let open = CircuitBreaker::new(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_open_duration(Duration::from_secs(3600)),
    )
    .expect("valid config");
    open.try_acquire().expect("closed").failure();
    bench(&mut g, &rt, 1, "keel rejected (open)", Keel(open));
    let forced = keel_breaker();
    forced.force_open();
    bench(&mut g, &rt, 1, "keel rejected (forced open)", Keel(forced));

    let policy = failsafe::failure_policy::consecutive_failures(
        1,
        failsafe::backoff::constant(Duration::from_secs(3600)),
    );
    let failsafe_open = failsafe::Config::new().failure_policy(policy).build();
    let _ = failsafe::CircuitBreaker::call(&failsafe_open, || Err::<(), ()>(()));
    assert!(!failsafe::CircuitBreaker::is_call_permitted(&failsafe_open));
    bench(
        &mut g,
        &rt,
        1,
        "failsafe rejected (open)",
        Failsafe(failsafe_open),
    );

    let recloser_open = recloser::Recloser::custom()
        .closed_len(1)
        .open_wait(Duration::from_secs(3600))
        .build();
    for _ in 0..2 {
        let _ = recloser_open.call(|| Err::<(), ()>(()));
    }
    bench(
        &mut g,
        &rt,
        1,
        "recloser rejected (open)",
        Recloser(Arc::new(recloser_open.into())),
    );
    g.finish();
}

criterion_group!(benches, closure_apis, tower_layers, rejection);
criterion_main!(benches);
