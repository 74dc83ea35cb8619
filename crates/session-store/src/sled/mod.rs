//! The sled backend: sessions on disk, surviving a crash.
//!
//! One sled tree per key space, all sharing sled's one log (so a flush
//! makes every tree durable and recovery keeps writes in order):
//! - `s` + id → the filed expiry (8 bytes) and the session (`record`);
//! - `x` + filed expiry (big-endian ms) + id → (): the expiry index, which
//!   cleanup range-scans up to now;
//! - `c` + client id length + client id + id → (): the client index;
//! - `j` + id → the journal (JSON).
//!
//! The filed expiry is never later than the session's: updates and
//! touches, which push expiry later, leave the index alone, and a sweep
//! re-files the sessions it finds alive. Writes go one key at a time in an
//! order that a crash between any two leaves safe (`write`); writes to
//! one session are serialised by a striped lock (sled holds the directory
//! lock, so no other process writes).
//!
//! Modules by job: `keys` the key layout, `record` the codec, `write`
//! the crash-ordered write protocol, `sweep` expiry cleanup, `store` the
//! `SessionStore` impl; `kv` and `engine` the engine beneath,
//! `commit` group commit.

mod commit;
mod config;
mod engine;
mod keys;
mod kv;
mod record;
mod store;
mod sweep;
#[cfg(test)]
mod tests;
mod write;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::builder::StoreBuilder;
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::Journal;
use crate::observer::{Event, Events};
use crate::population::Population;
use crate::session::Session;
use crate::store::SessionExport;
use crate::sweeper::Sweeper;
use commit::GroupCommit;
pub use config::{Durability, SledConfig};
use engine::SledEngine;
use keys::key;
use keys::{CLIENT, EXPIRY, JOURNAL, SESSION};
use kv::Engine;
use record::{Stored, from_json, to_json};
use sweep::sweep;
use write::{erase, replace};

const STRIPES: usize = 64;

struct Inner {
    engine: Arc<dyn Engine>,
    stripes: Box<[Mutex<()>]>,
    count: Population,
    config: StoreConfig,
    sled: SledConfig,
    clock: Arc<dyn Clock>,
    events: Events,
    commit: GroupCommit,
    sweeper: Sweeper,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A clean shutdown loses nothing, even in relaxed mode; there is
        // no one left to tell if this fails.
        let _ = self.engine.flush();
    }
}

