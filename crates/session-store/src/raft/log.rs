//! The raft log and vote on disk, in sled: entries under their index
//! (big-endian, so sled's order is the log's), the vote, the committed and
//! the last purged id beside them. Every append and vote is flushed to
//! disk before raft is told it is done. Appends are group-committed: raft
//! hands over one client write at a time, each returns once written, and
//! a flusher task makes everything written so far durable with one fsync
//! and then tells raft about all of it (storage-v2's `LogFlushed`
//! callback exists for this), so 256 concurrent writers share a few
//! fsyncs rather than queueing for one each.
//!
//! sled rather than a log file of our own: it is already the durable
//! backend's engine here, it gives crash-consistent batches, and a log is
//! a range of keys to it (truncate and purge are range removals).

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError; the helpers return it too"
)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::SessionRaft;

type NodeId = u64;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// The log store; clones share it (and serve as its readers).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// Appends written and waiting for the flusher.
    flushes: mpsc::UnboundedSender<LogFlushed<SessionRaft>>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&key[..8]);
    u64::from_be_bytes(bytes)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, and starts its flusher on the
    /// current tokio runtime (it stops when the last clone is dropped).
    pub(crate) fn open(dir: &Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new().path(dir).open()?;
        let (flushes, waiting) = mpsc::unbounded_channel();
        tokio::spawn(flush(db.clone(), waiting));
        Ok(Self {
            log: db.open_tree("raft-log")?,
            meta: db.open_tree("raft-meta")?,
            db,
            flushes,
        })
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        error: fn(postcard::Error) -> StorageError<NodeId>,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let bytes = self.meta.get(key).map_err(|e| StorageIOError::read(&e))?;
        bytes.map(|b| decode(&b).map_err(error)).transpose()
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(value).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush_async().await.map(drop)
    }
}

fn bound_key(bound: Bound<&u64>) -> Bound<[u8; 8]> {
    match bound {
        Bound::Included(i) => Bound::Included(key(*i)),
        Bound::Excluded(i) => Bound::Excluded(key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<SessionRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<SessionRaft>>, StorageError<NodeId>> {
        let range = (bound_key(range.start_bound()), bound_key(range.end_bound()));
        let mut entries = Vec::new();
        for item in self.log.range(range) {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry =
                decode(&v).map_err(|e| StorageIOError::read_log_at_index(index_of(&k), &e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<SessionRaft> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<SessionRaft>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> =
            self.read_meta(PURGED, |e| StorageIOError::read_logs(&e).into())?;
        let last = match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            Some((k, v)) => {
                let entry: Entry<SessionRaft> =
                    decode(&v).map_err(|e| StorageIOError::read_log_at_index(index_of(&k), &e))?;
                Some(*entry.get_log_id())
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(VOTE, vote)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(VOTE, |e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Flushed with the next append or vote: a committed id that is lost
        // in a crash is learned again from the leader.
        self.write_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(COMMITTED, |e| StorageIOError::read(&e).into())?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<SessionRaft>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<SessionRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode(&entry)
                .map_err(|e| StorageIOError::write_log_entry(*entry.get_log_id(), &e))?;
            batch.insert(&key(entry.get_log_id().index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        if let Err(unsent) = self.flushes.send(callback) {
            // No flusher (the runtime is shutting down): flush here.
            let flushed = self.flush().await.map_err(std::io::Error::other);
            unsent.0.log_io_completed(flushed);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove(key(log_id.index)..)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // The purged id first: a crash between the two leaves entries the
        // next purge removes, never a log whose start is unknown.
        self.write_meta(PURGED, &log_id)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.remove(..=key(log_id.index))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

/// Group commit: one fsync for every append written while the previous
/// one ran, then each append's callback, in order.
async fn flush(db: sled::Db, mut waiting: mpsc::UnboundedReceiver<LogFlushed<SessionRaft>>) {
    let mut batch = Vec::new();
    while waiting.recv_many(&mut batch, 4096).await > 0 {
        let flushed = db.flush_async().await;
        for callback in batch.drain(..) {
            callback.log_io_completed(
                flushed
                    .as_ref()
                    .map(drop)
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    }
}

impl LogStore {
    fn remove(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(range) {
            batch.remove(item?.0);
        }
        self.log.apply_batch(batch)
    }
}
