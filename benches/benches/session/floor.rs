//! Floors: the least a store of keel's shape can cost on this machine,
//! measured in the same run, so keel's figures read as "the machine's
//! limit" or "keel's own overhead".
//!
//! - [`Versioned`] maps: shared, versioned records holding the same
//!   one-allocation data, and nothing a session store adds: no expiry
//!   (index, sweeps, clock), no client index, no limits, no events. Over
//!   sharded `RwLock<HashMap>`s (as keel's store), and over dashmap, scc
//!   and papaya, the engines keel's was picked against (foldhash for all:
//!   keel's own hasher costs next to nothing).
//! - [`RawSled`]: sled itself, one tree of 2 KB values under random keys,
//!   written blind: no versions, no indexes, no records around the data.

use std::ops::DerefMut;
use std::sync::{Arc, PoisonError, RwLock};

use keel_session_store::{Data, SessionId};

use papaya::{Compute, Operation};

use super::{Map, Sessions, black_box};

/// A session reduced to what a compare-and-swap needs.
pub(crate) struct Record {
    version: u64,
    data: Data,
}

/// What each concurrent map offers; the session logic on top is shared
/// ([`Versioned`]), so the maps differ only in themselves.
pub(crate) trait RecordMap: Send + Sync + 'static {
    fn insert(&self, id: SessionId, record: Arc<Record>);
    fn read(&self, id: &SessionId) -> Option<Arc<Record>>;
    fn remove(&self, id: &SessionId) -> Option<Arc<Record>>;
    /// Writes `data` over version `version`: the new version, or the
    /// current one on a conflict.
    fn write(&self, id: &SessionId, version: u64, data: &Data) -> Result<u64, u64>;
}

/// The compare-and-swap of a map that hands out the record locked: in
/// place when nobody holds it (as keel does), else a new version. Returns
/// the version written and the data to free once the lock is released.
fn write_locked(
    record: &mut Arc<Record>,
    version: u64,
    data: Data,
) -> Result<(Arc<Record>, Data), u64> {
    if record.version != version {
        return Err(record.version);
    }
    let replaced = match Arc::get_mut(record) {
        Some(r) => {
            r.version += 1;
            std::mem::replace(&mut r.data, data)
        }
        None => {
            *record = Arc::new(Record {
                version: version + 1,
                data,
            });
            Data::new()
        }
    };
    Ok((Arc::clone(record), replaced))
}

/// [`write_locked`] through a map's locked entry, freeing the replaced
/// data after the lock.
fn write_entry(
    entry: Option<impl DerefMut<Target = Arc<Record>>>,
    version: u64,
    data: Data,
) -> Result<u64, u64> {
    let mut entry = entry.ok_or(0u64)?;
    let (written, replaced) = write_locked(&mut entry, version, data)?;
    drop(entry);
    drop(replaced);
    Ok(black_box(written).version)
}

/// Sessions as versioned records in map `M`.
pub(crate) struct Versioned<M>(pub(crate) M);

impl<M: RecordMap> Sessions for Versioned<M> {
    type Id = SessionId;
    type Data = Data;

    fn data(payload: &Map) -> Data {
        payload.into()
    }

    async fn create(&self, data: Data) -> SessionId {
        let id = SessionId::random().expect("id");
        self.0.insert(id, Arc::new(Record { version: 1, data }));
        id
    }

    async fn get(&self, id: SessionId) {
        black_box(self.0.read(&id)).expect("live");
    }

    async fn update(&self, id: SessionId, data: &Data) {
        // Holding the record read, as keel's update in this bench does.
        if let Some(current) = self.0.read(&id) {
            let _ = black_box(self.0.write(&id, current.version, data));
        }
    }

    async fn write(&self, id: SessionId, version: u64, data: &Data) -> Result<u64, u64> {
        self.0.write(&id, version, data)
    }

    async fn delete(&self, id: SessionId) {
        black_box(self.0.remove(&id));
    }
}

const SHARDS: usize = 32;

type Shard = RwLock<hashbrown::HashMap<SessionId, Arc<Record>>>;

/// Sharded `RwLock<HashMap>`s, as keel's memory store keeps its sessions.
pub(crate) struct ShardedMap {
    shards: Box<[Shard]>,
}

impl ShardedMap {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    fn shard(&self, id: &SessionId) -> &Shard {
        &self.shards[usize::from(id.as_bytes()[0]) % SHARDS]
    }
}

impl RecordMap for ShardedMap {
    fn insert(&self, id: SessionId, record: Arc<Record>) {
        let mut shard = self
            .shard(&id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.insert(id, record);
    }

    fn read(&self, id: &SessionId) -> Option<Arc<Record>> {
        let shard = self
            .shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(id).cloned()
    }

    fn remove(&self, id: &SessionId) -> Option<Arc<Record>> {
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.remove(id)
    }

    fn write(&self, id: &SessionId, version: u64, data: &Data) -> Result<u64, u64> {
        let data = data.clone();
        let mut shard = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (written, replaced) = write_locked(shard.get_mut(id).ok_or(0u64)?, version, data)?;
        drop(shard);
        drop(replaced);
        Ok(black_box(written).version)
    }
}

/// dashmap: sharded `RwLock`s over hashbrown tables.
pub(crate) type DashMap = dashmap::DashMap<SessionId, Arc<Record>, foldhash::fast::RandomState>;

impl RecordMap for DashMap {
    fn insert(&self, id: SessionId, record: Arc<Record>) {
        dashmap::DashMap::insert(self, id, record);
    }

