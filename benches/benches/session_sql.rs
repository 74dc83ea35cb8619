//! keel's SQL session stores on the real servers (PostgreSQL at
//! 127.0.0.1:5432, MariaDB at 127.0.0.1:3306): 100k sessions of about
//! 2 KB, 16 tasks on a 2-worker runtime, a pool of 16 connections; get,
//! update (read, new data, compare-and-swap: what a handler does) and
//! create, each on a random session.
//!
//! - `keel`: `PgStore` / `MySqlStore` (the pool, the store's statements,
//!   decoding the row into a `Session`, events);
//! - `floor: bare statements`: one sqlx connection per task, no pool, the
//!   statements keel's store sends (the same update: sliding the expiry
//!   moves an indexed column, so no PostgreSQL update is HOT) on the same
//!   table, rows not decoded: what the server and driver allow.
//!
//! tower-sessions-sqlx-store 0.15 is built on sqlx 0.8 and
//! tower-sessions-core 0.14: it does not build beside keel's sqlx 0.9
//! without a second sqlx in the tree, so it is not measured here.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keel_benches::{Cycle, runtime, throughput};
use keel_pool_core::sqlx::{self, AssertSqlSafe, Connection as _, MySqlConnection, PgConnection};
use keel_pool_core::{MySqlManager, PgManager, Pool};
use keel_session_store::{
    Data, MySqlStore, NewSession, PgStore, SessionId, SessionStore, SqlConfig, StoreConfig,
};
use tokio::sync::Mutex;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const SESSIONS: i64 = 100_000;
const TASKS: usize = 16;
const SCHEMA: &str = "keel_bench_sessions";

/// About 2 KB of JSON: 16 fields of 120 characters.
fn payload() -> Data {
    let mut data = serde_json::Map::new();
    for i in 0..16 {
        data.insert(format!("field{i:02}"), serde_json::json!("x".repeat(120)));
    }
    Data::from(data)
}

/// The tables, fresh, filled with [`SESSIONS`] sessions by one statement;
/// their ids.
async fn fill(conn: &mut PgConnection, data: &Data) -> Vec<SessionId> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"
    )))
    .execute(&mut *conn)
    .await
    .expect("drop the old bench schema");
    let sql = SqlConfig::default().with_schema(SCHEMA);
    let manager = PgManager::from_url(&URL.parse().expect("url")).expect("manager");
    let pool = Pool::builder(manager).build().await.expect("pool");
    PgStore::migrate(&pool, &sql).await.expect("migrate");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.keel_sessions \
         (id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, expires_at, version, data) \
         SELECT decode(md5(i::text), 'hex'), 'client-' || (i % 1000), 'http', 0, 0, 0, \
                9000000000000, 9000000000000, 1, $1::jsonb \
         FROM generate_series(1, $2) AS i"
    )))
    .bind(data.as_json())
    .bind(SESSIONS)
    .execute(&mut *conn)
    .await
    .expect("fill");
    sqlx::query("VACUUM ANALYZE")
        .execute(&mut *conn)
        .await
        .expect("vacuum");
    let ids: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM {SCHEMA}.keel_sessions"
    )))
    .fetch_all(&mut *conn)
    .await
    .expect("ids");
    ids.into_iter()
        .map(|id| SessionId::from_bytes(id.try_into().expect("16 bytes")))
        .collect()
}

/// The same on MariaDB / MySQL: a fresh database of tables, filled by one
/// statement.
async fn fill_mysql(conn: &mut MySqlConnection, data: &Data) -> Vec<SessionId> {
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {SCHEMA}")))
        .execute(&mut *conn)
        .await
        .expect("drop the old bench database");
    let sql = SqlConfig::default().with_schema(SCHEMA);
    let manager = MySqlManager::from_url(&MYSQL_URL.parse().expect("url")).expect("manager");
    let pool = Pool::builder(manager).build().await.expect("pool");
    MySqlStore::migrate(&pool, &sql).await.expect("migrate");
    // The recursive row generator needs more than the default 1000 steps
    // (MariaDB's name for the limit, then MySQL's; each ignores the other).
    for limit in ["max_recursive_iterations", "cte_max_recursion_depth"] {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("SET SESSION {limit} = {SESSIONS}")))
            .execute(&mut *conn)
            .await;
    }
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {SCHEMA}.keel_sessions \
         (id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, expires_at, version, data) \
         WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         SELECT UNHEX(MD5(i)), CONCAT('client-', i % 1000), 'http', 0, 0, 0, \
                9000000000000, 9000000000000, 1, ? FROM n"
    )))
    .bind(SESSIONS)
    .bind(data.as_json())
    .execute(&mut *conn)
    .await
    .expect("fill");
    let ids: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM {SCHEMA}.keel_sessions"
    )))
    .fetch_all(&mut *conn)
    .await
    .expect("ids");
    ids.into_iter()
        .map(|id| SessionId::from_bytes(id.try_into().expect("16 bytes")))
        .collect()
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Update,
    Create,
}

