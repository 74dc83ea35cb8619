//! `SELECT 1` on the real PostgreSQL at 127.0.0.1:5432 from 16 and 64 tasks
//! on a 2-worker runtime, pools of 16 connections. Entries:
//!
//! - `limit`: bare sqlx `PgConnection`s, one per task, no pool: the rate
//!   the server and driver allow, which every pool is measured against;
//! - `keel`: `pool.get()` then the query; `keel service`: the same through
//!   the pool's tower service and `op::execute`; `keel + retry + breaker`:
//!   that service under keel's retry and circuit-breaker layers;
//!   `keel Database`: the batteries (`keel::PgDatabase`: telemetry, retry,
//!   breaker, pool, health checks running) with `execute`, and with
//!   `fetch_one` of the `i32`;
//! - sqlx's `PgPool` (default: it pings on acquire; and with
//!   `test_before_acquire(false)`), deadpool-postgres and bb8-postgres
//!   (tokio-postgres, one simple-protocol round trip per query).
//!
//! After criterion, `Database::fetch_one`, the pool service alone and
//! bare connections run in interleaved rounds (criterion measures entries
//! one after another, and this machine drifts by more than the goals' 5 and
//! 10 % between them), and the median ratios are printed; then pgbench
//! runs the same query (prepared, `-j 2`) at each concurrency and its rate
//! is printed.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]
#![expect(
    clippy::print_stdout,
    reason = "the pgbench line is the bench's report"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use keel_benches::{Cycle, Oneshot, runtime, throughput};
use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use keel_pool_core::op::{self, Statement};
use keel_pool_core::{DatabaseUrl, PgManager, Pool};
use keel_retry::service::RetryLayer;
use keel_retry::{Retrier, RetryPolicy, SkipOpenBreaker, SqlxClassifier};
use sqlx::postgres::{PgArguments, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::Mutex;
use tower::{Layer, Service};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const POOL_SIZE: usize = 16;
const CONCURRENCY: [usize; 2] = [16, 64];

type Select = sqlx::query::Query<'static, Postgres, PgArguments>;
type SelectOp = Statement<PgConnection, sqlx::postgres::PgQueryResult>;

fn select1() -> Select {
    sqlx::query("SELECT 1")
}

// ---- the limit: one bare connection per task ----
#[derive(Clone)]
struct Bare(Arc<Vec<Mutex<PgConnection>>>);

impl Cycle for Bare {
    async fn cycle(&self, task: usize) {
        // Each task has its own connection: the lock is never contended.
        let mut conn = self.0[task].lock().await;
        black_box(select1().execute(&mut *conn).await.expect("bare query"));
    }
}

// ---- keel ----
#[derive(Clone)]
struct Keel(Pool<PgManager>);

impl Cycle for Keel {
    async fn cycle(&self, _task: usize) {
        let mut conn = self.0.get().await.expect("keel checkout");
        black_box(select1().execute(&mut *conn).await.expect("keel query"));
    }
}

// ---- the same query fetching its row, for `Database::fetch_one`'s pairs ----
type FetchOp = Statement<PgConnection, i32>;

fn fetch_select1() -> FetchOp {
    op::fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 1"))
}

/// Bare connections fetching `SELECT 1`'s row.
#[derive(Clone)]
struct BareFetch(Bare);

impl Cycle for BareFetch {
    async fn cycle(&self, task: usize) {
        let mut conn = self.0.0[task].lock().await;
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .expect("bare fetch");
        black_box(one);
    }
}

fn execute_select1() -> SelectOp {
    op::execute(select1)
}

fn keel_stack(
    pool: &Pool<PgManager>,
) -> impl Service<
    SelectOp,
    Response = sqlx::postgres::PgQueryResult,
    Future: Send,
    Error: std::fmt::Debug + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let retrier = Retrier::builder(RetryPolicy::database())
        .classifier(SkipOpenBreaker(SqlxClassifier))
        .build()
        .expect("the database policy is valid");
    let breaker =
        CircuitBreaker::new(BreakerConfig::default()).expect("the default config is valid");
    RetryLayer::new(retrier).layer(CircuitBreakerLayer::new(breaker).layer(pool.service()))
}

// ---- the batteries ----
#[derive(Clone)]
struct Batteries(keel::PgDatabase);

impl Cycle for Batteries {
    async fn cycle(&self, _task: usize) {
        black_box(self.0.execute(select1).await.expect("database execute"));
    }
}

#[derive(Clone)]
struct BatteriesFetch(keel::PgDatabase);

impl Cycle for BatteriesFetch {
    async fn cycle(&self, _task: usize) {
        let one: i32 = self
            .0
            .fetch_one(|| sqlx::query_scalar("SELECT 1"))
            .await
            .expect("database fetch_one");
        black_box(one);
    }
}

