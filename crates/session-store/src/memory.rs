//! The in-memory backend: sharded maps with an expiry index per shard.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::backup::{self, SessionDump};
use crate::builder::StoreBuilder;
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{Journal, JournalEntry, JournalRecord, JournalStatus};
use crate::observer::{Event, Events};
use crate::population::Population;
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionExport, SessionJournal, SessionStore};
use crate::sweeper::Sweeper;

const SHARDS: usize = 32;

/// A session and the expiry it is filed under in the index. The index
/// entry may be older than the session's expiry (updates and touches only
/// push expiry later, and re-filing on each would cost a tree update per
/// write); it is never later, so a sweep finds every expired session and
/// re-files the ones that moved on.
struct Slot {
    session: Arc<Session>,
    indexed: u64,
}

impl Slot {
    /// Files session `id` anew in `expiry` if it now expires before the
    /// time it is filed under.
    fn refile(&mut self, expiry: &mut BTreeSet<(u64, SessionId)>, id: SessionId) {
        let expires = self.session.expires_at();
        if expires < self.indexed {
            expiry.remove(&(self.indexed, id));
            expiry.insert((expires, id));
            self.indexed = expires;
        }
    }
}

#[derive(Default)]
struct Shard {
    sessions: HashMap<SessionId, Slot, BuildHasherDefault<IdHasher>>,
    /// Journals of the sessions that have one; removed with the session.
    journals: HashMap<SessionId, Journal, BuildHasherDefault<IdHasher>>,
    /// (filed expiry, id) for every session, so cleanup is a range split.
    expiry: BTreeSet<(u64, SessionId)>,
    /// The sessions of each client, so `by_client` reads only theirs.
    clients: HashMap<Arc<str>, HashSet<SessionId, BuildHasherDefault<IdHasher>>>,
}

impl Shard {
    fn get(&self, id: &SessionId) -> Option<&Arc<Session>> {
        self.sessions.get(id).map(|slot| &slot.session)
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.sessions.values().map(|slot| &slot.session)
    }

    fn remove(&mut self, id: &SessionId) -> Option<Arc<Session>> {
        let slot = self.sessions.remove(id)?;
        self.expiry.remove(&(slot.indexed, *id));
        self.forget(&slot.session);
        Some(slot.session)
    }

    /// Drops what besides its slot and index entry refers to `session`.
    fn forget(&mut self, session: &Session) {
        self.journals.remove(&session.id);
        if let Some(ids) = self.clients.get_mut(&*session.client_id) {
            ids.remove(&session.id);
            if ids.is_empty() {
                self.clients.remove(&*session.client_id);
            }
        }
    }

    /// Stores `session`; returns the version it replaced, for the caller to
    /// drop after releasing the lock.
    fn put(&mut self, session: Arc<Session>) -> Option<Arc<Session>> {
        let expires = session.expires_at();
        let id = session.id;
        match self.sessions.get_mut(&id) {
            Some(slot) => {
                let old = std::mem::replace(&mut slot.session, session);
                slot.refile(&mut self.expiry, id);
                Some(old)
            }
            None => {
                self.expiry.insert((expires, id));
                self.clients
                    .entry(Arc::clone(&session.client_id))
                    .or_default()
                    .insert(id);
                self.sessions.insert(
                    id,
                    Slot {
                        session,
                        indexed: expires,
                    },
                );
                None
            }
        }
    }

    /// Removes every session expired at `now`; returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        let later = self
            .expiry
            .split_off(&(now.saturating_add(1), SessionId::from_bytes([0; 16])));
        let due = std::mem::replace(&mut self.expiry, later);
        let mut removed = 0;
        for (_, id) in due {
            let Some(slot) = self.sessions.get_mut(&id) else {
                continue;
            };
            let expires = slot.session.expires_at();
            if expires <= now {
                if let Some(slot) = self.sessions.remove(&id) {
                    self.forget(&slot.session);
                }
                removed += 1;
            } else {
                slot.indexed = expires;
                self.expiry.insert((expires, id));
            }
        }
        removed
    }
}

/// Session ids are 128 bits from a CSPRNG and never chosen by a client (a
/// lookup with a forged id inserts nothing), so their bits are already a
/// good hash: no need to run SipHash over them on every access.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }
}

struct Inner {
    shards: Box<[RwLock<Shard>]>,
    count: Population,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    events: Events,
    sweeper: Sweeper,
}

