//! Concurrent clients reading and compare-and-swapping a few sessions
//! while faults happen, recording every call for the linearizability
//! checker and every acknowledged write for the "nothing acknowledged is
//! lost" check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_fault::linearizability::{Input, Output, Recorder, check_keyed};
use keel_session_store::raft::RaftSessionStore;
use keel_session_store::{Data, NewSession, Session, SessionId, SessionStore, StoreError};
use tokio::task::JoinHandle;

/// The register: a session's version and the number its data holds.
pub(crate) type Value = (u64, u64);

fn data(n: u64) -> Data {
    Data::from_value(serde_json::json!({ "n": n })).unwrap()
}

fn value_of(session: &Session) -> Value {
    (session.version, session.data.get("n").unwrap().unwrap_or(0))
}

/// What the clients saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) acknowledged: u64,
    pub(crate) conflicts: u64,
    pub(crate) unknown: u64,
    pub(crate) refused: u64,
}

pub(crate) struct Load {
    ids: Vec<SessionId>,
    recorder: Arc<Recorder<SessionId, Value>>,
    /// The latest acknowledged value of each session.
    acked: Arc<Mutex<HashMap<SessionId, Value>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// `clients` clients over `keys` fresh sessions, an operation every
    /// few milliseconds each, until [`finish`](Self::finish).
    pub(crate) async fn start(store: &RaftSessionStore, clients: u64, keys: usize) -> Self {
        let mut ids = Vec::new();
        for _ in 0..keys {
            let s = store
                .create(NewSession::new("load", "test").with_data(data(0)))
                .await
                .unwrap();
            assert_eq!(value_of(&s), (1, 0));
            ids.push(s.id);
        }
        let recorder = Arc::new(Recorder::new());
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|client| {
                tokio::spawn(run(
                    store.clone(),
                    client,
                    ids.clone(),
                    Arc::clone(&recorder),
                    Arc::clone(&acked),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        Self {
            ids,
            recorder,
            acked,
            stop,
            clients,
        }
    }

    /// Stops the clients; checks that every acknowledged write is there
    /// (read linearizably through `store`) and that the history is
    /// linearizable. Returns what the clients saw.
    pub(crate) async fn finish(self, store: &RaftSessionStore) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut tally = Tally::default();
        for client in self.clients {
            let t = client.await.unwrap();
            tally.acknowledged += t.acknowledged;
            tally.conflicts += t.conflicts;
            tally.unknown += t.unknown;
            tally.refused += t.refused;
        }
        let acked = self.acked.lock().unwrap().clone();
        for id in &self.ids {
            let now = value_of(&store.get(id).await.unwrap().expect("the session lives"));
            if let Some(acked) = acked.get(id) {
                assert!(now.0 >= acked.0, "acknowledged {acked:?}, found {now:?}");
                if now.0 == acked.0 {
                    assert_eq!(now, *acked, "the acknowledged data is the data held");
                }
            }
        }
        let history = self.recorder.history();
        assert_eq!(
            check_keyed(&(1, 0), &history, 50_000_000),
            Ok(()),
            "{} operations",
            history.len()
        );
        tally
    }
}

async fn run(
    store: RaftSessionStore,
    client: u64,
    ids: Vec<SessionId>,
    recorder: Arc<Recorder<SessionId, Value>>,
    acked: Arc<Mutex<HashMap<SessionId, Value>>>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut rng = fastrand::Rng::with_seed(client);
    let mut seen: Vec<Value> = vec![(1, 0); ids.len()];
    let mut tally = Tally::default();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let k = rng.usize(..ids.len());
        let id = ids[k];
        if rng.bool() {
            let pending = recorder.call(id, Input::Read);
            match store.get(&id).await {
                Ok(Some(s)) => {
                    seen[k] = value_of(&s);
                    recorder.ret(pending, Output::Read(seen[k]));
                }
                Ok(None) => panic!("a session under load vanished"),
                // No answer: a read without one constrains nothing.
                Err(_) => drop(pending),
            }
        } else {
            let mine = (client + 1) * 1_000_000 + n;
            let (expect, new) = (seen[k], (seen[k].0 + 1, mine));
            let pending = recorder.call(id, Input::Cas { expect, new });
            match store.update(&id, expect.0, data(mine)).await {
                Ok(s) => {
                    seen[k] = value_of(&s);
                    tally.acknowledged += 1;
                    recorder.ret(pending, Output::Cas(true));
                    let mut acked = acked.lock().unwrap();
                    let entry = acked.entry(id).or_insert(seen[k]);
                    if seen[k].0 > entry.0 {
                        *entry = seen[k];
                    }
                }
                Err(StoreError::Conflict { .. }) => {
                    tally.conflicts += 1;
                    recorder.ret(pending, Output::Cas(false));
                }
                // May or may not have been applied: left open.
                Err(StoreError::OutcomeUnknown(_)) => {
                    tally.unknown += 1;
                    drop(pending);
                }
                // No leader reachable: certainly not applied, but left
                // open all the same (open is the weaker claim).
                Err(_) => {
                    tally.refused += 1;
                    drop(pending);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tally
}
