//! Session store throughput on 100k sessions of about 2 KB (the reference
//! documents' session size), 2 tasks on 2 workers, each operation on a
//! random session:
//! - get;
//! - write: new data, compare-and-swap on the version the writer holds (the
//!   figure to set beside ETS's writes: one store operation);
//! - update: read, new data, compare-and-swap (what a request handler does:
//!   a get and a write);
//! - create, which grows the store (by one sample's creates: they are
//!   deleted between samples, untimed);
//! - churn: create a session and delete another, the store's size steady.
//!
//! - memory: keel's `MemoryStore` next to tower-sessions' `MemoryStore` and
//!   a store built on moka's per-entry expiry, in the same run;
//! - sled: keel's `SledStore` in relaxed mode (2 tasks) and in durable mode
//!   with 64 concurrent writers (group commit);
//! - floors, in the same run: versioned records in bare concurrent maps
//!   (sharded maps as keel's, dashmap, scc, papaya) and raw sled (see
//!   `floor`), the least any store of keel's shape costs on this machine.
//!
//! keel keeps a session's data as JSON text (one allocation); the anchors
//! keep maps (tower-sessions' record type is a `HashMap`), a few dozen
//! objects per 2 KB session. This binary uses mimalloc, as
//! allocation-heavy services do. For the system allocator: `cargo bench -p
//! keel-benches --bench session --features system-alloc`.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use keel_benches::{Cycle, runtime, throughput};
use keel_session_store::{
    Durability, MemoryStore, NewSession, SessionId, SessionStore, SledConfig, SledStore,
    StoreConfig,
};
use tokio::runtime::Runtime;

#[path = "session/floor.rs"]
mod floor;
use floor::Versioned;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SESSIONS: usize = 100_000;

/// The most tasks a benchmark here runs (sled's durable writers).
const MAX_TASKS: usize = 64;

/// A JSON object, as a map.
type Map = serde_json::Map<String, serde_json::Value>;

/// About 2 KB of JSON: 16 fields of 120 characters.
fn payload() -> Map {
    let mut data = Map::new();
    for i in 0..16 {
        data.insert(format!("field{i:02}"), serde_json::json!("x".repeat(120)));
    }
    data
}

/// The operations measured, on any store. Each store takes the payload in
/// its own data type (keel's `Data`, tower-sessions' record map, a map for
/// the moka store), built once; each write clones it, as a service writes
/// new data it has built.
trait Sessions: Send + Sync + 'static {
    type Id: Copy + Send + Sync + 'static;
    type Data: Clone + Send + Sync + 'static;
    fn data(payload: &Map) -> Self::Data;
    fn create(&self, data: Self::Data) -> impl Future<Output = Self::Id> + Send;
    fn get(&self, id: Self::Id) -> impl Future<Output = ()> + Send;
    fn update(&self, id: Self::Id, data: &Self::Data) -> impl Future<Output = ()> + Send;
    /// Writes over version `version`: the new version, or on a conflict
    /// the current one (a store without versions saves blindly).
    fn write(
        &self,
        id: Self::Id,
        version: u64,
        data: &Self::Data,
    ) -> impl Future<Output = Result<u64, u64>> + Send;
    fn delete(&self, id: Self::Id) -> impl Future<Output = ()> + Send;
}

/// Every keel backend, through the keel trait.
struct Keel<S>(S);

impl<S: SessionStore> Sessions for Keel<S> {
    type Id = SessionId;
    type Data = keel_session_store::Data;

    fn data(payload: &Map) -> Self::Data {
        payload.into()
    }

    async fn create(&self, data: Self::Data) -> SessionId {
        let new = NewSession::new("bench", "http").with_data(data);
        self.0.create(new).await.expect("create").id
    }

    async fn get(&self, id: SessionId) {
        black_box(self.0.get(&id).await.expect("get")).expect("live");
    }

    async fn update(&self, id: SessionId, data: &Self::Data) {
        // A conflict with the other task is possible and counts as a call.
        if let Ok(Some(current)) = self.0.get(&id).await {
            let _ = black_box(self.0.update(&id, current.version, data.clone()).await);
        }
    }

    async fn write(&self, id: SessionId, version: u64, data: &Self::Data) -> Result<u64, u64> {
        match self.0.update(&id, version, data.clone()).await {
            Err(keel_session_store::StoreError::Conflict { actual, .. }) => Err(actual),
            written => Ok(black_box(written.expect("write")).version),
        }
    }

    async fn delete(&self, id: SessionId) {
        black_box(self.0.delete(&id).await.expect("delete"));
    }
}

/// tower-sessions' own `MemoryStore`, through its trait.
struct TowerMemory(tower_sessions::MemoryStore);