/// Sessions in memory: fast, and gone when the process ends. Clones share
/// the store. Expired sessions are absent on read and are really freed by
/// a background task every `cleanup_interval` (on the tokio runtime the
/// store is built in, or on a thread of its own when built outside one; it
/// stops when the last clone is dropped) and by
/// [`cleanup_expired`](crate::ExpiredCleanup::cleanup_expired).
///
/// Every read hands out a shared, unchanging version of the session. An
/// update of a session nobody holds a version of (drop what `get` gave
/// before updating) changes it in place; otherwise the update makes a new
/// version beside the held one (copying its fields, not its data).
///
/// ```
/// use keel_session_store::{MemoryStore, NewSession, SessionStore, StoreConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new(StoreConfig::default())?;
/// let session = store.create(NewSession::new("client-7", "http")).await?;
/// let mut data = session.data.to_map();
/// data.insert("cart".into(), serde_json::json!(["book"]));
/// let updated = store.update(&session.id, session.version, data.into()).await?;
/// assert_eq!(updated.version, session.version + 1);
/// assert_eq!(updated.data.get::<Vec<String>>("cart")?, Some(vec!["book".into()]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.inner.count.get())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store with this config and the system clock.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming the bad field.
    pub fn new(config: StoreConfig) -> Result<Self, StoreError> {
        Self::builder(config).build()
    }

    /// A builder for a store with a clock, an observer or a name.
    pub fn builder(config: StoreConfig) -> StoreBuilder<()> {
        StoreBuilder::new((), config)
    }

    /// The store's name (empty unless given one).
    pub fn name(&self) -> &str {
        self.inner.events.name()
    }
}

impl StoreBuilder<()> {
    /// Builds the memory store and starts its background sweep: on the
    /// current tokio runtime, or on a thread of its own outside one.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming the bad field.
    pub fn build(self) -> Result<MemoryStore, StoreError> {
        let store = self.build_unswept()?;
        let inner = &store.inner;
        inner.sweeper.start(
            Arc::downgrade(inner),
            inner.config.cleanup_interval,
            |inner| {
                sweep(inner, inner.clock.now_millis());
            },
        )?;
        Ok(store)
    }

    /// The store without its background sweep: for a replicated state
    /// machine, where only the leader decides when sessions expire.
    #[cfg_attr(
        not(feature = "raft"),
        allow(dead_code, reason = "only the raft state machine sweeps by itself")
    )]
    pub(crate) fn build_unswept(self) -> Result<MemoryStore, StoreError> {
        let events = self.events();
        let StoreBuilder { config, clock, .. } = self;
        config.validate()?;
        let inner = Arc::new(Inner {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            count: Population::default(),
            config,
            clock,
            events,
            sweeper: Sweeper::default(),
        });
        Ok(MemoryStore { inner })
    }
}

impl MemoryStore {
    fn shard(&self, id: &SessionId) -> &RwLock<Shard> {
        &self.inner.shards[shard_of(id)]
    }

    fn read(&self, id: &SessionId) -> RwLockReadGuard<'_, Shard> {
        self.shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, id: &SessionId) -> RwLockWriteGuard<'_, Shard> {
        self.shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_millis()
    }

    fn sweep_all(&self) -> usize {
        sweep(&self.inner, self.now())
    }

    /// The slot of live session `id` in a write-locked shard; an expired
    /// one is removed on the way.
    fn live<'s>(
        &self,
        shard: &'s mut Shard,
        id: &SessionId,
        now: u64,
    ) -> Result<&'s mut Slot, StoreError> {
        let Some(current) = shard.get(id) else {
            return Err(StoreError::NotFound);
        };
        if current.is_expired(now) {
            return Err(self.expire(shard, id));
        }
        shard.sessions.get_mut(id).ok_or(StoreError::NotFound)
    }

    /// Removes expired session `id`, found by a read or write; the error
    /// the caller answers with.
    fn expire(&self, shard: &mut Shard, id: &SessionId) -> StoreError {
        shard.remove(id);
        self.inner.count.remove(1);
        self.inner
            .events
            .emit(|name| Event::Expired { name, count: 1 });
        StoreError::NotFound
    }

    /// Applies `change` to a live session's journal under its shard's lock.
    fn journaled<T>(
        &self,
        id: &SessionId,
        now: u64,
        change: impl FnOnce(&mut Journal, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut shard = self.write(id);
        self.live(&mut shard, id, now)?;
        change(shard.journals.entry(*id).or_default(), now)
    }
}

fn shard_of(id: &SessionId) -> usize {
    usize::from(id.as_bytes()[0]) % SHARDS
}

fn sweep(inner: &Inner, now: u64) -> usize {
    let mut removed = 0;
    for shard in inner.shards.iter() {
        removed += shard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .sweep(now);
    }
    inner.count.remove(removed);
    if removed > 0 {
        inner.events.emit(|name| Event::Expired {
            name,
            count: removed,
        });
    }
    removed
}

