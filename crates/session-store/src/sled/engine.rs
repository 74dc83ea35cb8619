//! sled behind the [`Engine`] trait.

use std::ops::Range;

use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::kv::{Batch, Engine, EngineError};

/// A sled database with one tree per key space (a key's first byte): the
/// 2 KB session records never share, split or rewrite pages with the small
/// index entries written beside them. Keys keep their space byte, so a
/// range is the same in every tree and a scan across spaces visits the
/// trees in order. All trees share sled's one log: a flush makes every
/// tree durable, and recovery keeps writes in the order they were made.
pub(super) struct SledEngine {
    db: sled::Db,
    /// The spaces, ascending, and their trees in the same order.
    spaces: Vec<u8>,
    trees: Vec<sled::Tree>,
}

impl SledEngine {
    /// Opens (or creates) a tree for each `(space byte, tree name)`.
    pub(super) fn new(db: sled::Db, spaces: &[(u8, &str)]) -> sled::Result<Self> {
        let mut spaces = spaces.to_vec();
        spaces.sort_unstable();
        let trees = spaces
            .iter()
            .map(|(_, name)| db.open_tree(name))
            .collect::<sled::Result<_>>()?;
        Ok(Self {
            db,
            spaces: spaces.iter().map(|&(space, _)| space).collect(),
            trees,
        })
    }

    fn index(&self, key: &[u8]) -> Result<usize, EngineError> {
        let space = key.first().copied();
        space
            .and_then(|s| self.spaces.binary_search(&s).ok())
            .ok_or_else(|| format!("no tree holds key space {space:?}").into())
    }

    fn tree(&self, key: &[u8]) -> Result<&sled::Tree, EngineError> {
        Ok(&self.trees[self.index(key)?])
    }
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.tree(key)?.get(key)?.map(|v| v.to_vec()))
    }

    fn contains(&self, key: &[u8]) -> Result<bool, EngineError> {
        Ok(self.tree(key)?.contains_key(key)?)
    }

    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), EngineError> {
        self.tree(key)?.insert(key, value)?;
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), EngineError> {
        self.tree(key)?.remove(key)?;
        Ok(())
    }

    fn apply(&self, batch: Batch) -> Result<(), EngineError> {
        let mut batches = vec![sled::Batch::default(); self.trees.len()];
        for (key, value) in batch.ops {
            let tree = &mut batches[self.index(&key)?];
            match value {
                Some(value) => tree.insert(key, value),
                None => tree.remove(key),
            }
        }
        // One transaction over every tree: all of the batch or none of it.
        self.trees
            .as_slice()
            .transaction(|trees| {
                for (tree, batch) in trees.iter().zip(&batches) {
                    tree.apply_batch(batch)?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => e.into(),
                TransactionError::Abort(()) => "the batch was aborted".into(),
            })
    }

    fn scan(
        &self,
        range: Range<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        for (space, tree) in self.spaces.iter().zip(&self.trees) {
            let in_range = range.start.first().is_none_or(|s| s <= space)
                && range.end.first().is_some_and(|e| space <= e);
            if !in_range {
                continue;
            }
            for entry in tree.range(range.clone()) {
                let (key, value) = entry?;
                if !visit(&key, &value) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, EngineError> {
        Ok(self.db.size_on_disk()?)
    }
}
