//! The conformance suite on the sled backend, and what is its own:
//! reopening, group commit, compaction, and crash safety under `kill -9`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "tests fail loudly; the crash child reports on stdout"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_session_store::{
    Data, Durability, ExpiredCleanup, JournalEntry, ManualClock, NewSession, Observer, SessionId,
    SessionJournal, SessionStore, SledConfig, SledStore, StoreConfig, StoreError,
};
use serde_json::json;

mod conformance;

struct Sled {
    root: tempfile::TempDir,
    next: AtomicUsize,
    durability: Durability,
}

impl Sled {
    fn new(durability: Durability) -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
            next: AtomicUsize::new(0),
            durability,
        }
    }

    /// A fresh directory under the root for each store.
    fn next_dir(&self) -> SledConfig {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        SledConfig::new(self.root.path().join(n.to_string())).with_durability(self.durability)
    }
}

impl conformance::Factory for Sled {
    type Store = SledStore;
    fn make(&self, config: StoreConfig, clock: ManualClock) -> SledStore {
        SledStore::builder(self.next_dir(), config)
            .clock(clock)
            .build()
            .unwrap()
    }
    fn make_observed(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: impl Observer,
    ) -> SledStore {
        SledStore::builder(self.next_dir(), config)
            .clock(clock)
            .observer(observer)
            .name("conformance")
            .build()
            .unwrap()
    }
}

const RELAXED: Durability = Durability::Relaxed {
    flush_every: Duration::from_millis(100),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_conforms_when_durable() {
    conformance::run_all(&Sled::new(Durability::Durable)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_conforms_when_relaxed() {
    conformance::run_all(&Sled::new(RELAXED)).await;
}

fn open(path: &Path, clock: &ManualClock) -> SledStore {
    SledStore::builder(SledConfig::new(path), StoreConfig::default())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn sessions_journals_and_expiry_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(0);
    let store = open(dir.path(), &clock);
    let keep = store
        .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(100)))
        .await
        .unwrap();
    let short = store
        .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    store
        .journal_append(&keep.id, JournalEntry::new("write", "a", "h"))
        .await
        .unwrap();
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.len().await.unwrap(), 2, "counted on open");
    assert_eq!(store.journal(&keep.id).await.unwrap().len(), 1);
    clock.advance(Duration::from_secs(10));
    assert!(store.get(&short.id).await.unwrap().is_none());
    assert_eq!(
        store.cleanup_expired().await.unwrap(),
        1,
        "the expiry index was on disk"
    );
    assert!(store.size_on_disk().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap();
    let (writers, each) = (64, 20);
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let s = store.create(NewSession::new("c", "http")).await.unwrap();
                let mut version = s.version;
                for i in 0..each {
                    let data = Data::from_value(json!({ "i": i })).unwrap();
                    version = store.update(&s.id, version, data).await.unwrap().version;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let writes = writers * (each + 1);
    let flushes = store.flushes();
    println!("{writes} durable writes, {flushes} fsyncs");
    assert!(flushes > 0);
    assert!(
        flushes < writes as u64 / 2,
        "group commit shares fsyncs: {flushes} for {writes} writes"
    );
}

#[tokio::test]
async fn compaction_copies_the_live_sessions_into_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(0);
    // Relaxed, flushed hourly: the copy must be flushed by the compaction.
    let hourly = Durability::Relaxed {
        flush_every: Duration::from_secs(3600),
    };
    let config = SledConfig::new(dir.path().join("old")).with_durability(hourly);
    let store = SledStore::builder(config, StoreConfig::default())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut live = Vec::new();
    for i in 0..200 {
        let s = store
            .create(
                NewSession::new("c", "http").with_ttl(Duration::from_secs(if i % 2 == 0 {
                    5
                } else {
                    500
                })),
            )
            .await
            .unwrap();
        if i % 2 == 1 {
            live.push(s.id);
        }
    }
    clock.advance(Duration::from_secs(5));
    let compacted = store.compact_to(dir.path().join("new")).await.unwrap();
    assert_eq!(compacted.len().await.unwrap(), 100);
    assert!(
        compacted.flushes() >= 1,
        "the copy is flushed before it is handed over, also in relaxed mode"
    );
    for id in &live {
        assert!(compacted.get(id).await.unwrap().is_some());
    }
}

#[test]
fn a_bad_path_or_setting_is_named() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = SledStore::open(
        SledConfig::new(file.path().join("below-a-file")),
        StoreConfig::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("below-a-file"),
        "names the path: {err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let zero = Durability::Relaxed {
        flush_every: Duration::ZERO,
    };
    let err = SledStore::open(
        SledConfig::new(dir.path()).with_durability(zero),
        StoreConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(err.to_string().contains("flush_every"), "{err}");
    // The same mistake in the shared config reads the same from either backend.
    let zero_sessions = StoreConfig::default().with_max_sessions(Some(0));
    let sled = SledStore::open(SledConfig::new(dir.path()), zero_sessions.clone()).unwrap_err();
    let memory = keel_session_store::MemoryStore::new(zero_sessions).unwrap_err();
    assert_eq!(sled.to_string(), memory.to_string());
    assert!(matches!(sled, StoreError::Config(_)), "{sled}");
}

/// Where the crash child writes; set only in the child process.
const CHILD_DIR: &str = "KEEL_CRASH_CHILD_DIR";

/// The crash test's child: a write storm on a durable store, printing
/// `<id> <version>` for each write once it is acknowledged, until killed.
/// Run only by [`acknowledged_durable_writes_survive_kill_9`].
#[test]
#[ignore = "the crash test's child process; run by the crash test"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("run by the crash test");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SledStore::open(SledConfig::new(dir), StoreConfig::default()).unwrap();
        for _ in 0..16 {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    let s = store.create(NewSession::new("c", "http")).await.unwrap();
                    println!("{} {}", s.id, s.version);
                    let mut version = s.version;
                    for n in 0..20 {
                        let data =
                            Data::from_value(json!({ "n": n, "pad": "x".repeat(500) })).unwrap();
                        version = store.update(&s.id, version, data).await.unwrap().version;
                        println!("{} {version}", s.id);
                    }
                }
            });
        }
        // Killed long before; bounded in case the parent died first.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// Runs the child, kills it with SIGKILL after `acks` acknowledged writes,
