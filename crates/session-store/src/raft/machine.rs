//! The state machine: the replicated log applied, in order, to an
//! in-memory session engine ([`MemoryStore`] without its own sweeper:
//! sessions expire when the leader's `Expire` entry says so).
//!
//! A snapshot is one file: a header (the snapshot's meta and the machine's
//! clock) and then every session in the backup format (framed,
//! checksummed, LZ4-compressed), so a snapshot streams to disk and over
//! the wire a chunk at a time and is checked whole before it replaces
//! anything. The current snapshot is `current.snap` in the node's data
//! directory; a node restarts from it and replays the log after it.

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError; the helpers return it too"
)]

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};

use super::SessionRaft;
use super::command::{self, Replies};
use crate::backup::{self, BackupOptions, SessionDump};
use crate::memory::MemoryStore;

type NodeId = u64;
type Meta = SnapshotMeta<NodeId, BasicNode>;

const MAGIC: &[u8; 8] = b"KEELSNP1";
const CURRENT: &str = "current.snap";
const RECEIVING: &str = "receiving.snap";
/// A header is a few hundred bytes; a longer one is corruption.
const MAX_HEADER: u32 = 1 << 20;

/// What the machine has applied, beside the sessions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// The latest leader time applied: the machine's clock never runs
    /// back, even when a new leader's clock is behind the old one's.
    clock: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    meta: Meta,
    clock: u64,
}

/// The state machine openraft drives.
pub(crate) struct Machine {
    store: MemoryStore,
    default_ttl: Duration,
    applied: Applied,
    dir: PathBuf,
    /// The meta of `current.snap`, shared with the snapshot builders.
    current: Arc<Mutex<Option<Meta>>>,
    built: u64,
}

fn io_read(e: impl Into<AnyError>) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, e).into()
}

fn io_write(e: impl Into<AnyError>) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, e).into()
}

impl Machine {
    /// The machine over `store`, restored from the snapshot in `dir` if
    /// there is one.
    pub(crate) async fn open(
        store: MemoryStore,
        default_ttl: Duration,
        dir: &Path,
    ) -> Result<Self, StorageError<NodeId>> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io_write(&e))?;
        let mut machine = Self {
            store,
            default_ttl,
            applied: Applied::default(),
            dir: dir.to_path_buf(),
            current: Arc::default(),
            built: 0,
        };
        match File::open(dir.join(CURRENT)).await {
            Ok(file) => {
                let meta = machine.load(file).await?;
                *machine.current_meta() = Some(meta);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_read(&e)),
        }
        Ok(machine)
    }

    fn current_meta(&self) -> std::sync::MutexGuard<'_, Option<Meta>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the sessions with the snapshot in `file` (checked whole
    /// first); returns its meta.
    async fn load(&mut self, mut file: File) -> Result<Meta, StorageError<NodeId>> {
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(|e| io_read(&e))?;
        let mut input = BufReader::new(file);
        let header = read_header(&mut input).await?;
        let dumps = backup::read(input, None).await.map_err(|e| io_read(&e))?;
        self.store
            .import_at(dumps, header.clock)
            .map_err(|e| io_read(&e))?;
        self.applied = Applied {
            last: header.meta.last_log_id,
            membership: header.meta.last_membership.clone(),
            clock: header.clock,
        };
        Ok(header.meta)
    }
}

async fn read_header(
    input: &mut (impl AsyncReadExt + Unpin),
) -> Result<Header, StorageError<NodeId>> {
    let mut magic = [0; 8];
    input
        .read_exact(&mut magic)
        .await
        .map_err(|e| io_read(&e))?;
    if &magic != MAGIC {
        return Err(io_read(AnyError::error("not a keel raft snapshot")));
    }
    let len = input.read_u32().await.map_err(|e| io_read(&e))?;
    if len > MAX_HEADER {
        return Err(io_read(AnyError::error("snapshot header too long")));
    }
    let mut bytes = vec![0; len as usize];
    input
        .read_exact(&mut bytes)
        .await
        .map_err(|e| io_read(&e))?;
    postcard::from_bytes(&bytes).map_err(|e| io_read(&e))
}

