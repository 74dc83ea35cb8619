//! The cluster against in-process servers whose role, reachability and
//! lag the tests set.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::manager::ServerState;

#[derive(Debug, thiserror::Error)]
#[error("{0} is down")]
pub(super) struct Down(pub(super) &'static str);

#[derive(Clone, Debug)]
pub(super) struct Server {
    name: &'static str,
    state: Arc<Mutex<ServerState>>,
    up: Arc<AtomicBool>,
    lag_ms: Arc<AtomicU64>,
    connects: Arc<AtomicUsize>,
}

impl Server {
    fn new(name: &'static str, state: ServerState) -> Self {
        Self {
            name,
            state: Arc::new(Mutex::new(state)),
            up: Arc::new(AtomicBool::new(true)),
            lag_ms: Arc::new(AtomicU64::new(0)),
            connects: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn set(&self, state: ServerState) {
        *self.state.lock().unwrap() = state;
    }

    fn check(&self) -> Result<(), Down> {
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Down(self.name))
        }
    }
}

impl Manager for Server {
    type Connection = &'static str;
    type Error = Down;

    async fn connect(&self) -> Result<&'static str, Down> {
        self.check()?;
        self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(self.name)
    }

    async fn validate(&self, _conn: &mut &'static str) -> Result<(), Down> {
        self.check()
    }

    async fn server_state(&self, _conn: &mut &'static str) -> Result<Option<ServerState>, Down> {
        self.check()?;
        Ok(Some(*self.state.lock().unwrap()))
    }

    async fn replay_lag(&self, _conn: &mut &'static str) -> Result<Option<Duration>, Down> {
        self.check()?;
        Ok(Some(Duration::from_millis(
            self.lag_ms.load(Ordering::SeqCst),
        )))
    }

    fn endpoint(&self) -> Option<String> {
        Some(self.name.to_owned())
    }

    fn is_fatal(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        error.is::<Down>()
    }
}

pub(super) fn quiet() -> ClusterConfig {
    // The tests refresh by hand.
    ClusterConfig {
        refresh_interval: Duration::from_secs(3600),
        ..ClusterConfig::default()
    }
}

fn pool() -> PoolConfig {
    PoolConfig {
        // Every checkout asks the server (a down one fails at once).
        validate_after_idle: Some(Duration::ZERO),
        ..PoolConfig::default()
    }
}

async fn cluster(servers: &[(&Server, Role)], config: ClusterConfig) -> Cluster<Server> {
    let mut b = Cluster::builder().config(config).pool_config(pool());
    for (s, role) in servers {
        b = b.endpoint((*s).clone(), *role);
    }
    b.build().await.unwrap()
}

pub(super) async fn primary_and_two_replicas(
    config: ClusterConfig,
) -> (Server, Server, Server, Cluster<Server>) {
    let p = Server::new("p", ServerState::PRIMARY);
    let r1 = Server::new("r1", ServerState::STANDBY);
    let r2 = Server::new("r2", ServerState::STANDBY);
    let c = cluster(
        &[
            (&p, Role::Primary),
            (&r1, Role::Replica),
            (&r2, Role::Replica),
        ],
        config,
    )
    .await;
    (p, r1, r2, c)
}

async fn reads(c: &Cluster<Server>, n: usize) -> Vec<&'static str> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(*c.get(Access::Read).await.unwrap());
    }
    out
}

#[tokio::test]
async fn writes_go_to_the_primary_and_reads_round_robin_over_replicas() {
    let (_p, _r1, _r2, c) = primary_and_two_replicas(quiet()).await;
    for _ in 0..4 {
        assert_eq!(*c.get(Access::Write).await.unwrap(), "p");
    }
    let seen = reads(&c, 6).await;
    assert_eq!(seen.iter().filter(|n| **n == "r1").count(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|n| **n == "r2").count(), 3, "{seen:?}");
    // libpq's names reach the same servers.
    assert_eq!(*c.get_for(TargetSessionAttrs::Primary).await.unwrap(), "p");
    assert_ne!(*c.get_for(TargetSessionAttrs::Standby).await.unwrap(), "p");
}