/// and returns the highest acknowledged version of each session.
fn storm_and_kill(dir: &Path, acks: usize) -> HashMap<SessionId, u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "-q"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = HashMap::new();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = 0;
    for line in lines.by_ref() {
        if record(&mut acked, &line.unwrap()) {
            seen += 1;
            if seen == acks {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    // What the child printed before dying was acknowledged too.
    for line in lines.map_while(Result::ok) {
        record(&mut acked, &line);
    }
    child.wait().unwrap();
    assert!(seen == acks, "the child died early after {seen} writes");
    acked
}

fn record(acked: &mut HashMap<SessionId, u64>, line: &str) -> bool {
    let Some((id, version)) = line.split_once(' ') else {
        return false;
    };
    let (Ok(id), Ok(version)) = (id.parse::<SessionId>(), version.trim().parse::<u64>()) else {
        return false;
    };
    let v = acked.entry(id).or_insert(0);
    *v = (*v).max(version);
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_durable_writes_survive_kill_9() {
    let rounds: usize = std::env::var("KEEL_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0;
    for round in 0..rounds {
        // The same directory every round: each reopen recovers the last crash.
        let acks = 50 + fastrand::usize(..600);
        let acked = storm_and_kill(dir.path(), acks);
        let store = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default())
            .unwrap_or_else(|e| panic!("round {round}: the store does not reopen: {e}"));
        for (id, version) in &acked {
            let s =
                store.get(id).await.unwrap().unwrap_or_else(|| {
                    panic!("round {round}: acknowledged session {id:?} is gone")
                });
            assert!(
                s.version >= *version,
                "round {round}: {id:?} acknowledged at version {version}, found {}",
                s.version
            );
            if s.version > 1 {
                assert_eq!(
                    s.data
                        .get::<serde_json::Value>("n")
                        .unwrap()
                        .unwrap_or_default(),
                    json!(s.version - 2),
                    "round {round}: torn record"
                );
            }
        }
        assert!(store.len().await.unwrap() >= acked.len());
        let listed: std::collections::HashSet<_> = store
            .by_client("c")
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert!(
            acked.keys().all(|id| listed.contains(id)),
            "round {round}: an acknowledged session is missing from its client's index"
        );
        store.cleanup_expired().await.unwrap();
        drop(store);
        if round % 4 == 3 || round + 1 == rounds {
            // Far in the future every session has expired: a sweep, which
            // finds sessions only through the expiry index, removes them
            // all if and only if the crash left none unindexed.
            let later = ManualClock::at(u64::MAX / 2);
            let config = SledConfig::new(dir.path());
            let store = SledStore::builder(config, StoreConfig::default())
                .clock(later)
                .build()
                .unwrap();
            let before = store.len().await.unwrap();
            assert_eq!(
                store.cleanup_expired().await.unwrap(),
                before,
                "round {round}: a session the expiry index does not know"
            );
            assert_eq!(store.len().await.unwrap(), 0);
        }
        total += acks;
    }
    println!("{rounds} kill -9 rounds, {total} acknowledged writes checked");
}

#[tokio::test]
async fn two_handles_share_one_store_and_a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap());
    let err = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default());
    assert!(err.is_err(), "sled locks its directory");
    drop(store);
    assert!(SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).is_ok());
}

#[test]
fn durable_writes_work_outside_a_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap();
    let s = conformance::poll_here(store.create(NewSession::new("c", "http"))).unwrap();
    assert!(store.flushes() >= 1, "acknowledged after an fsync");
    drop(store);
    let store = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap();
    assert!(conformance::poll_here(store.get(&s.id)).unwrap().is_some());
}

#[test]
fn the_sweep_runs_outside_a_tokio_runtime() {
    conformance::the_sweep_runs_outside_a_tokio_runtime(&Sled::new(RELAXED));
}

#[tokio::test(start_paused = true)]
async fn the_background_sweep_removes_expired_sessions_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(0);
    let sled = SledConfig::new(dir.path());
    let store = SledStore::builder(sled, conformance::sweep_config())
        .clock(clock.clone())
        .build()
        .unwrap();
    conformance::the_background_sweep_frees_expired_sessions(&store, &clock).await;
    drop(store);
    // Nothing keeps the store open (`open` waits out a closing store's lock).
    SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap();
}
