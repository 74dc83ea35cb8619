//! What the demo's clients did: operations by kind, errors by phase,
//! latencies; read by the dashboard lines, the status page and the summary.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// The kinds of operation a client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Read,
    Write,
    Transfer,
    Session,
}

impl Op {
    pub(crate) const ALL: [Self; 4] = [Self::Read, Self::Write, Self::Transfer, Self::Session];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Transfer => "transfer",
            Self::Session => "session",
        }
    }
}

#[derive(Debug)]
pub(crate) struct DemoStats {
    ok: [AtomicU64; 4],
    failed: [AtomicU64; 4],
    errors: Mutex<BTreeMap<String, u64>>,
    /// Microseconds, all operations since the start.
    latency: Mutex<Histogram<u64>>,
    /// Microseconds, since the last dashboard line.
    recent: Mutex<Histogram<u64>>,
}

#[expect(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts"
)]
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("1 µs .. 1 h at 3 significant digits")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DemoStats {
    pub(crate) fn new() -> Self {
        Self {
            ok: Default::default(),
            failed: Default::default(),
            errors: Mutex::default(),
            latency: Mutex::new(histogram()),
            recent: Mutex::new(histogram()),
        }
    }

    pub(crate) fn record(&self, op: Op, took: Duration, error: Option<String>) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = lock(&self.latency).record(micros);
        let _ = lock(&self.recent).record(micros);
        match error {
            None => self.ok[op as usize].fetch_add(1, Ordering::Relaxed),
            Some(kind) => {
                *lock(&self.errors).entry(kind).or_default() += 1;
                self.failed[op as usize].fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub(crate) fn total(&self) -> (u64, u64) {
        let sum = |a: &[AtomicU64; 4]| a.iter().map(|n| n.load(Ordering::Relaxed)).sum::<u64>();
        (sum(&self.ok), sum(&self.failed))
    }

    pub(crate) fn by_op(&self, op: Op) -> (u64, u64) {
        let i = op as usize;
        (
            self.ok[i].load(Ordering::Relaxed),
            self.failed[i].load(Ordering::Relaxed),
        )
    }

    pub(crate) fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Quantile `q` of every latency so far.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        Duration::from_micros(lock(&self.latency).value_at_quantile(q))
    }

    /// The percentiles since the last call, then starts a new interval.
    pub(crate) fn take_recent(&self) -> (Duration, Duration) {
        let mut recent = lock(&self.recent);
        let p = (
            Duration::from_micros(recent.value_at_quantile(0.5)),
            Duration::from_micros(recent.value_at_quantile(0.99)),
        );
        recent.reset();
        p
    }
}