#[tokio::test]
async fn the_server_overrides_the_declared_role() {
    // Declared the other way round: the servers' answers win.
    let a = Server::new("a", ServerState::STANDBY);
    let b = Server::new("b", ServerState::PRIMARY);
    let c = cluster(&[(&a, Role::Primary), (&b, Role::Replica)], quiet()).await;
    assert_eq!(*c.get(Access::Write).await.unwrap(), "b");
    assert_eq!(*c.get(Access::Read).await.unwrap(), "a");
}

#[tokio::test]
async fn reads_fall_back_to_the_primary_and_a_down_replica_is_passed_over() {
    let (p, r1, r2, c) = primary_and_two_replicas(quiet()).await;
    r1.up.store(false, Ordering::SeqCst);
    // No read fails: r1's checkouts move on to r2.
    assert!(reads(&c, 10).await.iter().all(|n| *n == "r2"));
    r2.up.store(false, Ordering::SeqCst);
    assert!(reads(&c, 4).await.iter().all(|n| *n == "p"));
    // A write never lands on a replica, whatever is down.
    p.up.store(false, Ordering::SeqCst);
    let err = c.get(Access::Write).await.unwrap_err();
    assert_eq!(
        err.pool_error().map(|e| e.connect_error().is_some()),
        Some(true)
    );
    assert!(err.to_string().contains("endpoint p:"), "{err}");
}

#[tokio::test]
async fn a_failing_replica_is_ejected_within_the_share_and_readmitted_by_refresh() {
    let (_p, r1, r2, c) = primary_and_two_replicas(quiet()).await;
    r1.up.store(false, Ordering::SeqCst);
    r2.up.store(false, Ordering::SeqCst);
    let _ = reads(&c, 10).await;
    let report = c.endpoints();
    // Both failed five times in a row, but half of two replicas is one:
    // one is ejected, the other stays in rotation.
    let ejected = report.iter().filter(|e| e.ejected).count();
    assert_eq!(ejected, 1, "{report:?}");
    assert!(
        report
            .iter()
            .all(|e| e.name == "p" || e.last_error.is_some())
    );
    r1.up.store(true, Ordering::SeqCst);
    r2.up.store(true, Ordering::SeqCst);
    let report = c.refresh().await;
    assert!(report.iter().all(EndpointInfo::is_up), "{report:?}");
    let seen = reads(&c, 4).await;
    assert!(seen.contains(&"r1") && seen.contains(&"r2"), "{seen:?}");
}

#[tokio::test]
async fn writes_follow_a_promoted_replica_and_the_demoted_servers_idle_connections_go() {
    let old = Server::new("old", ServerState::PRIMARY);
    let new = Server::new("new", ServerState::STANDBY);
    let c = cluster(&[(&old, Role::Primary), (&new, Role::Replica)], quiet()).await;
    assert_eq!(*c.get(Access::Write).await.unwrap(), "old");
    let idle_before = c.endpoints()[0].stats.idle;
    assert!(idle_before > 0);
    // The failover: the replica is promoted, the old primary demoted.
    new.set(ServerState::PRIMARY);
    old.set(ServerState::STANDBY);
    let report = c.refresh().await;
    assert_eq!(report[1].role, Some(ServerState::PRIMARY));
    assert_eq!(*c.get(Access::Write).await.unwrap(), "new");
    assert_eq!(*c.get(Access::Read).await.unwrap(), "old");
    // Back the other way, told by hand: writes move before any refresh
    // (the servers agree, else the next connection's answer would win).
    old.set(ServerState::PRIMARY);
    new.set(ServerState::STANDBY);
    assert!(c.set_role("old", Role::Primary));
    assert!(c.set_role("new", Role::Replica));
    assert!(!c.set_role("nowhere", Role::Primary));
    assert_eq!(*c.get(Access::Write).await.unwrap(), "old");
    assert_eq!(*c.get(Access::Read).await.unwrap(), "new");
}

