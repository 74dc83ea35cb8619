//! keel's replicated session store beside etcd, the raft store operators
//! trust, with the same workload in the same run on the same machine: a
//! three-node keel cluster (`RaftNode`s in separate processes: this bench
//! started again as a node) and a three-member etcd (Debian's etcd 3.4,
//! started here on loopback ports, data in a temp dir), each durable
//! (keel flushes its sled log, etcd its WAL, before acknowledging).
//!
//! Both hold 100,000 keys of about 2 KB, written before the read phases
//! (etcd's read speed depends on where it stands in its snapshot cycle),
//! then: linearizable gets of random keys (keel: the leader's read index;
//! etcd: Range, not serializable), then puts to random keys (keel: an
//! update naming the version the client last wrote, so it always takes;
//! etcd: Put), with 1 client and with 256 clients sharing 4 connections.
//!
//! The put groups also measure the floor under any majority-replicated
//! durable put on this machine (`floor`: three processes that only frame,
//! append, `fdatasync` and forward, no consensus state, authentication or
//! encoding).
//!
//! Throughput per group (`rate ...`) goes through criterion; the
//! single-client put latency (p50 / p99) is printed as a table. The keel
//! nodes run on mimalloc, as the `keel` binary does.
#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a benchmark whose setup fails has nothing to measure; it prints its latency table"
)]

#[path = "session_raft/etcd.rs"]
mod etcd;
#[path = "session_raft/floor.rs"]
mod floor;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use keel_benches::{Cycle, latency, runtime, throughput};
use keel_fault::free_port;
use keel_session_store::raft::wire::Secret;
use keel_session_store::raft::{NodeConfig, RaftClientConfig, RaftNode, RaftSessionStore};
use keel_session_store::{Data, NewSession, SessionId, SessionStore, StoreConfig};

/// As `keel`'s own binary does: the nodes here are this executable.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: usize = 100_000;
const CLIENTS: usize = 256;
const CONNECTIONS: usize = 4;
/// Set when this bench is started again as a keel node: `id listen dir`.
const NODE: &str = "KEEL_BENCH_RAFT_NODE";
const SECRET: &[u8] = b"keel raft bench secret, 32 bytes";

