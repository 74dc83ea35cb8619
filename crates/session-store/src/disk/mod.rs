//! The sled backend: sessions on disk, surviving a crash.
//!
//! One sled tree holds three key spaces, so that a session, its expiry
//! index entry and its journal always change in one atomic batch:
//! `s` + id → the filed expiry (8 bytes) and the session (JSON),
//! `x` + filed expiry (big-endian ms) + id → (), `j` + id → the journal
//! (JSON). Cleanup is a range scan over `x` up to now. The filed expiry is
//! never later than the session's: updates and touches, which push expiry
//! later, leave the index alone (one write instead of three), and a sweep
//! re-files the sessions it finds alive. Writes to one session are serialised by a striped lock (sled
//! holds the directory lock, so no other process writes).

mod commit;
mod config;
mod engine;
mod record;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::backup::{self, SessionDump};
use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, StoreConfig};
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{Journal, JournalEntry, JournalRecord, JournalStatus};
use crate::kv::{Batch, Engine};
use crate::observer::{Event, Events, Observer};
use crate::population::Population;
use crate::session::{NewSession, Session};
use crate::store::SessionStore;
use crate::sweeper::Sweeper;
use commit::GroupCommit;
pub use config::{Durability, SledConfig};
use engine::SledEngine;
use record::Stored;