#[tokio::test]
async fn a_lagging_replica_serves_no_reads_until_it_catches_up() {
    let p = Server::new("p", ServerState::PRIMARY);
    let r = Server::new("r", ServerState::STANDBY);
    let config = ClusterConfig {
        max_replica_lag: Some(Duration::from_secs(5)),
        ..quiet()
    };
    let c = cluster(&[(&p, Role::Primary), (&r, Role::Replica)], config).await;
    assert_eq!(*c.get(Access::Read).await.unwrap(), "r");
    r.lag_ms.store(30_000, Ordering::SeqCst);
    assert!(c.refresh().await[1].lagging);
    assert!(reads(&c, 3).await.iter().all(|n| *n == "p"));
    r.lag_ms.store(10, Ordering::SeqCst);
    assert!(!c.refresh().await[1].lagging);
    assert_eq!(*c.get(Access::Read).await.unwrap(), "r");
}

#[tokio::test]
async fn it_starts_with_endpoints_down_and_reports_which() {
    let p = Server::new("p", ServerState::PRIMARY);
    let r = Server::new("r", ServerState::STANDBY);
    r.up.store(false, Ordering::SeqCst);
    let c = cluster(&[(&p, Role::Primary), (&r, Role::Replica)], quiet()).await;
    let report = c.endpoints();
    assert!(report[0].is_up());
    assert!(!report[1].is_up());
    assert_eq!(
        report[1]
            .last_error
            .as_deref()
            .map(|e| e.contains("r is down")),
        Some(true)
    );
    // A checkout only r could serve tries it and says why it failed.
    let err = c.get_for(TargetSessionAttrs::Standby).await.unwrap_err();
    assert!(err.to_string().contains("endpoint r: "), "{err}");
    assert!(err.to_string().contains("r is down"), "{err}");
    // One nothing could serve names every endpoint and what it is.
    let alone = cluster(&[(&p, Role::Primary)], quiet()).await;
    let err = alone
        .get_for(TargetSessionAttrs::Standby)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("target_session_attrs=standby"), "{text}");
    assert!(text.contains("p (primary)"), "{text}");
}

#[tokio::test]
async fn bad_clusters_are_refused_at_build_naming_the_field() {
    let field = |e: BuildError<Down>| match e {
        BuildError::Config(c) => c.field().to_owned(),
        other => panic!("{other:?}"),
    };
    let empty = Cluster::<Server>::builder().build().await.unwrap_err();
    assert_eq!(field(empty), "endpoints");
    let r = Server::new("r", ServerState::STANDBY);
    let too_many = (0..65)
        .fold(Cluster::builder(), |b, _| {
            b.endpoint(r.clone(), Role::Replica)
        })
        .build()
        .await
        .unwrap_err();
    assert!(too_many.to_string().contains("at most 64"), "{too_many}");
    assert_eq!(field(too_many), "endpoints");
    let replicas_only = Cluster::builder()
        .endpoint(r.clone(), Role::Replica)
        .config(ClusterConfig {
            target_session_attrs: TargetSessionAttrs::ReadWrite,
            ..quiet()
        })
        .build()
        .await
        .unwrap_err();
    assert_eq!(field(replicas_only), "target_session_attrs");
    for (config, name) in [
        (
            ClusterConfig {
                max_ejected_share: 1.5,
                ..quiet()
            },
            "max_ejected_share",
        ),
        (
            ClusterConfig {
                refresh_interval: Duration::ZERO,
                ..quiet()
            },
            "refresh_interval",
        ),
        (
            ClusterConfig {
                max_replica_lag: Some(Duration::ZERO),
                ..quiet()
            },
            "max_replica_lag",
        ),
    ] {
        let e = Cluster::builder()
            .endpoint(r.clone(), Role::Replica)
            .config(config)
            .build()
            .await
            .unwrap_err();
        assert_eq!(field(e), name);
    }
}

