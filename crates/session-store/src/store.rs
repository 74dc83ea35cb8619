//! The trait every backend implements.

use std::future::Future;
use std::sync::Arc;

use crate::error::StoreError;
use crate::id::SessionId;
use crate::session::{Data, NewSession, Session};

/// Session storage. Every backend behaves alike (one conformance suite
/// checks them all): an expired session is absent on every read, updates
/// are compare-and-swap on the version, and `touch` slides the expiry.
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a session with a fresh random id (checked against collisions).
    ///
    /// # Errors
    /// [`StoreError::TooManySessions`], [`StoreError::TooLarge`], or a backend error.
    fn create(
        &self,
        new: NewSession,
    ) -> impl Future<Output = Result<Arc<Session>, StoreError>> + Send;

    /// The session, unless it is absent or expired.
    ///
    /// # Errors
    /// A backend error.
    fn get(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Arc<Session>>, StoreError>> + Send;

    /// Replaces the data if the stored version is `expected_version`; bumps
    /// the version and the update and activity times.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another writer got there first (reread
    /// and retry); [`StoreError::NotFound`]; [`StoreError::TooLarge`].
    fn update(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
    ) -> impl Future<Output = Result<Arc<Session>, StoreError>> + Send;

    /// Marks the session active now, so it expires `ttl` from now.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or a backend error.
    fn touch(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Arc<Session>, StoreError>> + Send;

    /// Deletes the session; `false` if there was none.
    ///
    /// # Errors
    /// A backend error.
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes every expired session now; returns how many.
    ///
    /// # Errors
    /// A backend error.
    fn cleanup_expired(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Live sessions held (expired ones not yet cleaned up may be counted).
    ///
    /// # Errors
    /// A backend error.
    fn len(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Whether the store holds no session.
    ///
    /// # Errors
    /// A backend error.
    fn is_empty(&self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async { Ok(self.len().await? == 0) }
    }

    /// The live sessions of one client.
    ///
    /// # Errors
    /// A backend error.
    fn by_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Vec<Arc<Session>>, StoreError>> + Send;
}
