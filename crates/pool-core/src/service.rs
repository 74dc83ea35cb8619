//! The pool as a tower [`Service`] of [`Operation`]s.

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use crate::manager::Manager;
use crate::op::{BoxError, BoxFuture, CommandTimeout, Operation};
use crate::pool::Pool;
use crate::pooled::Pooled;

/// Runs each [`Operation`] on a connection checked out for it, under the
/// command timeout. Made by [`Pool::service`].
///
/// `poll_ready` is always ready: a busy pool queues the call (FIFO) inside
/// its future, so layers above see the wait as latency, not as an error.
/// While an operation runs its connection's state is unknown: if the
/// future is dropped, the deadline passes or the backend reports the
/// connection broken, the connection is closed rather than reused.
///
/// ```
/// # use std::convert::Infallible;
/// use keel_pool_core::{Manager, Pool, op};
/// use tower::{ServiceBuilder, ServiceExt};
/// # #[derive(Debug)]
/// # struct Numbers;
/// # impl Manager for Numbers {
/// #     type Connection = Vec<u64>;
/// #     type Error = Infallible;
/// #     async fn connect(&self) -> Result<Vec<u64>, Infallible> { Ok(Vec::new()) }
/// #     async fn validate(&self, _: &mut Vec<u64>) -> Result<(), Infallible> { Ok(()) }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), op::BoxError> {
/// let pool = Pool::builder(Numbers).max_size(4).build().await?;
/// // Any tower layer stacks on it; with sqlx managers, `op::fetch_one`,
/// // `op::execute` and `op::transaction` are the usual operations.
/// let svc = ServiceBuilder::new().service(pool.service());
/// let push = op::with_connection(|conn: &mut Vec<u64>| {
///     Box::pin(async move {
///         conn.push(7);
///         Ok::<_, op::BoxError>(conn.len())
///     })
/// });
/// assert_eq!(svc.clone().oneshot(push.clone()).await?, 1);
/// // The same connection comes back (LIFO) and keeps what it holds.
/// assert_eq!(svc.oneshot(push).await?, 2);
/// # Ok(()) }
/// ```
pub struct PoolService<M: Manager> {
    pool: Pool<M>,
}

impl<M: Manager> PoolService<M> {
    pub(crate) fn new(pool: Pool<M>) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn get_ref(&self) -> &Pool<M> {
        &self.pool
    }

    /// The pool, consuming the service.
    pub fn into_inner(self) -> Pool<M> {
        self.pool
    }
}

impl<M: Manager> Clone for PoolService<M> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
        }
    }
}

impl<M: Manager + fmt::Debug> fmt::Debug for PoolService<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolService")
            .field("pool", &self.pool)
            .finish()
    }
}

impl<M, O> Service<O> for PoolService<M>
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
        let pool = self.pool.clone();
        Box::pin(async move {
            let limit = op.command_timeout().or(pool.config().command_timeout);
            run_on(pool.get().await?, op, limit).await.result
        })
    }
}

/// How an operation on one checked-out connection ended.
pub(crate) struct Ran<T> {
    pub(crate) result: Result<T, BoxError>,
    /// The deadline passed or the backend reported the connection broken:
    /// the connection is closed, and the server may be at fault.
    #[cfg_attr(
        not(feature = "cluster"),
        expect(dead_code, reason = "read by the cluster's service")
    )]
    pub(crate) broken: bool,
}

/// Runs `op` on `conn` under `limit`, then returns the connection to its
/// pool (or closes it: see [`PoolService`]). The pool's and the cluster's
/// services share it.
pub(crate) async fn run_on<M: Manager, O: Operation<M::Connection>>(
    conn: Pooled<M>,
    op: O,
    limit: Option<Duration>,
) -> Ran<O::Output> {
    let mut running = Running(Some(conn));
    let result = match limit {
        Some(after) => match tokio::time::timeout(after, op.run(running.conn())).await {
            Ok(result) => result,
            // `running` abandons the connection as it drops.
            Err(_) => {
                return Ran {
                    result: Err(CommandTimeout { after }.into()),
                    broken: true,
                };
            }
        },
        None => op.run(running.conn()).await,
    };
    let mut conn = running.finish();
    let broken = matches!(&result, Err(e) if conn.shared.manager.is_fatal(e.as_ref()));
    if broken {
        conn.discard();
    } else {
        conn.mark_known();
    }
    Ran { result, broken }
}

/// A connection with an operation running on it. Dropped before
/// [`finish`](Running::finish) (timeout, cancelled call) it is abandoned:
/// the server is asked to cancel the command and the connection is closed.
struct Running<M: Manager>(Option<Pooled<M>>);

impl<M: Manager> Running<M> {
    fn conn(&mut self) -> &mut M::Connection {
        #[expect(clippy::expect_used, reason = "emptied only by finish and drop")]
        let conn = self
            .0
            .as_mut()
            .expect("a running operation holds its connection");
        conn.mark_unknown();
        conn
    }

    fn finish(mut self) -> Pooled<M> {
        #[expect(clippy::expect_used, reason = "emptied only by finish and drop")]
        self.0
            .take()
            .expect("a running operation holds its connection")
    }
}

impl<M: Manager> Drop for Running<M> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.abandon();
        }
    }
}