mod tower_anchor {
    use super::*;
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::SessionStore as _;

    type RecordData = std::collections::HashMap<String, serde_json::Value>;

    fn record(data: RecordData) -> Record {
        Record {
            id: Id::default(),
            data,
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::minutes(30),
        }
    }

    impl Sessions for TowerMemory {
        type Id = Id;
        type Data = RecordData;

        fn data(payload: &Map) -> RecordData {
            payload
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }

        async fn create(&self, data: RecordData) -> Id {
            let mut r = record(data);
            self.0.create(&mut r).await.expect("create");
            r.id
        }

        async fn get(&self, id: Id) {
            black_box(self.0.load(&id).await.expect("load")).expect("live");
        }

        async fn update(&self, id: Id, data: &RecordData) {
            if let Ok(Some(mut r)) = self.0.load(&id).await {
                r.data = data.clone();
                let _ = black_box(self.0.save(&r).await);
            }
        }

        async fn write(&self, id: Id, version: u64, data: &RecordData) -> Result<u64, u64> {
            let mut r = record(data.clone());
            r.id = id;
            self.0.save(&r).await.expect("save");
            Ok(version + 1)
        }

        async fn delete(&self, id: Id) {
            self.0.delete(&id).await.expect("delete");
        }
    }
}

/// What a user would build on moka: a cache with per-entry expiry, a
/// version checked inside `and_compute_with`.
struct Moka(moka::sync::Cache<SessionId, Arc<MokaSession>>);

#[expect(
    dead_code,
    reason = "data and owner are carried like a real session record's"
)]
struct MokaSession {
    data: Map,
    version: u64,
    ttl: Duration,
    client_id: String,
}

struct TtlExpiry;

impl moka::Expiry<SessionId, Arc<MokaSession>> for TtlExpiry {
    fn expire_after_create(
        &self,
        _: &SessionId,
        value: &Arc<MokaSession>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &SessionId,
        value: &Arc<MokaSession>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl Moka {
    fn new() -> Self {
        Self(moka::sync::Cache::builder().expire_after(TtlExpiry).build())
    }
}

impl Sessions for Moka {
    type Id = SessionId;
    type Data = Map;

    fn data(payload: &Map) -> Map {
        payload.clone()
    }

    async fn create(&self, data: Map) -> SessionId {
        let id = SessionId::random().expect("id");
        let session = MokaSession {
            data,
            version: 1,
            ttl: Duration::from_secs(1800),
            client_id: "bench".into(),
        };
        self.0.insert(id, Arc::new(session));
        id
    }

    async fn get(&self, id: SessionId) {
        black_box(self.0.get(&id)).expect("live");
    }

    async fn update(&self, id: SessionId, data: &Map) {
        let Some(current) = self.0.get(&id) else {
            return;
        };
        let next = MokaSession {
            data: data.clone(),
            version: current.version + 1,
            ttl: current.ttl,
            client_id: "bench".into(),
        };
        black_box(self.0.entry(id).and_compute_with(|entry| match entry {
            Some(e) if e.value().version == current.version => {
                moka::ops::compute::Op::Put(Arc::new(next))
            }
            _ => moka::ops::compute::Op::Nop,
        }));
    }

    async fn write(&self, id: SessionId, version: u64, data: &Map) -> Result<u64, u64> {
        let next = Arc::new(MokaSession {
            data: data.clone(),
            version: version + 1,
            ttl: Duration::from_secs(1800),
            client_id: "bench".into(),
        });
        let mut actual = version;
        black_box(self.0.entry(id).and_compute_with(|entry| match entry {
            Some(e) if e.value().version == version => moka::ops::compute::Op::Put(next),
            Some(e) => {
                actual = e.value().version;
                moka::ops::compute::Op::Nop
            }
            None => moka::ops::compute::Op::Nop,
        }));
        if actual == version {
            Ok(version + 1)
        } else {
            Err(actual)
        }
    }

    async fn delete(&self, id: SessionId) {
        black_box(self.0.remove(&id));
    }
}

/// A session of a filled store, as its client knows it.
struct Known<Id> {
    id: Id,
    /// The version last seen (sessions start at 1); beside the id, so the
    /// bench's own lookup is one cache miss, not two.
    version: AtomicU64,
}

/// A store filled with [`SESSIONS`] sessions, and their ids.
struct Filled<S: Sessions> {
    store: S,
    known: Vec<Known<S::Id>>,
    /// Sessions made by churn, each deleted 1000 churns later.
    churned: Mutex<VecDeque<S::Id>>,
    /// Sessions made by the create benchmark, one list per task (so the
    /// tasks do not contend on it), deleted between samples: without that
    /// a store grows by every create criterion runs, gigabytes a group.
    created: Box<[Mutex<Vec<S::Id>>]>,
    data: S::Data,
    /// Where a disk store lives, removed after it.
    _dir: Option<tempfile::TempDir>,
}

async fn fill<S: Sessions>(store: S, dir: Option<tempfile::TempDir>) -> Filled<S> {
    let data = S::data(&payload());
    let mut ids = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        ids.push(store.create(data.clone()).await);
    }
    Filled::new(store, &ids, data, dir)
}

impl<S: Sessions> Filled<S> {
    fn new(store: S, ids: &[S::Id], data: S::Data, dir: Option<tempfile::TempDir>) -> Self {
        let known = ids.iter().map(|&id| Known {
            id,
            version: AtomicU64::new(1),
        });
        Self {
            known: known.collect(),
            churned: Mutex::new(VecDeque::new()),
            created: (0..MAX_TASKS).map(|_| Mutex::default()).collect(),
            store,
            data,
            _dir: dir,
        }
    }

