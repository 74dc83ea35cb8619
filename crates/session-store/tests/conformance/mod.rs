//! The behaviour every backend must show, written once, split as the traits
//! are: [`run_core`] for [`SessionStore`], then [`run_cleanup`],
//! [`run_journal`] and [`run_export`] for the capabilities, so a new
//! backend can pass the core suite first. A backend's test file builds its
//! store from a config and a manual clock and calls [`run_all`].
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use keel_session_store::{
    BackupError, BackupKey, BackupOptions, Clock, Data, Event, ExpiredCleanup, JournalEntry,
    JournalStatus, ManualClock, NewSession, Observer, Session, SessionExport, SessionId,
    SessionJournal, SessionStore, StoreConfig, StoreError,
};
use serde_json::json;

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod sql;

/// Builds a fresh, empty store of the backend under test.
pub(crate) trait Factory {
    type Store: SessionStore;
    fn make(&self, config: StoreConfig, clock: ManualClock) -> Self::Store;
    /// The same, reporting to `observer`.
    fn make_observed(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: impl Observer,
    ) -> Self::Store;
}

/// Runs `future` to completion from a factory (the suite's factories are
/// synchronous) on the current multi-thread runtime.
#[allow(
    dead_code,
    reason = "the in-process backends' factories build their stores without a runtime"
)]
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

fn base() -> StoreConfig {
    StoreConfig::default().with_default_ttl(Duration::from_secs(60))
}

fn data(key: &str, value: serde_json::Value) -> Data {
    Data::from_value(json!({ key: value })).unwrap()
}

/// The value under `key`.
fn field(data: &Data, key: &str) -> serde_json::Value {
    data.get(key).unwrap().unwrap_or_default()
}

/// Every suite, for a backend with every capability.
pub(crate) async fn run_all<F: Factory>(f: &F)
where
    F::Store: ExpiredCleanup + SessionJournal + SessionExport,
{
    run_core(f).await;
    run_cleanup(f).await;
    run_journal(f).await;
    run_export(f).await;
}

/// [`SessionStore`]: what every backend does.
pub(crate) async fn run_core<F: Factory>(f: &F) {
    create_get_delete(f).await;
    expired_sessions_are_absent_on_every_read(f).await;
    touch_slides_the_ttl(f).await;
    an_update_can_set_a_new_ttl(f).await;
    stale_writers_get_a_conflict(f).await;
    concurrent_increments_lose_no_update(f).await;
    each_version_has_exactly_one_writer(f).await;
    limits_give_clear_errors(f).await;
    sessions_are_found_by_client(f).await;
}

/// [`ExpiredCleanup`], and the events a sweep reports.
pub(crate) async fn run_cleanup<F: Factory>(f: &F)
where
    F::Store: ExpiredCleanup,
{
    cleanup_frees_expired_sessions(f).await;
    cleanup_follows_touches_and_new_ttls(f).await;
    observers_hear_created_conflict_deleted_and_expired_with_the_store_name(f).await;
}

/// [`SessionJournal`].
pub(crate) async fn run_journal<F: Factory>(f: &F)
where
    F::Store: SessionJournal,
{
    journals_keep_order_and_die_with_their_session(f).await;
}

/// [`SessionExport`] (backups carry journals, so the journal too).
pub(crate) async fn run_export<F: Factory>(f: &F)
where
    F::Store: SessionExport + SessionJournal,
{
    backups_round_trip_in_every_mode(f).await;
    a_bad_backup_changes_nothing(f).await;
}

async fn create_get_delete<F: Factory>(f: &F) {
    let store = f.make(base(), ManualClock::at(1_000_000));
    let s = store
        .create(NewSession::new("c1", "http").with_data(data("k", json!(1))))
        .await
        .unwrap();
    assert_eq!(
        (s.version, s.created_at, s.last_activity),
        (1, 1_000_000, 1_000_000)
    );
    let got = store.get(&s.id).await.unwrap().expect("just created");
    assert_eq!(field(&got.data, "k"), json!(1));
    assert_eq!(&*got.client_id, "c1");
    assert_eq!(store.len().await.unwrap(), 1);
    assert!(store.delete(&s.id).await.unwrap());
    assert!(!store.delete(&s.id).await.unwrap());
    assert!(store.get(&s.id).await.unwrap().is_none());
    assert_eq!(store.len().await.unwrap(), 0);
}

/// A fresh store on a clock at 0 holding one session with a 10 s TTL.
async fn ten_second_session<F: Factory>(f: &F) -> (ManualClock, F::Store, Arc<Session>) {
    let clock = ManualClock::at(0);
    let store = f.make(base(), clock.clone());
    let s = store
        .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    (clock, store, s)
}

