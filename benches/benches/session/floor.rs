//! Floors: the least a store of keel's shape can cost on this machine,
//! measured in the same run, so keel's figures read as "the machine's
//! limit" or "keel's own overhead".
//!
//! - [`BareMap`]: sharded `RwLock<HashMap>`s of shared, versioned records
//!   holding the same one-allocation data, and nothing a session store
//!   adds: no expiry (index, sweeps, clock), no client index, no limits,
//!   no events.
//! - [`RawSled`]: sled itself, one tree of 2 KB values under random keys,
//!   written blind: no versions, no indexes, no records around the data.

use std::sync::{Arc, PoisonError, RwLock};

use keel_session_store::{Data, SessionId};

use super::{Map, Sessions, black_box};

const SHARDS: usize = 32;

struct Record {
    version: u64,
    data: Data,
}

type Shard = RwLock<hashbrown::HashMap<SessionId, Arc<Record>>>;

/// Versioned records in sharded maps, nothing more (see the module doc).
pub(crate) struct BareMap {
    shards: Box<[Shard]>,
}

impl BareMap {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    fn shard(&self, id: &SessionId) -> &Shard {
        &self.shards[usize::from(id.as_bytes()[0]) % SHARDS]
    }
}

impl Sessions for BareMap {
    type Id = SessionId;
    type Data = Data;

    fn data(payload: &Map) -> Data {
        payload.into()
    }

    async fn create(&self, data: Data) -> SessionId {
        let id = SessionId::random().expect("id");
        let record = Arc::new(Record { version: 1, data });
        let mut shard = self
            .shard(&id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        shard.insert(id, record);
        id
    }

    async fn get(&self, id: SessionId) {
        let shard = self
            .shard(&id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        black_box(shard.get(&id).cloned()).expect("live");
    }

    async fn update(&self, id: SessionId, data: &Data) {
        // Holding the record read, as keel's update in this bench does.
        let current = {
            let shard = self
                .shard(&id)
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            shard.get(&id).cloned()
        };
        if let Some(current) = current {
            let _ = black_box(self.write(id, current.version, data).await);
        }
    }

    async fn write(&self, id: SessionId, version: u64, data: &Data) -> Result<u64, u64> {
        let data = data.clone();
        let mut shard = self
            .shard(&id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let record = shard.get_mut(&id).expect("live");
        if record.version != version {
            return Err(record.version);
        }
        // In place when nobody holds the record, as keel does.
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
        let written = Arc::clone(record);
        drop(shard);
        drop(replaced);
        Ok(black_box(written).version)
    }

    async fn delete(&self, id: SessionId) {
        let mut shard = self
            .shard(&id)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        black_box(shard.remove(&id));
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
