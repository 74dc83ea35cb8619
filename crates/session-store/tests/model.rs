//! Random operation sequences on each backend, checked step by step
//! against a plain map.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::HashMap;
use std::time::Duration;

use keel_session_store::{
    Data, ExpiredCleanup, ManualClock, MemoryStore, NewSession, SessionId, StoreConfig, StoreError,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

#[derive(Clone, Debug)]
enum Op {
    Create {
        client: u8,
        ttl_s: u64,
    },
    Get(usize),
    Update {
        which: usize,
        stale: bool,
        value: u8,
    },
    Touch(usize),
    Delete(usize),
    Advance(u64),
    Cleanup,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 1u64..30).prop_map(|(client, ttl_s)| Op::Create { client, ttl_s }),
        3 => any::<usize>().prop_map(Op::Get),
        3 => (any::<usize>(), any::<bool>(), any::<u8>()).prop_map(|(which, stale, value)| Op::Update { which, stale, value }),
        2 => any::<usize>().prop_map(Op::Touch),
        1 => any::<usize>().prop_map(Op::Delete),
        2 => (1u64..20).prop_map(Op::Advance),
        1 => Just(Op::Cleanup),
    ]
}

#[derive(Clone, Debug)]
struct Model {
    client: String,
    data: Data,
    version: u64,
    last_activity: u64,
    ttl_ms: u64,
}

impl Model {
    fn alive(&self, now: u64) -> bool {
        self.last_activity + self.ttl_ms > now
    }
}

/// Applies `ops` to `store` (whose clock is `clock`, at 0) and to the model.
async fn check<S: ExpiredCleanup>(
    store: S,
    clock: ManualClock,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut model: HashMap<SessionId, Model> = HashMap::new();
    let mut ids: Vec<SessionId> = Vec::new();
    let mut now = 0u64;
    for op in ops {
        let pick = |i: usize| (!ids.is_empty()).then(|| ids[i % ids.len()]);
        match op {
            Op::Create { client, ttl_s } => {
                let s = store
                    .create(
                        NewSession::new(format!("c{client}"), "t")
                            .with_ttl(Duration::from_secs(ttl_s)),
                    )
                    .await
                    .unwrap();
                ids.push(s.id);
                model.insert(
                    s.id,
                    Model {
                        client: s.client_id.to_string(),
                        data: Data::new(),
                        version: 1,
                        last_activity: now,
                        ttl_ms: ttl_s * 1000,
                    },
                );
            }
            Op::Get(i) => {
                if let Some(id) = pick(i) {
                    let got = store.get(&id).await.unwrap();
                    let want = model.get(&id).filter(|m| m.alive(now));
                    prop_assert_eq!(got.is_some(), want.is_some());
                    if let (Some(g), Some(w)) = (got, want) {
                        prop_assert_eq!(&g.data, &w.data);
                        prop_assert_eq!(g.version, w.version);
                    }
                }
            }
            Op::Update {
                which,
                stale,
                value,
            } => {
                if let Some(id) = pick(which) {
                    let alive = model.get(&id).filter(|m| m.alive(now)).cloned();
                    let expected = alive
                        .as_ref()
                        .map_or(1, |m| if stale { m.version - 1 } else { m.version });
                    let data = Data::from_value(json!({ "v": value })).unwrap();
                    let result = store.update(&id, expected, data.clone()).await;
                    match (alive, result) {
                        (None, Err(StoreError::NotFound)) => {
                            model.remove(&id);
                        }
                        (Some(m), Err(StoreError::Conflict { actual, .. })) => {
                            prop_assert!(stale);
                            prop_assert_eq!(actual, m.version);
                        }
                        (Some(_), Ok(s)) => {
                            prop_assert!(!stale);
                            let m = model.get_mut(&id).unwrap();
                            m.data = data;
                            m.version += 1;
                            m.last_activity = now;
                            prop_assert_eq!(s.version, m.version);
                        }
                        (alive, result) => prop_assert!(
                            false,
                            "model {:?} vs store {:?}",
                            alive,
                            result.map(|s| s.version)
                        ),
                    }
                }
            }
            Op::Touch(i) => {
                if let Some(id) = pick(i) {
                    let alive = model.get(&id).is_some_and(|m| m.alive(now));
                    let result = store.touch(&id).await;
                    prop_assert_eq!(result.is_ok(), alive);
                    if alive {
                        model.get_mut(&id).unwrap().last_activity = now;
                    } else {
                        model.remove(&id);
                    }
                }
            }
            Op::Delete(i) => {
                if let Some(id) = pick(i) {
                    let existed = model.remove(&id).is_some();
                    // A delete removes expired-but-unswept sessions too.
                    let deleted = store.delete(&id).await.unwrap();
                    prop_assert_eq!(deleted, existed);
                }
            }
            Op::Advance(s) => {
                now += s * 1000;
                clock.advance(Duration::from_secs(s));
            }
            Op::Cleanup => {
                store.cleanup_expired().await.unwrap();
                model.retain(|_, m| m.alive(now));
            }
        }
        // Live sessions agree, per client.
        for client in ["c0", "c1", "c2"] {
            let mut want: Vec<_> = model
                .iter()
                .filter(|(_, m)| m.client == client && m.alive(now))
                .map(|(id, _)| *id)
                .collect();
            let mut got: Vec<_> = store
                .by_client(client)
                .await
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect();
            want.sort();
            got.sort();
            prop_assert_eq!(got, want);
        }
    }
    store.cleanup_expired().await.unwrap();
    model.retain(|_, m| m.alive(now));
    prop_assert_eq!(store.len().await.unwrap(), model.len());
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn memory_store_matches_a_plain_map(ops in prop::collection::vec(op(), 1..120)) {
        let clock = ManualClock::at(0);
        let store = MemoryStore::builder(StoreConfig::default()).clock(clock.clone()).build().unwrap();
        block_on(check(store, clock, ops))?;
    }
}

