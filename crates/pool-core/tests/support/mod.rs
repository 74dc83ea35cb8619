//! An in-process fake backend for pool logic tests: connections are plain
//! values, and the test controls connect delays, failures and validation.

#![allow(dead_code, reason = "each test file uses part of the support module")]

#[cfg(feature = "tower")]
pub(crate) mod scenarios;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_pool_core::{CheckIn, Manager, Pool, PoolConfig};

/// What the fake fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FakeError {
    #[error("password authentication failed for user \"app\"")]
    Auth,
    #[error("sorry, too many clients already")]
    TooMany,
    #[error("connection is dead")]
    Dead,
}

/// A fake connection.
#[derive(Debug)]
pub(crate) struct FakeConn {
    pub(crate) id: u64,
    /// Cleared by the test to make the connection dead.
    pub(crate) alive: Arc<AtomicBool>,
    /// Set by a test to leave "a transaction" open (check-in says Reset).
    pub(crate) dirty: bool,
    pub(crate) uses: u64,
    state: Arc<State>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.state.open.fetch_sub(1, Ordering::SeqCst);
        self.state.live.lock().unwrap().remove(&self.id);
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) connects: AtomicU64,
    pub(crate) connect_attempts: AtomicU64,
    pub(crate) validations: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) graceful_closes: AtomicU64,
    /// Connections that exist right now (dropped ones are gone).
    pub(crate) open: AtomicUsize,
    /// Fail the next N connects with this error.
    pub(crate) fail_next: Mutex<Vec<FakeError>>,
    pub(crate) connect_delay: Mutex<Duration>,
    pub(crate) validate_delay: Mutex<Duration>,
    pub(crate) close_delay: Mutex<Duration>,
    /// The most connections that existed at once.
    pub(crate) peak: AtomicUsize,
    /// Connects block while this is set.
    pub(crate) connect_gate: AtomicBool,
    /// Connects and validations in progress.
    pub(crate) busy: AtomicUsize,
    live: Mutex<HashSet<u64>>,
    /// All handles of live connections, so a test can kill them.
    pub(crate) handles: Mutex<Vec<Arc<AtomicBool>>>,
    next: AtomicU64,
}

/// Counts an operation in progress, until it ends or is dropped.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Fake {
    pub(crate) state: Arc<State>,
}

impl Fake {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn fail_next(&self, errors: &[FakeError]) {
        let mut f = self.state.fail_next.lock().unwrap();
        f.extend(errors.iter().rev().cloned());
    }

    pub(crate) fn set_connect_delay(&self, d: Duration) {
        *self.state.connect_delay.lock().unwrap() = d;
    }

    pub(crate) fn set_validate_delay(&self, d: Duration) {
        *self.state.validate_delay.lock().unwrap() = d;
    }

    pub(crate) fn set_close_delay(&self, d: Duration) {
        *self.state.close_delay.lock().unwrap() = d;
    }

    /// The most connections that existed at once.
    pub(crate) fn peak(&self) -> usize {
        self.state.peak.load(Ordering::SeqCst)
    }

    pub(crate) fn kill_all(&self) {
        for h in self.state.handles.lock().unwrap().iter() {
            h.store(false, Ordering::SeqCst);
        }
    }

    pub(crate) fn connects(&self) -> u64 {
        self.state.connects.load(Ordering::SeqCst)
    }

    pub(crate) fn attempts(&self) -> u64 {
        self.state.connect_attempts.load(Ordering::SeqCst)
    }

    pub(crate) fn validations(&self) -> u64 {
        self.state.validations.load(Ordering::SeqCst)
    }

    /// Connects and validations in progress.
    pub(crate) fn busy(&self) -> usize {
        self.state.busy.load(Ordering::SeqCst)
    }

    pub(crate) fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

impl Manager for Fake {
    type Connection = FakeConn;
    type Error = FakeError;

    async fn connect(&self) -> Result<FakeConn, FakeError> {
        self.state.connect_attempts.fetch_add(1, Ordering::SeqCst);
        let _busy = Busy::new(&self.state.busy);
        let delay = *self.state.connect_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        while self.state.connect_gate.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(e) = self.state.fail_next.lock().unwrap().pop() {
            return Err(e);
        }
        let id = self.state.next.fetch_add(1, Ordering::SeqCst);
        let alive = Arc::new(AtomicBool::new(true));
        self.state.handles.lock().unwrap().push(alive.clone());
        self.state.connects.fetch_add(1, Ordering::SeqCst);
        let open = self.state.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.peak.fetch_max(open, Ordering::SeqCst);
        assert!(self.state.live.lock().unwrap().insert(id));
        Ok(FakeConn {
            id,
            alive,
            dirty: false,
            uses: 0,
            state: self.state.clone(),
        })
    }

    async fn validate(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.state.validations.fetch_add(1, Ordering::SeqCst);
        let _busy = Busy::new(&self.state.busy);
        let delay = *self.state.validate_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if conn.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(FakeError::Dead)
        }
    }

    fn check_in(&self, conn: &mut FakeConn) -> CheckIn {
        if !conn.alive.load(Ordering::SeqCst) {
            CheckIn::Discard
        } else if conn.dirty {
            CheckIn::Reset
        } else {
            CheckIn::Reuse
        }
    }

    async fn reset(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.state.resets.fetch_add(1, Ordering::SeqCst);
        conn.dirty = false;
        Ok(())
    }

    async fn close(&self, conn: FakeConn) {
        self.state.graceful_closes.fetch_add(1, Ordering::SeqCst);
        let delay = *self.state.close_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        drop(conn);
    }

    fn is_exhausted(&self, error: &FakeError) -> bool {
        *error == FakeError::TooMany
    }
}

/// A pool over `fake` with `config`.
pub(crate) async fn pool(fake: &Fake, config: PoolConfig) -> Pool<Fake> {
    Pool::new(fake.clone(), config).await.unwrap()
}

/// Polls `check` until it holds; fails after 10 s (a liveness bound, not
/// a timing claim).
#[allow(clippy::panic, reason = "a test helper")]
pub(crate) async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    check: impl Fn() -> F,
) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}