    fn read(&self, id: &SessionId) -> Option<Arc<Record>> {
        self.get(id).map(|r| Arc::clone(&r))
    }

    fn remove(&self, id: &SessionId) -> Option<Arc<Record>> {
        dashmap::DashMap::remove(self, id).map(|(_, r)| r)
    }

    fn write(&self, id: &SessionId, version: u64, data: &Data) -> Result<u64, u64> {
        let data = data.clone();
        write_entry(self.get_mut(id), version, data)
    }
}

/// scc: one table of buckets, a lock per bucket.
pub(crate) type SccMap = scc::HashMap<SessionId, Arc<Record>, foldhash::fast::RandomState>;

impl RecordMap for SccMap {
    fn insert(&self, id: SessionId, record: Arc<Record>) {
        let _ = self.insert_sync(id, record);
    }

    fn read(&self, id: &SessionId) -> Option<Arc<Record>> {
        self.read_sync(id, |_, r| Arc::clone(r))
    }

    fn remove(&self, id: &SessionId) -> Option<Arc<Record>> {
        self.remove_sync(id).map(|(_, r)| r)
    }

    fn write(&self, id: &SessionId, version: u64, data: &Data) -> Result<u64, u64> {
        let data = data.clone();
        write_entry(self.get_sync(id), version, data)
    }
}

/// papaya: lock-free; a write swaps in a new record (never in place).
pub(crate) type PapayaMap = papaya::HashMap<SessionId, Arc<Record>, foldhash::fast::RandomState>;

impl RecordMap for PapayaMap {
    fn insert(&self, id: SessionId, record: Arc<Record>) {
        self.pin().insert(id, record);
    }

    fn read(&self, id: &SessionId) -> Option<Arc<Record>> {
        self.pin().get(id).cloned()
    }

    fn remove(&self, id: &SessionId) -> Option<Arc<Record>> {
        self.pin().remove(id).cloned()
    }

    fn write(&self, id: &SessionId, version: u64, data: &Data) -> Result<u64, u64> {
        let map = self.pin();
        let computed = map.compute(*id, |entry| match entry {
            Some((_, r)) if r.version == version => Operation::Insert(Arc::new(Record {
                version: version + 1,
                data: data.clone(),
            })),
            Some((_, r)) => Operation::Abort(r.version),
            None => Operation::Abort(0),
        });
        match computed {
            Compute::Updated { new: (_, r), .. } => Ok(black_box(r).version),
            Compute::Aborted(actual) => Err(actual),
            Compute::Inserted(..) | Compute::Removed(..) => Err(0),
        }
    }
}

/// `data` behind a version: a value that differs from the one it replaces
/// (sled skips writing a value equal to the current one).
fn versioned(version: u64, data: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + data.len());
    value.extend_from_slice(&version.to_be_bytes());
    value.extend_from_slice(data);
    value
}

/// sled with nothing around it (see the module doc), flushed every 500 ms
/// as keel's relaxed store in this bench.
pub(crate) struct RawSled {
    tree: sled::Db,
    _dir: tempfile::TempDir,
}

impl RawSled {
    pub(crate) fn open() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tree = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(Some(500))
            .open()
            .expect("open sled");
        Self { tree, _dir: dir }
    }
}

impl Sessions for RawSled {
    type Id = [u8; 16];
    type Data = Vec<u8>;

    fn data(payload: &Map) -> Vec<u8> {
        serde_json::to_vec(payload).expect("payload")
    }

    async fn create(&self, data: Vec<u8>) -> [u8; 16] {
        let id = *SessionId::random().expect("id").as_bytes();
        self.tree.insert(id, versioned(1, &data)).expect("insert");
        id
    }

    async fn get(&self, id: [u8; 16]) {
        black_box(self.tree.get(id).expect("get")).expect("live");
    }

    async fn update(&self, id: [u8; 16], data: &Vec<u8>) {
        let current = self.tree.get(id).expect("get").expect("live");
        let version = current
            .first_chunk::<8>()
            .map_or(0, |v| u64::from_be_bytes(*v));
        black_box(
            self.tree
                .insert(id, versioned(version + 1, data))
                .expect("insert"),
        );
    }

    async fn write(&self, id: [u8; 16], version: u64, data: &Vec<u8>) -> Result<u64, u64> {
        black_box(
            self.tree
                .insert(id, versioned(version + 1, data))
                .expect("insert"),
        );
        Ok(version + 1)
    }

    async fn delete(&self, id: [u8; 16]) {
        black_box(self.tree.remove(id).expect("remove"));
    }
}