/// The writes at a given time, for the trait's methods (at the clock's
/// time) and for a replicated state machine (at the time the leader
/// stamped on the entry, so every replica decides alike).
impl MemoryStore {
    /// Checks `data`'s size and reserves room for one more session,
    /// sweeping what expired at `now` when the store is full.
    pub(crate) fn admit(&self, data: &Data, now: u64) -> Result<(), StoreError> {
        self.inner.config.check_size(data)?;
        self.inner
            .count
            .reserve(self.inner.config.max_sessions, || sweep(&self.inner, now))
    }

    /// Stores `session` under its id, with room reserved by
    /// [`admit`](Self::admit); hands it back when the id is taken (the
    /// reservation stays for the caller's next try or release).
    pub(crate) fn insert_absent(&self, session: Session) -> Result<Arc<Session>, Session> {
        let mut shard = self.write(&session.id);
        if shard.sessions.contains_key(&session.id) {
            return Err(session);
        }
        let session = Arc::new(session);
        shard.put(Arc::clone(&session));
        drop(shard);
        self.inner.events.emit(|name| Event::Created { name });
        Ok(session)
    }

    /// Gives back a reservation [`admit`](Self::admit) made.
    #[cfg_attr(
        not(feature = "raft"),
        allow(dead_code, reason = "only the raft state machine gives ids back")
    )]
    pub(crate) fn release(&self) {
        self.inner.count.remove(1);
    }

    /// [`SessionStore::update_with_ttl`] at time `now`.
    pub(crate) fn update_at(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<Arc<Session>, StoreError> {
        self.inner.config.check_size(&data)?;
        let mut shard = self.write(id);
        // One lookup: the index beside the slot, borrowed apart from it.
        let Shard {
            sessions, expiry, ..
        } = &mut *shard;
        let Some(slot) = sessions.get_mut(id) else {
            return Err(StoreError::NotFound);
        };
        if slot.session.is_expired(now) {
            return Err(self.expire(&mut shard, id));
        }
        // The data the update replaces, freed after the lock is released.
        let replaced = match Arc::get_mut(&mut slot.session) {
            // Nobody holds this version: change it in place rather than
            // copy it (no allocation, and no cold line of it touched twice).
            Some(session) => session.update(expected_version, data, ttl, now),
            // A held version is never changed: a new one replaces it. Its
            // holders keep it (and its data) alive, so nothing is freed here.
            None => slot
                .session
                .updated(expected_version, data, ttl, now)
                .map(|next| {
                    slot.session = Arc::new(next);
                    Data::new()
                }),
        };
        let replaced = replaced.inspect_err(|e| {
            if matches!(e, StoreError::Conflict { .. }) {
                self.inner.events.emit(|name| Event::Conflict { name });
            }
        })?;
        let session = Arc::clone(&slot.session);
        slot.refile(expiry, *id);
        drop(shard);
        drop(replaced);
        Ok(session)
    }

    /// [`SessionStore::touch`] at time `now`.
    pub(crate) fn touch_at(&self, id: &SessionId, now: u64) -> Result<Arc<Session>, StoreError> {
        let mut shard = self.write(id);
        let slot = self.live(&mut shard, id, now)?;
        // Expiry only moves later, so the index entry stays (see `Slot`).
        // When nobody holds this version, mark it in place rather than
        // copying its data into a new one; a held version is never changed.
        match Arc::get_mut(&mut slot.session) {
            Some(session) => session.last_activity = now,
            None => slot.session = Arc::new(slot.session.touched(now)),
        }
        Ok(Arc::clone(&slot.session))
    }

    /// [`SessionStore::delete`], without waiting.
    pub(crate) fn delete_now(&self, id: &SessionId) -> Result<bool, StoreError> {
        let removed = self.write(id).remove(id).is_some();
        if removed {
            self.inner.count.remove(1);
            self.inner.events.emit(|name| Event::Deleted { name });
        }
        Ok(removed)
    }

    /// Removes every session expired at `now`; returns how many.
    #[cfg_attr(
        not(feature = "raft"),
        allow(
            dead_code,
            reason = "only the raft state machine sweeps at a given time"
        )
    )]
    pub(crate) fn sweep_at(&self, now: u64) -> usize {
        sweep(&self.inner, now)
    }

    /// [`SessionJournal::journal_append`] at time `now`.
    pub(crate) fn journal_append_at(
        &self,
        id: &SessionId,
        entry: JournalEntry,
        now: u64,
    ) -> Result<u64, StoreError> {
        let limit = self.inner.config.max_journal_records;
        self.journaled(id, now, |journal, now| journal.append(entry, now, limit))
    }

    /// [`SessionJournal::journal_mark`] at time `now`.
    pub(crate) fn journal_mark_at(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
        now: u64,
    ) -> Result<(), StoreError> {
        self.journaled(id, now, |journal, _| journal.mark(seq, status))
    }
}

