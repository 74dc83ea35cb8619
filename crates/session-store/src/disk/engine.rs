//! sled behind the [`Engine`] trait.

use std::ops::Range;

use crate::kv::{Batch, Engine, EngineError};

impl Engine for sled::Db {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(sled::Tree::get(self, key)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: Vec<u8>) -> Result<(), EngineError> {
        self.insert(key, value)?;
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), EngineError> {
        sled::Tree::remove(self, key)?;
        Ok(())
    }

    fn apply(&self, batch: Batch) -> Result<(), EngineError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.ops {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        Ok(self.apply_batch(sled_batch)?)
    }

    fn scan(
        &self,
        range: Range<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), EngineError> {
        for entry in self.range(range) {
            let (key, value) = entry?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        sled::Tree::flush(self)?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, EngineError> {
        Ok(sled::Db::size_on_disk(self)?)
    }
}
