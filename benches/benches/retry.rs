//! Overhead per call of a retry wrapper on the success path (no retry
//! happens), next to the retry libraries users would pick instead, measured
//! in the same run. Each subject is built once, outside the timed loop.
//!
//! Groups:
//! - `retry call, N task(s)`: the closure APIs (`bare` = no wrapper): keel's
//!   `Retrier` without and with a retry budget, backon, backoff.
//! - `retry tower, N task(s)`: tower layers (`bare` = the service alone):
//!   keel's `RetryLayer` without and with a budget, tower's own retry with a
//!   no-op policy, tower-resilience's retry.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::hint::black_box;
use std::time::Duration;

use backon::Retryable;
use criterion::{Criterion, criterion_group, criterion_main};
use keel_benches::{Bare, Subject, Tower, bare_service, bench, ready_ok, runtime, title};
use keel_retry::service::RetryLayer;
use keel_retry::{BudgetConfig, Retrier, RetryBudget, RetryPolicy};
use tower::Layer;

/// The error type of the benchmarked operation (some anchors want `Clone`).
#[derive(Clone, Debug)]
struct BenchError;

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bench error")
    }
}
impl std::error::Error for BenchError {}

fn retrier() -> Retrier {
    Retrier::new(RetryPolicy::default()).expect("default policy is valid")
}

fn retrier_with_budget() -> Retrier {
    Retrier::builder(RetryPolicy::default())
        .budget(budget())
        .build()
        .expect("default policy is valid")
}

fn budget() -> RetryBudget {
    RetryBudget::new(BudgetConfig::default()).expect("default budget is valid")
}

#[derive(Clone)]
struct Keel(Retrier);
impl Subject for Keel {
    async fn call(&mut self) {
        let _ = black_box(self.0.run(ready_ok::<BenchError>).await);
    }
}

#[derive(Clone)]
struct Backon;
impl Subject for Backon {
    async fn call(&mut self) {
        let result = (|| ready_ok::<BenchError>())
            .retry(backon::ExponentialBuilder::default())
            .await;
        let _ = black_box(result);
    }
}

#[derive(Clone)]
struct Backoff;
impl Subject for Backoff {
    async fn call(&mut self) {
        let result = backoff::future::retry(backoff::ExponentialBackoff::default(), || async {
            ready_ok::<backoff::Error<BenchError>>().await
        })
        .await;
        let _ = black_box(result);
    }
}

/// tower's retry policy that never retries: the cost of the layer alone.
#[derive(Clone)]
struct NoRetry;
impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for NoRetry {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn closure_apis(c: &mut Criterion) {
    let rt = runtime(2);
    for tasks in [1, 2] {
        let mut g = c.benchmark_group(title("retry call", tasks));
        g.measurement_time(Duration::from_secs(3));
        bench(&mut g, &rt, tasks, "bare", Bare);
        bench(&mut g, &rt, tasks, "keel", Keel(retrier()));
        bench(
            &mut g,
            &rt,
            tasks,
            "keel + budget",
            Keel(retrier_with_budget()),
        );
        bench(&mut g, &rt, tasks, "backon", Backon);
        bench(&mut g, &rt, tasks, "backoff", Backoff);
        g.finish();
    }
}

fn tower_layers(c: &mut Criterion) {
    let rt = runtime(2);
    for tasks in [1, 2] {
        let mut g = c.benchmark_group(title("retry tower", tasks));
        g.measurement_time(Duration::from_secs(3));
        bench(
            &mut g,
            &rt,
            tasks,
            "bare",
            Tower(bare_service::<BenchError>()),
        );
        let keel = RetryLayer::new(retrier()).layer(bare_service::<BenchError>());
        bench(&mut g, &rt, tasks, "keel", Tower(keel));
        let keel_budget =
            RetryLayer::new(retrier_with_budget()).layer(bare_service::<BenchError>());
        bench(&mut g, &rt, tasks, "keel + budget", Tower(keel_budget));
        let tower_retry =
            tower::retry::RetryLayer::new(NoRetry).layer(bare_service::<BenchError>());
        bench(
            &mut g,
            &rt,
            tasks,
            "tower (no-op policy)",
            Tower(tower_retry),
        );
        let resilience = tower_resilience_retry::RetryLayer::<(), u64, BenchError>::builder()
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(100))
            .build()
            .layer(bare_service::<BenchError>());
        bench(&mut g, &rt, tasks, "tower-resilience", Tower(resilience));
        g.finish();
    }
}

criterion_group!(benches, closure_apis, tower_layers);
criterion_main!(benches);