    fn random(&self) -> S::Id {
        self.known[fastrand::usize(..self.known.len())].id
    }

    /// Writes a random session over the version last seen of it. When
    /// something else wrote it meanwhile (the other task, an update run),
    /// the conflict counts as a call and tells the version to use next.
    async fn write(&self) {
        let known = &self.known[fastrand::usize(..self.known.len())];
        let seen = known.version.load(Ordering::Relaxed);
        let (Ok(now) | Err(now)) = self.store.write(known.id, seen, &self.data).await;
        known.version.fetch_max(now, Ordering::Relaxed);
    }

    /// Creates a session and deletes the one churn created 1000 calls ago,
    /// so the store neither grows nor shrinks (after the first 1000).
    async fn churn(&self) {
        let id = self.store.create(self.data.clone()).await;
        let old = {
            let mut churned = self.churned.lock().expect("churn queue");
            churned.push_back(id);
            (churned.len() > 1000)
                .then(|| churned.pop_front())
                .flatten()
        };
        if let Some(old) = old {
            self.store.delete(old).await;
        }
    }

    /// Creates a session and notes it on task `task`'s list.
    async fn create(&self, task: usize) {
        let id = self.store.create(self.data.clone()).await;
        self.created[task].lock().expect("created list").push(id);
    }
}

/// Deletes what the create benchmark made, outside its timing, a task per
/// list as they were made.
fn delete_created<S: Sessions>(rt: &Runtime, filled: &Arc<Filled<S>>) {
    rt.block_on(async {
        let tasks: Vec<_> = (0..MAX_TASKS)
            .map(|task| {
                let filled = Arc::clone(filled);
                tokio::spawn(async move {
                    let ids = std::mem::take(&mut *filled.created[task].lock().expect("list"));
                    for id in ids {
                        filled.store.delete(id).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("delete task");
        }
    });
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Update,
    Write,
    Create,
    Churn,
}

/// One operation on a random session of a shared filled store.
struct Run<S: Sessions>(Arc<Filled<S>>, Op);

impl<S: Sessions> Clone for Run<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0), self.1)
    }
}

impl<S: Sessions> Cycle for Run<S> {
    async fn cycle(&self, task: usize) {
        let f = &self.0;
        match self.1 {
            Op::Get => f.store.get(f.random()).await,
            Op::Update => f.store.update(f.random(), &f.data).await,
            Op::Write => f.write().await,
            Op::Churn => f.churn().await,
            Op::Create => f.create(task).await,
        }
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str, tasks: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(format!("rate {name}, {tasks} tasks"));
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    g
}

/// A filled store, built the first time a benchmark that uses it runs, so
/// that a filtered `cargo xtask bench` does not fill the stores it skips.
struct Lazy<S: Sessions> {
    cell: OnceLock<Arc<Filled<S>>>,
    build: Box<dyn Fn() -> Filled<S>>,
}

impl<S: Sessions> Lazy<S> {
    fn new(build: impl Fn() -> Filled<S> + 'static) -> Self {
        Self {
            cell: OnceLock::new(),
            build: Box::new(build),
        }
    }