/// The sessions, the data to write and the operation.
struct Shared {
    ids: Vec<SessionId>,
    data: Data,
    op: Op,
}

impl Shared {
    fn random(&self) -> SessionId {
        self.ids[fastrand::usize(..self.ids.len())]
    }
}

#[derive(Clone)]
struct Keel<S>(S, Arc<Shared>);

impl<S: SessionStore + Clone> Cycle for Keel<S> {
    async fn cycle(&self, _task: usize) {
        let (store, s) = (&self.0, &*self.1);
        match s.op {
            Op::Get => {
                store.get(&s.random()).await.expect("get").expect("live");
            }
            Op::Update => {
                let id = s.random();
                let current = store.get(&id).await.expect("get").expect("live");
                // Another task may have written it since: a conflict is a
                // call like any other.
                let _ = store.update(&id, current.version, s.data.clone()).await;
            }
            Op::Create => {
                store
                    .create(NewSession::new("bench", "http").with_data(s.data.clone()))
                    .await
                    .expect("create");
            }
        }
    }
}

/// The row of session `key`, as keel's store reads it (not decoded).
async fn read_row(conn: &mut PgConnection, key: &[u8]) -> sqlx::postgres::PgRow {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, version, data::text \
         FROM {SCHEMA}.keel_sessions WHERE id = $1 AND expires_at > $2"
    )))
    .bind(key)
    .bind(1_i64)
    .fetch_optional(conn)
    .await
    .expect("get")
    .expect("live")
}

/// One connection per task and the statements keel's store sends.
#[derive(Clone)]
struct Floor(Arc<Vec<Mutex<PgConnection>>>, Arc<Shared>);

impl Cycle for Floor {
    async fn cycle(&self, task: usize) {
        let mut conn = self.0[task].lock().await;
        let s = &*self.1;
        let id = s.random();
        let key = id.as_bytes().as_slice();
        match s.op {
            Op::Get => {
                read_row(&mut conn, key).await;
            }
            Op::Update => {
                // The whole row, as a handler reads the session it changes.
                let row = read_row(&mut conn, key).await;
                let version: i64 = sqlx::Row::get(&row, 7);
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {SCHEMA}.keel_sessions SET data = $3::jsonb, version = version + 1, \
                     updated_at = $4, last_activity = $4, ttl_ms = COALESCE($5, ttl_ms), \
                     expires_at = $4 + COALESCE($5, ttl_ms) \
                     WHERE id = $1 AND version = $2 AND expires_at > $4 \
                     RETURNING client_id, transport, created_at, ttl_ms, version"
                )))
                .bind(key)
                .bind(version)
                .bind(s.data.as_json())
                .bind(2_i64)
                .bind(None::<i64>)
                .fetch_optional(&mut *conn)
                .await
                .expect("update");
            }
            Op::Create => {
                let fresh = SessionId::random().expect("id");
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {SCHEMA}.keel_sessions \
                     (id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, expires_at, version, data) \
                     VALUES ($1, 'bench', 'http', 1, 1, 1, 60000, 60001, 1, $2::jsonb)"
                )))
                .bind(fresh.as_bytes().as_slice())
                .bind(s.data.as_json())
                .execute(&mut *conn)
                .await
                .expect("create");
            }
        }
    }
}

/// One MySQL connection per task and the statements keel's store sends.
#[derive(Clone)]
struct MySqlFloor(Arc<Vec<Mutex<MySqlConnection>>>, Arc<Shared>);

impl Cycle for MySqlFloor {
    async fn cycle(&self, task: usize) {
        let mut conn = self.0[task].lock().await;
        let s = &*self.1;
        let id = s.random();
        let key = id.as_bytes().as_slice();
        let read = format!(
            "SELECT id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, version, CAST(data AS CHAR) \
             FROM {SCHEMA}.keel_sessions WHERE id = ? AND expires_at > ?"
        );
        match s.op {
            Op::Get => {
                sqlx::query(AssertSqlSafe(read))
                    .bind(key)
                    .bind(1_i64)
                    .fetch_one(&mut *conn)
                    .await
                    .expect("get");
            }
            Op::Update => {
                let row = sqlx::query(AssertSqlSafe(read))
                    .bind(key)
                    .bind(1_i64)
                    .fetch_one(&mut *conn)
                    .await
                    .expect("read");
                let version: i64 = sqlx::Row::get(&row, 7);
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {SCHEMA}.keel_sessions SET data = ?, version = version + 1, updated_at = ?, \
                     last_activity = ?, ttl_ms = COALESCE(?, ttl_ms), expires_at = ? + COALESCE(?, ttl_ms) \
                     WHERE id = ? AND version = ? AND expires_at > ?"
                )))
                .bind(s.data.as_json())
                .bind(2_i64)
                .bind(2_i64)
                .bind(None::<i64>)
                .bind(2_i64)
                .bind(None::<i64>)
                .bind(key)
                .bind(version)
                .bind(2_i64)
                .execute(&mut *conn)
                .await
                .expect("update");
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT client_id, transport, created_at, ttl_ms FROM {SCHEMA}.keel_sessions WHERE id = ?"
                )))
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .expect("fixed columns");
            }
            Op::Create => {
                let fresh = SessionId::random().expect("id");
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {SCHEMA}.keel_sessions \
                     (id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, expires_at, version, data) \
                     VALUES (?, 'bench', 'http', 1, 1, 1, 60000, 60001, 1, ?)"
                )))
                .bind(fresh.as_bytes().as_slice())
                .bind(s.data.as_json())
                .execute(&mut *conn)
                .await
                .expect("create");
            }
        }
    }
}

