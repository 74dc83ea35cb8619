//! The raft log and vote on disk, in files of our own.
//!
//! Entries are appended to segment files (`seg-<first index>.log`, a new
//! one past 64 MiB) as records `length u32 | crc32 u32 | postcard entry`;
//! an in-memory index maps each entry's index to its place, and the
//! latest entries stay in memory for replication. An append returns once
//! its records are queued for the [`writer`], which writes them past the
//! page cache, makes everything written meanwhile durable with one
//! `fdatasync` and then tells raft about all of it (storage-v2's
//! `LogFlushed` callback). The vote and the
//! last purged id are small files replaced atomically and fsynced; the
//! committed id is rewritten in place without fsync (losing it only means
//! learning it again from the leader).
//!
//! A log of our own rather than sled: a batch of gathered writes is a
//! large entry, which sled stores as a blob file of its own (a file
//! created, written, fsynced and later deleted per entry), and sled's
//! flush is shared with its page cache. A raft log needs only appends at
//! the end, cuts at the end (truncate) and at the start (purge).
//!
//! On start the segments are read back and checked: zeros after the last
//! record are the padding of direct writes; a torn record at the end of
//! the last segment (a crash mid-write, never acknowledged) is cut off; a
//! bad record anywhere else is corruption and refuses the start.

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError; the helpers return it too"
)]

mod writer;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::writer::{Done, Job, Writer};
use super::SessionRaft;

type NodeId = u64;

const SEGMENT_MAX: u64 = 64 << 20;
/// The log's tail kept in memory for replication.
const RECENT_BYTES: usize = 32 << 20;
const HEADER: usize = 8;
const VOTE: &str = "vote";
const PURGED: &str = "purged";
const COMMITTED: &str = "committed";

/// Where one entry is.
#[derive(Clone, Copy)]
struct Loc {
    log_id: LogId<NodeId>,
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    first: u64,
    /// For reads; the writer has its own.
    file: Arc<File>,
    /// Where the last record ends.
    len: u64,
}

struct State {
    segments: Vec<Segment>,
    /// Every entry after the last purged one, in order.
    locs: VecDeque<Loc>,
    /// The latest entries as appended, so replication to followers reads
    /// them from memory rather than decoding them again.
    recent: Recent,
    purged: Option<LogId<NodeId>>,
}

/// The tail of the log in memory: up to [`RECENT_BYTES`], and every
/// entry not yet written.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry<SessionRaft>, usize)>,
    bytes: usize,
}

impl Recent {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    /// Adds `entry`, dropping the oldest entries past [`RECENT_BYTES`]
    /// among those before index `written` (on disk).
    fn push(&mut self, entry: Entry<SessionRaft>, size: usize, written: u64) {
        self.bytes += size;
        self.entries.push_back((entry, size));
        while self.bytes > RECENT_BYTES
            && self
                .entries
                .front()
                .is_some_and(|(e, _)| e.log_id.index < written)
        {
            if let Some((_, n)) = self.entries.pop_front() {
                self.bytes -= n;
            }
        }
    }

    /// Keeps only entries before `index`.
    fn cut(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= index)
        {
            if let Some((_, n)) = self.entries.pop_back() {
                self.bytes -= n;
            }
        }
    }

    /// Keeps only entries after `index`.
    fn forget(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(e, _)| e.log_id.index <= index)
        {
            if let Some((_, n)) = self.entries.pop_front() {
                self.bytes -= n;
            }
        }
    }

    /// Those of entries `start..end` that are here.
    fn get(&self, start: u64, end: u64) -> impl Iterator<Item = Entry<SessionRaft>> + '_ {
        let first = self.first().unwrap_or(u64::MAX);
        let skip = usize::try_from(start.saturating_sub(first)).unwrap_or(usize::MAX);
        let take = usize::try_from(end.saturating_sub(start.max(first))).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .skip(skip)
            .take(take)
            .map(|(e, _)| e.clone())
    }
}

impl State {
    fn last(&self) -> Option<LogId<NodeId>> {
        self.locs.back().map(|l| l.log_id).or(self.purged)
    }

    fn segment(&self, first: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.first == first)
    }
}

