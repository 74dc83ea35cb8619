//! Connection pool checkout + return with a no-op connection: keel against
//! deadpool, bb8, mobc, and the limit of a fair design (a tokio `Semaphore`
//! in front of a crossbeam `ArrayQueue`), pool of 16, 2 worker threads, at
//! 1 / 16 / 64 / 256 concurrent tasks. Criterion times throughput (ns per
//! checkout, all tasks together); a second pass records each checkout's
//! latency and prints p50 / p99 per entry.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]
#![expect(
    clippy::print_stdout,
    reason = "the latency table is the bench's report"
)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group};
use crossbeam_queue::ArrayQueue;
use keel_benches::{Cycle, latency, runtime, throughput};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

const POOL_SIZE: usize = 16;
const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];

/// A foreign pool type, so the benches can implement [`Cycle`] for it.
#[derive(Clone)]
struct Local<P>(P);

// ---- keel ----
#[derive(Debug)]
struct Noop;

impl keel_pool_core::Manager for Noop {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn validate(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
}

impl Cycle for Local<keel_pool_core::Pool<Noop>> {
    async fn cycle(&self, _task: usize) {
        let conn = self.0.get().await.expect("keel checkout");
        black_box(*conn);
    }
}

// ---- deadpool ----
struct DeadpoolNoop;

impl deadpool::managed::Manager for DeadpoolNoop {
    type Type = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl Cycle for Local<deadpool::managed::Pool<DeadpoolNoop>> {
    async fn cycle(&self, _task: usize) {
        let conn = self.0.get().await.expect("deadpool checkout");
        black_box(*conn);
    }
}

// ---- bb8 ----
struct Bb8Noop;

impl bb8::ManageConnection for Bb8Noop {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

impl Cycle for Local<bb8::Pool<Bb8Noop>> {
    async fn cycle(&self, _task: usize) {
        let conn = self.0.get().await.expect("bb8 checkout");
        black_box(*conn);
    }
}

// ---- mobc ----
struct MobcNoop;

#[mobc::async_trait]
impl mobc::Manager for MobcNoop {
    type Connection = u64;
    type Error = std::io::Error;
    async fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(0)
    }
    async fn check(&self, conn: u64) -> Result<u64, std::io::Error> {
        Ok(conn)
    }
}

impl Cycle for Local<mobc::Pool<MobcNoop>> {
    async fn cycle(&self, _task: usize) {
        let conn = self.0.get().await.expect("mobc checkout");
        black_box(*conn);
    }
}

// ---- the limit of a fair design ----
#[derive(Clone)]
struct FairLimit(Arc<(Semaphore, ArrayQueue<u64>)>);

impl FairLimit {
    fn new() -> Self {
        let queue = ArrayQueue::new(POOL_SIZE);
        for i in 0..POOL_SIZE {
            let _ = queue.push(i as u64);
        }
        Self(Arc::new((Semaphore::new(POOL_SIZE), queue)))
    }
}

impl Cycle for FairLimit {
    async fn cycle(&self, _task: usize) {
        let (semaphore, queue) = &*self.0;
        let permit = semaphore.acquire().await.expect("semaphore open");
        let conn = queue.pop().expect("a permit guarantees a connection");
        black_box(conn);
        let _ = queue.push(conn);
        drop(permit);
    }
}

/// Builds every subject, with all `POOL_SIZE` connections open.
struct Subjects {
    keel: Local<keel_pool_core::Pool<Noop>>,
    deadpool: Local<deadpool::managed::Pool<DeadpoolNoop>>,
    bb8: Local<bb8::Pool<Bb8Noop>>,
    mobc: Local<mobc::Pool<MobcNoop>>,
    limit: FairLimit,
}

impl Subjects {
    fn new(rt: &Runtime) -> Self {
        rt.block_on(async {
            let keel = keel_pool_core::Pool::builder(Noop)
                .max_size(POOL_SIZE)
                .build()
                .await
                .expect("keel pool");
            let deadpool = deadpool::managed::Pool::builder(DeadpoolNoop)
                .max_size(POOL_SIZE)
                .build()
                .expect("deadpool pool");
            let bb8 = bb8::Pool::builder()
                .max_size(POOL_SIZE as u32)
                .test_on_check_out(false)
                .build(Bb8Noop)
                .await
                .expect("bb8 pool");
            let mobc = mobc::Pool::builder()
                .max_open(POOL_SIZE as u64)
                .max_idle(POOL_SIZE as u64)
                .test_on_check_out(false)
                .build(MobcNoop);
            let subjects = Self {
                keel: Local(keel),
                deadpool: Local(deadpool),
                bb8: Local(bb8),
                mobc: Local(mobc),
                limit: FairLimit::new(),
            };
            // Open every connection before anything is timed.
            warm(&subjects.keel).await;
            warm(&subjects.deadpool).await;
            warm(&subjects.bb8).await;
            warm(&subjects.mobc).await;
            subjects
        })
    }
}

async fn warm<S: Cycle>(subject: &S) {
    let tasks: Vec<_> = (0..POOL_SIZE)
        .map(|_| {
            let s = subject.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    s.cycle(0).await;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("warm-up task");
    }
}

fn pools(c: &mut Criterion) {
    let rt = runtime(2);
    let subjects = Subjects::new(&rt);
    for tasks in CONCURRENCY {
        let mut group = c.benchmark_group(format!("pool checkout, {tasks} tasks"));
        macro_rules! entry {
            ($name:literal, $subject:expr) => {
                group.bench_function($name, |b| {
                    b.iter_custom(|iters| throughput(&rt, &$subject, tasks, iters));
                });
            };
        }
        entry!("limit", subjects.limit);
        entry!("keel", subjects.keel);
        entry!("deadpool", subjects.deadpool);
        entry!("bb8", subjects.bb8);
        entry!("mobc", subjects.mobc);
        group.finish();
    }
}

/// Prints p50 / p99 acquire latency per entry and concurrency.
fn latency_table() {
    let rt = runtime(2);
    let subjects = Subjects::new(&rt);
    let ops = 400_000;
    println!("\n### pool checkout latency (µs, cycle = acquire + return; {ops} cycles per cell)\n");
    println!("| tasks | entry | p50 | p99 | p99.9 | max |");
    println!("|---:|---|---:|---:|---:|---:|");
    for tasks in CONCURRENCY {
        let rows = [
            ("limit", latency(&rt, &subjects.limit, tasks, ops)),
            ("keel", latency(&rt, &subjects.keel, tasks, ops)),
            ("deadpool", latency(&rt, &subjects.deadpool, tasks, ops)),
            ("bb8", latency(&rt, &subjects.bb8, tasks, ops)),
            ("mobc", latency(&rt, &subjects.mobc, tasks, ops)),
        ];
        for (name, h) in rows {
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "| {tasks} | {name} | {:.2} | {:.2} | {:.2} | {:.1} |",
                us(0.5),
                us(0.99),
                us(0.999),
                h.max() as f64 / 1000.0
            );
        }
    }
}

criterion_group!(benches, pools);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Criterion's own filter (a bare argument) also decides the latency pass.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_none_or(|f| "pool checkout latency".contains(f.as_str())) {
        latency_table();
    }
}