#[tokio::test]
async fn least_connections_spreads_held_checkouts() {
    let config = ClusterConfig {
        balance: Balance::LeastConnections,
        ..quiet()
    };
    let (_p, _r1, _r2, c) = primary_and_two_replicas(config).await;
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(c.get(Access::Read).await.unwrap());
    }
    let on_r1 = held.iter().filter(|h| h.endpoint() == "r1").count();
    assert_eq!(on_r1, 3);
    let report = c.endpoints();
    assert_eq!(report[1].in_use + report[2].in_use, 6);
    drop(held);
    assert_eq!(c.endpoints()[1].in_use, 0);
}

#[tokio::test]
async fn a_checkout_passes_over_a_full_pool_while_another_has_room() {
    let r1 = Server::new("r1", ServerState::STANDBY);
    let r2 = Server::new("r2", ServerState::STANDBY);
    let c = Cluster::builder()
        .config(quiet())
        .pool_config(PoolConfig {
            max_size: 2,
            ..pool()
        })
        .endpoint(r1, Role::Replica)
        .endpoint(r2, Role::Replica)
        .build()
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(c.get(Access::Read).await.unwrap());
    }
    // r1 full, r2 empty: round-robin alone would queue the next checkout
    // on r1 behind connections no one returns; it goes where there is
    // room.
    held.retain(|h| h.endpoint() == "r1");
    assert_eq!(held.len(), 2);
    for _ in 0..2 {
        let conn = tokio::time::timeout(Duration::from_secs(5), c.get(Access::Read));
        let conn = conn.await.expect("no checkout queues").unwrap();
        assert_eq!(conn.endpoint(), "r2");
        held.push(conn);
    }
}

#[tokio::test]
async fn the_background_refresh_finds_a_promotion_by_itself() {
    let old = Server::new("old", ServerState::PRIMARY);
    let new = Server::new("new", ServerState::STANDBY);
    let config = ClusterConfig {
        refresh_interval: Duration::from_millis(20),
        ..ClusterConfig::default()
    };
    let c = cluster(&[(&old, Role::Primary), (&new, Role::Replica)], config).await;
    old.up.store(false, Ordering::SeqCst);
    new.set(ServerState::PRIMARY);
    let mut waited = 0;
    loop {
        if let Ok(conn) = c.get(Access::Write).await
            && *conn == "new"
        {
            break;
        }
        assert!(waited < 500, "writes never moved: {:?}", c.endpoints());
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
}

#[tokio::test]
async fn observers_see_every_endpoint_pool_and_every_ejection() {
    let p = Server::new("p", ServerState::PRIMARY);
    let r = Server::new("r", ServerState::STANDBY);
    let connected = Arc::new(Mutex::new(Vec::new()));
    let ejected = Arc::new(Mutex::new(Vec::new()));
    let (c_seen, e_seen) = (Arc::clone(&connected), Arc::clone(&ejected));
    let c = Cluster::builder()
        .name("orders")
        .config(quiet())
        .pool_config(pool())
        .endpoint(p.clone(), Role::Primary)
        .endpoint(r.clone(), Role::Replica)
        .observer(move |e: &crate::observer::Event<'_>| {
            if let crate::observer::Event::Connected { name, .. } = e {
                c_seen.lock().unwrap().push((*name).to_owned());
            }
        })
        .ejection_observer(move |e: &keel_breaker::Event<'_>| {
            if let keel_breaker::Event::Transition { name, to, .. } = e {
                e_seen.lock().unwrap().push(((*name).to_owned(), *to));
            }
        })
        .build()
        .await
        .unwrap();
    drop(c.get(Access::Write).await.unwrap());
    drop(c.get(Access::Read).await.unwrap());
    let mut names = connected.lock().unwrap().clone();
    names.sort();
    names.dedup();
    assert_eq!(names, ["orders/p", "orders/r"]);
    // The replica goes down: its failures eject it, and the observer hears.
    r.up.store(false, Ordering::SeqCst);
    for _ in 0..6 {
        drop(c.get(Access::Read).await.unwrap());
    }
    assert_eq!(
        ejected.lock().unwrap().as_slice(),
        [("r".to_owned(), keel_breaker::State::Open)]
    );
}
