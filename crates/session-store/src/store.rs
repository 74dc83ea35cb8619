//! The trait every backend implements.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::backup::{self, BackupKey, BackupOptions, BackupSummary, SessionDump};
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{JournalEntry, JournalRecord, JournalStatus};
use crate::session::{NewSession, Session};

/// Session storage: the core every backend implements. Every backend
/// behaves alike (one conformance suite checks them all): an expired
/// session is absent on every read, updates are compare-and-swap on the
/// version, and `touch` slides the expiry.
///
/// What not every backend can do cheaply lives in capability traits over
/// this one: [`ExpiredCleanup`] (removing expired sessions now, where the
/// engine does not expire them itself), [`SessionJournal`] (a bounded
/// per-session journal) and [`SessionExport`] (export, import, backup and
/// restore in the format every backend shares).
///
/// Code written against the trait runs on any backend:
///
/// ```
/// use std::time::Duration;
/// use keel_session_store::{
///     Data, MemoryStore, NewSession, SessionId, SessionStore, StoreConfig, StoreError,
/// };
///
/// /// Records a page view, rereading and retrying when another writer won.
/// async fn count_view(
///     store: &impl SessionStore,
///     id: &SessionId,
/// ) -> Result<u64, Box<dyn std::error::Error>> {
///     loop {
///         let session = store.get(id).await?.ok_or(StoreError::NotFound)?;
///         // `data` holds JSON text; typed reads parse only what they ask for.
///         let views = session.data.get::<u64>("views")?.unwrap_or(0) + 1;
///         let data = Data::from_value(serde_json::json!({ "views": views }))?;
///         match store.update(id, session.version, data).await {
///             Ok(_) => return Ok(views),
///             Err(StoreError::Conflict { .. }) => continue,
///             Err(e) => return Err(e.into()),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new(StoreConfig::default())?;
/// let s = store
///     .create(NewSession::new("client-7", "http").with_ttl(Duration::from_secs(1800)))
///     .await?;
/// assert_eq!(count_view(&store, &s.id).await?, 1);
/// assert_eq!(count_view(&store, &s.id).await?, 2);
/// assert_eq!(store.touch(&s.id).await?.version, s.version + 2); // touch keeps the version
/// assert!(store.delete(&s.id).await?);
/// # Ok(()) }
/// ```
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
    ) -> impl Future<Output = Result<Arc<Session>, StoreError>> + Send {
        self.update_with_ttl(id, expected_version, data, None)
    }

    /// [`update`](Self::update), also setting a new TTL when `ttl` is given
    /// (from now on, the session expires `ttl` after its last activity).
    ///
    /// # Errors
    /// As [`update`](Self::update).
    fn update_with_ttl(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
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

/// Removing expired sessions on request, for backends that keep them until
/// swept (a store whose engine expires keys itself, as Redis does, has
/// nothing to do). Expired sessions are absent on every read either way;
/// this frees what they hold.
pub trait ExpiredCleanup: SessionStore {
    /// Removes every expired session now; returns how many.
    ///
    /// # Errors
    /// A backend error.
    fn cleanup_expired(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// A bounded per-session journal of operations: appended pending, then
/// committed or aborted; it dies with its session.
pub trait SessionJournal: SessionStore {
    /// Appends a pending record to the session's journal; returns its seq.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::JournalFull`] when the
    /// journal is at `max_journal_records` and every record is pending.
    fn journal_append(
        &self,
        id: &SessionId,
        entry: JournalEntry,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Marks the pending journal record `seq` committed or aborted.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::NoJournalRecord`];
    /// [`StoreError::JournalTransition`] if it is not pending.
    fn journal_mark(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session's journal, oldest first.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or a backend error.
    fn journal(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Vec<JournalRecord>, StoreError>> + Send;
}

/// Every session and its journal, out and in: export and import, and over
/// them backup and restore in the format every backend shares, so a backup
/// taken from one backend restores into another.
pub trait SessionExport: SessionStore {
    /// Every live session with its journal (for backups, compaction and
    /// snapshots).
    ///
    /// # Errors
    /// A backend error.
    fn export(&self) -> impl Future<Output = Result<Vec<SessionDump>, StoreError>> + Send;

    /// Replaces the whole contents with `dumps` (expired ones are skipped),
    /// all or nothing; returns how many sessions it holds now.
    ///
    /// # Errors
    /// [`StoreError::TooManySessions`] or [`StoreError::TooLarge`] (and
    /// nothing changes), or a backend error.
    fn import(
        &self,
        dumps: Vec<SessionDump>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Writes every live session and its journal to `out` in the backup
    /// format shared by all backends (see [`BackupOptions`]).
    ///
    /// # Errors
    /// [`StoreError::Backup`] if writing fails, or a backend error.
    fn backup<W>(
        &self,
        out: W,
        options: &BackupOptions,
    ) -> impl Future<Output = Result<BackupSummary, StoreError>> + Send
    where
        W: AsyncWrite + Unpin + Send,
    {
        async move {
            let dumps = self.export().await?;
            Ok(backup::write(&dumps, out, options).await?)
        }
    }

    /// Replaces the contents with a backup read from `input`, after
    /// checking all of it: a corrupt, truncated or wrongly keyed backup
    /// changes nothing. Returns how many live sessions it restored.
    ///
    /// # Errors
    /// [`StoreError::Backup`] naming what is wrong with the backup; the
    /// errors of [`import`](Self::import).
    fn restore<R>(
        &self,
        input: R,
        key: Option<&BackupKey>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send
    where
        R: AsyncRead + Unpin + Send,
    {
        async move {
            let dumps = backup::read(input, key).await?;
            self.import(dumps).await
        }
    }
}
