//! The conformance suite on Redis (a real server: 127.0.0.1:6379, or
//! `KEEL_TEST_REDIS_URL`), each store under a key prefix of its own, and
//! what is the Redis backend's own: a server that lost the store's data
//! says so, and a restart of a server of the test's own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::Mutex;
use std::time::Duration;

use keel_session_store::{
    Data, ExpiredCleanup, JournalEntry, ManualClock, NewSession, Observer, RedisConfig, RedisStore,
    SessionJournal, SessionStore, StoreConfig, StoreError,
};
use redis::aio::ConnectionManager;

#[allow(
    dead_code,
    reason = "the suite's sweep helpers want paused time or no runtime; the store needs real time and a runtime"
)]
mod conformance;

fn url() -> String {
    std::env::var("KEEL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn connect(url: &str) -> ConnectionManager {
    redis::Client::open(url)
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
}

/// Makes stores under fresh prefixes, and deletes every key it made.
#[derive(Default)]
struct Redis {
    prefixes: Mutex<Vec<String>>,
}

impl Redis {
    fn store(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: Option<Box<dyn Observer>>,
    ) -> RedisStore {
        let prefix = format!("keel-test-{:016x}:", fastrand::u64(..));
        self.prefixes.lock().unwrap().push(prefix.clone());
        conformance::block_on(async {
            let builder = RedisStore::builder(
                connect(&url()).await,
                RedisConfig::default().with_prefix(prefix),
                config,
            )
            .clock(clock);
            let builder = match observer {
                Some(o) => builder
                    .observer(move |e: &keel_session_store::Event<'_>| o.on_event(e))
                    .name("conformance"),
                None => builder,
            };
            builder.build().await.unwrap()
        })
    }

    async fn delete_keys(&self) {
        let mut redis = connect(&url()).await;
        let prefixes = std::mem::take(&mut *self.prefixes.lock().unwrap());
        for prefix in prefixes {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut redis)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
            }
        }
    }
}

impl conformance::Factory for Redis {
    type Store = RedisStore;
    fn make(&self, config: StoreConfig, clock: ManualClock) -> RedisStore {
        self.store(config, clock, None)
    }
    fn make_observed(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: impl Observer,
    ) -> RedisStore {
        self.store(config, clock, Some(Box::new(observer)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let f = Redis::default();
    conformance::run_all(&f).await;
    f.delete_keys().await;
}

#[tokio::test]
async fn a_bad_prefix_names_the_field() {
    let err = RedisStore::builder(
        connect(&url()).await,
        RedisConfig::default().with_prefix("a b*"),
        StoreConfig::default(),
    )
    .build()
    .await
    .unwrap_err();
    let StoreError::Config(config) = &err else {
        panic!("{err}");
    };
    assert_eq!(config.field(), "prefix");
}

/// The store's data vanishes (here its keys are deleted, as a restart
/// without persistence or a flush would): the next call says so plainly,
/// once, and the store carries on empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_the_data_is_reported_not_served() {
    let f = Redis::default();
    let store = f.store(StoreConfig::default(), ManualClock::at(0), None);
    let s = store.create(NewSession::new("c", "http")).await.unwrap();
    f.delete_keys().await;
    let err = store.get(&s.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Lost { .. }), "{err}");
    assert!(err.to_string().contains("lost"), "{err}");
    assert!(
        store.get(&s.id).await.unwrap().is_none(),
        "then it carries on"
    );
    store.create(NewSession::new("c", "http")).await.unwrap();
    assert_eq!(store.len().await.unwrap(), 1);
    f.prefixes.lock().unwrap().push(prefix_of(&store));
    f.delete_keys().await;
}

/// The session keys under a store's prefix.
async fn session_keys(prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}s:*"))
        .query_async(&mut connect(&url()).await)
        .await
        .unwrap()
}

