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

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};

/// One thing whose per-call cost we measure.
trait Subject: Clone + Send + Sync + 'static {
    fn call(&mut self) -> impl Future<Output = ()> + Send;
}

#[inline(always)]
fn ready_ok() -> impl Future<Output = Result<u64, std::io::Error>> + Send {
    std::future::ready(Ok(black_box(1)))
}

#[derive(Clone)]
struct Bare;
impl Subject for Bare {
    async fn call(&mut self) {
        let _ = black_box(ready_ok().await);
    }
}

#[derive(Clone)]
struct Keel(CircuitBreaker);
impl Subject for Keel {
    async fn call(&mut self) {
        let _ = black_box(self.0.call(ready_ok).await);
    }
}

#[derive(Clone)]
struct Failsafe<B>(B);
impl<B> Subject for Failsafe<B>
where
    B: failsafe::futures::CircuitBreaker + Clone + Send + Sync + 'static,
{
    async fn call(&mut self) {
        let _ = black_box(self.0.call(ready_ok()).await);
    }
}

#[derive(Clone)]
struct Recloser(Arc<recloser::AsyncRecloser>);
impl Subject for Recloser {
    async fn call(&mut self) {
        let _ = black_box(self.0.call(ready_ok()).await);
    }
}

/// Any tower service of `()`, called the tower way: `ready` then `call`.
#[derive(Clone)]
struct Tower<S>(S);
impl<S> Subject for Tower<S>
where
    S: Service<(), Response = u64> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Send,
{
    async fn call(&mut self) {
        if let Ok(svc) = self.0.ready().await {
            let _ = black_box(svc.call(()).await);
        }
    }
}

fn keel_breaker() -> CircuitBreaker {
    CircuitBreaker::new(BreakerConfig::default()).expect("default config is valid")
}

fn bare_service()
-> impl Service<(), Response = u64, Error = std::io::Error, Future: Send> + Clone + Send + Sync + 'static
{
    service_fn(|()| ready_ok())
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `iters` calls on each of `tasks` tasks at once; the slower task's time.
fn timed<S: Subject>(rt: &Runtime, subject: &S, tasks: usize, iters: u64) -> Duration {
    rt.block_on(async {
        // A blocking barrier: each task holds its worker thread until all
        // have started, so with 2 tasks on 2 workers they truly run in
        // parallel (an async barrier lets both run on one worker).
        let barrier = Arc::new(std::sync::Barrier::new(tasks));
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let mut subject = subject.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        subject.call().await;
                    }
                    start.elapsed()
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        for h in handles {
            slowest = slowest.max(h.await.expect("bench task"));
        }
        slowest
    })
}

fn bench<S: Subject>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    tasks: usize,
    name: &str,
    subject: S,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| timed(rt, &subject, tasks, iters));
    });
}

fn closure_apis(c: &mut Criterion) {
    let rt = runtime(2);
    for tasks in [1, 2] {
        let title = format!(
            "breaker call, {tasks} task{}",
            if tasks == 1 { "" } else { "s" }
        );
        let mut g = c.benchmark_group(title);
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
        let title = format!(
            "breaker tower, {tasks} task{}",
            if tasks == 1 { "" } else { "s" }
        );
        let mut g = c.benchmark_group(title);
        g.measurement_time(Duration::from_secs(3));
        bench(&mut g, &rt, tasks, "bare", Tower(bare_service()));
        let keel = CircuitBreakerLayer::new(keel_breaker()).layer(bare_service());
        bench(&mut g, &rt, tasks, "keel", Tower(keel));
        let resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
            .build()
            .expect("default config is valid")
            .layer(bare_service());
        bench(&mut g, &rt, tasks, "tower-resilience", Tower(resilience));
        g.finish();
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
