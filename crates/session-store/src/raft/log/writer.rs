//! The log's one writer: a thread that writes each append's records at
//! the end of their segment, in the order they were appended, and makes
//! them durable with one `fdatasync` per file for every append that
//! waited meanwhile (group commit), then tells each append.
//!
//! It writes past the page cache (`O_DIRECT`) where the file system
//! allows it. A record is written once and read back rarely (a follower
//! far behind, a restart: the tail raft replicates from is kept in
//! memory), so copying it into the page cache first buys nothing, and on
//! a virtual machine whose host hands out memory lazily that copy into
//! fresh pages was the largest single cost of a replicated write (16% of
//! all CPU in a three-node put run; puts at 256 clients went from 46 - 55
//! to 30 - 39 µs each without it, `cargo bench -p keel-benches --bench
//! session_raft -- "put, 256"`). Direct writes must cover whole blocks at
//! block offsets, so the writer keeps the segment's last partial block and
//! writes it again with the next records (the same bytes over the
//! acknowledged ones: a write torn by a crash leaves those as they were);
//! a segment ends in zeros up to its block's end, which reading the log
//! back skips. Where direct I/O is refused (tmpfs, some network file
//! systems) it writes through the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use super::segment_path;

/// Direct writes go in whole blocks of this size at offsets that are
/// multiples of it (4 KiB covers devices of 512-byte and 4 KiB sectors).
const BLOCK: usize = 4096;
/// The write buffer is kept between appends up to this size (a batch of
/// gathered writes is at most about 1 MiB).
const SCRATCH_KEPT: usize = 4 << 20;

/// What the writer is told when an append is durable (or failed).
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Work for the writer, done in the order it was queued.
pub(crate) enum Job {
    /// Write `bytes` at `offset` of segment `segment`; `last` is the index
    /// of the last entry in them.
    Append {
        segment: u64,
        offset: u64,
        bytes: Vec<u8>,
        last: u64,
        done: Done,
    },
    /// Once every earlier append is written: delete segments `remove`,
    /// shorten segment `shrink.0` to `shrink.1` bytes, and forget what was
    /// written from index `from` on.
    Cut {
        remove: Vec<u64>,
        shrink: Option<(u64, u64)>,
        from: u64,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
}

/// The segment being appended to.
struct Tail {
    segment: u64,
    /// Its file's path (to open it again through the page cache).
    path: PathBuf,
    file: File,
    /// [`BLOCK`] for direct writes, 1 through the page cache.
    align: usize,
    /// The bytes of the last partial block, written again with the next
    /// records.
    block: Vec<u8>,
    /// Where `block` starts in the file.
    at: u64,
    /// Written since the last `fdatasync`.
    dirty: bool,
}

pub(crate) struct Writer {
    dir: PathBuf,
    tail: Option<Tail>,
    /// One past the index of the last entry written (0: none), for the
    /// in-memory tail: it keeps every entry not yet written.
    written: Arc<AtomicU64>,
    /// Reused for each write; large enough to hold a block-aligned run.
    scratch: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(dir: PathBuf, written: Arc<AtomicU64>) -> Self {
        Self {
            dir,
            tail: None,
            written,
            scratch: Vec::new(),
        }
    }

    /// Runs until every sender is gone.
    pub(crate) fn run(mut self, jobs: &mpsc::Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            let mut waiting: Vec<Done> = Vec::new();
            let mut failed: Option<io::Error> = None;
            for job in std::iter::once(job).chain(jobs.try_iter()) {
                match job {
                    Job::Append {
                        segment,
                        offset,
                        bytes,
                        last,
                        done,
                    } => {
                        if failed.is_none() {
                            match self.append(segment, offset, &bytes) {
                                Ok(()) => self.written.store(last + 1, Ordering::Release),
                                Err(e) => failed = Some(e),
                            }
                        }
                        waiting.push(done);
                    }
                    Job::Cut {
                        remove,
                        shrink,
                        from,
                        done,
                    } => {
                        self.settle(waiting.drain(..), failed.take());
                        let _ = done.send(self.cut(&remove, shrink, from));
                    }
                }
            }
            self.settle(waiting.drain(..), failed);
        }
    }

