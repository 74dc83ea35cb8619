//! The per-session journal: an ordered log of the operations an agent
//! session performs (the reference documents' transaction log), each
//! pending until marked committed or aborted. It is bounded and is removed
//! with its session.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// What to append to a journal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
pub struct JournalEntry {
    /// The kind of operation (e.g. `"write_file"`).
    pub kind: String,
    /// What it acts on (e.g. a path).
    pub target: String,
    /// A hash of the content it writes, so a replay can be checked.
    pub content_hash: String,
}

impl JournalEntry {
    /// An entry of `kind` on `target` with `content_hash`.
    pub fn new(
        kind: impl Into<String>,
        target: impl Into<String>,
        content_hash: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            target: target.into(),
            content_hash: content_hash.into(),
        }
    }
}

/// Where an operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalStatus {
    /// Appended, not yet finished.
    Pending,
    /// Finished and kept.
    Committed,
    /// Finished and undone.
    Aborted,
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JournalRecord {
    /// Its place in the session's journal: 1, 2, 3... never reused.
    pub seq: u64,
    /// When it was appended (milliseconds since the Unix epoch).
    pub at: u64,
    /// What was done.
    #[serde(flatten)]
    pub entry: JournalEntry,
    /// Where it stands.
    pub status: JournalStatus,
}

/// A session's journal, as every backend keeps it.
/// Refuses a mark back to `Pending`: a record is only ever finished.
pub(crate) fn finishing(seq: u64, status: JournalStatus) -> Result<(), StoreError> {
    if status == JournalStatus::Pending {
        return Err(StoreError::JournalTransition {
            seq,
            from: JournalStatus::Pending,
            to: status,
        });
    }
    Ok(())
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// The seq the next record gets, minus one.
    last_seq: u64,
    records: VecDeque<JournalRecord>,
}

impl Journal {
    /// Appends a pending record. At `limit` records the oldest finished one
    /// is forgotten; if every record is still pending, the append is refused.
    pub(crate) fn append(
        &mut self,
        entry: JournalEntry,
        now: u64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        if self.records.len() >= limit {
            let finished = self
                .records
                .iter()
                .position(|r| r.status != JournalStatus::Pending)
                .ok_or(StoreError::JournalFull { limit })?;
            self.records.remove(finished);
        }
        self.last_seq += 1;
        self.records.push_back(JournalRecord {
            seq: self.last_seq,
            at: now,
            entry,
            status: JournalStatus::Pending,
        });
        Ok(self.last_seq)
    }

    /// Finishes the pending record `seq` as `status`.
    pub(crate) fn mark(&mut self, seq: u64, status: JournalStatus) -> Result<(), StoreError> {
        finishing(seq, status)?;
        let record = self
            .records
            .iter_mut()
            .find(|r| r.seq == seq)
            .ok_or(StoreError::NoJournalRecord { seq })?;
        if record.status != JournalStatus::Pending {
            return Err(StoreError::JournalTransition {
                seq,
                from: record.status,
                to: status,
            });
        }
        record.status = status;
        Ok(())
    }

    /// The records, oldest first.
    pub(crate) fn records(&self) -> Vec<JournalRecord> {
        self.records.iter().cloned().collect()
    }

    /// Whether nothing was ever appended.
    /// A journal as a backend stored it: the last sequence number given
    /// out and the records kept, oldest first.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
    pub(crate) fn from_parts(last_seq: u64, records: Vec<JournalRecord>) -> Self {
        Self {
            last_seq,
            records: records.into(),
        }
    }

    /// The last sequence number given out (0 for none).
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "redis"))]
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.last_seq == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> JournalEntry {
        JournalEntry::new("write", format!("f{n}"), "h")
    }

    #[test]
    fn the_oldest_finished_record_makes_room_and_pending_ones_are_kept() {
        let mut j = Journal::default();
        for n in 1..=3 {
            assert_eq!(j.append(entry(n), n, 3).unwrap(), n);
        }
        assert!(matches!(
            j.append(entry(4), 4, 3),
            Err(StoreError::JournalFull { limit: 3 })
        ));
        j.mark(2, JournalStatus::Committed).unwrap();
        assert_eq!(j.append(entry(4), 4, 3).unwrap(), 4);
        let seqs: Vec<_> = j.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 3, 4]);
    }

    #[test]
    fn only_pending_records_can_be_finished_once() {
        let mut j = Journal::default();
        let seq = j.append(entry(1), 0, 10).unwrap();
        j.mark(seq, JournalStatus::Aborted).unwrap();
        assert!(matches!(
            j.mark(seq, JournalStatus::Committed),
            Err(StoreError::JournalTransition {
                from: JournalStatus::Aborted,
                ..
            })
        ));
        assert!(matches!(
            j.mark(99, JournalStatus::Committed),
            Err(StoreError::NoJournalRecord { seq: 99 })
        ));
        assert!(j.mark(seq, JournalStatus::Pending).is_err());
    }
}
