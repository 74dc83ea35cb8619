//! The harness shared by keel's benchmarks: a [`Subject`] is one way of
//! making a call (bare, through keel, through an anchor library); [`bench()`]
//! times it on 1 or more tasks sharing one instance on a 2-worker runtime.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use hdrhistogram::Histogram;
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

/// One thing whose per-call cost we measure. Clones share the state under
/// test (a breaker, a budget), as clones of a tower service do.
pub trait Subject: Clone + Send + Sync + 'static {
    /// One call.
    fn call(&mut self) -> impl Future<Output = ()> + Send;
}

/// An immediately-ready successful operation: what every subject wraps.
#[inline(always)]
pub fn ready_ok<E>() -> std::future::Ready<Result<u64, E>> {
    std::future::ready(Ok(black_box(1)))
}

/// The operation with no wrapper at all.
#[derive(Clone, Debug)]
pub struct Bare;

impl Subject for Bare {
    async fn call(&mut self) {
        let _ = black_box(ready_ok::<std::io::Error>().await);
    }
}

/// Any tower service of `()`, called the tower way: `ready` then `call`.
#[derive(Clone, Debug)]
pub struct Tower<S>(pub S);

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

/// The bare tower service every tower subject wraps.
pub fn bare_service<E: Send + 'static>()
-> impl Service<(), Response = u64, Error = E, Future: Send> + Clone + Send + Sync + 'static {
    tower::service_fn(|()| ready_ok::<E>())
}

/// A multi-thread tokio runtime with `workers` worker threads.
///
/// # Panics
/// If the runtime cannot be built.
pub fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `iters` calls on each of `tasks` tasks at once; the slower task's time.
///
/// # Panics
/// If a bench task panics.
pub fn timed<S: Subject>(rt: &Runtime, subject: &S, tasks: usize, iters: u64) -> Duration {
    let barrier = Arc::new(std::sync::Barrier::new(tasks));
    let (done, results) = mpsc::channel();
    for thread in crew(tasks) {
        let mut subject = subject.clone();
        let barrier = barrier.clone();
        let handle = rt.handle().clone();
        let done = done.clone();
        let run: Job = Box::new(move || {
            barrier.wait();
            let elapsed = handle.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    subject.call().await;
                }
                start.elapsed()
            });
            // The receiver waits for every task, so it is still there.
            let _ = done.send(elapsed);
        });
        thread.send(run).expect("bench thread");
    }
    drop(done);
    let elapsed: Vec<Duration> = results.iter().collect();
    assert_eq!(elapsed.len(), tasks, "a bench task panicked");
    elapsed.into_iter().max().unwrap_or_default()
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads bench tasks run on: each task on a thread of its own (in
/// the runtime's context), released together by a blocking barrier, so
/// with 2 tasks they truly run in parallel. The threads live as long as
/// the process, as a server's workers do: per-thread state (keel's
/// counters give each thread a slot on first use) stays put. Spawned as
/// runtime tasks instead, two could deadlock: a worker that took both from
/// the queue blocked in the barrier with the other behind it.
fn crew(tasks: usize) -> Vec<mpsc::Sender<Job>> {
    static CREW: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());
    let mut crew = CREW.lock().unwrap_or_else(PoisonError::into_inner);
    while crew.len() < tasks {
        let (thread, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("bench-task-{}", crew.len()))
            .spawn(move || jobs.into_iter().for_each(|job| job()))
            .expect("bench thread");
        crew.push(thread);
    }
    crew[..tasks].to_vec()
}

/// Adds `subject` to `group` as `name`, run on `tasks` tasks at once.
pub fn bench<S: Subject>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    tasks: usize,
    name: &str,
    subject: S,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| timed(rt, &subject, tasks, iters));
    });
}

/// A group title: "`what`, 1 task" or "`what`, N tasks".
pub fn title(what: &str, tasks: usize) -> String {
    format!("{what}, {tasks} task{}", if tasks == 1 { "" } else { "s" })
}

/// One unit of work of a throughput benchmark (a checkout and return, a
/// query), run by many tasks at once. Clones share the subject under test;
/// `task` numbers the running task, for subjects that give each task its
/// own resource (one connection per task).
pub trait Cycle: Clone + Send + Sync + 'static {
    /// One cycle on task number `task`.
    fn cycle(&self, task: usize) -> impl Future<Output = ()> + Send;
}

/// A tower service called once per cycle with a fresh operation from
/// `make`, through a clone made for the call (as axum handlers do).
#[derive(Clone)]
pub struct Oneshot<S, F>(pub S, pub F);

impl<S, F> std::fmt::Debug for Oneshot<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oneshot").finish_non_exhaustive()
    }
}

impl<S, F, Op> Cycle for Oneshot<S, F>
where
    S: Service<Op> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: std::fmt::Debug + Send + 'static,
    F: Fn() -> Op + Clone + Send + Sync + 'static,
    Op: Send + 'static,
{
    async fn cycle(&self, _task: usize) {
        let op = (self.1)();
        black_box(self.0.clone().oneshot(op).await.expect("service call"));
    }
}

/// `iters` cycles spread over `tasks` tasks started together; the wall
/// time for all of them.
///
/// # Panics
/// If a bench task panics.
pub fn throughput<S: Cycle>(rt: &Runtime, subject: &S, tasks: usize, iters: u64) -> Duration {
    let per_task = iters.div_ceil(tasks as u64);
    if tasks == 1 {
        // The clock starts once the task runs on its worker. (With more
        // tasks a blocking barrier could deadlock, see `crew`.)
        let start = Arc::new(std::sync::Barrier::new(tasks + 1));
        return rt.block_on(async {
            let handles: Vec<_> = (0..tasks)
                .map(|task| {
                    let (s, start) = (subject.clone(), start.clone());
                    tokio::spawn(async move {
                        start.wait();
                        for _ in 0..per_task {
                            s.cycle(task).await;
                        }
                    })
                })
                .collect();
            start.wait();
            let began = Instant::now();
            for h in handles {
                h.await.expect("bench task");
            }
            began.elapsed()
        });
    }
    rt.block_on(async {
        let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (s, start) = (subject.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    for _ in 0..per_task {
                        s.cycle(task).await;
                    }
                })
            })
            .collect();
        start.wait().await;
        let began = Instant::now();
        for h in handles {
            h.await.expect("bench task");
        }
        began.elapsed()
    })
}

/// 1 ns to 60 s at 3 significant digits. (An unbounded `Histogram::new`
/// starts at 2 µs and `saturating_record` clamps instead of growing it.)
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// The latency of each of `ops` cycles spread over `tasks` tasks.
///
/// # Panics
/// If a bench task panics.
pub fn latency<S: Cycle>(rt: &Runtime, subject: &S, tasks: usize, ops: u64) -> Histogram<u64> {
    rt.block_on(async {
        let per_task = ops.div_ceil(tasks as u64);
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let s = subject.clone();
                tokio::spawn(async move {
                    let mut h = latency_histogram();
                    for _ in 0..per_task {
                        let asked = Instant::now();
                        s.cycle(task).await;
                        let nanos = u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        h.saturating_record(nanos.max(1));
                    }
                    h
                })
            })
            .collect();
        let mut all = latency_histogram();
        for handle in handles {
            all.add(handle.await.expect("bench task"))
                .expect("same histogram shape");
        }
        all
    })
}