struct Shared {
    dir: PathBuf,
    /// The committed id, rewritten in place at every commit without
    /// fsync: a torn or lost one reads as unknown, which is safe.
    committed: File,
    state: Mutex<State>,
    /// A segment past this many bytes is closed for appends.
    segment_max: u64,
    /// One past the last index the writer has written (0: none).
    written: Arc<AtomicU64>,
}

/// The log store; clones share it (and serve as its readers).
#[derive(Clone)]
pub(crate) struct LogStore {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// `value` as a meta file holds it: a checksum, its length and postcard.
fn meta_bytes<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let body = postcard::to_allocvec(value).map_err(io::Error::other)?;
    let mut bytes = crc(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(
        &u32::try_from(body.len())
            .map_err(io::Error::other)?
            .to_le_bytes(),
    );
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Replaces `dir/name` with `value`, durably (a new file, fsynced, renamed
/// over the old one, the directory fsynced).
fn write_meta<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(&meta_bytes(value)?)?;
    file.sync_all()?;
    fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// The value in `dir/name`; `None` when there is none.
fn read_meta<T: DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    let bytes = match fs::read(dir.join(name)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let short = || corrupt(format!("{name}: too short"));
    let (sum, rest) = bytes.split_first_chunk::<4>().ok_or_else(short)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
    let body = rest
        .get(..u32::from_le_bytes(*len) as usize)
        .ok_or_else(short)?;
    if u32::from_le_bytes(*sum) != crc(body) {
        return Err(corrupt(format!("{name}: checksum mismatch")));
    }
    postcard::from_bytes(body)
        .map(Some)
        .map_err(|e| corrupt(format!("{name}: {e}")))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.log"))
}

fn open_segment(dir: &Path, first: u64) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(segment_path(dir, first))
}

/// The records of one segment: their entries' ids and places, and where
/// the last whole record ends.
fn scan(first: u64, bytes: &[u8]) -> (Vec<Loc>, u64) {
    let mut locs = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len as usize) else {
            break;
        };
        if crc(body) != sum {
            break;
        }
        let Ok(entry) = postcard::from_bytes::<Entry<SessionRaft>>(body) else {
            break;
        };
        locs.push(Loc {
            log_id: *entry.get_log_id(),
            segment: first,
            offset: at as u64,
            len: HEADER as u32 + len,
        });
        at += HEADER + len as usize;
    }
    (locs, at as u64)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, checking what it holds, and
    /// starts its flusher on the current tokio runtime (it stops when the
    /// last clone is dropped).
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, SEGMENT_MAX)
    }

    /// [`open`](Self::open), closing segments past `segment_max` bytes.
    pub(crate) fn open_with(dir: &Path, segment_max: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let purged: Option<LogId<NodeId>> = read_meta(dir, PURGED)?;
        let mut firsts: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut segments = Vec::new();
        let mut locs = VecDeque::new();
        for (n, first) in firsts.iter().enumerate() {
            let bytes = fs::read(segment_path(dir, *first))?;
            let (found, end) = scan(*first, &bytes);
            let file = open_segment(dir, *first)?;
            let padding = bytes
                .get(end as usize..)
                .is_some_and(|rest| rest.iter().all(|&b| b == 0));
            if !padding {
                if n + 1 < firsts.len() {
                    return Err(corrupt(format!(
                        "segment {first}: a bad record at byte {end} before the last segment"
                    )));
                }
                // A torn write at the very end: never acknowledged.
                file.set_len(end)?;
                file.sync_all()?;
            }
            for loc in found {
                let index = loc.log_id.index;
                if purged.is_some_and(|p| index <= p.index) {
                    continue;
                }
                let expected = locs.back().map_or(index, |l: &Loc| l.log_id.index + 1);
                if index != expected {
                    return Err(corrupt(format!(
                        "segment {first}: entry {index} where {expected} was due"
                    )));
                }
                locs.push_back(loc);
            }
            segments.push(Segment {
                first: *first,
                file: Arc::new(file),
                len: end,
            });
        }
        let written = Arc::new(AtomicU64::new(
            locs.back().map_or(0, |l: &Loc| l.log_id.index + 1),
        ));
        let committed = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(COMMITTED))?;
        let shared = Arc::new(Shared {
            committed,
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                segments,
                locs,
                recent: Recent::default(),
                purged,
            }),
            segment_max,
            written: Arc::clone(&written),
        });
        let (jobs, queued) = mpsc::channel();
        let writer = Writer::new(dir.to_path_buf(), written);
        std::thread::Builder::new()
            .name("keel-raft-log".into())
            .spawn(move || writer.run(&queued))?;
        Ok(Self { shared, jobs })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts the log from index `from` on (inclusive); returns once the
    /// files are cut (after every earlier append is written).
    pub(crate) async fn cut(&self, from: u64) -> io::Result<()> {
        let (done, cut) = tokio::sync::oneshot::channel();
        {
            let mut state = self.state();
            let Some(first) = state.locs.front().map(|l| l.log_id.index) else {
                return Ok(());
            };
            let keep = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
            let Some(at) = state.locs.get(keep).copied() else {
                return Ok(());
            };
            state.locs.truncate(keep);
            state.recent.cut(from);
            let (mut remove, mut shrink) = (Vec::new(), None);
            state.segments.retain_mut(|segment| {
                if segment.first > at.segment || (segment.first == at.segment && at.offset == 0) {
                    remove.push(segment.first);
                    false
                } else {
                    if segment.first == at.segment {
                        segment.len = at.offset;
                        shrink = Some((segment.first, at.offset));
                    }
                    true
                }
            });
            self.queue(Job::Cut {
                remove,
                shrink,
                from,
                done,
            })?;
        }
        cut.await.map_err(|_| writer_gone())?
    }

    fn queue(&self, job: Job) -> io::Result<()> {
        self.jobs.send(job).map_err(|_| writer_gone())
    }

    /// Forgets entries up to `upto` (inclusive) and deletes the segments
    /// that hold nothing else.
    pub(crate) fn forget(&self, upto: LogId<NodeId>) -> io::Result<()> {
        write_meta(&self.shared.dir, PURGED, &upto)?;
        let mut state = self.state();
        state.purged = Some(upto);
        while state
            .locs
            .front()
            .is_some_and(|l| l.log_id.index <= upto.index)
        {
            state.locs.pop_front();
        }
        state.recent.forget(upto.index);
        // A segment goes when the next one starts at or before the first
        // entry kept; the last (appended to) always stays.
        while state.segments.len() > 1 && state.segments[1].first <= upto.index + 1 {
            let gone = state.segments.remove(0);
            fs::remove_file(segment_path(&self.shared.dir, gone.first))?;
        }
        Ok(())
    }

    /// Queues `entries` to be written at the end of the log; `done` hears
    /// when they are durable.
    pub(crate) fn write(&self, entries: Vec<Entry<SessionRaft>>, done: Done) -> io::Result<()> {
        let (Some(first), Some(last)) = (
            entries.first().map(|e| e.get_log_id().index),
            entries.last().map(|e| e.get_log_id().index),
        ) else {
            done(Ok(()));
            return Ok(());
        };
        // The records, encoded straight into one buffer of the right size.
        let size = entries
            .iter()
            .map(|e| super::rpc::encoded_len(e).map(|n| HEADER + n))
            .sum::<Result<usize, _>>()
            .map_err(io::Error::other)?;
        let mut bytes = Vec::with_capacity(size);
        // Each body's length as written (the places below count on it).
        let mut lens = Vec::with_capacity(entries.len());
        for entry in &entries {
            let at = bytes.len();
            bytes.extend_from_slice(&[0; HEADER]);
            bytes = super::rpc::append(entry, bytes).map_err(io::Error::other)?;
            let body = &bytes[at + HEADER..];
            let len = u32::try_from(body.len()).map_err(io::Error::other)?;
            let sum = crc(body);
            bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
            bytes[at + 4..at + HEADER].copy_from_slice(&sum.to_le_bytes());
            lens.push(len);
        }
        let mut state = self.state();
        if state
            .segments
            .last()
            .is_none_or(|s| s.len >= self.shared.segment_max)
        {
            let file = open_segment(&self.shared.dir, first)?;
            File::open(&self.shared.dir)?.sync_all()?;
            state.segments.push(Segment {
                first,
                file: Arc::new(file),
                len: 0,
            });
        }
        let (segment, start) = match state.segments.last() {
            Some(s) => (s.first, s.len),
            None => return Err(io::Error::other("no segment to append to")),
        };
        let mut offset = start;
        let mut locs = Vec::with_capacity(entries.len());
        for (entry, len) in entries.iter().zip(&lens) {
            let len = HEADER as u32 + len;
            locs.push(Loc {
                log_id: *entry.get_log_id(),
                segment,
                offset,
                len,
            });
            offset += u64::from(len);
        }
        self.queue(Job::Append {
            segment,
            offset: start,
            bytes,
            last,
            done,
        })?;
        if let Some(last) = state.segments.last_mut() {
            last.len = offset;
        }
        state.locs.extend(locs);
        let written = self.shared.written.load(Ordering::Acquire);
        for (entry, len) in entries.into_iter().zip(lens) {
            state.recent.push(entry, len as usize, written);
        }
        Ok(())
    }

    /// Writes `entries` and waits until they are durable.
    #[cfg(test)]
    pub(crate) async fn write_durably(&self, entries: Vec<Entry<SessionRaft>>) -> io::Result<()> {
        let (done, durable) = tokio::sync::oneshot::channel();
        self.write(
            entries,
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        )?;
        durable.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the log's writer has stopped")
}

