//! Session store operations on 100k sessions of about 2 KB (the reference
//! documents' session size), 1 and 2 tasks: get, update (compare-and-swap)
//! and create. Each task walks its own slice of the ids; ops/s for the
//! group is `tasks * 1e9 / (ns per call)`.
#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails has nothing to measure"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keel_benches::{Subject, bench, runtime, title};
use keel_session_store::{Data, MemoryStore, NewSession, SessionId, SessionStore, StoreConfig};

const SESSIONS: usize = 100_000;

/// About 2 KB of JSON: 16 fields of 120 characters.
fn payload() -> Data {
    let mut data = Data::new();
    for i in 0..16 {
        data.insert(format!("field{i:02}"), serde_json::json!("x".repeat(120)));
    }
    data
}

#[derive(Clone)]
struct Fixture {
    store: MemoryStore,
    ids: Arc<Vec<SessionId>>,
    data: Arc<Data>,
    next: usize,
}

impl Fixture {
    fn next_id(&mut self) -> SessionId {
        // Clones start at different points so tasks do not walk in step.
        self.next = (self.next + 7919) % self.ids.len();
        self.ids[self.next]
    }
}

#[derive(Clone)]
struct Get(Fixture);
impl Subject for Get {
    async fn call(&mut self) {
        let id = self.0.next_id();
        black_box(self.0.store.get(&id).await.expect("get")).expect("live");
    }
}

#[derive(Clone)]
struct Update(Fixture);
impl Subject for Update {
    async fn call(&mut self) {
        let id = self.0.next_id();
        // Read the version, write new data under it (a conflict with the
        // other task is possible and counts as a call).
        if let Ok(Some(current)) = self.0.store.get(&id).await {
            let _ = black_box(
                self.0
                    .store
                    .update(&id, current.version, (*self.0.data).clone())
                    .await,
            );
        }
    }
}

#[derive(Clone)]
struct Create(Fixture);
impl Subject for Create {
    async fn call(&mut self) {
        let new = NewSession::new("bench", "http").with_data((*self.0.data).clone());
        let _ = black_box(self.0.store.create(new).await);
    }
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let config = StoreConfig::default().with_max_sessions(None);
    let store = rt
        .block_on(async { MemoryStore::new(config) })
        .expect("valid config");
    let data = Arc::new(payload());
    let ids = rt.block_on(async {
        let mut ids = Vec::with_capacity(SESSIONS);
        for i in 0..SESSIONS {
            let new =
                NewSession::new(format!("client{}", i % 1000), "http").with_data((*data).clone());
            ids.push(store.create(new).await.expect("create").id);
        }
        ids
    });
    Fixture {
        store,
        ids: Arc::new(ids),
        data,
        next: 0,
    }
}

fn memory(c: &mut Criterion) {
    let rt = runtime(2);
    let f = fixture(&rt);
    for tasks in [1, 2] {
        let mut g = c.benchmark_group(title("session memory", tasks));
        g.measurement_time(Duration::from_secs(3));
        bench(&mut g, &rt, tasks, "keel get", Get(f.clone()));
        bench(&mut g, &rt, tasks, "keel update", Update(f.clone()));
        g.finish();
    }
    // Creates grow the store: measured last, briefly.
    let mut g = c.benchmark_group(title("session memory create", 2));
    g.measurement_time(Duration::from_secs(2)).sample_size(20);
    bench(&mut g, &rt, 2, "keel create", Create(f));
    g.finish();
}

criterion_group!(benches, memory);
criterion_main!(benches);
