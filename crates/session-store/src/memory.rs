//! The in-memory backend: sharded maps with an expiry index per shard.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, StoreConfig};
use crate::error::StoreError;
use crate::id::SessionId;
use crate::observer::{Event, Events, Observer};
use crate::session::{Data, NewSession, Session};
use crate::store::SessionStore;

const SHARDS: usize = 32;

#[derive(Default)]
struct Shard {
    sessions: HashMap<SessionId, Arc<Session>>,
    /// (expires_at, id) for every session, so cleanup is a range split.
    expiry: BTreeSet<(u64, SessionId)>,
}

impl Shard {
    fn remove(&mut self, id: &SessionId) -> Option<Arc<Session>> {
        let session = self.sessions.remove(id)?;
        self.expiry.remove(&(session.expires_at(), *id));
        Some(session)
    }

    fn put(&mut self, session: Arc<Session>) {
        if let Some(old) = self.sessions.insert(session.id, Arc::clone(&session)) {
            self.expiry.remove(&(old.expires_at(), old.id));
        }
        self.expiry.insert((session.expires_at(), session.id));
    }

    /// Removes every session expired at `now`; returns how many.
    fn sweep(&mut self, now: u64) -> usize {
        let live = self
            .expiry
            .split_off(&(now.saturating_add(1), SessionId::from_bytes([0; 16])));
        let expired = std::mem::replace(&mut self.expiry, live);
        for (_, id) in &expired {
            self.sessions.remove(id);
        }
        expired.len()
    }
}

struct Inner {
    shards: Box<[RwLock<Shard>]>,
    count: AtomicUsize,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    events: Events,
    sweeper: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .sweeper
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// Sessions in memory: fast, and gone when the process ends. Clones share
/// the store. Expired sessions are absent on read and are really freed by
/// a background task every `cleanup_interval` (when built inside a tokio
/// runtime; it stops when the last clone is dropped) and by
/// [`cleanup_expired`](SessionStore::cleanup_expired).
///
/// ```
/// use keel_session_store::{MemoryStore, NewSession, SessionStore, StoreConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new(StoreConfig::default())?;
/// let session = store.create(NewSession::new("client-7", "http")).await?;
/// let mut data = session.data.clone();
/// data.insert("cart".into(), serde_json::json!(["book"]));
/// let updated = store.update(&session.id, session.version, data).await?;
/// assert_eq!(updated.version, session.version + 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.inner.count.load(Ordering::Relaxed))
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store with this config and the system clock.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn new(config: StoreConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, SystemClock)
    }

    /// A store with this config and clock (a manual clock for tests).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn with_clock(config: StoreConfig, clock: impl Clock) -> Result<Self, ConfigError> {
        Self::build(config, Arc::new(clock), Events::default())
    }

    /// A store with this config and clock that reports to `observer`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn with_observer(
        config: StoreConfig,
        clock: impl Clock,
        observer: impl Observer,
    ) -> Result<Self, ConfigError> {
        Self::build(config, Arc::new(clock), Events::new(observer))
    }

    fn build(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        events: Events,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let inner = Arc::new(Inner {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            count: AtomicUsize::new(0),
            config,
            clock,
            events,
            sweeper: Mutex::new(None),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&inner);
            let every = inner.config.cleanup_interval;
            let task = runtime.spawn(sweep_forever(weak, every));
            *inner.sweeper.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(task.abort_handle());
        }
        Ok(Self { inner })
    }

    fn shard(&self, id: &SessionId) -> &RwLock<Shard> {
        let b = id.as_bytes();
        &self.inner.shards[usize::from(b[0]) % SHARDS]
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

    fn check_size(&self, data: &Data) -> Result<(), StoreError> {
        let Some(limit) = self.inner.config.max_session_bytes else {
            return Ok(());
        };
        let bytes = serialized_len(data);
        if bytes > limit {
            return Err(StoreError::TooLarge { bytes, limit });
        }
        Ok(())
    }

    /// Takes a place for one more session, sweeping once if the store is full.
    fn reserve(&self) -> Result<(), StoreError> {
        let Some(limit) = self.inner.config.max_sessions else {
            self.inner.count.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let take = || {
            self.inner
                .count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .is_ok()
        };
        if take() || (self.sweep_all() > 0 && take()) {
            Ok(())
        } else {
            Err(StoreError::TooManySessions { limit })
        }
    }

    fn sweep_all(&self) -> usize {
        sweep(&self.inner, self.now())
    }

    /// Applies `change` to a live session under its shard's write lock.
    fn modify(
        &self,
        id: &SessionId,
        change: impl FnOnce(&Session, u64) -> Result<Session, StoreError>,
    ) -> Result<Arc<Session>, StoreError> {
        let now = self.now();
        let mut shard = self.write(id);
        let current = shard
            .sessions
            .get(id)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if current.is_expired(now) {
            shard.remove(id);
            self.inner.count.fetch_sub(1, Ordering::Relaxed);
            self.inner.events.emit(Event::Expired { count: 1 });
            return Err(StoreError::NotFound);
        }
        let next = match change(&current, now) {
            Ok(next) => Arc::new(next),
            Err(e) => {
                if matches!(e, StoreError::Conflict { .. }) {
                    self.inner.events.emit(Event::Conflict);
                }
                return Err(e);
            }
        };
        shard.put(Arc::clone(&next));
        Ok(next)
    }
}

fn sweep(inner: &Inner, now: u64) -> usize {
    let mut removed = 0;
    for shard in inner.shards.iter() {
        removed += shard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .sweep(now);
    }
    inner.count.fetch_sub(removed, Ordering::Relaxed);
    if removed > 0 {
        inner.events.emit(Event::Expired { count: removed });
    }
    removed
}

async fn sweep_forever(store: Weak<Inner>, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = store.upgrade() else { return };
        let now = inner.clock.now_millis();
        sweep(&inner, now);
    }
}