async fn expired_sessions_are_absent_on_every_read<F: Factory>(f: &F) {
    let (clock, store, s) = ten_second_session(f).await;
    clock.advance(Duration::from_millis(9_999));
    assert!(store.get(&s.id).await.unwrap().is_some());
    clock.advance(Duration::from_millis(1));
    assert!(
        store.get(&s.id).await.unwrap().is_none(),
        "expired at last_activity + ttl"
    );
    assert!(matches!(
        store.touch(&s.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update(&s.id, 1, Data::new()).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.by_client("c").await.unwrap().is_empty());
}

async fn cleanup_frees_expired_sessions<F: Factory>(f: &F)
where
    F::Store: ExpiredCleanup,
{
    let clock = ManualClock::at(0);
    let store = f.make(base(), clock.clone());
    for ttl in [10, 20, 30] {
        store
            .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(ttl)))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(25));
    assert_eq!(store.cleanup_expired().await.unwrap(), 2);
    assert_eq!(store.len().await.unwrap(), 1);
    assert_eq!(store.cleanup_expired().await.unwrap(), 0);
}

async fn touch_slides_the_ttl<F: Factory>(f: &F) {
    let (clock, store, s) = ten_second_session(f).await;
    for _ in 0..5 {
        clock.advance(Duration::from_secs(8));
        let touched = store.touch(&s.id).await.unwrap();
        assert_eq!(touched.version, s.version, "touch changes no data");
        assert_eq!(touched.last_activity, clock.now_millis());
    }
    // A session someone holds is a snapshot: a touch never changes it.
    let held = store.get(&s.id).await.unwrap().unwrap();
    clock.advance(Duration::from_secs(1));
    let touched = store.touch(&s.id).await.unwrap();
    assert_eq!(held.last_activity + 1000, touched.last_activity);
    assert!(
        store.get(&s.id).await.unwrap().is_some(),
        "alive 40 s later thanks to touches"
    );
    clock.advance(Duration::from_secs(10));
    assert!(store.get(&s.id).await.unwrap().is_none());
}

async fn an_update_can_set_a_new_ttl<F: Factory>(f: &F) {
    let (clock, store, s) = ten_second_session(f).await;
    clock.advance(Duration::from_secs(5));
    let updated = store
        .update_with_ttl(
            &s.id,
            s.version,
            Data::new(),
            Some(Duration::from_secs(100)),
        )
        .await
        .unwrap();
    assert_eq!(updated.ttl, Duration::from_secs(100));
    clock.advance(Duration::from_secs(50));
    assert!(
        store.get(&s.id).await.unwrap().is_some(),
        "alive past the old TTL"
    );
    let kept = store
        .update(&s.id, updated.version, Data::new())
        .await
        .unwrap();
    assert_eq!(
        kept.ttl,
        Duration::from_secs(100),
        "a plain update keeps the TTL"
    );
    clock.advance(Duration::from_secs(100));
    assert!(store.get(&s.id).await.unwrap().is_none());
    // A shorter TTL is honoured.
    let (held, unheld) = cut_to_one_second(&store).await;
    clock.advance(Duration::from_secs(1));
    assert!(store.get(&held.id).await.unwrap().is_none());
    assert!(store.get(&unheld).await.unwrap().is_none());
}

/// Two 100 s sessions whose TTL an update cuts to 1 s: one whose old
/// version the caller holds, one nobody holds (a store may change that one
/// in place).
async fn cut_to_one_second<S: SessionStore>(store: &S) -> (Arc<Session>, SessionId) {
    let new = || NewSession::new("c", "http").with_ttl(Duration::from_secs(100));
    let one_second = Some(Duration::from_secs(1));
    let held = store.create(new()).await.unwrap();
    store
        .update_with_ttl(&held.id, 1, Data::new(), one_second)
        .await
        .unwrap();
    let unheld = store.create(new()).await.unwrap().id;
    store
        .update_with_ttl(&unheld, 1, Data::new(), one_second)
        .await
        .unwrap();
    (held, unheld)
}

