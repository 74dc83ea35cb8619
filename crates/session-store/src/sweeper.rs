//! The background expiry task each store runs.
//!
//! Like every keel component's background work, it never silently fails to
//! start: on the tokio runtime the store is built in, or, built outside
//! one, on a thread of its own (sweeping needs no async I/O, so a store
//! used from another executor keeps it too).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::error::StoreError;

/// Where a store's sweeps run.
#[derive(Debug)]
enum Running {
    /// A task on the tokio runtime; aborted when the store is dropped.
    Task(AbortHandle),
    /// A thread, woken to exit when this sender is dropped with the store.
    Thread(#[expect(dead_code, reason = "held only to be dropped")] Sender<()>),
}

/// A store's sweep task, ended when the store is dropped (it holds only a
/// weak handle). Each sweep runs on the blocking pool or its thread.
#[derive(Debug, Default)]
pub(crate) struct Sweeper(Mutex<Option<Running>>);

impl Sweeper {
    /// Runs `sweep` on the store every `every`, while the store lives.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the OS refuses the sweep thread.
    pub(crate) fn start<T>(
        &self,
        store: Weak<T>,
        every: Duration,
        sweep: fn(&T),
    ) -> Result<(), StoreError>
    where
        T: Send + Sync + 'static,
    {
        let running = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Running::Task(on_runtime(&runtime, store, every, sweep)),
            Err(_) => Running::Thread(on_thread(store, every, sweep)?),
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(running);
        Ok(())
    }
}

fn on_runtime<T>(
    runtime: &tokio::runtime::Handle,
    store: Weak<T>,
    every: Duration,
    sweep: fn(&T),
) -> AbortHandle
where
    T: Send + Sync + 'static,
{
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
    task.abort_handle()
}

fn on_thread<T>(store: Weak<T>, every: Duration, sweep: fn(&T)) -> Result<Sender<()>, StoreError>
where
    T: Send + Sync + 'static,
{
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("keel-session-sweep".into())
        .spawn(move || {
            // Nothing is ever sent: the sender's drop (with the store) ends
            // the wait at once.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let Some(store) = store.upgrade() else { return };
                sweep(&store);
            }
        })
        .map_err(|e| {
            StoreError::Backend(format!("cannot start the expiry sweep thread: {e}").into())
        })?;
    Ok(stop)
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        // A thread's sender drops with the sweeper, which ends its wait.
        if let Some(Running::Task(task)) = self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}
