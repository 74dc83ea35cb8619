//! The conformance suite on the memory backend, and what is its own.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use keel_session_store::{
    ManualClock, MemoryStore, NewSession, Observer, SessionExport, SessionStore, StoreConfig,
};

mod conformance;

struct Memory;

impl conformance::Factory for Memory {
    type Store = MemoryStore;
    fn make(&self, config: StoreConfig, clock: ManualClock) -> MemoryStore {
        MemoryStore::builder(config).clock(clock).build().unwrap()
    }
    fn make_observed(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: impl Observer,
    ) -> MemoryStore {
        MemoryStore::builder(config)
            .clock(clock)
            .observer(observer)
            .name("conformance")
            .build()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::run_all(&Memory).await;
}

#[test]
fn the_sweep_runs_outside_a_tokio_runtime() {
    conformance::the_sweep_runs_outside_a_tokio_runtime(&Memory);
}

#[tokio::test(start_paused = true)]
async fn the_background_sweep_frees_expired_sessions_and_stops_with_the_store() {
    let clock = ManualClock::at(0);
    let store = MemoryStore::builder(conformance::sweep_config())
        .clock(clock.clone())
        .build()
        .unwrap();
    conformance::the_background_sweep_frees_expired_sessions(&store, &clock).await;
    // Dropping the last handle ends the task (the runtime has none left).
    drop(store);
    tokio::task::yield_now().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 0);
}

#[test]
fn bad_config_names_the_field() {
    let err = MemoryStore::new(StoreConfig::default().with_max_sessions(Some(0))).unwrap_err();
    let keel_session_store::StoreError::Config(config) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(config.field(), "max_sessions");
    assert!(err.to_string().contains("max_sessions"), "{err}");
}

#[tokio::test]
async fn export_shares_the_sessions_instead_of_copying_them() {
    let store = MemoryStore::new(StoreConfig::default()).unwrap();
    let s = store.create(NewSession::new("c", "http")).await.unwrap();
    let dumps = store.export().await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&dumps[0].session, &s));
    // A store that imported it shares it too, and a touch on either never
    // changes the other's copy.
    let other = MemoryStore::new(StoreConfig::default()).unwrap();
    other.import(dumps).await.unwrap();
    let touched = other.touch(&s.id).await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&touched, &s));
    assert_eq!(
        store.get(&s.id).await.unwrap().unwrap().last_activity,
        s.last_activity
    );
}