/// A create refused because the data was lost or the store is full
/// leaves no session key behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_leaves_no_key_behind() {
    let f = Redis::default();
    let store = f.store(
        StoreConfig::default().with_max_sessions(Some(1)),
        ManualClock::at(0),
        None,
    );
    let prefix = prefix_of(&store);
    store.create(NewSession::new("c", "http")).await.unwrap();
    let full = store
        .create(NewSession::new("c", "http"))
        .await
        .unwrap_err();
    assert!(matches!(full, StoreError::TooManySessions { .. }), "{full}");
    assert_eq!(
        session_keys(&prefix).await.len(),
        1,
        "the refused one is gone"
    );

    f.delete_keys().await;
    let lost = store
        .create(NewSession::new("c", "http"))
        .await
        .unwrap_err();
    assert!(matches!(lost, StoreError::Lost { .. }), "{lost}");
    assert!(
        session_keys(&prefix).await.is_empty(),
        "nothing written into the lost store"
    );
    store.create(NewSession::new("c", "http")).await.unwrap();
    assert_eq!(session_keys(&prefix).await.len(), 1, "then it carries on");
    f.prefixes.lock().unwrap().push(prefix);
    f.delete_keys().await;
}

/// Another store on the keys under `prefix` (as another process would
/// open), on `clock`.
async fn beside(prefix: &str, clock: &ManualClock) -> RedisStore {
    RedisStore::builder(
        connect(&url()).await,
        RedisConfig::default().with_prefix(prefix),
        StoreConfig::default(),
    )
    .clock(clock.clone())
    .build()
    .await
    .unwrap()
}

/// A store remembers the head (client id, transport, creation time) of
/// the sessions it reads and writes, and its updates stage the whole new
/// value. Another store on the same keys changing the ttl, adding a
/// journal, or another session's value put under the id must not be
/// undone by what the first one remembers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_from_a_remembered_head_keeps_what_others_changed() {
    let f = Redis::default();
    let clock = ManualClock::at(5_000_000);
    let a = f.store(StoreConfig::default(), clock.clone(), None);
    let prefix = prefix_of(&a);
    let b = beside(&prefix, &clock).await;
    let data = |n: u64| Data::from_value(serde_json::json!({ "n": n })).unwrap();
    let s = a
        .create(NewSession::new("client-a", "http").with_data(data(1)))
        .await
        .unwrap();

    let written = a.update(&s.id, 1, data(2)).await.unwrap();
    assert_eq!(Some(&*written), b.get(&s.id).await.unwrap().as_deref());
    assert_eq!(written.client_id.as_ref(), "client-a");
    assert!(matches!(
        a.update(&s.id, 1, data(3)).await,
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2
        })
    ));

    // b gives the session a longer ttl: a's next update keeps it.
    b.update_with_ttl(&s.id, 2, data(3), Some(Duration::from_secs(7200)))
        .await
        .unwrap();
    let kept = a.update(&s.id, 3, data(4)).await.unwrap();
    assert_eq!(kept.ttl, Duration::from_secs(7200));
    assert_eq!(b.get(&s.id).await.unwrap().unwrap().ttl, kept.ttl);
    let mut redis = connect(&url()).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}s:{}", s.id))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(pttl > 3_600_000, "Redis's expiry follows: {pttl} ms");

    // b starts a journal: a's update still writes, the journal stays.
    b.journal_append(&s.id, JournalEntry::new("write", "a.txt", "h1"))
        .await
        .unwrap();
    a.update(&s.id, 4, data(5)).await.unwrap();
    assert_eq!(a.journal(&s.id).await.unwrap().len(), 1);

    // Another session's value under the id (a restore, a bug elsewhere):
    // the write keeps that one's client id, not the remembered one.
    let u = a
        .create(NewSession::new("client-a", "http").with_data(data(1)))
        .await
        .unwrap();
    let t = b
        .create(NewSession::new("client-b", "ws").with_data(data(9)))
        .await
        .unwrap();
    let _: () = redis::cmd("COPY")
        .arg(format!("{prefix}s:{}", t.id))
        .arg(format!("{prefix}s:{}", u.id))
        .arg("REPLACE")
        .query_async(&mut redis)
        .await
        .unwrap();
    let moved = a.update(&u.id, 1, data(10)).await.unwrap();
    assert_eq!(
        (moved.client_id.as_ref(), moved.transport.as_ref()),
        ("client-b", "ws")
    );
    assert_eq!(moved.created_at, t.created_at);
    assert_eq!(Some(&*moved), b.get(&u.id).await.unwrap().as_deref());

    // A store that remembers nothing shortens a ttl the general way: the
    // expiry index follows, so cleanup finds the session when it ends.
    let c = beside(&prefix, &clock).await;
    let w = a.create(NewSession::new("client-a", "http")).await.unwrap();
    c.update_with_ttl(&w.id, 1, data(1), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        c.cleanup_expired().await.unwrap(),
        1,
        "found at its new end"
    );

    // Past its expiry the session is gone, whatever a remembers.
    clock.advance(Duration::from_secs(7201));
    assert!(matches!(
        a.update(&s.id, 2, data(11)).await,
        Err(StoreError::NotFound)
    ));
    f.prefixes.lock().unwrap().push(prefix);
    f.delete_keys().await;
}

