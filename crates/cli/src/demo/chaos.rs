//! Fault windows: a calm, then a flaky spell (one attempt in ten fails:
//! retries hide it from the callers), then an outage (every attempt fails:
//! the breaker opens, callers are turned away at once, and it closes again
//! once the outage is over). Faults strike inside the stack, as a refused
//! connection.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use keel::sqlx;

/// Shared by every client; switched by [`Chaos::drive`].
#[derive(Debug, Default)]
pub(crate) struct Chaos {
    enabled: bool,
    /// The share of attempts that fail now, in thousandths.
    ratio: AtomicU32,
    injected: AtomicU64,
}

/// The cycle: calm, flaky, outage, each with the share of attempts that
/// fail (in thousandths).
const CYCLE: [(Duration, u32); 3] = [
    (Duration::from_secs(5), 0),
    (Duration::from_secs(4), 100),
    (Duration::from_secs(3), 1000),
];

impl Chaos {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    /// Whether faults are injected at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether faults strike now.
    pub(crate) fn is_open(&self) -> bool {
        self.ratio.load(Ordering::Relaxed) > 0
    }

    /// Faults injected so far.
    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Fails the operation now and then while a window is open: as the
    /// driver reports a refused connection, so keel classifies it as a
    /// connection error (retried; counted by the breaker).
    pub(crate) fn strike(&self) -> Result<(), sqlx::Error> {
        let ratio = self.ratio.load(Ordering::Relaxed);
        if ratio > 0 && fastrand::u32(0..1000) < ratio {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (injected by keel demo --chaos)",
            )));
        }
        Ok(())
    }

    /// Runs the cycle until `stop` says so.
    pub(crate) async fn drive(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if !self.enabled {
            return;
        }
        loop {
            for (wait, ratio) in CYCLE {
                self.ratio.store(ratio, Ordering::Relaxed);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {
                        self.ratio.store(0, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}
