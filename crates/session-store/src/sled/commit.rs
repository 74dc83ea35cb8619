//! Group commit: a durable write waits for an fsync that began after it
//! was applied, and concurrent writers share that fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::kv::Engine;
use crate::error::StoreError;

/// Flush epochs. A writer reads the epoch after applying its write; a
/// flush that starts later takes an epoch at least as large, so once
/// `durable_through` is past the writer's ticket, its write is on disk.
/// Writers queue on one lock: the first flushes for everyone queued
/// behind it, who then find their ticket covered and return.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    epoch: AtomicU64,
    durable_through: AtomicU64,
    leader: tokio::sync::Mutex<()>,
    flushes: AtomicU64,
}

impl GroupCommit {
    /// Returns once every write applied before the call is on disk.
    pub(crate) async fn wait(&self, engine: &Arc<dyn Engine>) -> Result<(), StoreError> {
        let ticket = self.epoch.load(Ordering::SeqCst);
        let _leader = self.leader.lock().await;
        if self.durable_through.load(Ordering::SeqCst) > ticket {
            return Ok(());
        }
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst);
        let flushed = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let engine = Arc::clone(engine);
                runtime
                    .spawn_blocking(move || engine.flush())
                    .await
                    .map_err(|e| StoreError::Backend(Box::new(e)))?
            }
            // Polled outside tokio: nowhere else to wait for the disk.
            Err(_) => engine.flush(),
        };
        flushed.map_err(StoreError::Backend)?;
        self.durable_through.store(epoch + 1, Ordering::SeqCst);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes done so far.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