fn prefix_of(store: &RedisStore) -> String {
    let debug = format!("{store:?}");
    let start = debug.find("prefix: \"").unwrap() + "prefix: \"".len();
    debug[start..start + debug[start..].find('"').unwrap()].to_owned()
}

/// A Redis server of the test's own (no persistence) on a free port.
struct Throwaway {
    port: u16,
    child: std::process::Child,
}

impl Throwaway {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn until_up(url: &str) {
    for _ in 0..200 {
        if let Ok(client) = redis::Client::open(url)
            && client.get_multiplexed_async_connection().await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis-server never came up at {url}");
}

/// The server restarts (it keeps nothing on disk): calls during the
/// outage fail with an error, none hangs; after it, the first call says
/// the data was lost, and the store serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_survived_and_the_loss_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Throwaway::start(port);
    until_up(&server.url()).await;
    let redis = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager_with_config(
            redis::aio::ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(1))),
        )
        .await
        .unwrap();
    let store = RedisStore::builder(redis, RedisConfig::default(), StoreConfig::default())
        .build()
        .await
        .unwrap();
    let s = store.create(NewSession::new("c", "http")).await.unwrap();
    drop(server);
    let during = tokio::time::timeout(Duration::from_secs(15), store.get(&s.id))
        .await
        .expect("no call hangs");
    assert!(during.is_err(), "{during:?}");
    let server = Throwaway::start(port);
    until_up(&server.url()).await;
    let mut lost = None;
    for _ in 0..100 {
        match store.get(&s.id).await {
            Err(StoreError::Lost { .. }) => {
                lost = Some(());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(found) => panic!("served as if nothing happened: {found:?}"),
        }
    }
    assert!(lost.is_some(), "the loss was never reported");
    assert!(store.get(&s.id).await.unwrap().is_none());
    store.create(NewSession::new("c", "http")).await.unwrap();
    assert_eq!(store.len().await.unwrap(), 1);
    drop(server);
}

/// Other programs overwrote sessions' keys: one with a string this store
/// did not write, one with a hash. Each of those sessions is `Unreadable`
/// on every call that reads it, named (its first digits only); delete
/// removes it; the others keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_written_by_another_program_name_their_session_and_the_others_serve() {
    let f = Redis::default();
    let store = f.store(StoreConfig::default(), ManualClock::at(0), None);
    let good = store.create(NewSession::new("c", "http")).await.unwrap();
    let prefix = prefix_of(&store);
    let mut redis = connect(&url()).await;
    for as_hash in [false, true] {
        let bad = store.create(NewSession::new("c", "http")).await.unwrap();
        let key = format!("{prefix}s:{}", bad.id);
        let mut write = redis::pipe();
        write.atomic().del(&key).ignore();
        if as_hash {
            write.hset(&key, "d", "{}").ignore();
        } else {
            write.set(&key, "a string of another program's").ignore();
        }
        let _: () = write.query_async(&mut redis).await.unwrap();
        let unreadable = |result: Result<_, StoreError>, what: &str| {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, StoreError::Unreadable { id, .. } if *id == bad.id),
                "{what}: {err}"
            );
            assert!(!err.to_string().contains(&bad.id.to_string()), "{err}");
        };
        unreadable(store.get(&bad.id).await.map(|_| ()), "get");
        unreadable(
            store.update(&bad.id, 1, bad.data.clone()).await.map(|_| ()),
            "update",
        );
        unreadable(store.touch(&bad.id).await.map(|_| ()), "touch");
        assert!(store.get(&good.id).await.unwrap().is_some());
        assert!(store.delete(&bad.id).await.unwrap(), "delete removes it");
        assert!(store.get(&bad.id).await.unwrap().is_none());
    }
    f.delete_keys().await;
}

