//! One loop per check: run, record, wait for the interval (or a refresh).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;

use super::{Kind, Shared};
use crate::Outcome;
use crate::check::DynCheck;

pub(super) async fn run(
    shared: Arc<Shared>,
    index: usize,
    check: Arc<dyn DynCheck>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(Kind::Check(slot)) = shared.entries.get(index).map(|e| &e.kind) else {
        return;
    };
    let config = slot.config;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        // This run answers every refresh asked for before it starts.
        slot.wanted.store(false, Ordering::Release);
        slot.started.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = run_once(Arc::clone(&check), config.timeout) => outcome,
            _ = stop.changed() => return,
        };
        shared.record(index, outcome, started.elapsed());
        let next = tokio::time::sleep(config.interval);
        tokio::pin!(next);
        loop {
            tokio::select! {
                () = &mut next => break,
                // A stale wake-up (its refresh was answered by the run
                // that just ended) keeps waiting.
                () = slot.trigger.notified() => if slot.wanted.load(Ordering::Acquire) { break },
                _ = stop.changed() => return,
            }
        }
    }
}

/// One run in a task of its own, so a panic is a result, not a dead loop,
/// and a timed-out run is aborted rather than left running beside the next.
async fn run_once(check: Arc<dyn DynCheck>, timeout: Duration) -> Outcome {
    let mut task = tokio::spawn(async move { check.check_boxed().await });
    let _abort = AbortOnDrop(task.abort_handle());
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) if error.is_panic() => Outcome::unhealthy("the check panicked"),
        Ok(Err(_)) => Outcome::unhealthy("the check was cancelled"),
        Err(_) => Outcome::unhealthy(format!("the check timed out after {timeout:?}")),
    }
}

/// Aborts the run when the loop stops or the timeout passes.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
