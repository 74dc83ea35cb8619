//! The session count every backend keeps for `len` and `max_sessions`.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::StoreError;

#[derive(Debug, Default)]
pub(crate) struct Population(AtomicUsize);

impl Population {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, n: usize) {
        self.0.store(n, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Takes a place for one more session; when the store is full, runs
    /// `sweep` once (expired sessions do not hold places) and tries again.
    pub(crate) fn reserve(
        &self,
        limit: Option<usize>,
        sweep: impl FnOnce() -> usize,
    ) -> Result<(), StoreError> {
        let Some(limit) = limit else {
            self.0.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let take = || {
            self.0
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .is_ok()
        };
        if take() || (sweep() > 0 && take()) {
            Ok(())
        } else {
            Err(StoreError::TooManySessions { limit })
        }
    }
}