/// A sweep finds sessions where touches and TTL updates put them: the
/// expiry index moves with them.
async fn cleanup_follows_touches_and_new_ttls<F: Factory>(f: &F)
where
    F::Store: ExpiredCleanup,
{
    let (clock, store, s) = ten_second_session(f).await;
    for _ in 0..5 {
        clock.advance(Duration::from_secs(8));
        store.touch(&s.id).await.unwrap();
    }
    assert_eq!(
        store.cleanup_expired().await.unwrap(),
        0,
        "the expiry index moved too"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(store.cleanup_expired().await.unwrap(), 1);

    let (clock, store, s) = ten_second_session(f).await;
    clock.advance(Duration::from_secs(5));
    store
        .update_with_ttl(
            &s.id,
            s.version,
            Data::new(),
            Some(Duration::from_secs(100)),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(50));
    assert_eq!(
        store.cleanup_expired().await.unwrap(),
        0,
        "indexed at the new expiry"
    );
    // A shorter TTL is honoured by cleanup too.
    let _cut = cut_to_one_second(&store).await;
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.cleanup_expired().await.unwrap(), 2, "both are due");
    clock.advance(Duration::from_secs(100));
    assert_eq!(store.cleanup_expired().await.unwrap(), 1, "and the first");
}

async fn stale_writers_get_a_conflict<F: Factory>(f: &F) {
    let store = f.make(base(), ManualClock::at(0));
    let s = store.create(NewSession::new("c", "http")).await.unwrap();
    let held = store.get(&s.id).await.unwrap().unwrap();
    let v2 = store.update(&s.id, 1, data("a", json!(1))).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        (held.version, &held.data),
        (1, &Data::new()),
        "a session someone holds is a snapshot: an update never changes it"
    );
    drop(held);
    match store.update(&s.id, 1, data("b", json!(2))).await {
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let now = store.get(&s.id).await.unwrap().unwrap();
    assert_eq!(
        now.data,
        data("a", json!(1)),
        "the stale write changed nothing"
    );
}

