//! A session's version check is a compare-and-swap register: concurrent
//! clients reading (`get`) and updating with the version they last saw
//! record a history, and keel-fault's linearizability checker finds an
//! order that explains every answer, for the memory store and for the
//! PostgreSQL store on the real server.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use keel_fault::linearizability::{Input, Output, Recorder, check_keyed};
use keel_pool_core::{PgManager, Pool};
use keel_session_store::{
    Data, MemoryStore, NewSession, SessionId, SessionStore, StoreConfig, StoreError,
};
use keel_tests::{POSTGRES_URL, pg_session_store};

/// The register: a session's version and the number its data holds.
type Value = (u64, u64);
type History = Vec<(SessionId, keel_fault::linearizability::Op<Value>)>;

fn data(n: u64) -> Data {
    Data::from_value(serde_json::json!({ "n": n })).unwrap()
}

fn value_of(session: &keel_session_store::Session) -> Value {
    (session.version, session.data.get("n").unwrap().unwrap_or(0))
}

/// Four clients, `ops` operations each, over two sessions: reads, and
/// updates from the version each client last saw (often stale, so many
/// lose); every update writes a number no other writes.
async fn history<S: SessionStore + Clone>(store: S, ops: u64) -> (Value, History) {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let s = store
            .create(NewSession::new("lin", "test").with_data(data(0)))
            .await
            .unwrap();
        ids.push((s.id, value_of(&s)));
    }
    let recorder = Arc::new(Recorder::new());
    let clients: Vec<_> = (0..4_u64)
        .map(|client| {
            let (store, recorder, ids) = (store.clone(), Arc::clone(&recorder), ids.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(client);
                let mut seen: Vec<Value> = ids.iter().map(|(_, v)| *v).collect();
                for n in 0..ops {
                    let k = rng.usize(..ids.len());
                    let id = &ids[k].0;
                    if rng.bool() {
                        let pending = recorder.call(*id, Input::Read);
                        let got = store.get(id).await.unwrap().expect("the session lives");
                        seen[k] = value_of(&got);
                        recorder.ret(pending, Output::Read(seen[k]));
                    } else {
                        let mine = (client + 1) * 1_000_000 + n;
                        let (expect, new) = (seen[k], (seen[k].0 + 1, mine));
                        let pending = recorder.call(*id, Input::Cas { expect, new });
                        match store.update(id, expect.0, data(mine)).await {
                            Ok(s) => {
                                seen[k] = value_of(&s);
                                recorder.ret(pending, Output::Cas(true));
                            }
                            Err(StoreError::Conflict { .. }) => {
                                recorder.ret(pending, Output::Cas(false));
                            }
                            Err(e) => {
                                // Not a conflict: the test has no faults, so
                                // any other error is a failure of its own.
                                drop(pending);
                                return Err(e);
                            }
                        }
                    }
                    tokio::task::yield_now().await;
                }
                Ok(())
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap().expect("only conflicts fail an update");
    }
    let initial: Vec<Value> = ids.iter().map(|(_, v)| *v).collect();
    assert!(initial.iter().all(|v| *v == initial[0]), "both start alike");
    (initial[0], recorder.history())
}

fn assert_linearizable((initial, history): &(Value, History)) {
    let wins = history
        .iter()
        .filter(|(_, op)| op.output == Output::Cas(true))
        .count();
    assert!(wins > 10, "updates won: {wins}");
    assert_eq!(check_keyed(initial, history, 10_000_000), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_stores_version_check_is_linearizable() {
    let store = MemoryStore::new(StoreConfig::default()).unwrap();
    assert_linearizable(&history(store, 300).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_stores_version_check_is_linearizable() {
    let pool = Pool::builder(PgManager::from_url(&POSTGRES_URL.parse().unwrap()).unwrap())
        .max_size(4)
        .build()
        .await
        .unwrap();
    let store = pg_session_store(pool).await;
    assert_linearizable(&history(store, 150).await);
}
