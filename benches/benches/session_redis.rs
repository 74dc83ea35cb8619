//! keel's Redis session store on the real server at 127.0.0.1:6379: 100k
//! sessions of about 2 KB, 16 tasks on a 2-worker runtime, one redis-rs
//! connection manager (it multiplexes every call); get, update (read, new
//! data, compare-and-swap) and create, each on a random session.
//!
//! - `keel`: `RedisStore` (a get one GET decoded into a `Session`; a
//!   write a Lua script, its data staged by a native SET in the same
//!   MULTI/EXEC);
//! - `floor: bare GET/SET`: the same 2 KB as one string per session, read
//!   with GET, updated with GET then SET, created with SET, on the same
//!   multiplexed connection: what the server and driver allow.
//!
//! - `floor: bare Lua CAS`: the least an atomic server-side
//!   compare-and-swap costs on Redis 7.0 (which has no CAS command): each
//!   session a hash of version and the 2 KB, read with HMGET, updated by a
//!   two-line Lua script (compare the version, write both), created by a
//!   script that refuses a taken id. Nothing else: no expiry, no index.
//! - `floor: indexed create` (creates only): the least a create costs that
//!   keeps what the issue asks of every session besides its data: Redis's
//!   own expiry, an expiry index and the client's set (each as full as
//!   keel's): the value staged by a native `SET ... PX` in a MULTI/EXEC
//!   with a script that renames it unless the id is taken, then `ZADD`s
//!   and `SADD`s the id. No marker, limit, metadata or events.
//!
//! tower-sessions-redis-store 0.16 is built on fred 10 and tower-sessions-core
//! 0.14, which do not build beside keel's tower-sessions 0.15 without a
//! second tower-sessions-core in the tree, so it is not measured here.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keel_benches::{Cycle, runtime, throughput};
use keel_session_store::{
    Data, NewSession, RedisConfig, RedisStore, SessionId, SessionStore, StoreConfig,
};
use redis::aio::ConnectionManager;

const URL: &str = "redis://127.0.0.1:6379";
const SESSIONS: usize = 100_000;
const TASKS: usize = 16;
const PREFIX: &str = "keel-bench:";

/// About 2 KB of JSON: 16 fields of 120 characters.
fn payload() -> Data {
    let mut data = serde_json::Map::new();
    for i in 0..16 {
        data.insert(format!("field{i:02}"), serde_json::json!("x".repeat(120)));
    }
    Data::from(data)
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Update,
    Create,
}

struct Shared {
    ids: Vec<SessionId>,
    data: Data,
    op: Op,
}

impl Shared {
    fn random(&self) -> usize {
        fastrand::usize(..self.ids.len())
    }
}

#[derive(Clone)]
struct Keel(RedisStore, Arc<Shared>);

impl Cycle for Keel {
    async fn cycle(&self, _task: usize) {
        let (store, s) = (&self.0, &*self.1);
        match s.op {
            Op::Get => {
                store
                    .get(&s.ids[s.random()])
                    .await
                    .expect("get")
                    .expect("live");
            }
            Op::Update => {
                let id = s.ids[s.random()];
                let current = store.get(&id).await.expect("get").expect("live");
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

#[derive(Clone)]
struct Floor(ConnectionManager, Arc<Shared>);

impl Cycle for Floor {
    async fn cycle(&self, _task: usize) {
        let mut redis = self.0.clone();
        let s = &*self.1;
        let key = format!("{PREFIX}floor:{}", s.random());
        match s.op {
            Op::Get => {
                let _: Vec<u8> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut redis)
                    .await
                    .expect("get");
            }
            Op::Update => {
                let _: Vec<u8> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut redis)
                    .await
                    .expect("get");
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(s.data.as_json())
                    .query_async(&mut redis)
                    .await
                    .expect("set");
            }
            Op::Create => {
                let fresh = SessionId::random().expect("id");
                let _: () = redis::cmd("SET")
                    .arg(format!("{PREFIX}floor:new:{fresh}"))
                    .arg(s.data.as_json())
                    .query_async(&mut redis)
                    .await
                    .expect("set");
            }
        }
    }
}

/// The bare atomic compare-and-swap and create (see the file's header).
#[derive(Clone)]
struct CasFloor(
    ConnectionManager,
    Arc<Shared>,
    Arc<(redis::Script, redis::Script)>,
);

impl CasFloor {
    fn new(redis: ConnectionManager, shared: Arc<Shared>) -> Self {
        let cas = redis::Script::new(
            "if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
             redis.call('HSET', KEYS[1], 'v', ARGV[1] + 1, 'd', ARGV[2]) return 1",
        );
        let create = redis::Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
             redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1]) return 1",
        );
        Self(redis, shared, Arc::new((cas, create)))
    }
}

/// The CAS floor's read: a session's version and data.
async fn read_versioned(redis: &mut ConnectionManager, key: &str) -> (Option<u64>, Vec<u8>) {
    redis::cmd("HMGET")
        .arg(key)
        .arg("v")
        .arg("d")
        .query_async(redis)
        .await
        .expect("get")
}

impl Cycle for CasFloor {
    async fn cycle(&self, _task: usize) {
        let mut redis = self.0.clone();
        let (s, (cas, create)) = (&*self.1, &*self.2);
        let key = format!("{PREFIX}cas:{}", s.random());
        match s.op {
            Op::Get => {
                read_versioned(&mut redis, &key).await;
            }
            Op::Update => {
                let (version, _) = read_versioned(&mut redis, &key).await;
                let _: i64 = cas
                    .key(&key)
                    .arg(version.unwrap_or(1))
                    .arg(s.data.as_json())
                    .invoke_async(&mut redis)
                    .await
                    .expect("cas");
            }
            Op::Create => {
                let fresh = SessionId::random().expect("id");
                let _: i64 = create
                    .key(format!("{PREFIX}cas:new:{fresh}"))
                    .arg(s.data.as_json())
                    .invoke_async(&mut redis)
                    .await
                    .expect("create");
            }
        }
    }
}

