//! Server-side cancellation of a running command.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::op::{BoxError, BoxFuture};

type CancelFn = dyn Fn() -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync;

/// Cancels whatever command one connection is running, from outside that
/// connection (PostgreSQL's `pg_cancel_backend`, MySQL's `KILL QUERY`).
///
/// A [`Manager`](crate::Manager) captures one per connection when it opens
/// ([`Manager::canceller`](crate::Manager::canceller)). When an operation
/// outlives its command timeout, or its future is dropped, the pool's
/// service runs it before closing the connection: dropping a client socket
/// alone leaves the statement running on the server until it next writes.
///
/// ```
/// use keel_pool_core::Canceller;
///
/// let cancel = Canceller::new(|| async { Ok(()) });
/// # let _ = cancel;
/// ```
#[derive(Clone)]
pub struct Canceller(Arc<CancelFn>);

impl Canceller {
    /// A canceller running `cancel` each time it is asked to.
    pub fn new<F, Fut>(cancel: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(cancel())))
    }

    /// Asks the server to cancel the connection's running command. Best
    /// effort: the command may finish first.
    ///
    /// # Errors
    /// Whatever reaching the server failed with.
    pub fn cancel(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        (self.0)()
    }
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Canceller")
    }
}