async fn open_batteries() -> keel::PgDatabase {
    let mut config =
        keel::DatabaseConfig::new(URL.parse().expect("a valid URL")).with_name("bench");
    config.pool.max_size = POOL_SIZE;
    config.pool.min_idle = POOL_SIZE;
    config.pool.warm = true;
    keel::PgDatabase::connect(config)
        .await
        .expect("keel database")
}

// ---- sqlx's pool ----
#[derive(Clone)]
struct Sqlx(PgPool);

impl Cycle for Sqlx {
    async fn cycle(&self, _task: usize) {
        black_box(select1().execute(&self.0).await.expect("sqlx query"));
    }
}

// ---- tokio-postgres pools ----
#[derive(Clone)]
struct Deadpool(deadpool_postgres::Pool);

impl Cycle for Deadpool {
    async fn cycle(&self, _task: usize) {
        let client = self.0.get().await.expect("deadpool checkout");
        black_box(
            client
                .simple_query("SELECT 1")
                .await
                .expect("deadpool query"),
        );
    }
}

type Bb8Manager = bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>;

#[derive(Clone)]
struct Bb8(bb8::Pool<Bb8Manager>);

impl Cycle for Bb8 {
    async fn cycle(&self, _task: usize) {
        let client = self.0.get().await.expect("bb8 checkout");
        black_box(client.simple_query("SELECT 1").await.expect("bb8 query"));
    }
}

// Each subject is opened just before its entries and closed after them:
// all of them at once would need more than the server's 100 connections.

async fn open_bare(tasks: usize) -> Bare {
    let mut conns = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let conn = PgConnection::connect(URL).await.expect("bare connection");
        conns.push(Mutex::new(conn));
    }
    Bare(Arc::new(conns))
}

async fn open_keel() -> Keel {
    let url: DatabaseUrl = URL.parse().expect("a valid URL");
    let pool = Pool::builder(PgManager::from_url(&url).expect("keel manager"))
        .max_size(POOL_SIZE)
        .min_idle(POOL_SIZE)
        .warm(true)
        .build()
        .await
        .expect("keel pool");
    Keel(pool)
}

async fn open_sqlx(test_before_acquire: bool) -> Sqlx {
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE as u32)
        .min_connections(POOL_SIZE as u32)
        .test_before_acquire(test_before_acquire)
        .connect(URL)
        .await
        .expect("sqlx pool");
    Sqlx(pool)
}

fn open_deadpool() -> Deadpool {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(URL.to_owned());
    config.pool = Some(deadpool_postgres::PoolConfig::new(POOL_SIZE));
    let pool = config
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .expect("deadpool pool");
    Deadpool(pool)
}

async fn open_bb8() -> Bb8 {
    let manager = Bb8Manager::new_from_stringlike(URL, tokio_postgres::NoTls).expect("bb8 manager");
    let pool = bb8::Pool::builder()
        .max_size(POOL_SIZE as u32)
        .min_idle(Some(POOL_SIZE as u32))
        .test_on_check_out(false)
        .build(manager)
        .await
        .expect("bb8 pool");
    Bb8(pool)
}

fn pools(c: &mut Criterion) {
    let rt = runtime(2);
    for tasks in CONCURRENCY {
        let mut group = c.benchmark_group(format!("postgres SELECT 1, {tasks} tasks"));
        macro_rules! entry {
            ($name:literal, $subject:expr) => {
                group.bench_function($name, |b| {
                    b.iter_custom(|iters| throughput(&rt, &$subject, tasks, iters));
                });
            };
        }
        let bare = rt.block_on(open_bare(tasks));
        entry!("limit", bare);
        drop(bare);

        let keel = rt.block_on(open_keel());
        let service = Oneshot(keel.0.service(), execute_select1);
        let stack = Oneshot(keel_stack(&keel.0), execute_select1);
        entry!("keel", keel);
        entry!("keel service", service);
        entry!("keel + retry + breaker", stack);
        drop((keel, service, stack));

        let db = rt.block_on(open_batteries());
        let (execute, fetch) = (Batteries(db.clone()), BatteriesFetch(db.clone()));
        entry!("keel Database", execute);
        entry!("keel Database::fetch_one", fetch);
        rt.block_on(db.shutdown(Duration::from_secs(5)))
            .expect("database shutdown");
        drop((execute, fetch));

        for (name, test) in [
            ("sqlx PgPool", true),
            ("sqlx PgPool (no acquire test)", false),
        ] {
            let sqlx = rt.block_on(open_sqlx(test));
            group.bench_function(name, |b| {
                b.iter_custom(|iters| throughput(&rt, &sqlx, tasks, iters));
            });
            rt.block_on(sqlx.0.close());
        }

        let deadpool = rt.block_on(async { open_deadpool() });
        entry!("deadpool-postgres", deadpool);
        drop(deadpool);

        let bb8 = rt.block_on(open_bb8());
        entry!("bb8-postgres", bb8);
        drop(bb8);
        group.finish();
    }
}