/// Sessions in a sled database on disk (DETS-like): they survive restarts,
/// and in [`Durability::Durable`] mode every acknowledged write survives a
/// crash (`kill -9`, power loss). Clones share the store; the directory is
/// locked while it is open. Expired sessions are absent on read and are
/// removed by a background task every `cleanup_interval` (on the tokio
/// runtime the store is opened in, or on a thread of its own outside one;
/// it stops when the last clone is dropped) and by
/// [`cleanup_expired`](crate::ExpiredCleanup::cleanup_expired). A durable write's
/// fsync runs on tokio's blocking pool (inline when polled outside tokio).
///
/// ```
/// use keel_session_store::{NewSession, SessionStore, SledConfig, SledStore, StoreConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = SledStore::open(SledConfig::new(dir.path().join("sessions")), StoreConfig::default())?;
/// let session = store.create(NewSession::new("client-7", "http")).await?;
/// drop(store);
/// let store = SledStore::open(SledConfig::new(dir.path().join("sessions")), StoreConfig::default())?;
/// assert!(store.get(&session.id).await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.inner.sled.path)
            .field("durability", &self.inner.sled.durability)
            .field("sessions", &self.inner.count.get())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the store, with the system clock.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming a bad field; [`StoreError::Backend`]
    /// if the database cannot be opened (naming the path).
    pub fn open(sled: SledConfig, config: StoreConfig) -> Result<Self, StoreError> {
        Self::builder(sled, config).build()
    }

    /// A builder for a store with a clock, an observer or a name.
    pub fn builder(sled: SledConfig, config: StoreConfig) -> StoreBuilder<SledConfig> {
        StoreBuilder::new(sled, config)
    }

    /// The store's name (empty unless given one).
    pub fn name(&self) -> &str {
        self.inner.events.name()
    }

    /// Bytes the database occupies on disk.
    ///
    /// # Errors
    /// A backend error.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner
            .engine
            .size_on_disk()
            .map_err(StoreError::Backend)
    }

    /// fsyncs done for durable writes so far (fewer than the writes when
    /// group commit shares them).
    pub fn flushes(&self) -> u64 {
        self.inner.commit.flushes()
    }

    /// Copies the live sessions into a fresh store at `path` (same options
    /// otherwise) and returns it: the compaction path, since sled does not
    /// give space back in place. The copy is on disk when this returns,
    /// also in relaxed mode, so the application can be pointed at the new
    /// directory and the old one deleted once this store is dropped.
    ///
    /// # Errors
    /// A backend error; the new store is left incomplete.
    pub async fn compact_to(&self, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let mut sled = self.inner.sled.clone();
        sled.path = path.as_ref().to_path_buf();
        let target = Self::open_with(
            sled,
            self.inner.config.clone(),
            Arc::clone(&self.inner.clock),
            self.inner.events.clone(),
        )?;
        target.import(self.export().await?).await?;
        // Durable before the caller deletes the old directory.
        target.inner.commit.wait(&target.inner.engine).await?;
        Ok(target)
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_millis()
    }

    fn lock(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        lock_stripe(&self.inner, id)
    }

    /// Waits until writes applied so far are durable, in durable mode.
    async fn acknowledge(&self) -> Result<(), StoreError> {
        match self.inner.sled.durability {
            Durability::Durable => self.inner.commit.wait(&self.inner.engine).await,
            Durability::Relaxed { .. } => Ok(()),
        }
    }

    fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        load(&self.inner, id)
    }

    /// The live session `id` (under its stripe lock); an expired one is
    /// removed on the way.
    fn live(&self, id: &SessionId, now: u64) -> Result<Stored, StoreError> {
        let current = self.load(id)?.ok_or(StoreError::NotFound)?;
        if current.head.is_expired(now) {
            erase(&*self.inner.engine, &current)?;
            self.inner.count.remove(1);
            self.inner
                .events
                .emit(|name| Event::Expired { name, count: 1 });
            return Err(StoreError::NotFound);
        }
        Ok(current)
    }

    /// Applies `change` to a live session, durably. The session `change`
    /// sees has its data only if `with_data` (an update replaces it anyway).
    async fn modify(
        &self,
        id: &SessionId,
        with_data: bool,
        change: impl FnOnce(&Session, u64) -> Result<Session, StoreError>,
    ) -> Result<Arc<Session>, StoreError> {
        let next = {
            let now = self.now();
            let _stripe = self.lock(id);
            let current = self.live(id, now)?;
            let filed = current.filed;
            let base = if with_data {
                current.session()?
            } else {
                current.head
            };
            let next = change(&base, now).inspect_err(|e| {
                if matches!(e, StoreError::Conflict { .. }) {
                    self.inner.events.emit(|name| Event::Conflict { name });
                }
            })?;
            replace(&*self.inner.engine, filed, &next)?;
            next
        };
        self.acknowledge().await?;
        Ok(Arc::new(next))
    }

    /// Applies `change` to a live session's journal, durably.
    async fn journaled<T>(
        &self,
        id: &SessionId,
        change: impl FnOnce(&mut Journal, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = {
            let now = self.now();
            let _stripe = self.lock(id);
            self.live(id, now)?;
            let mut journal = self.load_journal(id)?;
            let out = change(&mut journal, now)?;
            let bytes = to_json(&journal)?;
            self.inner
                .engine
                .put(&key(JOURNAL, id), bytes)
                .map_err(StoreError::Backend)?;
            out
        };
        self.acknowledge().await?;
        Ok(out)
    }

    fn load_journal(&self, id: &SessionId) -> Result<Journal, StoreError> {
        match self
            .inner
            .engine
            .get(&key(JOURNAL, id))
            .map_err(StoreError::Backend)?
        {
            Some(bytes) => from_json(&bytes, "journal"),
            None => Ok(Journal::default()),
        }
    }

    /// Every session record, decoded, in id order.
    fn scan_sessions(&self, mut visit: impl FnMut(Session)) -> Result<(), StoreError> {
        let mut failure = None;
        self.inner
            .engine
            .scan(
                &[SESSION][..]..&[SESSION + 1][..],
                &mut |_, value| match Stored::decode(value.to_vec()).and_then(Stored::session) {
                    Ok(session) => {
                        visit(session);
                        true
                    }
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                },
            )
            .map_err(StoreError::Backend)?;
        failure.map_or(Ok(()), Err)
    }
}