/// The JSON size of `data`, without building the string.
fn serialized_len(data: &Data) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of JSON values to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, data);
    count.0
}

impl SessionStore for MemoryStore {
    async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
        self.check_size(&new.data)?;
        self.reserve()?;
        let now = self.now();
        let ttl = new.ttl.unwrap_or(self.inner.config.default_ttl);
        let mut session = Session {
            id: SessionId::from_bytes([0; 16]),
            client_id: new.client_id,
            transport: new.transport,
            created_at: now,
            updated_at: now,
            last_activity: now,
            data: new.data,
            ttl,
            version: 1,
        };
        loop {
            session.id = match SessionId::random() {
                Ok(id) => id,
                Err(e) => {
                    self.inner.count.fetch_sub(1, Ordering::Relaxed);
                    return Err(e);
                }
            };
            let mut shard = self.write(&session.id);
            if !shard.sessions.contains_key(&session.id) {
                let session = Arc::new(session);
                shard.put(Arc::clone(&session));
                drop(shard);
                self.inner.events.emit(Event::Created);
                return Ok(session);
            }
        }
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let now = self.now();
        let shard = self.read(id);
        Ok(shard
            .sessions
            .get(id)
            .filter(|s| !s.is_expired(now))
            .cloned())
    }

    async fn update(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
    ) -> Result<Arc<Session>, StoreError> {
        self.check_size(&data)?;
        self.modify(id, |current, now| {
            if current.version != expected_version {
                return Err(StoreError::Conflict {
                    expected: expected_version,
                    actual: current.version,
                });
            }
            Ok(Session {
                data,
                updated_at: now,
                last_activity: now,
                version: current.version + 1,
                ..current.clone_without_data()
            })
        })
    }

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        self.modify(id, |current, now| {
            Ok(Session {
                last_activity: now,
                ..current.clone()
            })
        })
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let removed = self.write(id).remove(id).is_some();
        if removed {
            self.inner.count.fetch_sub(1, Ordering::Relaxed);
            self.inner.events.emit(Event::Deleted);
        }
        Ok(removed)
    }

    async fn cleanup_expired(&self) -> Result<usize, StoreError> {
        Ok(self.sweep_all())
    }

    async fn len(&self) -> Result<usize, StoreError> {
        Ok(self.inner.count.load(Ordering::Relaxed))
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let now = self.now();
        let mut found = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            found.extend(
                shard
                    .sessions
                    .values()
                    .filter(|s| s.client_id == client_id && !s.is_expired(now))
                    .cloned(),
            );
        }
        found.sort_by_key(|s| (s.created_at, s.id));
        Ok(found)
    }
}