impl RaftLogReader<SessionRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<SessionRaft>>, StorageError<NodeId>> {
        let (wanted, recent) = {
            let state = self.state();
            let Some(first) = state.locs.front().map(|l| l.log_id.index) else {
                return Ok(Vec::new());
            };
            let start = match range.start_bound() {
                Bound::Included(i) => *i,
                Bound::Excluded(i) => i + 1,
                Bound::Unbounded => first,
            };
            let end = match range.end_bound() {
                Bound::Included(i) => i + 1,
                Bound::Excluded(i) => *i,
                Bound::Unbounded => u64::MAX,
            };
            let (start, end) = (
                start.max(first),
                end.min(state.last().map_or(0, |l| l.index + 1)),
            );
            // Entries before the in-memory tail are on disk (it keeps every
            // one not yet written).
            let on_disk = end.min(state.recent.first().unwrap_or(end));
            let from = usize::try_from(start - first).unwrap_or(usize::MAX);
            let to = usize::try_from(on_disk.saturating_sub(first)).unwrap_or(usize::MAX);
            let wanted: Vec<(Arc<File>, Loc)> = state
                .locs
                .iter()
                .skip(from)
                .take(to.saturating_sub(from))
                .filter_map(|l| state.segment(l.segment).map(|s| (Arc::clone(&s.file), *l)))
                .collect();
            let recent: Vec<_> = state.recent.get(start.max(on_disk), end).collect();
            (wanted, recent)
        };
        let mut entries = Vec::with_capacity(wanted.len() + recent.len());
        for (file, loc) in wanted {
            let index = loc.log_id.index;
            let mut record = vec![0; loc.len as usize];
            file.read_exact_at(&mut record, loc.offset)
                .map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
            let entry = postcard::from_bytes(&record[HEADER..])
                .map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
            entries.push(entry);
        }
        entries.extend(recent);
        Ok(entries)
    }
}

impl RaftLogStorage<SessionRaft> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<SessionRaft>, StorageError<NodeId>> {
        let state = self.state();
        Ok(LogState {
            last_purged_log_id: state.purged,
            last_log_id: state.last(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        write_meta(&self.shared.dir, VOTE, vote).map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(read_meta(&self.shared.dir, VOTE).map_err(|e| StorageIOError::read_vote(&e))?)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        meta_bytes(&committed)
            .and_then(|bytes| self.shared.committed.write_at(&bytes, 0))
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        // A committed id that did not survive is learned again.
        Ok(
            read_meta::<Option<LogId<NodeId>>>(&self.shared.dir, COMMITTED)
                .ok()
                .flatten()
                .flatten(),
        )
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
        self.write(
            entries.into_iter().collect(),
            Box::new(move |result| callback.log_io_completed(result)),
        )
        .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.cut(log_id.index)
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.forget(log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