impl StoreBuilder<SledConfig> {
    /// Opens (or creates) the sled store and starts its background sweep:
    /// on the current tokio runtime, or on a thread of its own outside one.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming a bad field; [`StoreError::Backend`]
    /// if the database cannot be opened (naming the path).
    pub fn build(self) -> Result<SledStore, StoreError> {
        let events = self.events();
        SledStore::open_with(self.backend, self.config, self.clock, events)
    }
}

impl SledStore {
    fn open_with(
        sled: SledConfig,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        events: Events,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        sled.validate()?;
        let flush_every = sled.flush_every_ms();
        let spaces = [
            (SESSION, "sessions"),
            (EXPIRY, "expiry"),
            (JOURNAL, "journals"),
            (CLIENT, "clients"),
        ];
        let engine = open_db(&sled, flush_every)
            .and_then(|db| SledEngine::new(db, &spaces))
            .map_err(|e| {
                StoreError::Backend(
                    format!("cannot open sled store at {}: {e}", sled.path.display()).into(),
                )
            })?;
        let engine: Arc<dyn Engine> = Arc::new(engine);
        let mut sessions = 0;
        engine
            .scan(&[SESSION][..]..&[SESSION + 1][..], &mut |_, _| {
                sessions += 1;
                true
            })
            .map_err(StoreError::Backend)?;
        let inner = Arc::new(Inner {
            engine,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            count: Population::default(),
            config,
            sled,
            clock,
            events,
            commit: GroupCommit::default(),
            sweeper: Sweeper::default(),
        });
        inner.count.set(sessions);
        inner.sweeper.start(
            Arc::downgrade(&inner),
            inner.config.cleanup_interval,
            |inner| {
                let now = inner.clock.now_millis();
                // A failed sweep is retried at the next tick.
                let _ = sweep(inner, now);
            },
        )?;
        Ok(SledStore { inner })
    }
}

/// Opens the database. A store of this process that was just dropped can
/// hold the directory lock a moment longer (sled's I/O threads finish
/// their writes first), so a held lock is retried for up to a second
/// before it is reported.
fn open_db(sled: &SledConfig, flush_every: Option<u64>) -> sled::Result<sled::Db> {
    let open = || {
        sled::Config::new()
            .path(&sled.path)
            .cache_capacity(sled.cache_bytes)
            .flush_every_ms(flush_every)
            .open()
    };
    for _ in 0..20 {
        match open() {
            // sled reports a held lock only in its message (kind Other).
            Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
    open()
}

fn lock_stripe<'a>(inner: &'a Inner, id: &SessionId) -> MutexGuard<'a, ()> {
    inner.stripes[usize::from(id.as_bytes()[0]) % STRIPES]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn load(inner: &Inner, id: &SessionId) -> Result<Option<Stored>, StoreError> {
    inner
        .engine
        .get(&key(SESSION, id))
        .map_err(StoreError::Backend)?
        .map(Stored::decode)
        .transpose()
}