impl SessionStore for MemoryStore {
    async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
        let now = self.now();
        self.admit(&new.data, now)?;
        let mut session = Session::create(
            new,
            SessionId::from_bytes([0; 16]),
            now,
            self.inner.config.default_ttl,
        );
        loop {
            session.id = match SessionId::random() {
                Ok(id) => id,
                Err(e) => {
                    self.inner.count.remove(1);
                    return Err(e);
                }
            };
            match self.insert_absent(session) {
                Ok(session) => return Ok(session),
                Err(taken) => session = taken,
            }
        }
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let now = self.now();
        let shard = self.read(id);
        Ok(shard.get(id).filter(|s| !s.is_expired(now)).cloned())
    }

    async fn update_with_ttl(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
    ) -> Result<Arc<Session>, StoreError> {
        self.update_at(id, expected_version, data, ttl, self.now())
    }

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        self.touch_at(id, self.now())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.delete_now(id)
    }

    async fn len(&self) -> Result<usize, StoreError> {
        Ok(self.inner.count.get())
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let now = self.now();
        let mut found = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            let Some(ids) = shard.clients.get(client_id) else {
                continue;
            };
            found.extend(
                ids.iter()
                    .filter_map(|id| shard.get(id))
                    .filter(|s| !s.is_expired(now))
                    .cloned(),
            );
        }
        found.sort_by_key(|s| (s.created_at, s.id));
        Ok(found)
    }
}

impl ExpiredCleanup for MemoryStore {
    async fn cleanup_expired(&self) -> Result<usize, StoreError> {
        Ok(self.sweep_all())
    }
}

impl SessionJournal for MemoryStore {
    async fn journal_append(&self, id: &SessionId, entry: JournalEntry) -> Result<u64, StoreError> {
        self.journal_append_at(id, entry, self.now())
    }

    async fn journal_mark(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
    ) -> Result<(), StoreError> {
        self.journal_mark_at(id, seq, status, self.now())
    }

    async fn journal(&self, id: &SessionId) -> Result<Vec<JournalRecord>, StoreError> {
        let now = self.now();
        let shard = self.read(id);
        match shard.get(id) {
            Some(s) if !s.is_expired(now) => Ok(shard
                .journals
                .get(id)
                .map(Journal::records)
                .unwrap_or_default()),
            _ => Err(StoreError::NotFound),
        }
    }
}

impl SessionExport for MemoryStore {
    async fn export(&self) -> Result<Vec<SessionDump>, StoreError> {
        Ok(self.export_at(self.now()))
    }

    async fn import(&self, dumps: Vec<SessionDump>) -> Result<usize, StoreError> {
        self.import_at(dumps, self.now())
    }
}

impl MemoryStore {
    /// [`SessionExport::export`] at time `now`.
    pub(crate) fn export_at(&self, now: u64) -> Vec<SessionDump> {
        let mut dumps = Vec::with_capacity(self.inner.count.get());
        for shard in self.inner.shards.iter() {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            dumps.extend(
                shard
                    .all()
                    .filter(|s| !s.is_expired(now))
                    .map(|s| SessionDump {
                        session: Arc::clone(s),
                        journal: shard.journals.get(&s.id).cloned().unwrap_or_default(),
                    }),
            );
        }
        dumps
    }

    /// [`SessionExport::import`] at time `now`.
    pub(crate) fn import_at(&self, dumps: Vec<SessionDump>, now: u64) -> Result<usize, StoreError> {
        let dumps = backup::admit(dumps, &self.inner.config, now)?;
        // Every shard locked at once (in order), so no reader sees a mix.
        let mut shards: Vec<_> = self
            .inner
            .shards
            .iter()
            .map(|s| s.write().unwrap_or_else(PoisonError::into_inner))
            .collect();
        for shard in &mut shards {
            **shard = Shard::default();
        }
        let count = dumps.len();
        for dump in dumps {
            let shard = &mut shards[shard_of(&dump.session.id)];
            if !dump.journal.is_empty() {
                shard.journals.insert(dump.session.id, dump.journal);
            }
            shard.put(dump.session);
        }
        self.inner.count.set(count);
        Ok(count)
    }
}