async fn concurrent_increments_lose_no_update<F: Factory>(f: &F) {
    let store = Arc::new(f.make(base(), ManualClock::at(0)));
    let s = store
        .create(NewSession::new("c", "http").with_data(data("n", json!(0))))
        .await
        .unwrap();
    let (tasks, each) = (8, 50);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, id) = (store.clone(), s.id);
            tokio::spawn(async move {
                for _ in 0..each {
                    loop {
                        let cur = store.get(&id).await.unwrap().unwrap();
                        let n = field(&cur.data, "n").as_u64().unwrap();
                        match store
                            .update(&id, cur.version, data("n", json!(n + 1)))
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let last = store.get(&s.id).await.unwrap().unwrap();
    assert_eq!(field(&last.data, "n"), json!(tasks * each));
    assert_eq!(last.version, 1 + tasks * each);
}

/// Many tasks write one session over the same version at once: exactly
/// one wins each version, every other gets `Conflict` naming the version
/// the winner made.
async fn each_version_has_exactly_one_writer<F: Factory>(f: &F) {
    let store = Arc::new(f.make(base(), ManualClock::at(0)));
    let id = store.create(NewSession::new("c", "http")).await.unwrap().id;
    for version in 1..=5u64 {
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.update(&id, version, Data::new()).await })
            })
            .collect();
        let mut won = 0;
        for w in writers {
            match w.await.unwrap() {
                Ok(session) => {
                    assert_eq!(session.version, version + 1);
                    won += 1;
                }
                Err(StoreError::Conflict { expected, actual }) => {
                    assert_eq!((expected, actual), (version, version + 1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1, "version {version}");
    }
}

async fn limits_give_clear_errors<F: Factory>(f: &F) {
    let clock = ManualClock::at(0);
    let config = base()
        .with_max_sessions(Some(2))
        .with_max_session_bytes(Some(64));
    let store = f.make(config, clock.clone());
    let a = store
        .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    store.create(NewSession::new("c", "http")).await.unwrap();
    let err = store
        .create(NewSession::new("c", "http"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooManySessions { limit: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("max_sessions"), "{err}");
    // An expired session does not hold a place.
    clock.advance(Duration::from_secs(5));
    assert!(store.get(&a.id).await.unwrap().is_none());
    let b = store
        .create(NewSession::new("c", "http"))
        .await
        .expect("the expired one made room");
    let big = data("blob", json!("x".repeat(100)));
    let err = store
        .update(&b.id, b.version, big.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { limit: 64, .. }),
        "{err}"
    );
    assert!(
        store
            .create(NewSession::new("c", "http").with_data(big))
            .await
            .is_err()
    );
}

async fn sessions_are_found_by_client<F: Factory>(f: &F) {
    let clock = ManualClock::at(0);
    let store = f.make(base(), clock.clone());
    let mut mine = Vec::new();
    for i in 0..3 {
        clock.advance(Duration::from_millis(1));
        mine.push(
            store
                .create(NewSession::new("alice", format!("t{i}")))
                .await
                .unwrap()
                .id,
        );
        store.create(NewSession::new("bob", "http")).await.unwrap();
    }
    let found: Vec<_> = store
        .by_client("alice")
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(found, mine, "oldest first");
    assert!(store.by_client("carol").await.unwrap().is_empty());
}

async fn journals_keep_order_and_die_with_their_session<F: Factory>(f: &F)
where
    F::Store: SessionJournal,
{
    let clock = ManualClock::at(0);
    let store = f.make(base().with_max_journal_records(2), clock.clone());
    let s = store
        .create(NewSession::new("agent", "ws").with_ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(store.journal(&s.id).await.unwrap().is_empty());
    let a = store
        .journal_append(&s.id, JournalEntry::new("write", "a.txt", "h1"))
        .await
        .unwrap();
    let b = store
        .journal_append(&s.id, JournalEntry::new("write", "b.txt", "h2"))
        .await
        .unwrap();
    assert_eq!((a, b), (1, 2));
    let full = store
        .journal_append(&s.id, JournalEntry::new("write", "c.txt", "h3"))
        .await
        .unwrap_err();
    assert!(
        matches!(full, StoreError::JournalFull { limit: 2 }),
        "{full}"
    );
    store
        .journal_mark(&s.id, a, JournalStatus::Committed)
        .await
        .unwrap();
    assert!(
        store
            .journal_mark(&s.id, a, JournalStatus::Aborted)
            .await
            .is_err(),
        "a finished record stays finished"
    );
    let c = store
        .journal_append(&s.id, JournalEntry::new("delete", "c.txt", "h3"))
        .await
        .unwrap();
    assert_eq!(c, 3, "seqs are never reused");
    let history = store.journal(&s.id).await.unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|r| (r.seq, r.entry.target.as_str(), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            (2, "b.txt", JournalStatus::Pending),
            (3, "c.txt", JournalStatus::Pending)
        ],
        "the committed record made room"
    );
    clock.advance(Duration::from_secs(10));
    assert!(matches!(
        store.journal(&s.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .journal_append(&s.id, JournalEntry::new("write", "d", "h"))
            .await,
        Err(StoreError::NotFound)
    ));
}

/// A store with sessions of several clients, one with a journal.
async fn filled<F: Factory>(f: &F, clock: &ManualClock) -> F::Store
where
    F::Store: SessionJournal,
{
    let store = f.make(base(), clock.clone());
    for i in 0..40 {
        let s = store
            .create(
                NewSession::new(format!("c{}", i % 4), "http")
                    .with_data(data("i", json!(i)))
                    .with_ttl(Duration::from_secs(30 + i)),
            )
            .await
            .unwrap();
        if i == 7 {
            let seq = store
                .journal_append(&s.id, JournalEntry::new("write", "x", "h"))
                .await
                .unwrap();
            store
                .journal_mark(&s.id, seq, JournalStatus::Committed)
                .await
                .unwrap();
        }
    }
    store
}

async fn backups_round_trip_in_every_mode<F: Factory>(f: &F)
where
    F::Store: SessionExport + SessionJournal,
{
    let clock = ManualClock::at(1_000);
    let source = filled(f, &clock).await;
    let mut before = source.export().await.unwrap();
    before.sort_by_key(|d| d.session.id);
    let key = BackupKey::generate().unwrap();
    for (options, restore_key) in [
        (BackupOptions::default(), None),
        (BackupOptions::default().compress(false), None),
        (BackupOptions::default().encrypt(key.clone()), Some(&key)),
    ] {
        let mut file = Vec::new();
        let summary = source.backup(&mut file, &options).await.unwrap();
        assert_eq!(summary.sessions, 40);
        let target = f.make(base(), clock.clone());
        target.create(NewSession::new("old", "http")).await.unwrap();
        assert_eq!(target.restore(&file[..], restore_key).await.unwrap(), 40);
        let mut after = target.export().await.unwrap();
        after.sort_by_key(|d| d.session.id);
        assert_eq!(
            after, before,
            "sessions and journals as they were, and nothing else"
        );
        assert_eq!(target.len().await.unwrap(), 40);
        assert!(target.by_client("old").await.unwrap().is_empty());
    }
    // Sessions that expired since the backup are not brought back: TTLs
    // run 30..=69 s, so 50 s later the 19 over 50 s are left.
    let mut file = Vec::new();
    source
        .backup(&mut file, &BackupOptions::default())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(50));
    let target = f.make(base(), clock.clone());
    assert_eq!(target.restore(&file[..], None).await.unwrap(), 19);
}

async fn a_bad_backup_changes_nothing<F: Factory>(f: &F)
where
    F::Store: SessionExport + SessionJournal,
{
    let clock = ManualClock::at(1_000);
    let source = filled(f, &clock).await;
    let key = BackupKey::generate().unwrap();
    let mut file = Vec::new();
    source
        .backup(&mut file, &BackupOptions::default().encrypt(key.clone()))
        .await
        .unwrap();
    let target = f.make(base().with_max_sessions(Some(39)), clock.clone());
    let mine = target
        .create(NewSession::new("mine", "http"))
        .await
        .unwrap();
    let mut corrupt = file.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 1;
    let wrong = BackupKey::generate().unwrap();
    let attempts = [
        (&file[..file.len() - 3], Some(&key)),
        (&corrupt[..], Some(&key)),
        (&file[..], Some(&wrong)),
        (&file[..], None),
        (&file[..], Some(&key)), // 40 sessions do not fit in 39
    ];
    for (input, k) in attempts {
        let err = target.restore(input, k).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Backup(
                    BackupError::Truncated { .. }
                        | BackupError::Corrupt { .. }
                        | BackupError::WrongKey
                        | BackupError::KeyRequired
                ) | StoreError::TooManySessions { limit: 39 }
            ),
            "{err}"
        );
        assert_eq!(target.len().await.unwrap(), 1, "{err}: nothing restored");
        assert!(target.get(&mine.id).await.unwrap().is_some(), "{err}");
    }
}

async fn observers_hear_created_conflict_deleted_and_expired_with_the_store_name<F: Factory>(f: &F)
where
    F::Store: ExpiredCleanup,
{
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let clock = ManualClock::at(0);
    // Factories name the observed store "conformance".
    let store = f.make_observed(base(), clock.clone(), move |e: &Event<'_>| {
        // A disk backend also reports its size after each cleanup (0 while
        // nothing has reached the disk yet, in relaxed mode).
        let kind = match e {
            Event::Created { name } => format!("{name}: created"),
            Event::Deleted { name } => format!("{name}: deleted"),
            Event::Conflict { name } => format!("{name}: conflict"),
            Event::Expired { name, count } => format!("{name}: expired {count}"),
            _ => return,
        };
        sink.lock().unwrap().push(kind);
    });
    let a = store
        .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    let b = store.create(NewSession::new("c", "http")).await.unwrap();
    store.update(&b.id, b.version, Data::new()).await.unwrap();
    assert!(store.update(&b.id, b.version, Data::new()).await.is_err());
    store.delete(&b.id).await.unwrap();
    clock.advance(Duration::from_secs(2));
    store.cleanup_expired().await.unwrap();
    assert!(store.get(&a.id).await.unwrap().is_none());
    assert_eq!(
        *events.lock().unwrap(),
        [
            "conformance: created",
            "conformance: created",
            "conformance: conflict",
            "conformance: deleted",
            "conformance: expired 1",
        ]
    );
}

/// The background sweep, on a store built on `clock` with a 60 s
/// `cleanup_interval` (see [`sweep_config`]), in a runtime with paused time.
pub(crate) async fn the_background_sweep_frees_expired_sessions<S: SessionStore>(
    store: &S,
    clock: &ManualClock,
) {
    for _ in 0..10 {
        store
            .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(30)))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(31));
    assert_eq!(store.len().await.unwrap(), 10, "not swept yet");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(
        store.len().await.unwrap(),
        0,
        "swept by the background task"
    );
}

/// The config [`the_background_sweep_frees_expired_sessions`] expects.
pub(crate) fn sweep_config() -> StoreConfig {
    StoreConfig::default().with_cleanup_interval(Duration::from_secs(60))
}

/// Built outside any tokio runtime, a store still sweeps: on a thread of
/// its own, every `cleanup_interval` (10 ms here). Its futures are polled
/// on this thread with no runtime. The wait is a liveness bound (10 s),
/// not a timing claim.
pub(crate) fn the_sweep_runs_outside_a_tokio_runtime<F: Factory>(f: &F) {
    let clock = ManualClock::at(0);
    let config = StoreConfig::default().with_cleanup_interval(Duration::from_millis(10));
    let store = f.make(config, clock.clone());
    for _ in 0..5 {
        poll_here(store.create(NewSession::new("c", "http").with_ttl(Duration::from_secs(1))))
            .unwrap();
    }
    clock.advance(Duration::from_secs(2));
    let swept = (0..1000).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        poll_here(store.len()).unwrap() == 0
    });
    assert!(swept, "never swept without a runtime");
}

/// Polls a future to completion on this thread, with no tokio runtime.
pub(crate) fn poll_here<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}