const STRIPES: usize = 64;
const SESSION: u8 = b's';
const EXPIRY: u8 = b'x';
const JOURNAL: u8 = b'j';
const CLIENT: u8 = b'c';

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
/// removed by a background task every `cleanup_interval` (when opened
/// inside a tokio runtime; it stops when the last clone is dropped) and by
/// [`cleanup_expired`](SessionStore::cleanup_expired). A durable write's
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
        Self::with_clock(sled, config, SystemClock)
    }

    /// Opens the store with this clock (a manual clock for tests).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn with_clock(
        sled: SledConfig,
        config: StoreConfig,
        clock: impl Clock,
    ) -> Result<Self, StoreError> {
        Self::build(sled, config, Arc::new(clock), Events::default())
    }

    /// Opens the store with this clock, reporting to `observer`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn with_observer(
        sled: SledConfig,
        config: StoreConfig,
        clock: impl Clock,
        observer: impl Observer,
    ) -> Result<Self, StoreError> {
        Self::build(sled, config, Arc::new(clock), Events::new(observer))
    }

    fn build(
        sled: SledConfig,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        events: Events,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        let flush_every = match sled.durability {
            Durability::Durable => None,
            Durability::Relaxed { flush_every } => {
                let ms = u64::try_from(flush_every.as_millis()).unwrap_or(u64::MAX);
                if ms == 0 {
                    return Err(ConfigError::new(
                        "durability.relaxed.flush_every",
                        "must be at least 1ms",
                    )
                    .into());
                }
                Some(ms)
            }
        };
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
        );
        Ok(Self { inner })
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
        let target = Self::build(
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
            self.inner.events.emit(Event::Expired { count: 1 });
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
                    self.inner.events.emit(Event::Conflict);
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

fn key(space: u8, id: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(space);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `c` + client id length (u32 BE) + client id: every session of one
/// client under one prefix.
fn client_prefix(client_id: &str) -> Vec<u8> {
    let len = u32::try_from(client_id.len()).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(5 + client_id.len() + 16);
    k.push(CLIENT);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(client_id.as_bytes());
    k
}

fn client_key(client_id: &str, id: &SessionId) -> Vec<u8> {
    let mut k = client_prefix(client_id);
    k.extend_from_slice(id.as_bytes());
    k
}

fn expiry_key(filed: u64, id: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(EXPIRY);
    k.extend_from_slice(&filed.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(Box::new(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StoreError::Backend(format!("a stored {what} record does not decode: {e}").into())
    })
}

// Writes go one key at a time (sled's batches and transactions take a
// lock that stops every other writer), in an order that leaves, after a
// crash between any two, at worst an index entry pointing at nothing or
// at a session filed elsewhere; the sweep (expiry entries) and
// `by_client` (client entries) remove those when they meet them.

/// Writes a new session: its client and expiry index entries, then the
/// record.
fn insert(engine: &dyn Engine, session: &Session) -> Result<(), StoreError> {
    let expires = session.expires_at();
    engine
        .put(&client_key(&session.client_id, &session.id), Vec::new())
        .map_err(StoreError::Backend)?;
    file(
        engine,
        expires,
        &session.id,
        Stored::encode(expires, session)?,
    )
}

fn file(
    engine: &dyn Engine,
    filed: u64,
    id: &SessionId,
    record: Vec<u8>,
) -> Result<(), StoreError> {
    engine
        .put(&expiry_key(filed, id), Vec::new())
        .and_then(|()| engine.put(&key(SESSION, id), record))
        .map_err(StoreError::Backend)
}

/// Replaces the session filed at `filed` by `next`: the index entry moves
/// only if `next` expires before that (new entry, record, old entry).
fn replace(engine: &dyn Engine, filed: u64, next: &Session) -> Result<(), StoreError> {
    let expires = next.expires_at();
    if expires < filed {
        file(engine, expires, &next.id, Stored::encode(expires, next)?)?;
        return engine
            .remove(&expiry_key(filed, &next.id))
            .map_err(StoreError::Backend);
    }
    engine
        .put(&key(SESSION, &next.id), Stored::encode(filed, next)?)
        .map_err(StoreError::Backend)
}

/// Removes everything of a session: journal, record, then index entries.
fn erase(engine: &dyn Engine, stored: &Stored) -> Result<(), StoreError> {
    let id = &stored.head.id;
    engine
        .remove(&key(JOURNAL, id))
        .and_then(|()| engine.remove(&key(SESSION, id)))
        .and_then(|()| engine.remove(&expiry_key(stored.filed, id)))
        .and_then(|()| engine.remove(&client_key(&stored.head.client_id, id)))
        .map_err(StoreError::Backend)
}

/// Removes every session expired at `now`: a range scan of the expiry
/// index, then each candidate rechecked under its lock (a touch may have
/// moved it on since).
fn sweep(inner: &Inner, now: u64) -> Result<usize, StoreError> {
    let mut due = Vec::new();
    let mut end = vec![EXPIRY];
    end.extend_from_slice(&now.saturating_add(1).to_be_bytes());
    inner
        .engine
        .scan(&[EXPIRY][..]..&end[..], &mut |k, _| {
            let filed = k.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok());
            let id = k.get(9..25).and_then(|b| <[u8; 16]>::try_from(b).ok());
            if let (Some(filed), Some(id)) = (filed, id) {
                due.push((u64::from_be_bytes(filed), SessionId::from_bytes(id)));
            }
            true
        })
        .map_err(StoreError::Backend)?;
    let engine = &*inner.engine;
    let mut removed = 0;
    for (filed, id) in due {
        let _stripe = lock_stripe(inner, &id);
        match load(inner, &id)? {
            Some(stored) if stored.filed == filed => {
                if stored.head.is_expired(now) {
                    erase(engine, &stored)?;
                    inner.count.remove(1);
                    removed += 1;
                } else {
                    // Alive: touched or updated since it was filed.
                    let to = stored.head.expires_at();
                    file(engine, to, &id, stored.refiled(to))?;
                    engine
                        .remove(&expiry_key(filed, &id))
                        .map_err(StoreError::Backend)?;
                }
            }
            // Left by a crash between two writes: points at nothing, or
            // at a session filed elsewhere.
            _ => engine
                .remove(&expiry_key(filed, &id))
                .map_err(StoreError::Backend)?,
        }
    }
    if removed > 0 {
        inner.events.emit(Event::Expired { count: removed });
    }
    if let Ok(bytes) = inner.engine.size_on_disk() {
        inner.events.emit(Event::SizeOnDisk { bytes });
    }
    Ok(removed)
}

impl SessionStore for SledStore {
    async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
        self.inner.config.check_size(&new.data)?;
        self.inner
            .count
            .reserve(self.inner.config.max_sessions, || {
                sweep(&self.inner, self.now()).unwrap_or(0)
            })?;
        let now = self.now();
        let mut session = Session::create(
            new,
            SessionId::from_bytes([0; 16]),
            now,
            self.inner.config.default_ttl,
        );
        let stored = loop {
            session.id = match SessionId::random() {
                Ok(id) => id,
                Err(e) => break Err(e),
            };
            let _stripe = self.lock(&session.id);
            match self.inner.engine.contains(&key(SESSION, &session.id)) {
                Ok(false) => break insert(&*self.inner.engine, &session),
                Ok(true) => {}
                Err(e) => break Err(StoreError::Backend(e)),
            }
        };
        stored.inspect_err(|_| self.inner.count.remove(1))?;
        self.acknowledge().await?;
        self.inner.events.emit(Event::Created);
        Ok(Arc::new(session))
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let now = self.now();
        match self.load(id)? {
            Some(stored) if !stored.head.is_expired(now) => Ok(Some(Arc::new(stored.session()?))),
            _ => Ok(None),
        }
    }

    async fn update_with_ttl(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
    ) -> Result<Arc<Session>, StoreError> {
        self.inner.config.check_size(&data)?;
        self.modify(id, false, |current, now| {
            current.updated(expected_version, data, ttl, now)
        })
        .await
    }

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        self.modify(id, true, |current, now| Ok(current.touched(now)))
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        {
            let _stripe = self.lock(id);
            let Some(stored) = self.load(id)? else {
                return Ok(false);
            };
            erase(&*self.inner.engine, &stored)?;
            self.inner.count.remove(1);
        }
        self.acknowledge().await?;
        self.inner.events.emit(Event::Deleted);
        Ok(true)
    }

    async fn cleanup_expired(&self) -> Result<usize, StoreError> {
        sweep(&self.inner, self.now())
    }

    async fn len(&self) -> Result<usize, StoreError> {
        Ok(self.inner.count.get())
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let now = self.now();
        let prefix = client_prefix(client_id);
        let mut end = prefix.clone();
        end.extend_from_slice(&[u8::MAX; 17]);
        let mut ids = Vec::new();
        self.inner
            .engine
            .scan(&prefix[..]..&end[..], &mut |k, _| {
                if let Some(id) = k
                    .get(prefix.len()..)
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                {
                    ids.push(SessionId::from_bytes(id));
                }
                true
            })
            .map_err(StoreError::Backend)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match self.load(&id)? {
                Some(stored) if !stored.head.is_expired(now) => {
                    found.push(Arc::new(stored.session()?));
                }
                Some(_) => {}
                None => {
                    // Left by a crash between two writes of a create or a
                    // delete: clear it, under the session's lock.
                    let _stripe = self.lock(&id);
                    if self.load(&id)?.is_none() {
                        self.inner
                            .engine
                            .remove(&client_key(client_id, &id))
                            .map_err(StoreError::Backend)?;
                    }
                }
            }
        }
        found.sort_by_key(|s| (s.created_at, s.id));
        Ok(found)
    }

    async fn journal_append(&self, id: &SessionId, entry: JournalEntry) -> Result<u64, StoreError> {
        let limit = self.inner.config.max_journal_records;
        self.journaled(id, |journal, now| journal.append(entry, now, limit))
            .await
    }

    async fn journal_mark(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
    ) -> Result<(), StoreError> {
        self.journaled(id, |journal, _| journal.mark(seq, status))
            .await
    }

    async fn journal(&self, id: &SessionId) -> Result<Vec<JournalRecord>, StoreError> {
        if self.get(id).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        Ok(self.load_journal(id)?.records())
    }

    async fn export(&self) -> Result<Vec<SessionDump>, StoreError> {
        let now = self.now();
        let mut sessions = Vec::with_capacity(self.inner.count.get());
        self.scan_sessions(|s| {
            if !s.is_expired(now) {
                sessions.push(s);
            }
        })?;
        sessions
            .into_iter()
            .map(|session| {
                let journal = self.load_journal(&session.id)?;
                Ok(SessionDump {
                    session: Arc::new(session),
                    journal,
                })
            })
            .collect()
    }

    async fn import(&self, dumps: Vec<SessionDump>) -> Result<usize, StoreError> {
        let dumps = backup::admit(dumps, &self.inner.config, self.now())?;
        let count = dumps.len();
        {
            // Every stripe held, in order: no write interleaves the swap.
            let _stripes: Vec<_> = self
                .inner
                .stripes
                .iter()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
                .collect();
            let mut batch = Batch::default();
            self.inner
                .engine
                .scan(&[0u8][..]..&[u8::MAX][..], &mut |k, _| {
                    batch.remove(k.to_vec());
                    true
                })
                .map_err(StoreError::Backend)?;
            // One atomic batch: a crash leaves the old contents or the new.
            for dump in &dumps {
                let (id, expires) = (&dump.session.id, dump.session.expires_at());
                batch.put(key(SESSION, id), Stored::encode(expires, &dump.session)?);
                batch.put(expiry_key(expires, id), Vec::new());
                batch.put(client_key(&dump.session.client_id, id), Vec::new());
                if !dump.journal.is_empty() {
                    batch.put(key(JOURNAL, id), to_json(&dump.journal)?);
                }
            }
            self.inner
                .engine
                .apply(batch)
                .map_err(StoreError::Backend)?;
            self.inner.count.set(count);
        }
        self.acknowledge().await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn index_keys(store: &SledStore) -> usize {
        let mut n = 0;
        store
            .inner
            .engine
            .scan(&[EXPIRY][..]..&[EXPIRY + 1][..], &mut |_, _| {
                n += 1;
                true
            })
            .unwrap();
        n
    }

    #[tokio::test]
    async fn the_sweep_clears_what_a_crash_between_two_writes_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::at(1_000);
        let store = SledStore::with_clock(
            SledConfig::new(dir.path()),
            StoreConfig::default(),
            clock.clone(),
        )
        .unwrap();
        let s = store
            .create(NewSession::new("c", "http").with_ttl(Duration::from_secs(10)))
            .await
            .unwrap();
        let engine = &*store.inner.engine;
        // A create cut after its index entry; a re-file cut after its new entry.
        let ghost = SessionId::random().unwrap();
        engine.put(&expiry_key(5_000, &ghost), Vec::new()).unwrap();
        engine.put(&expiry_key(6_000, &s.id), Vec::new()).unwrap();
        assert_eq!(index_keys(&store), 3);
        clock.advance(Duration::from_secs(6));
        assert_eq!(
            store.cleanup_expired().await.unwrap(),
            0,
            "nothing live expired"
        );
        assert_eq!(
            index_keys(&store),
            1,
            "only the session's own entry is left"
        );
        assert_eq!(store.len().await.unwrap(), 1);
        clock.advance(Duration::from_secs(5));
        assert_eq!(store.cleanup_expired().await.unwrap(), 1);
        assert_eq!(index_keys(&store), 0);
    }

    #[tokio::test]
    async fn by_client_reads_the_client_index_and_clears_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(SledConfig::new(dir.path()), StoreConfig::default()).unwrap();
        let mine = store.create(NewSession::new("ann", "http")).await.unwrap();
        store.create(NewSession::new("anna", "http")).await.unwrap();
        store.create(NewSession::new("an", "http")).await.unwrap();
        // A create cut after its client entry.
        let ghost = SessionId::random().unwrap();
        let engine = &*store.inner.engine;
        engine.put(&client_key("ann", &ghost), Vec::new()).unwrap();
        let found: Vec<_> = store
            .by_client("ann")
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(
            found,
            [mine.id],
            "only ann's, not anna's or an's, nor the ghost"
        );
        assert!(
            engine.get(&client_key("ann", &ghost)).unwrap().is_none(),
            "cleared"
        );
        store.delete(&mine.id).await.unwrap();
        assert!(store.by_client("ann").await.unwrap().is_empty());
        assert!(engine.get(&client_key("ann", &mine.id)).unwrap().is_none());
    }
}