/// Runs get, update and create on `keel` and `floor` over `ids`.
fn groups<S, F>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    engine: &str,
    ids: &[SessionId],
    keel: &S,
    floor: impl Fn(Arc<Shared>) -> F,
) where
    S: SessionStore + Clone,
    F: Cycle,
{
    let data = payload();
    for (op, name) in [
        (Op::Get, "get"),
        (Op::Update, "update"),
        (Op::Create, "create"),
    ] {
        let shared = Arc::new(Shared {
            ids: ids.to_vec(),
            data: data.clone(),
            op,
        });
        let mut g = c.benchmark_group(format!("rate session {engine} {name}, {TASKS} tasks"));
        g.measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(20);
        let subject = Keel(keel.clone(), Arc::clone(&shared));
        g.bench_function("keel", |b| {
            b.iter_custom(|iters| throughput(rt, &subject, TASKS, iters));
        });
        let bare = floor(shared);
        g.bench_function("floor: bare statements", |b| {
            b.iter_custom(|iters| throughput(rt, &bare, TASKS, iters));
        });
        g.finish();
    }
}

/// One bare connection per task.
async fn per_task<C: sqlx::Connection>(url: &str) -> Arc<Vec<Mutex<C>>> {
    let mut conns = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        conns.push(Mutex::new(C::connect(url).await.expect("connect")));
    }
    Arc::new(conns)
}

/// Runs `statement` once on a connection of its own.
async fn run_once<C: sqlx::Connection>(url: &str, statement: String)
where
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut conn = C::connect(url).await.expect("connect");
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(&mut conn)
        .await
        .expect("the bench's last statement");
}

fn mysql(c: &mut Criterion) {
    let rt = runtime(2);
    let data = payload();
    let (ids, store, floor) = rt.block_on(async {
        let mut conn = MySqlConnection::connect(MYSQL_URL).await.expect("connect");
        let ids = fill_mysql(&mut conn, &data).await;
        let manager = MySqlManager::from_url(&MYSQL_URL.parse().expect("url")).expect("manager");
        let pool = Pool::builder(manager)
            .max_size(TASKS)
            .build()
            .await
            .expect("pool");
        let config = StoreConfig::default().with_max_sessions(None);
        let store = MySqlStore::builder(pool, SqlConfig::default().with_schema(SCHEMA), config)
            .build()
            .await
            .expect("store");
        (ids, store, per_task::<MySqlConnection>(MYSQL_URL).await)
    });
    groups(c, &rt, "mysql", &ids, &store, |shared| {
        MySqlFloor(Arc::clone(&floor), shared)
    });
    rt.block_on(run_once::<MySqlConnection>(
        MYSQL_URL,
        format!("DROP DATABASE {SCHEMA}"),
    ));
}

fn sessions(c: &mut Criterion) {
    let rt = runtime(2);
    let data = payload();
    let (ids, store, floor) = rt.block_on(async {
        let mut conn = PgConnection::connect(URL).await.expect("connect");
        let ids = fill(&mut conn, &data).await;
        let manager = PgManager::from_url(&URL.parse().expect("url")).expect("manager");
        let pool = Pool::builder(manager)
            .max_size(TASKS)
            .build()
            .await
            .expect("pool");
        let config = StoreConfig::default().with_max_sessions(None);
        let store = PgStore::builder(pool, SqlConfig::default().with_schema(SCHEMA), config)
            .build()
            .await
            .expect("store");
        (ids, store, per_task::<PgConnection>(URL).await)
    });
    groups(c, &rt, "postgres", &ids, &store, |shared| {
        Floor(Arc::clone(&floor), shared)
    });
    rt.block_on(run_once::<PgConnection>(
        URL,
        format!("DROP SCHEMA {SCHEMA} CASCADE"),
    ));
}

criterion_group!(benches, sessions, mysql);
criterion_main!(benches);