/// A client id and transport too long for the scripts' first read of a
/// session's tail (they read it again, longer): every operation works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_client_ids_and_transports_round_trip() {
    let f = Redis::default();
    let clock = ManualClock::at(0);
    let store = f.store(StoreConfig::default(), clock.clone(), None);
    let (client, transport) = ("c".repeat(700), "t".repeat(300));
    let data = keel_session_store::Data::from_json(r#"{"k":"v"}"#).unwrap();
    let s = store
        .create(NewSession::new(client.as_str(), transport.as_str()).with_data(data.clone()))
        .await
        .unwrap();
    let read = store.get(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (&*read.client_id, &*read.transport),
        (&*client, &*transport)
    );
    let updated = store.update(&s.id, 1, data.clone()).await.unwrap();
    assert_eq!((&*updated.client_id, updated.version), (client.as_str(), 2));
    clock.advance(Duration::from_secs(1));
    let touched = store.touch(&s.id).await.unwrap();
    assert_eq!((touched.last_activity, touched.version), (1_000, 2));
    assert_eq!(touched.data.as_json(), data.as_json());
    assert_eq!(store.by_client(&client).await.unwrap().len(), 1);
    assert!(store.delete(&s.id).await.unwrap());
    assert!(store.by_client(&client).await.unwrap().is_empty());
    f.delete_keys().await;
}

/// The server forgot the scripts (`SCRIPT FLUSH`, as after a restart that
/// kept the data): the next write loads its script again and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_scripts_are_loaded_again() {
    let f = Redis::default();
    let store = f.store(StoreConfig::default(), ManualClock::at(0), None);
    let s = store.create(NewSession::new("c", "http")).await.unwrap();
    let mut redis = connect(&url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();
    let updated = store.update(&s.id, 1, s.data.clone()).await.unwrap();
    assert_eq!(updated.version, 2);
    store.touch(&s.id).await.unwrap();
    store.create(NewSession::new("c", "http")).await.unwrap();
    f.delete_keys().await;
}

/// Redis's own expiry of a session's key follows its TTL through writes
/// (one second of slack past it): set at create, kept by an update that
/// keeps the TTL, moved by one that gives a new TTL, renewed by a touch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_redis_expiry_follows_the_session_ttl() {
    let f = Redis::default();
    let store = f.store(StoreConfig::default(), ManualClock::at(0), None);
    let prefix = prefix_of(&store);
    let mut redis = connect(&url()).await;
    let s = store
        .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(50)))
        .await
        .unwrap();
    let key = format!("{prefix}s:{}", s.id);
    let mut pttl = async || -> i64 {
        redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap()
    };
    let near = |ms: i64, want: i64| (want - 2_000..=want).contains(&ms);
    assert!(near(pttl().await, 51_000), "created");
    let s = store
        .update(&s.id, s.version, s.data.clone())
        .await
        .unwrap();
    assert!(
        near(pttl().await, 51_000),
        "an update keeps the session's ttl"
    );
    let s = store
        .update_with_ttl(
            &s.id,
            s.version,
            s.data.clone(),
            Some(Duration::from_secs(200)),
        )
        .await
        .unwrap();
    assert!(near(pttl().await, 201_000), "a new ttl");
    store
        .update(&s.id, s.version, s.data.clone())
        .await
        .unwrap();
    assert!(near(pttl().await, 201_000), "kept again");
    store.touch(&s.id).await.unwrap();
    assert!(near(pttl().await, 201_000), "touched");
    f.delete_keys().await;
}