/// pgbench's rate for the same query, prepared, 2 threads, 5 s.
fn pgbench(tasks: usize) -> Result<f64, String> {
    let script = std::env::temp_dir().join("keel-bench-select1.sql");
    std::fs::write(&script, "SELECT 1;\n").map_err(|e| e.to_string())?;
    let out = std::process::Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared"])
        .args(["-c", &tasks.to_string(), "-j", "2", "-T", "5", "-f"])
        .arg(&script)
        .arg("test")
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench's output: {text}"))
}

/// Each entry's time over `Database::fetch_one`'s for the same queries
/// (above 1: `fetch_one` is faster), one per round, sorted.
struct Paired {
    service: Vec<f64>,
    /// Empty when bare connections (one per task) and two pools would not
    /// fit in the server's 100 connections.
    bare: Vec<f64>,
}

/// `Database::fetch_one` against the pool service alone and against bare
/// connections, interleaved: `ROUNDS` rounds of the same number of
/// queries each, the order turning every round, so the machine's drift
/// falls on all alike.
fn paired(rt: &tokio::runtime::Runtime, tasks: usize) -> Paired {
    const ROUNDS: usize = 24;
    const QUERIES: u64 = 16_384;
    let keel = rt.block_on(open_keel());
    // All three fetch the row (decode it), as `fetch_one` does.
    let service = Oneshot(keel.0.service(), fetch_select1);
    let db = rt.block_on(open_batteries());
    let fetch = BatteriesFetch(db.clone());
    let bare = (tasks + 2 * POOL_SIZE <= 64).then(|| BareFetch(rt.block_on(open_bare(tasks))));
    // Warm each: connections open, statements prepared.
    let run = |entry: usize| match entry {
        0 => throughput(rt, &fetch, tasks, QUERIES),
        1 => throughput(rt, &service, tasks, QUERIES),
        _ => bare
            .as_ref()
            .map_or(Duration::ZERO, |b| throughput(rt, b, tasks, QUERIES)),
    };
    for entry in 0..3 {
        run(entry);
    }
    let mut out = Paired {
        service: Vec::new(),
        bare: Vec::new(),
    };
    for round in 0..ROUNDS {
        let mut took = [Duration::ZERO; 3];
        for step in 0..3 {
            let entry = (round + step) % 3;
            took[entry] = run(entry);
        }
        let over_fetch = |t: Duration| t.as_secs_f64() / took[0].as_secs_f64();
        out.service.push(over_fetch(took[1]));
        if bare.is_some() {
            out.bare.push(over_fetch(took[2]));
        }
    }
    rt.block_on(db.shutdown(Duration::from_secs(5)))
        .expect("database shutdown");
    out.service.sort_by(f64::total_cmp);
    out.bare.sort_by(f64::total_cmp);
    out
}

/// `median (lowest – highest)` of sorted ratios, or `-` for none.
fn spread(sorted: &[f64]) -> String {
    match (sorted.first(), sorted.last()) {
        (Some(low), Some(high)) => {
            format!("{:.2} ({low:.2} – {high:.2})", sorted[sorted.len() / 2])
        }
        _ => "-".into(),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = pools
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter
        .as_ref()
        .is_none_or(|f| "postgres paired".contains(f.as_str()))
    {
        let rt = runtime(2);
        println!(
            "\n### Database::fetch_one against the pool service and bare connections, interleaved\n"
        );
        println!(
            "Rounds of 16384 queries each, every entry fetching the row (`op::fetch_one` through the service, `query_scalar(..).fetch_one` on the bare connections), the order turning each round; the entry's time ÷ `fetch_one`'s, median (lowest – highest). Goals: ≥ 0.95 against the service, ≥ 0.9 against bare connections (`-`: they and two pools would not fit in the server's connections; criterion's table has them).\n"
        );
        println!("| tasks | pool service | bare connections |");
        println!("|---:|---:|---:|");
        for tasks in CONCURRENCY {
            let r = paired(&rt, tasks);
            println!("| {tasks} | {} | {} |", spread(&r.service), spread(&r.bare));
        }
    }
    if filter.is_none_or(|f| "postgres pgbench".contains(f.as_str())) {
        println!("\n### pgbench, SELECT 1 prepared, -j 2, 5 s\n");
        println!("| tasks | queries / s |");
        println!("|---:|---:|");
        for tasks in CONCURRENCY {
            match pgbench(tasks) {
                Ok(tps) => println!("| {tasks} | {tps:.0} |"),
                Err(e) => println!("| {tasks} | {e} |"),
            }
        }
    }
}
