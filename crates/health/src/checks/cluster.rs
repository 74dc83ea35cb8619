//! A keel-pool-core cluster: every endpoint asked what it is, judged as a
//! whole.

use keel_pool_core::Manager;
use keel_pool_core::cluster::{Cluster, EndpointInfo};
use serde_json::{Value, json};

use crate::{HealthCheck, Outcome};

/// Checks a cluster of endpoints: each run is the cluster's own refresh
/// (one checkout and one query per endpoint, concurrently), which also
/// updates what the cluster knows of roles and lag.
///
/// - **Unhealthy** when no endpoint takes writes (none is a writable
///   primary in rotation: a write would fail), or, for a cluster that
///   serves only reads ([`reads_only`](Self::reads_only)), when no
///   endpoint serves at all.
/// - **Degraded** when some endpoint is unreachable, ejected or lagging:
///   the others carry its load.
/// - **Healthy** otherwise.
///
/// The details list every endpoint under `endpoints`: its name
/// (`host:port/db`, never a password), role, whether it serves, why not,
/// checkouts held and probe latency.
///
/// ```no_run
/// use keel_health::{HealthConfig, HealthRegistry, checks::ClusterCheck};
/// use keel_pool_core::PgManager;
/// use keel_pool_core::cluster::{Cluster, ClusterUrl};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let url: ClusterUrl = "postgres://app@db1:5432,db2:5432/orders".parse()?;
/// let cluster: Cluster<PgManager> = Cluster::builder().url(&url)?.build().await?;
/// let health = HealthRegistry::builder(HealthConfig::default())
///     .check("orders-db", ClusterCheck::new(cluster.clone()))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ClusterCheck<M: Manager> {
    cluster: Cluster<M>,
    writes: bool,
}

impl<M: Manager> ClusterCheck<M> {
    /// Checks `cluster`, which must be able to take writes.
    pub fn new(cluster: Cluster<M>) -> Self {
        Self {
            cluster,
            writes: true,
        }
    }

    /// The cluster serves only reads (replicas for reporting, say): it is
    /// Unhealthy only when no endpoint serves.
    #[must_use]
    pub fn reads_only(mut self) -> Self {
        self.writes = false;
        self
    }
}

fn takes_writes(e: &EndpointInfo) -> bool {
    e.is_up() && e.role.is_some_and(|r| !r.in_recovery && !r.read_only)
}

impl<M: Manager> HealthCheck for ClusterCheck<M> {
    async fn check(&self) -> Outcome {
        let report = self.cluster.refresh().await;
        let details = Value::Array(report.iter().map(detail).collect());
        let serving = report.iter().filter(|e| e.is_up()).count();
        let outcome = if serving == 0 {
            Outcome::unhealthy(format!("no endpoint serves: {}", list(&report)))
        } else if self.writes && !report.iter().any(takes_writes) {
            Outcome::unhealthy(format!("no endpoint takes writes: {}", list(&report)))
        } else if serving < report.len() {
            let out: Vec<&EndpointInfo> = report.iter().filter(|e| !e.is_up()).collect();
            Outcome::degraded(format!(
                "{} of {} endpoints out: {}",
                out.len(),
                report.len(),
                out.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            Outcome::healthy()
        };
        outcome.with_detail("endpoints", details)
    }
}

fn list(report: &[EndpointInfo]) -> String {
    report
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn detail(e: &EndpointInfo) -> Value {
    let role = match e.role {
        None => "unknown",
        Some(s) if s.in_recovery => "standby",
        Some(s) if s.read_only => "read-only primary",
        Some(_) => "primary",
    };
    json!({
        "name": e.name,
        "role": role,
        "serving": e.is_up(),
        "ejected": e.ejected,
        "lagging": e.lagging,
        "last_error": e.last_error,
        "in_use": e.in_use,
        "latency_ms": e.latency.as_secs_f64() * 1e3,
    })
}
