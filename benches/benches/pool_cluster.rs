//! `SELECT 1` on the real PostgreSQL at 127.0.0.1:5432 from 16 tasks on a
//! 2-worker runtime: keel's single-endpoint pool (16 connections) against
//! a cluster of two endpoints (8 connections each) whose reads are
//! balanced round-robin over both. Both endpoints are the same server
//! under two names (`localhost` and `127.0.0.1`), so the round trip is the
//! same and the difference is what the cluster costs: choosing an
//! endpoint, its ejection breaker, the checkout and latency accounting.
//!
//! Entries: `keel` (`pool.get()` then the query) against `keel cluster`
//! (`cluster.get(Access::Read)`), and `keel service` against `keel
//! cluster service` (the tower services, the operation marked
//! `op::read_only`). The goal: the cluster at 0.95 of the pool or better.
//!
//! A second group takes the server away: the same checkouts of a no-op
//! connection, so the cluster's own cost is all there is to see.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keel_benches::{Cycle, Oneshot, runtime, throughput};
use keel_pool_core::cluster::{Access, Cluster, Role};
use keel_pool_core::op::{self, Statement};
use keel_pool_core::{DatabaseUrl, PgManager, Pool, PoolConfig};
use sqlx::PgConnection;
use sqlx::postgres::{PgArguments, PgQueryResult};

const TASKS: usize = 16;
const POOL_SIZE: usize = 16;

type Select = sqlx::query::Query<'static, sqlx::Postgres, PgArguments>;
type ReadOp = op::ReadOnly<Statement<PgConnection, PgQueryResult>>;

fn select1() -> Select {
    sqlx::query("SELECT 1")
}

fn manager(host: &str) -> PgManager {
    let url: DatabaseUrl = format!("postgres://postgres@{host}:5432/test")
        .parse()
        .expect("a valid URL");
    PgManager::from_url(&url).expect("a manager")
}

fn pool_config(size: usize) -> PoolConfig {
    let mut config = PoolConfig::default();
    config.max_size = size;
    config.min_idle = size;
    config
}

#[derive(Clone)]
struct Single(Pool<PgManager>);

impl Cycle for Single {
    async fn cycle(&self, _task: usize) {
        let mut conn = self.0.get().await.expect("pool checkout");
        black_box(select1().execute(&mut *conn).await.expect("pool query"));
    }
}

#[derive(Clone)]
struct Two(Cluster<PgManager>);

impl Cycle for Two {
    async fn cycle(&self, _task: usize) {
        let mut conn = self.0.get(Access::Read).await.expect("cluster checkout");
        black_box(select1().execute(&mut *conn).await.expect("cluster query"));
    }
}

fn read_select1() -> ReadOp {
    op::read_only(op::execute(select1))
}

async fn open_single() -> Pool<PgManager> {
    Pool::builder(manager("127.0.0.1"))
        .config(pool_config(POOL_SIZE))
        .warm(true)
        .build()
        .await
        .expect("keel pool")
}

async fn open_two() -> Cluster<PgManager> {
    let mut config = pool_config(POOL_SIZE / 2);
    config.warm = true;
    let cluster = Cluster::builder()
        .endpoint(manager("127.0.0.1"), Role::Primary)
        .endpoint(manager("localhost"), Role::Replica)
        .pool_config(config)
        .build()
        .await
        .expect("keel cluster");
    // Fill both pools before measuring, as `warm` does for the single one.
    let held: Vec<_> =
        futures_util::future::join_all((0..POOL_SIZE).map(|_| cluster.get(Access::Read))).await;
    drop(held);
    cluster
}

#[derive(Debug)]
struct Noop;

impl keel_pool_core::Manager for Noop {
    type Connection = u64;
    type Error = std::convert::Infallible;
    async fn connect(&self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    async fn validate(&self, _: &mut u64) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[derive(Clone)]
struct NoopSingle(Pool<Noop>);

impl Cycle for NoopSingle {
    async fn cycle(&self, _task: usize) {
        let conn = self.0.get().await.expect("pool checkout");
        black_box(*conn);
    }
}

#[derive(Clone)]
struct NoopTwo(Cluster<Noop>);

impl Cycle for NoopTwo {
    async fn cycle(&self, _task: usize) {
        let conn = self.0.get(Access::Read).await.expect("cluster checkout");
        black_box(*conn);
    }
}

fn noop(c: &mut Criterion) {
    let rt = runtime(2);
    let mut group = c.benchmark_group(format!(
        "rate pool checkout, no-op connection, one endpoint or two, {TASKS} tasks"
    ));
    let single = rt.block_on(async {
        Pool::builder(Noop)
            .config(pool_config(POOL_SIZE))
            .build()
            .await
            .expect("keel pool")
    });
    let two = rt.block_on(async {
        Cluster::builder()
            .endpoint(Noop, Role::Primary)
            .endpoint(Noop, Role::Replica)
            .pool_config(pool_config(POOL_SIZE / 2))
            .build()
            .await
            .expect("keel cluster")
    });
    group.bench_function("keel", |b| {
        b.iter_custom(|iters| throughput(&rt, &NoopSingle(single.clone()), TASKS, iters));
    });
    group.bench_function("keel cluster", |b| {
        b.iter_custom(|iters| throughput(&rt, &NoopTwo(two.clone()), TASKS, iters));
    });
    group.finish();
}

fn cluster(c: &mut Criterion) {
    let rt = runtime(2);
    let mut group = c.benchmark_group(format!(
        "rate postgres SELECT 1, one endpoint or two, {TASKS} tasks"
    ));
    let single = rt.block_on(open_single());
    let two = rt.block_on(open_two());
    let entries: [(&str, &dyn Fn(u64) -> Duration); 4] = [
        ("keel", &|iters| {
            throughput(&rt, &Single(single.clone()), TASKS, iters)
        }),
        ("keel cluster", &|iters| {
            throughput(&rt, &Two(two.clone()), TASKS, iters)
        }),
        ("keel service", &|iters| {
            throughput(&rt, &Oneshot(single.service(), read_select1), TASKS, iters)
        }),
        ("keel cluster service", &|iters| {
            throughput(&rt, &Oneshot(two.service(), read_select1), TASKS, iters)
        }),
    ];
    for (name, run) in entries {
        group.bench_function(name, |b| b.iter_custom(run));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = cluster, noop
}
criterion_main!(benches);