impl RaftStateMachine<SessionRaft> for Machine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((self.applied.last, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Replies>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<SessionRaft>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut replies = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            self.applied.last = Some(entry.log_id);
            replies.push(match entry.payload {
                EntryPayload::Blank => Replies::default(),
                EntryPayload::Normal(batch) => Replies(
                    // The log's cache holds the batch too: the commands are
                    // copied here, once, as the store takes them.
                    Arc::unwrap_or_clone(batch.0)
                        .into_iter()
                        .map(|mut command| {
                            self.applied.clock = self.applied.clock.max(command.at);
                            command.at = self.applied.clock;
                            command::apply(&self.store, self.default_ttl, command)
                        })
                        .collect(),
                ),
                EntryPayload::Membership(membership) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Replies::default()
                }
            });
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.built += 1;
        Builder {
            // Taken now, while nothing is being applied: the sessions as of
            // `applied.last` (shared, not copied), written out later.
            dumps: self.store.export_at(self.applied.clock),
            applied: self.applied.clone(),
            dir: self.dir.clone(),
            current: Arc::clone(&self.current),
            built: self.built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<File>, StorageError<NodeId>> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(RECEIVING))
            .await
            .map_err(|e| io_write(&e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<File>,
    ) -> Result<(), StorageError<NodeId>> {
        let file = *snapshot;
        file.sync_all().await.map_err(|e| io_write(&e))?;
        let loaded = self.load(file).await?;
        if loaded.last_log_id != meta.last_log_id {
            return Err(io_read(AnyError::error(
                "the snapshot's header does not match its meta",
            )));
        }
        tokio::fs::rename(self.dir.join(RECEIVING), self.dir.join(CURRENT))
            .await
            .map_err(|e| io_write(&e))?;
        sync_dir(&self.dir).await?;
        *self.current_meta() = Some(meta.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<SessionRaft>>, StorageError<NodeId>> {
        let Some(meta) = self.current_meta().clone() else {
            return Ok(None);
        };
        let file = File::open(self.dir.join(CURRENT))
            .await
            .map_err(|e| io_read(&e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Makes a rename in `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), StorageError<NodeId>> {
    let dir = File::open(dir).await.map_err(|e| io_write(&e))?;
    dir.sync_all().await.map_err(|e| io_write(&e))
}

/// Writes a snapshot of the sessions taken when it was made.
pub(crate) struct Builder {
    dumps: Vec<SessionDump>,
    applied: Applied,
    dir: PathBuf,
    current: Arc<Mutex<Option<Meta>>>,
    built: u64,
}

impl RaftSnapshotBuilder<SessionRaft> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<SessionRaft>, StorageError<NodeId>> {
        let last = self.applied.last;
        let meta = Meta {
            last_log_id: last,
            last_membership: self.applied.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index),
                self.built
            ),
        };
        let header = postcard::to_allocvec(&Header {
            meta: meta.clone(),
            clock: self.applied.clock,
        })
        .map_err(|e| io_write(&e))?;
        let building = self.dir.join(format!("building-{}.snap", self.built));
        let file = File::create(&building).await.map_err(|e| io_write(&e))?;
        let mut out = BufWriter::new(file);
        let written: io::Result<()> = async {
            out.write_all(MAGIC).await?;
            out.write_u32(u32::try_from(header.len()).unwrap_or(u32::MAX))
                .await?;
            out.write_all(&header).await?;
            Ok(())
        }
        .await;
        written.map_err(|e| io_write(&e))?;
        backup::write(&self.dumps, &mut out, &BackupOptions::default())
            .await
            .map_err(|e| io_write(&e))?;
        out.flush().await.map_err(|e| io_write(&e))?;
        let file = out.into_inner();
        file.sync_all().await.map_err(|e| io_write(&e))?;
        let current = self.dir.join(CURRENT);
        tokio::fs::rename(&building, &current)
            .await
            .map_err(|e| io_write(&e))?;
        sync_dir(&self.dir).await?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(meta.clone());
        let file = File::open(&current).await.map_err(|e| io_read(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}
