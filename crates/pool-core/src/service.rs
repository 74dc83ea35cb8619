//! The pool as a tower [`Service`] of [`Operation`]s.

use std::fmt;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::manager::Manager;
use crate::op::{BoxError, BoxFuture, CommandTimeout, Operation};
use crate::pool::Pool;

/// Runs each [`Operation`] on a connection checked out for it, under the
/// command timeout. Made by [`Pool::service`].
///
/// `poll_ready` is always ready: a busy pool queues the call (FIFO) inside
/// its future, so layers above see the wait as latency, not as an error.
/// While an operation runs its connection's state is unknown: if the
/// future is dropped, the deadline passes or the backend reports the
/// connection broken, the connection is closed rather than reused.
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
            let mut conn = pool.get().await?;
            conn.mark_unknown();
            let result = match limit {
                Some(after) => match tokio::time::timeout(after, op.run(&mut conn)).await {
                    Ok(result) => result,
                    // Dropping `conn` while unknown closes it.
                    Err(_) => return Err(CommandTimeout { after }.into()),
                },
                None => op.run(&mut conn).await,
            };
            match &result {
                Err(e) if pool.manager().is_fatal(e.as_ref()) => conn.discard(),
                _ => conn.mark_known(),
            }
            result
        })
    }
}