    /// Makes what was written durable, then tells each waiting append; a
    /// failure is every one's (and the tail is opened again for the next:
    /// an append after a lost one then fails too, as it does not follow
    /// what is on disk).
    fn settle(&mut self, waiting: impl Iterator<Item = Done>, failed: Option<io::Error>) {
        let result = match failed {
            Some(e) => Err(e),
            None => self.sync(),
        };
        if result.is_err() {
            self.tail = None;
        }
        for done in waiting {
            done(copy(&result));
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match &mut self.tail {
            Some(tail) if tail.dirty => {
                tail.file.sync_data()?;
                tail.dirty = false;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The tail of segment `segment` as it stands at `offset`, opened (and
    /// its last partial block read back) if another was open.
    fn tail(&mut self, segment: u64, offset: u64) -> io::Result<&mut Tail> {
        if self.tail.as_ref().is_some_and(|t| t.segment != segment) {
            // Rolled to a new segment: the old one is durable first.
            self.sync()?;
            self.tail = None;
        }
        let tail = match self.tail.take() {
            Some(tail) => tail,
            None => {
                let path = segment_path(&self.dir, segment);
                let (file, align) = open_for_writes(&path)?;
                let at = offset - offset % align as u64;
                let mut block = vec![0; usize::try_from(offset - at).unwrap_or(0)];
                File::open(&path)?.read_exact_at(&mut block, at)?;
                Tail {
                    segment,
                    path,
                    file,
                    align,
                    block,
                    at,
                    dirty: false,
                }
            }
        };
        if tail.at + tail.block.len() as u64 != offset {
            return Err(io::Error::other(format!(
                "segment {segment}: an append at byte {offset} where the log ends at {}",
                tail.at + tail.block.len() as u64
            )));
        }
        Ok(self.tail.insert(tail))
    }

    fn append(&mut self, segment: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.write_run(segment, offset, bytes, &mut scratch);
        // A restore's entry can be large: its buffer is not kept.
        if scratch.len() <= SCRATCH_KEPT {
            self.scratch = scratch;
        }
        result
    }

    /// Writes the partial block and `bytes` after it as whole blocks.
    fn write_run(
        &mut self,
        segment: u64,
        offset: u64,
        bytes: &[u8],
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        let tail = self.tail(segment, offset)?;
        let align = tail.align;
        let filled = tail.block.len() + bytes.len();
        let whole = filled.next_multiple_of(align);
        if scratch.len() < whole + align {
            scratch.resize(whole + align, 0);
        }
        let start = scratch.as_ptr().align_offset(align);
        let run = &mut scratch[start..start + whole];
        run[..tail.block.len()].copy_from_slice(&tail.block);
        run[tail.block.len()..filled].copy_from_slice(bytes);
        run[filled..].fill(0);
        match tail.file.write_all_at(run, tail.at) {
            Err(e) if align > 1 && e.kind() == io::ErrorKind::InvalidInput => {
                // The device wants larger blocks than BLOCK: through the
                // page cache from now on.
                tail.file = File::options().write(true).open(&tail.path)?;
                tail.align = 1;
                tail.file.write_all_at(run, tail.at)?;
            }
            other => other?,
        }
        tail.dirty = true;
        let keep = filled - filled % tail.align;
        tail.block.clear();
        tail.block.extend_from_slice(&run[keep..filled]);
        tail.at += keep as u64;
        Ok(())
    }

    fn cut(&mut self, remove: &[u64], shrink: Option<(u64, u64)>, from: u64) -> io::Result<()> {
        self.tail = None;
        self.written.fetch_min(from, Ordering::AcqRel);
        for segment in remove {
            std::fs::remove_file(segment_path(&self.dir, *segment))?;
        }
        if let Some((segment, len)) = shrink {
            let file = File::options()
                .write(true)
                .open(segment_path(&self.dir, segment))?;
            file.set_len(len)?;
            file.sync_all()?;
        }
        File::open(&self.dir)?.sync_all()
    }
}

/// The segment at `path` opened for the writer, and the alignment its
/// writes need.
fn open_for_writes(path: &std::path::Path) -> io::Result<(File, usize)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = File::options()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits().cast_signed())
            .open(path);
        match direct {
            Ok(file) => return Ok((file, BLOCK)),
            // No direct I/O on this file system.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
    }
    Ok((File::options().write(true).open(path)?, 1))
}

fn copy(result: &io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}
