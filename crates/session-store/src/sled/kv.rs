//! The small key-value engine a disk backend needs, so that sled can be
//! replaced (by redb or fjall) without touching the store logic: point
//! reads, atomic batches, ordered range scans and an explicit flush.

use std::ops::Range;

/// Writes applied together or not at all, also across a crash.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    pub(crate) fn remove(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }
}

/// What an engine failure carries.
pub(crate) type EngineError = Box<dyn std::error::Error + Send + Sync>;

/// An ordered, crash-safe key-value map.
pub(crate) trait Engine: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Whether `key` is present (without copying its value out).
    fn contains(&self, key: &[u8]) -> Result<bool, EngineError>;

    /// Writes one key (atomically, also across a crash).
    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), EngineError>;

    /// Removes one key (atomically, also across a crash).
    fn remove(&self, key: &[u8]) -> Result<(), EngineError>;

    /// Applies every write of `batch` atomically (may stop all other
    /// writers meanwhile: for rare bulk changes).
    fn apply(&self, batch: Batch) -> Result<(), EngineError>;

    /// Calls `visit` with each entry whose key is in `range`, in key order,
    /// until it returns `false`.
    fn scan(
        &self,
        range: Range<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError>;

    /// Makes every applied batch durable; blocks for the fsync.
    fn flush(&self) -> Result<(), EngineError>;

    /// Bytes the engine occupies on disk.
    fn size_on_disk(&self) -> Result<u64, EngineError>;
}
