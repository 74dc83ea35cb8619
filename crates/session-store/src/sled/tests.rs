//! Unit tests of the sled backend's layout and repair.

use super::keys::{EXPIRY, client_key, expiry_key};
use super::*;
use crate::clock::ManualClock;
use crate::session::NewSession;
use crate::store::{ExpiredCleanup, SessionStore};

fn index_keys(store: &SledStore) -> usize {
    let mut n = 0;
    store
        .inner
        .engine
        .scan(&[EXPIRY][..]..&[EXPIRY + 1][..], &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
    n
}

#[tokio::test]
async fn the_sweep_clears_what_a_crash_between_two_writes_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(1_000);
    let store = SledStore::builder(SledConfig::new(dir.path()), StoreConfig::default())
        .clock(clock.clone())
        .build()
        .unwrap();
    let s = store
        .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    let engine = &*store.inner.engine;
    // A create cut after its index entry; a re-file cut after its new entry.
    let ghost = SessionId::random().unwrap();
    engine.put(&expiry_key(5_000, &ghost), Vec::new()).unwrap();
    engine.put(&expiry_key(6_000, &s.id), Vec::new()).unwrap();
    assert_eq!(index_keys(&store), 3);
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        store.cleanup_expired().await.unwrap(),
        0,
        "nothing live expired"
    );
    assert_eq!(
        index_keys(&store),
        1,
        "only the session's own entry is left"
    );
    assert_eq!(store.len().await.unwrap(), 1);
    clock.advance(Duration::from_secs(5));
    assert_eq!(store.cleanup_expired().await.unwrap(), 1);
    assert_eq!(index_keys(&store), 0);
}

#[tokio::test]
async fn by_client_reads_the_client_index_and_clears_what_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap();
    let mine = store.create(NewSession::new("ann", "http")).await.unwrap();
    store.create(NewSession::new("anna", "http")).await.unwrap();
    store.create(NewSession::new("an", "http")).await.unwrap();
    // A create cut after its client entry.
    let ghost = SessionId::random().unwrap();
    let engine = &*store.inner.engine;
    engine.put(&client_key("ann", &ghost), Vec::new()).unwrap();
    let found: Vec<_> = store
        .by_client("ann")
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        found,
        [mine.id],
        "only ann's, not anna's or an's, nor the ghost"
    );
    assert!(
        engine.get(&client_key("ann", &ghost)).unwrap().is_none(),
        "cleared"
    );
    store.delete(&mine.id).await.unwrap();
    assert!(store.by_client("ann").await.unwrap().is_empty());
    assert!(engine.get(&client_key("ann", &mine.id)).unwrap().is_none());
}