    fn get(&self) -> Arc<Filled<S>> {
        Arc::clone(self.cell.get_or_init(|| Arc::new((self.build)())))
    }
}

fn entry<S: Sessions>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    tasks: usize,
    name: &str,
    (store, op): (&Lazy<S>, Op),
) {
    g.bench_function(name, |b| {
        let run = Run(store.get(), op);
        b.iter_custom(|iters| {
            let took = throughput(rt, &run, tasks, iters);
            if matches!(op, Op::Create) {
                delete_created(rt, &run.0);
            }
            took
        });
    });
}

fn unlimited() -> StoreConfig {
    StoreConfig::default().with_max_sessions(None)
}

const OPS: [(Op, &str); 5] = [
    (Op::Get, "get"),
    (Op::Write, "write"),
    (Op::Update, "update"),
    (Op::Churn, "churn"),
    (Op::Create, "create"),
];

fn memory(c: &mut Criterion) {
    let rt = runtime(2);
    let handle = rt.handle().clone();
    let keel = Lazy::new(move || {
        let store = handle.block_on(async { MemoryStore::new(unlimited()) });
        handle.block_on(fill(Keel(store.expect("config")), None))
    });
    let handle = rt.handle().clone();
    let tower = Lazy::new(move || {
        handle.block_on(fill(
            TowerMemory(tower_sessions::MemoryStore::default()),
            None,
        ))
    });
    let handle = rt.handle().clone();
    let moka = Lazy::new(move || handle.block_on(fill(Moka::new(), None)));
    let handle = rt.handle().clone();
    let sharded =
        Lazy::new(move || handle.block_on(fill(Versioned(floor::ShardedMap::new()), None)));
    let handle = rt.handle().clone();
    let dash = Lazy::new(move || handle.block_on(fill(Versioned(floor::DashMap::default()), None)));
    let handle = rt.handle().clone();
    let scc = Lazy::new(move || handle.block_on(fill(Versioned(floor::SccMap::default()), None)));
    let handle = rt.handle().clone();
    let papaya =
        Lazy::new(move || handle.block_on(fill(Versioned(floor::PapayaMap::default()), None)));
    // Creates grow the stores: measured last.
    for (op, name) in OPS {
        let mut g = group(c, &format!("session memory {name}"), 2);
        entry(&mut g, &rt, 2, "keel", (&keel, op));
        entry(&mut g, &rt, 2, "tower-sessions MemoryStore", (&tower, op));
        entry(&mut g, &rt, 2, "moka (per-entry expiry)", (&moka, op));
        entry(&mut g, &rt, 2, "floor: sharded map", (&sharded, op));
        entry(&mut g, &rt, 2, "floor: dashmap", (&dash, op));
        entry(&mut g, &rt, 2, "floor: scc", (&scc, op));
        entry(&mut g, &rt, 2, "floor: papaya", (&papaya, op));
        g.finish();
    }
}

/// A sled store filled in relaxed mode (fast), then reopened as asked.
fn filled_sled(rt: &tokio::runtime::Handle, durability: Durability) -> Filled<Keel<SledStore>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = |durability| {
        let config = SledConfig::new(dir.path()).with_durability(durability);
        rt.block_on(async { SledStore::open(config, unlimited()) })
            .expect("open")
    };
    let relaxed = Durability::Relaxed {
        flush_every: Duration::from_millis(500),
    };
    let Filled {
        store,
        known,
        churned,
        created,
        data,
        ..
    } = rt.block_on(fill(Keel(open(relaxed)), None));
    drop(store);
    Filled {
        store: Keel(open(durability)),
        known,
        churned,
        created,
        data,
        _dir: Some(dir),
    }
}

#[expect(clippy::print_stdout, reason = "reports the fsyncs group commit saved")]
fn sled(c: &mut Criterion) {
    let rt = runtime(2);
    let handle = rt.handle().clone();
    let relaxed = Lazy::new(move || {
        let relaxed = Durability::Relaxed {
            flush_every: Duration::from_millis(500),
        };
        filled_sled(&handle, relaxed)
    });
    let handle = rt.handle().clone();
    let raw = Lazy::new(move || handle.block_on(fill(floor::RawSled::open(), None)));
    for (op, name) in OPS {
        let mut g = group(c, &format!("session sled relaxed {name}"), 2);
        entry(&mut g, &rt, 2, "keel", (&relaxed, op));
        entry(&mut g, &rt, 2, "floor: raw sled", (&raw, op));
        g.finish();
    }
    // 64 writers share fsyncs.
    let handle = rt.handle().clone();
    let durable = Lazy::new(move || filled_sled(&handle, Durability::Durable));
    for (op, name) in [
        (Op::Write, "write"),
        (Op::Update, "update"),
        (Op::Churn, "churn"),
        (Op::Create, "create"),
    ] {
        let mut g = group(c, &format!("session sled durable {name}"), 64);
        entry(&mut g, &rt, 64, "keel", (&durable, op));
        g.finish();
    }
    if let Some(durable) = durable.cell.get() {
        let fsyncs = durable.store.0.flushes();
        println!("sled durable: {fsyncs} fsyncs in all");
    }
}

criterion_group!(benches, memory, sled);
criterion_main!(benches);