fn main() {
    if let Ok(spec) = std::env::var(NODE) {
        run_node(&spec);
        return;
    }
    if let Ok(spec) = std::env::var(floor::FLOOR) {
        runtime(2).block_on(floor::run(&spec));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

/// This process as keel node `id listen dir`, until killed.
fn run_node(spec: &str) {
    let mut parts = spec.split(' ');
    let (Some(id), Some(listen), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{NODE}: expected `id listen dir`, got {spec:?}");
    };
    let secret = Secret::new(SECRET.to_vec()).expect("secret");
    let mut config = NodeConfig::new(
        id.parse().expect("node id"),
        listen.parse().expect("listen address"),
        dir,
        secret,
    );
    config.store = StoreConfig::default().with_max_sessions(None);
    runtime(2).block_on(async {
        let node = RaftNode::start(config).await.expect("node");
        println!("listening on {}", node.local_addr());
        std::future::pending::<()>().await;
    });
}

fn port() -> u16 {
    free_port().expect("a free port")
}

/// This bench's own executable started as a node with `env` = `spec`;
/// returns once it listens.
fn spawn_self(env: &str, spec: String) -> Child {
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut child = Command::new(&exe)
        .env(env, &spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("a node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the node's first line");
    assert!(line.starts_with("listening"), "{spec}: {line:?}");
    child
}

/// The floor's three processes (see `floor`); the leader's address.
fn start_floor(dir: &std::path::Path) -> (Vec<Child>, String) {
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", port())).collect();
    let path = |i: usize| dir.join(format!("floor{i}")).display().to_string();
    let mut nodes = vec![
        spawn_self(floor::FLOOR, format!("follower {} {}", addrs[1], path(1))),
        spawn_self(floor::FLOOR, format!("follower {} {}", addrs[2], path(2))),
    ];
    nodes.push(spawn_self(
        floor::FLOOR,
        format!("leader {} {} {} {}", addrs[0], path(0), addrs[1], addrs[2]),
    ));
    (nodes, addrs[0].clone())
}

/// Three keel nodes, this bench's own executable started as each.
struct Keel {
    nodes: Vec<Child>,
    addrs: Vec<String>,
}

impl Keel {
    fn start(dir: &std::path::Path) -> Self {
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for id in 1..=3 {
            let addr = format!("127.0.0.1:{}", port());
            let data = dir.join(format!("keel{id}"));
            nodes.push(spawn_self(NODE, format!("{id} {addr} {}", data.display())));
            addrs.push(addr);
        }
        Self { nodes, addrs }
    }

    fn client(&self) -> RaftSessionStore {
        let secret = Secret::new(SECRET.to_vec()).expect("secret");
        let mut config = RaftClientConfig::new(self.addrs.clone(), secret);
        config.connections = CONNECTIONS;
        RaftSessionStore::new(config).expect("client")
    }
}

impl Drop for Keel {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// About 2 KB of JSON: 16 fields of 120 characters (as the other session
/// benches).
fn payload() -> Data {
    let mut data = serde_json::Map::new();
    for i in 0..16 {
        data.insert(format!("field{i:02}"), serde_json::json!("x".repeat(120)));
    }
    Data::from(data)
}

/// The keys of client `task`: every `CLIENTS`th, so no two clients write
/// the same key and each knows its keys' versions.
fn own_key(task: usize) -> usize {
    task % CLIENTS + CLIENTS * fastrand::usize(..KEYS / CLIENTS)
}

struct Sessions {
    ids: Vec<SessionId>,
    versions: Vec<AtomicU64>,
    data: Data,
}

#[derive(Clone)]
struct KeelPut(RaftSessionStore, Arc<Sessions>);

impl Cycle for KeelPut {
    async fn cycle(&self, task: usize) {
        let s = &*self.1;
        let i = own_key(task);
        let version = s.versions[i].load(Ordering::Relaxed);
        let updated = self
            .0
            .update(&s.ids[i], version, s.data.clone())
            .await
            .expect("put");
        s.versions[i].store(updated.version, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct KeelGet(RaftSessionStore, Arc<Sessions>);

impl Cycle for KeelGet {
    async fn cycle(&self, _task: usize) {
        let s = &*self.1;
        let id = &s.ids[fastrand::usize(..KEYS)];
        self.0.get(id).await.expect("get").expect("live");
    }
}

fn etcd_key(i: usize) -> [u8; 7] {
    let mut key = *b"k000000";
    let digits = format!("{i:06}");
    key[1..].copy_from_slice(digits.as_bytes());
    key
}

#[derive(Clone)]
struct EtcdPut(etcd::Kv, Arc<Vec<u8>>);

impl Cycle for EtcdPut {
    async fn cycle(&self, task: usize) {
        self.0.put(&etcd_key(own_key(task)), &self.1).await;
    }
}

#[derive(Clone)]
struct FloorPut(floor::FloorClient, Arc<Vec<u8>>);

impl Cycle for FloorPut {
    async fn cycle(&self, _task: usize) {
        self.0.put(&self.1).await;
    }
}

#[derive(Clone)]
struct EtcdGet(etcd::Kv);

impl Cycle for EtcdGet {
    async fn cycle(&self, _task: usize) {
        let found = self.0.get(&etcd_key(fastrand::usize(..KEYS))).await;
        assert!(found > 2048, "etcd holds the key");
    }
}

/// Fills keel with `KEYS` sessions, `CLIENTS` creates at a time.
async fn fill_keel(store: &RaftSessionStore, data: &Data) -> Vec<SessionId> {
    let mut ids = Vec::with_capacity(KEYS);
    for _ in 0..KEYS / CLIENTS + 1 {
        let batch = (0..CLIENTS)
            .map(|_| store.create(NewSession::new("bench", "http").with_data(data.clone())));
        for s in futures_util::future::join_all(batch).await {
            ids.push(s.expect("fill").id);
        }
    }
    ids.truncate(KEYS);
    ids
}

/// Fills etcd with the same `KEYS` values, `CLIENTS` puts at a time.
async fn fill_etcd(kv: &etcd::Kv, value: &[u8]) {
    for start in (0..KEYS).step_by(CLIENTS) {
        let batch = (start..(start + CLIENTS).min(KEYS)).map(|i| async move {
            kv.put(&etcd_key(i), value).await;
        });
        futures_util::future::join_all(batch).await;
    }
}

/// One throughput group: keel, etcd, and the floor where there is one.
fn rate<A: Cycle, B: Cycle, F: Cycle>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    clients: usize,
    (keel, etcd, floor): (&A, &B, Option<&F>),
) {
    let mut g = c.benchmark_group(format!("rate raft {name}, {clients} clients"));
    g.measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(10);
    g.bench_function("keel", |b| {
        b.iter_custom(|iters| throughput(rt, keel, clients, iters));
    });
    g.bench_function("etcd", |b| {
        b.iter_custom(|iters| throughput(rt, etcd, clients, iters));
    });
    if let Some(floor) = floor {
        g.bench_function("floor: bare replicated append", |b| {
            b.iter_custom(|iters| throughput(rt, floor, clients, iters));
        });
    }
    g.finish();
}

fn raft(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = runtime(2);
    let data = payload();
    let value = Arc::new(data.as_json().as_bytes().to_vec());

    let keel_nodes = Keel::start(dir.path());
    let ports = [(port(), port()), (port(), port()), (port(), port())];
    let etcd_members = etcd::Etcd::start(dir.path(), &ports);
    let (store, sessions, kv) = rt.block_on(async {
        let store = keel_nodes.client();
        let members: BTreeMap<u64, String> = (1..=3).zip(keel_nodes.addrs.clone()).collect();
        store.initialize(members).await.expect("initialize");
        let ids = fill_keel(&store, &data).await;
        let sessions = Arc::new(Sessions {
            versions: ids.iter().map(|_| AtomicU64::new(1)).collect(),
            ids,
            data: data.clone(),
        });
        etcd::Kv::wait_ready(&etcd_members.clients[0]).await;
        let kv = etcd::Kv::connect(&etcd_members.clients[0], CONNECTIONS).await;
        fill_etcd(&kv, &value).await;
        (store, sessions, kv)
    });

    // Reads first, on exactly the data the fill wrote.
    let (keel_get, etcd_get) = (
        KeelGet(store.clone(), Arc::clone(&sessions)),
        EtcdGet(kv.clone()),
    );
    for clients in [1, CLIENTS] {
        let none: Option<&KeelGet> = None;
        rate(
            c,
            &rt,
            "linearizable get",
            clients,
            (&keel_get, &etcd_get, none),
        );
    }
    let keel_put = KeelPut(store, Arc::clone(&sessions));
    let etcd_put = EtcdPut(kv, Arc::clone(&value));
    let (floor_nodes, floor_leader) = start_floor(dir.path());
    let floor_put = FloorPut(
        rt.block_on(floor::FloorClient::connect(&floor_leader, CONNECTIONS)),
        Arc::clone(&value),
    );
    for clients in [1, CLIENTS] {
        rate(
            c,
            &rt,
            "put",
            clients,
            (&keel_put, &etcd_put, Some(&floor_put)),
        );
    }

    println!("\nraft put latency, 1 client, 2000 puts each");
    println!("| entry | p50 | p99 | p99.9 |");
    println!("|---|---|---|---|");
    for (name, h) in [
        ("keel", latency(&rt, &keel_put, 1, 2000)),
        ("etcd", latency(&rt, &etcd_put, 1, 2000)),
        ("floor", latency(&rt, &floor_put, 1, 2000)),
    ] {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.3} ms |",
            ms(0.5),
            ms(0.99),
            ms(0.999)
        );
    }
    drop(etcd_members);
    drop(keel_nodes);
    for mut node in floor_nodes {
        let _ = node.kill();
        let _ = node.wait();
    }
}

criterion_group!(benches, raft);