/// Thirty minutes from now in milliseconds since the epoch (the score a
/// new session gets in keel's expiry index).
fn expiry() -> u128 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis()) + 1_800_000
}

/// The create floor with the indexes (see the file's header).
#[derive(Clone)]
struct IndexedFloor(ConnectionManager, Arc<Shared>, Arc<redis::Script>);

impl IndexedFloor {
    async fn new(mut redis: ConnectionManager, shared: Arc<Shared>) -> Self {
        let create = redis::Script::new(
            "if redis.call('RENAMENX', KEYS[1], KEYS[2]) == 0 then return 0 end
             redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
             redis.call('SADD', KEYS[4], ARGV[2]) return 1",
        );
        create.load_async(&mut redis).await.expect("load");
        Self(redis, shared, Arc::new(create))
    }
}

impl Cycle for IndexedFloor {
    async fn cycle(&self, _task: usize) {
        let mut redis = self.0.clone();
        let fresh = SessionId::random().expect("id");
        let stage = format!("{PREFIX}istage");
        let mut call = redis::cmd("EVALSHA");
        call.arg(self.2.get_hash())
            .arg(4)
            .arg(&stage)
            .arg(format!("{PREFIX}idx:s:{fresh}"))
            .arg(format!("{PREFIX}idx:x"))
            .arg(format!("{PREFIX}idx:c:bench"))
            .arg(expiry())
            .arg(fresh.to_string());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&stage)
            .arg(self.1.data.as_json())
            .arg("PX")
            .arg(1_801_000)
            .ignore()
            .add_command(call);
        let (created,): (i64,) = pipe.query_async(&mut redis).await.expect("create");
        assert_eq!(created, 1, "a fresh id");
    }
}

/// Deletes every key of the bench, a SCAN batch at a time (KEYS over a
/// few hundred thousand keys outlasts the connection's response timeout).
async fn delete_keys(redis: &mut ConnectionManager) {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}*"))
            .arg("COUNT")
            .arg(5000)
            .query_async(redis)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(redis)
                .await
                .expect("del");
        }
        cursor = next;
        if cursor == 0 {
            return;
        }
    }
}

fn sessions(c: &mut Criterion) {
    let rt = runtime(2);
    let data = payload();
    let (ids, store, floor) = rt.block_on(async {
        let client = redis::Client::open(URL).expect("url");
        let mut redis = client.get_connection_manager().await.expect("redis");
        delete_keys(&mut redis).await;
        let config = StoreConfig::default().with_max_sessions(None);
        let store = RedisStore::builder(
            redis.clone(),
            RedisConfig::default().with_prefix(PREFIX),
            config,
        )
        .build()
        .await
        .expect("store");
        // Filled through the store, 16 at a time.
        let mut ids = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS / 16 {
            let batch = (0..16)
                .map(|_| store.create(NewSession::new("fill", "http").with_data(data.clone())));
            for s in futures_util::future::join_all(batch).await {
                ids.push(s.expect("fill").id);
            }
        }
        for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(1000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.set(format!("{PREFIX}floor:{i}"), data.as_json())
                    .ignore()
                    .hset_multiple(
                        format!("{PREFIX}cas:{i}"),
                        &[("v", "1"), ("d", data.as_json())],
                    )
                    .ignore()
                    .zadd(format!("{PREFIX}idx:x"), format!("{i:032}"), *i)
                    .ignore()
                    .sadd(format!("{PREFIX}idx:c:bench"), format!("{i:032}"))
                    .ignore();
            }
            let _: () = pipe.query_async(&mut redis).await.expect("floor fill");
        }
        (ids, store, redis)
    });
    for (op, name) in [
        (Op::Get, "get"),
        (Op::Update, "update"),
        (Op::Create, "create"),
    ] {
        let shared = Arc::new(Shared {
            ids: ids.clone(),
            data: data.clone(),
            op,
        });
        let mut g = c.benchmark_group(format!("rate session redis {name}, {TASKS} tasks"));
        g.measurement_time(Duration::from_secs(5))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(20);
        let keel = Keel(store.clone(), Arc::clone(&shared));
        g.bench_function("keel", |b| {
            b.iter_custom(|iters| throughput(&rt, &keel, TASKS, iters));
        });
        let bare = Floor(floor.clone(), Arc::clone(&shared));
        g.bench_function("floor: bare GET/SET", |b| {
            b.iter_custom(|iters| throughput(&rt, &bare, TASKS, iters));
        });
        if !matches!(op, Op::Get) {
            let cas = CasFloor::new(floor.clone(), Arc::clone(&shared));
            g.bench_function("floor: bare Lua CAS", |b| {
                b.iter_custom(|iters| throughput(&rt, &cas, TASKS, iters));
            });
        }
        if matches!(op, Op::Create) {
            let indexed = rt.block_on(IndexedFloor::new(floor.clone(), shared));
            g.bench_function("floor: indexed create", |b| {
                b.iter_custom(|iters| throughput(&rt, &indexed, TASKS, iters));
            });
        }
        g.finish();
    }
    rt.block_on(async {
        let mut redis = floor.clone();
        delete_keys(&mut redis).await;
    });
}

criterion_group!(benches, sessions);
criterion_main!(benches);
