//! The log's own promises, beyond openraft's suite: what was written
//! survives a reopen across segments, cuts and purges; a torn record at
//! the end (a crash mid-write) is cut off; a bad record before the end
//! refuses the start.

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};

use crate::raft::SessionRaft;
use crate::raft::command::Batch;
use crate::raft::log::LogStore;

fn entries(from: u64, to: u64) -> Vec<Entry<SessionRaft>> {
    (from..=to)
        .map(|i| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(Batch(Default::default())),
        })
        .collect()
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("seg-")
        })
        .count()
}

#[tokio::test]
async fn entries_survive_a_reopen_across_segments_cuts_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = LogStore::open_with(dir.path(), 60).unwrap();
        for i in 1..=30 {
            log.write_durably(entries(i, i)).await.unwrap();
        }
        assert!(segments(dir.path()) > 3, "small segments rotate");
        log.cut(26).await.unwrap();
        log.forget(LogId::new(CommittedLeaderId::new(1, 1), 10))
            .unwrap();
        log.write_durably(entries(26, 27)).await.unwrap();
    }
    let mut log = LogStore::open_with(dir.path(), 60).unwrap();
    assert_eq!(indexes(&mut log).await, (11..=27).collect::<Vec<_>>());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(10));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(27));
    // Purging everything keeps the last id known.
    log.forget(LogId::new(CommittedLeaderId::new(1, 1), 27))
        .unwrap();
    drop(log);
    let mut log = LogStore::open_with(dir.path(), 60).unwrap();
    assert!(indexes(&mut log).await.is_empty());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|l| l.index), Some(27));
    log.write_durably(entries(28, 28)).await.unwrap();
    assert_eq!(indexes(&mut log).await, [28]);
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .collect();
    all.sort();
    all.pop().unwrap()
}

#[tokio::test]
async fn a_torn_record_at_the_end_is_cut_off_and_a_bad_one_before_it_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = LogStore::open_with(dir.path(), 60).unwrap();
        log.write_durably(entries(1, 20)).await.unwrap();
        log.write_durably(entries(21, 22)).await.unwrap();
    }
    // Half a record at the end, as a crash mid-write leaves it.
    let last = last_segment(dir.path());
    let written = std::fs::read(&last).unwrap();
    let mut bytes = written.clone();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 5]);
    std::fs::write(&last, &bytes).unwrap();
    let mut log = LogStore::open_with(dir.path(), 60).unwrap();
    assert_eq!(indexes(&mut log).await, (1..=22).collect::<Vec<_>>());
    let kept = std::fs::read(&last).unwrap();
    assert!(written.starts_with(&kept), "the torn record is cut off");
    // Appends go on from the last whole record.
    log.write_durably(entries(23, 23)).await.unwrap();
    drop(log);
    let mut log = LogStore::open_with(dir.path(), 60).unwrap();
    assert_eq!(indexes(&mut log).await, (1..=23).collect::<Vec<_>>());
    drop(log);

    // A flipped byte in a segment before the last: corruption.
    let mut all: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .collect();
    all.sort();
    assert!(all.len() >= 2);
    let mut bytes = std::fs::read(&all[0]).unwrap();
    bytes[12] ^= 0xff;
    std::fs::write(&all[0], &bytes).unwrap();
    let err = LogStore::open_with(dir.path(), 60).err().expect("refused");
    assert!(err.to_string().contains("bad record"), "{err}");
}

/// Records of a few dozen bytes: a block holds many, appends continue a
/// partly written block, and a cut falls inside one.
async fn records_sharing_blocks_read_back_whole(dir: &std::path::Path) {
    {
        let log = LogStore::open_with(dir, 1 << 20).unwrap();
        for i in (1..=600).step_by(3) {
            log.write_durably(entries(i, i + 2)).await.unwrap();
        }
        log.cut(301).await.unwrap();
        log.write_durably(entries(301, 400)).await.unwrap();
    }
    let mut log = LogStore::open_with(dir, 1 << 20).unwrap();
    assert_eq!(indexes(&mut log).await, (1..=400).collect::<Vec<_>>());
    log.write_durably(entries(401, 401)).await.unwrap();
    drop(log);
    let mut log = LogStore::open_with(dir, 1 << 20).unwrap();
    assert_eq!(indexes(&mut log).await, (1..=401).collect::<Vec<_>>());
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn records_sharing_blocks_read_back_whole_with_direct_writes() {
    let dir = tempfile::tempdir().unwrap();
    records_sharing_blocks_read_back_whole(dir.path()).await;
    if direct_io(dir.path()) {
        let len = std::fs::metadata(last_segment(dir.path())).unwrap().len();
        assert_eq!(len % 4096, 0, "direct writes fill whole blocks");
    }
}

/// Whether the file system under `dir` takes direct I/O.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn direct_io(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits().cast_signed())
        .open(dir.join("probe"))
        .is_ok()
}

/// tmpfs refuses direct I/O: the log writes through the page cache there.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn records_sharing_blocks_read_back_whole_on_tmpfs() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    records_sharing_blocks_read_back_whole(dir.path()).await;
}

/// A cut behind appends not yet written waits for them: what it cuts
/// never reaches the file after it.
#[tokio::test]
async fn a_cut_waits_for_the_appends_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = LogStore::open_with(dir.path(), 1 << 20).unwrap();
        for i in 1..=200 {
            log.write(entries(i, i), Box::new(|_| {})).unwrap();
        }
        log.cut(101).await.unwrap();
        log.write_durably(entries(101, 120)).await.unwrap();
    }
    let mut log = LogStore::open_with(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&mut log).await, (1..=120).collect::<Vec<_>>());
}
