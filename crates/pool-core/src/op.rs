//! Operations: cloneable units of work that run on one pooled connection,
//! the request type of the pool's tower service. Retry re-issues a clone.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use crate::driver::statement::{
    Fetch, Statement, execute, fetch_all, fetch_one, fetch_optional,
};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error type at the tower boundary: callers downcast it to
/// [`PoolError`](crate::PoolError), [`CommandTimeout`] or the backend's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Work to run on one connection.
pub trait Operation<C>: Clone + Send + 'static {
    /// What the work produces.
    type Output: Send + 'static;

    /// Runs the work on `conn`.
    fn run(self, conn: &mut C) -> BoxFuture<'_, Result<Self::Output, BoxError>>;

    /// This operation's deadline, overriding the pool's `command_timeout`.
    fn command_timeout(&self) -> Option<Duration> {
        None
    }

    /// Whether the work only reads, so a cluster's service (feature
    /// `cluster`) may send it to a replica. `false` (the primary) unless the
    /// operation is wrapped in [`read_only`].
    fn read_only(&self) -> bool {
        false
    }
}

/// An operation marked read-only: see [`read_only`].
#[derive(Clone, Debug)]
pub struct ReadOnly<O>(O);

/// Marks `op` as read-only: a cluster's service may run it on a replica
/// (replicas lag; read your own writes from the primary). A single pool
/// runs it as it would anyway.
///
/// ```
/// use keel_pool_core::op::{self, BoxError, Operation};
///
/// let len = op::with_connection(|conn: &mut Vec<u64>| {
///     Box::pin(async move { Ok::<_, BoxError>(conn.len()) })
/// });
/// assert!(!Operation::<Vec<u64>>::read_only(&len));
/// assert!(Operation::<Vec<u64>>::read_only(&op::read_only(len)));
/// ```
pub fn read_only<O>(op: O) -> ReadOnly<O> {
    ReadOnly(op)
}

impl<C, O: Operation<C>> Operation<C> for ReadOnly<O> {
    type Output = O::Output;

    fn run(self, conn: &mut C) -> BoxFuture<'_, Result<O::Output, BoxError>> {
        self.0.run(conn)
    }

    fn command_timeout(&self) -> Option<Duration> {
        self.0.command_timeout()
    }

    fn read_only(&self) -> bool {
        true
    }
}

/// The operation outlived its command timeout. The connection it ran on
/// is closed (its state is unknown), never handed to the next caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the operation exceeded its command timeout of {after:?}")]
#[non_exhaustive]
pub struct CommandTimeout {
    /// The deadline that passed.
    pub after: Duration,
}

/// Several statements on one checkout: see [`with_connection`].
#[derive(Clone, Debug)]
pub struct WithConnection<F> {
    f: F,
    timeout: Option<Duration>,
}

/// An operation running `f` on one connection.
///
/// ```
/// use keel_pool_core::op::{self, BoxError};
///
/// let count_twice = op::with_connection(|conn: &mut Vec<u64>| {
///     Box::pin(async move {
///         conn.push(1);
///         conn.push(2);
///         Ok::<_, BoxError>(conn.len())
///     })
/// });
/// # let _ = count_twice;
/// ```
pub fn with_connection<C, F, T, E>(f: F) -> WithConnection<F>
where
    F: for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, E>> + Clone + Send + 'static,
    E: Into<BoxError>,
{
    WithConnection { f, timeout: None }
}

impl<F> WithConnection<F> {
    /// Gives this operation its own deadline.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }
}

impl<C, F, T, E> Operation<C> for WithConnection<F>
where
    C: Send,
    F: for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, E>> + Clone + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError>,
{
    type Output = T;

    fn run(self, conn: &mut C) -> BoxFuture<'_, Result<T, BoxError>> {
        Box::pin(async move { (self.f)(conn).await.map_err(Into::into) })
    }

    fn command_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// A transaction: see [`transaction`].
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
#[derive(Clone, Debug)]
pub struct Transaction<F> {
    f: F,
    timeout: Option<Duration>,
}

/// An operation running `f` inside a transaction: BEGIN, `f`, COMMIT when
/// it returns `Ok`, ROLLBACK when it returns `Err`. If it panics or the
/// future is dropped, the connection is closed (its state is unknown) when
/// run through [`PoolService`](crate::PoolService); otherwise sqlx's queued
/// rollback is flushed before the connection is handed out again. Retry
/// re-runs the whole transaction, the right answer to serialization
/// failures and deadlocks.
///
/// ```no_run
/// use keel_pool_core::op;
///
/// let transfer = op::transaction(|tx: &mut sqlx::PgConnection| {
///     Box::pin(async move {
///         sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
///             .execute(&mut *tx)
///             .await?;
///         sqlx::query("UPDATE accounts SET balance = balance + 10 WHERE id = 2")
///             .execute(&mut *tx)
///             .await?;
///         Ok::<_, sqlx::Error>(())
///     })
/// });
/// # let _ = transfer;
/// ```
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub fn transaction<C, F, T, E>(f: F) -> Transaction<F>
where
    C: sqlx::Connection,
    F: for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, E>> + Clone + Send + 'static,
    E: Into<BoxError>,
{
    Transaction { f, timeout: None }
}

#[cfg(feature = "sqlx")]
impl<F> Transaction<F> {
    /// Gives this transaction its own deadline.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }
}

#[cfg(feature = "sqlx")]
impl<C, F, T, E> Operation<C> for Transaction<F>
where
    C: sqlx::Connection<Database: sqlx::Database<Connection = C>>,
    F: for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, E>> + Clone + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError>,
{
    type Output = T;

    fn run(self, conn: &mut C) -> BoxFuture<'_, Result<T, BoxError>> {
        Box::pin(async move {
            let mut tx = conn.begin().await?;
            let outcome = (self.f)(&mut *tx).await.map_err(Into::into);
            match outcome {
                Ok(value) => {
                    tx.commit().await?;
                    Ok(value)
                }
                Err(error) => {
                    // If the rollback fails, sqlx queues it again and the
                    // pool resets or closes the connection; the caller
                    // needs the original error.
                    let _ = tx.rollback().await;
                    Err(error)
                }
            }
        })
    }

    fn command_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}