#[cfg(feature = "sled")]
proptest! {
    // Each case opens a database on disk: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sled_store_matches_a_plain_map(ops in prop::collection::vec(op(), 1..120)) {
        use keel_session_store::{Durability, SledConfig, SledStore};
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(0);
        let relaxed = Durability::Relaxed { flush_every: Duration::from_secs(1) };
        let sled = SledConfig::new(dir.path()).with_durability(relaxed);
        let store = SledStore::builder(sled, StoreConfig::default()).clock(clock.clone()).build().unwrap();
        block_on(check(store, clock, ops))?;
    }
}

/// A multi-thread runtime for the stores over the network.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
fn networked<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A schema (a database, on MySQL) or key prefix no other case uses.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
fn fresh_name() -> String {
    format!("keel_model_{:016x}", fastrand::u64(..))
}

#[cfg(feature = "postgres")]
proptest! {
    // Each case migrates a schema of its own on the real server.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn postgres_store_matches_a_plain_map(ops in prop::collection::vec(op(), 1..80)) {
        use keel_pool_core::{PgManager, Pool, sqlx};
        use keel_session_store::{PgStore, SqlConfig};
        networked(async {
            let url = std::env::var("KEEL_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let pool = Pool::builder(PgManager::from_url(&url.parse().unwrap()).unwrap())
                .build()
                .await
                .unwrap();
            let schema = fresh_name();
            let sql = SqlConfig::default().with_schema(&schema);
            PgStore::migrate(&pool, &sql).await.unwrap();
            let clock = ManualClock::at(0);
            let store = PgStore::builder(pool.clone(), sql, StoreConfig::default())
                .clock(clock.clone())
                .build()
                .await
                .unwrap();
            let result = check(store, clock, ops).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut *pool.get().await.unwrap())
                .await
                .unwrap();
            result
        })?;
    }
}

#[cfg(feature = "mysql")]
proptest! {
    // Each case migrates a database of its own on the real server.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn mysql_store_matches_a_plain_map(ops in prop::collection::vec(op(), 1..80)) {
        use keel_pool_core::{MySqlManager, Pool, sqlx};
        use keel_session_store::{MySqlStore, SqlConfig};
        networked(async {
            let url = std::env::var("KEEL_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
            let pool = Pool::builder(MySqlManager::from_url(&url.parse().unwrap()).unwrap())
                .build()
                .await
                .unwrap();
            let schema = fresh_name();
            let sql = SqlConfig::default().with_schema(&schema);
            MySqlStore::migrate(&pool, &sql).await.unwrap();
            let clock = ManualClock::at(0);
            let store = MySqlStore::builder(pool.clone(), sql, StoreConfig::default())
                .clock(clock.clone())
                .build()
                .await
                .unwrap();
            let result = check(store, clock, ops).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {schema}")))
                .execute(&mut *pool.get().await.unwrap())
                .await
                .unwrap();
            result
        })?;
    }
}

#[cfg(feature = "redis")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn redis_store_matches_a_plain_map(ops in prop::collection::vec(op(), 1..80)) {
        use keel_session_store::{RedisConfig, RedisStore};
        networked(async {
            let url = std::env::var("KEEL_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let client = redis::Client::open(url).unwrap();
            let prefix = format!("{}:", fresh_name());
            let clock = ManualClock::at(0);
            let store = RedisStore::builder(
                client.get_connection_manager().await.unwrap(),
                RedisConfig::default().with_prefix(&prefix),
                StoreConfig::default(),
            )
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
            let result = check(store, clock, ops).await;
            let mut redis = client.get_connection_manager().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut redis)
                .await
                .unwrap();
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut redis).await.unwrap();
            result
        })?;
    }
}
