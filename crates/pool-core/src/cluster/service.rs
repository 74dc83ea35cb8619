//! The cluster as a tower [`Service`] of [`Operation`]s: the read/write
//! split at the tower boundary.

use std::fmt;
use std::task::{Context, Poll};

use tower_service::Service;

use super::pooled::Outcome;
use super::{Access, Cluster, ClusterPooled};
use crate::manager::Manager;
use crate::op::{BoxError, BoxFuture, Operation};
use crate::service::run_on;

/// Runs each [`Operation`] on a connection of the endpoint it belongs to:
/// one marked [`op::read_only`](crate::op::read_only) on a replica in
/// rotation (else the primary), every other on the primary. A
/// transaction is one operation, so it stays on its one connection. Made
/// by [`Cluster::service`].
///
/// It behaves as [`PoolService`](crate::PoolService) does (always ready,
/// command timeout, a connection of unknown state closed), and tells the
/// endpoint's ejection breaker how the operation went: a broken
/// connection or a missed deadline counts against the endpoint, a
/// database error (a constraint, a syntax error) does not, a cancelled
/// call says nothing.
///
/// ```
/// # use std::convert::Infallible;
/// # #[derive(Debug)] struct Db(&'static str);
/// # impl keel_pool_core::Manager for Db {
/// #     type Connection = &'static str; type Error = Infallible;
/// #     async fn connect(&self) -> Result<&'static str, Infallible> { Ok(self.0) }
/// #     async fn validate(&self, _: &mut &'static str) -> Result<(), Infallible> { Ok(()) }
/// #     fn endpoint(&self) -> Option<String> { Some(self.0.into()) }
/// # }
/// use keel_pool_core::cluster::{Cluster, Role};
/// use keel_pool_core::op::{self, BoxError};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let cluster = Cluster::builder()
///     .endpoint(Db("db-1"), Role::Primary)
///     .endpoint(Db("db-2"), Role::Replica)
///     .build()
///     .await?;
/// let server = op::with_connection(|conn: &mut &'static str| {
///     Box::pin(async move { Ok::<_, BoxError>(*conn) })
/// });
/// let svc = cluster.service();
/// assert_eq!(svc.clone().oneshot(server.clone()).await?, "db-1");
/// assert_eq!(svc.oneshot(op::read_only(server)).await?, "db-2");
/// # Ok(()) }
/// ```
pub struct ClusterService<M: Manager> {
    cluster: Cluster<M>,
}

impl<M: Manager> Cluster<M> {
    /// The cluster as a tower service: see [`ClusterService`].
    pub fn service(&self) -> ClusterService<M> {
        ClusterService {
            cluster: self.clone(),
        }
    }
}

impl<M: Manager> ClusterService<M> {
    /// The cluster.
    pub fn get_ref(&self) -> &Cluster<M> {
        &self.cluster
    }
}

impl<M: Manager> Clone for ClusterService<M> {
    fn clone(&self) -> Self {
        Self {
            cluster: self.cluster.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for ClusterService<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterService")
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl<M, O> Service<O> for ClusterService<M>
where
    M: Manager,
    O: Operation<M::Connection>,
{
    type Response = O::Output;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<O::Output, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, op: O) -> Self::Future {
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let access = if op.read_only() {
                Access::Read
            } else {
                Access::Write
            };
            let ClusterPooled { conn, mut ticket } = cluster.get(access).await?;
            let limit = op.command_timeout().or(conn.shared.config.command_timeout);
            // Dropped mid-operation (a cancelled call): no verdict.
            ticket.outcome = Outcome::Unknown;
            let ran = run_on(conn, op, limit).await;
            ticket.outcome = if ran.broken {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            ran.result
        })
    }
}
