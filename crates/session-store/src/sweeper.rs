//! The background expiry task each store runs.

use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

/// A store's sweep task: started when the store is built inside a tokio
/// runtime, ended when the store is dropped (it holds only a weak handle,
/// and the store aborts it). Each sweep runs on the blocking pool.
#[derive(Debug, Default)]
pub(crate) struct Sweeper(Mutex<Option<AbortHandle>>);

impl Sweeper {
    /// Runs `sweep` on the store every `every`, while the store lives.
    pub(crate) fn start<T>(&self, store: Weak<T>, every: Duration, sweep: fn(&T))
    where
        T: Send + Sync + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else { return };
                // A sweep may do disk I/O (sled): off the async workers.
                let _ = tokio::task::spawn_blocking(move || sweep(&store)).await;
            }
        });
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}
