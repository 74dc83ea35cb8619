//! What a [`TelemetryLayer`](super::TelemetryLayer) counts, accumulated per
//! thread and pushed into the `metrics` handles by [`flush`](crate::flush):
//! a call touches only the slot of the thread it runs on (no cache line
//! shared between cores, no reference count), so the layer's cost stays
//! flat as cores are added. The first threads each own a slot outright and
//! count with a plain load and store (no locked instruction: only the owner
//! writes, readers sum); threads past those share one last slot and count
//! with atomic adds. One `LayerStats` per label set, interned for the
//! process: a name is one series set, as the recorder sees it anyway.

#[cfg(feature = "prometheus")]
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::classify::{ERROR_TYPES, OperationOutcome};
use crate::names::{
    ERROR_TYPE, NAME, OPERATION_DURATION, OPERATION_ERRORS, OPERATIONS_IN_FLIGHT, OUTCOME,
};

/// Latency buckets, in nanoseconds: the upper bounds of
/// [`LATENCY_BUCKETS`](crate::LATENCY_BUCKETS) (the last bucket is open).
const BOUNDS_NS: [u64; 18] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    7_500_000_000,
    10_000_000_000,
];
const BUCKETS: usize = BOUNDS_NS.len() + 1;
const OUTCOMES: usize = OperationOutcome::ALL.len();

/// The label set a layer records under.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Labels {
    pub(crate) name: Box<str>,
    pub(crate) db_system: Option<Box<str>>,
    pub(crate) server_address: Option<Box<str>>,
}

#[derive(Debug)]
pub(crate) struct LayerStats {
    pub(crate) labels: Labels,
    slots: Box<[Slot]>,
    handles: Handles,
    /// Totals already pushed into the handles.
    flushed: Mutex<Totals>,
}

#[derive(Debug)]
struct Handles {
    /// `None` when keel renders the histogram itself (see [`render_natively`]).
    durations: Option<[Histogram; OUTCOMES]>,
    errors: [Counter; ERROR_TYPES.len()],
    in_flight: Gauge,
}

/// One thread's share, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Slot {
    started: AtomicU64,
    errors: [AtomicU64; ERROR_TYPES.len()],
    /// `[outcome][bucket]`: calls and their summed nanoseconds, side by side.
    latency: [[Bucket; BUCKETS]; OUTCOMES],
}

/// The slot the current thread writes, and whether it owns it.
#[derive(Clone, Copy)]
struct Writer<'a> {
    slot: &'a Slot,
    owned: bool,
}

impl Writer<'_> {
    /// Adds `n` to `cell`: a plain load and store on an owned slot (its
    /// only writer is this thread), an atomic add on the shared one.
    #[inline]
    fn add(self, cell: &AtomicU64, n: u64) {
        if self.owned {
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
struct Bucket {
    count: AtomicU64,
    nanos: AtomicU64,
}

#[derive(Debug, Default)]
struct Totals {
    errors: [u64; ERROR_TYPES.len()],
    latency: [[(u64, u64); BUCKETS]; OUTCOMES],
}

/// Every layer's stats, for `flush`.
static REGISTRY: Mutex<Vec<&'static LayerStats>> = Mutex::new(Vec::new());

/// Set by [`render_natively`]: layers made from then on keep their latency
/// histogram to themselves and [`render_histograms`] writes it.
static NATIVE: AtomicBool = AtomicBool::new(false);

/// From now on, new layers' latency histograms are not recorded through
/// the `metrics` facade but written by [`render_histograms`]: the
/// Prometheus exporter stores every histogram sample until it renders, so
/// pushing a layer's calls through it would cost a push per call again.
#[cfg(feature = "prometheus")]
pub(crate) fn render_natively() {
    NATIVE.store(true, Ordering::Release);
}

impl LayerStats {
    /// The stats for `labels`, made (and their handles resolved through
    /// the current recorder) the first time the label set is seen.
    pub(crate) fn intern(labels: Labels) -> &'static Self {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = registry.iter().find(|s| s.labels == labels) {
            return stats;
        }
        let name = labels.name.to_string();
        let native = NATIVE.load(Ordering::Acquire);
        let handles = Handles {
            durations: (!native).then(|| {
                OperationOutcome::ALL.map(|outcome| {
                    metrics::histogram!(OPERATION_DURATION, NAME => name.clone(), OUTCOME => outcome.as_str())
                })
            }),
            errors: ERROR_TYPES.map(|error_type| {
                metrics::counter!(OPERATION_ERRORS, NAME => name.clone(), ERROR_TYPE => error_type)
            }),
            in_flight: metrics::gauge!(OPERATIONS_IN_FLIGHT, NAME => name),
        };
        let slots = (0..slot_count()).map(|_| Slot::default()).collect();
        // Leaked on purpose: one per label set, and label sets are bounded
        // (names of databases and stacks, never request data).
        let stats: &'static Self = Box::leak(Box::new(Self {
            labels,
            slots,
            handles,
            flushed: Mutex::new(Totals::default()),
        }));
        registry.push(stats);
        start_flusher();
        stats
    }

    /// The current thread's slot: its own while there are slots to give,
    /// else the last one, shared.
    #[inline]
    fn writer(&self) -> Writer<'_> {
        let shared = self.slots.len() - 1;
        match thread_slot() {
            own if own < shared => Writer {
                slot: &self.slots[own],
                owned: true,
            },
            _ => Writer {
                slot: &self.slots[shared],
                owned: false,
            },
        }
    }

    /// Counts a call in, on the slot of the thread it starts on.
    #[inline]
    pub(crate) fn start(&self) {
        let w = self.writer();
        w.add(&w.slot.started, 1);
    }

    /// Counts a call out with its outcome and latency, on the slot of the
    /// thread it ends on (a task may have moved between threads).
    #[inline]
    pub(crate) fn finish(&self, outcome: OperationOutcome, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // A scan from the smallest bound, not a binary search: its branches
        // settle on a service's usual latency and are predicted, where a
        // binary search's chain of dependent compares costs every call.
        let bucket = BOUNDS_NS
            .iter()
            .position(|bound| *bound >= nanos)
            .unwrap_or(BOUNDS_NS.len());
        let w = self.writer();
        let cell = &w.slot.latency[outcome.index()][bucket];
        w.add(&cell.count, 1);
        w.add(&cell.nanos, nanos);
    }

    /// Counts an error of class `error_type`.
    #[inline]
    pub(crate) fn error(&self, error_type: usize) {
        let w = self.writer();
        w.add(&w.slot.errors[error_type], 1);
    }

    /// What the layer has counted so far, read from every slot.
    pub(crate) fn snapshot(&self) -> OperationCounts {
        let mut by_outcome = [0u64; OUTCOMES];
        let mut nanos = 0u64;
        let mut started = 0u64;
        for slot in &self.slots {
            started += slot.started.load(Ordering::Relaxed);
            for (o, buckets) in slot.latency.iter().enumerate() {
                for cell in buckets {
                    by_outcome[o] += cell.count.load(Ordering::Relaxed);
                    nanos = nanos.wrapping_add(cell.nanos.load(Ordering::Relaxed));
                }
            }
        }
        let at = |outcome: OperationOutcome| by_outcome[outcome.index()];
        let finished: u64 = by_outcome.iter().sum();
        OperationCounts {
            ok: at(OperationOutcome::Ok),
            error: at(OperationOutcome::Error),
            rejected: at(OperationOutcome::Rejected),
            timeout: at(OperationOutcome::Timeout),
            cancelled: at(OperationOutcome::Cancelled),
            in_flight: started.saturating_sub(finished),
            total_latency: Duration::from_nanos(nanos),
        }
    }

    /// Pushes what was counted since the last flush into the handles: each
    /// bucket's new calls at their mean latency (so the recorder's buckets,
    /// count and sum come out exact with keel's bucket bounds).
    fn flush(&self) {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut started = 0;
        let mut finished = 0;
        for (e, total) in flushed.errors.iter_mut().enumerate() {
            let now: u64 = self
                .slots
                .iter()
                .map(|s| s.errors[e].load(Ordering::Relaxed))
                .sum();
            self.handles.errors[e].increment(now - *total);
            *total = now;
        }
        for (o, buckets) in flushed.latency.iter_mut().enumerate() {
            for (b, (count, nanos)) in buckets.iter_mut().enumerate() {
                let (mut now_count, mut now_nanos) = (0u64, 0u64);
                for slot in &self.slots {
                    let cell = &slot.latency[o][b];
                    now_count += cell.count.load(Ordering::Relaxed);
                    now_nanos = now_nanos.wrapping_add(cell.nanos.load(Ordering::Relaxed));
                }
                finished += now_count;
                let new = now_count - *count;
                if let Some(durations) = self.handles.durations.as_ref().filter(|_| new > 0) {
                    let mean = now_nanos.wrapping_sub(*nanos) / new;
                    let seconds = Duration::from_nanos(mean).as_secs_f64();
                    durations[o].record_many(seconds, usize::try_from(new).unwrap_or(usize::MAX));
                }
                (*count, *nanos) = (now_count, now_nanos);
            }
        }
        for slot in &self.slots {
            started += slot.started.load(Ordering::Relaxed);
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "calls in flight are far below 2^53"
        )]
        self.handles
            .in_flight
            .set(started.saturating_sub(finished) as f64);
    }
}

/// What a [`TelemetryLayer`](crate::TelemetryLayer) has counted since the
/// process started (every layer of the same label set together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationCounts {
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub error: u64,
    /// Calls a breaker turned away.
    pub rejected: u64,
    /// Calls a timeout ended.
    pub timeout: u64,
    /// Calls dropped before they finished.
    pub cancelled: u64,
    /// Calls under way now.
    pub in_flight: u64,
    /// Time spent in all finished calls.
    pub total_latency: Duration,
}

impl OperationCounts {
    /// Finished calls, whatever their outcome.
    pub fn total(&self) -> u64 {
        self.ok + self.failed() + self.cancelled
    }

    /// Calls that did not succeed: failed, rejected or timed out.
    pub fn failed(&self) -> u64 {
        self.error + self.rejected + self.timeout
    }

    /// The mean latency of finished calls (zero before the first).
    pub fn mean_latency(&self) -> Duration {
        let total = self.total();
        if total == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(
            u64::try_from(self.total_latency.as_nanos() / u128::from(total)).unwrap_or(u64::MAX),
        )
    }
}

/// Pushes every [`TelemetryLayer`](crate::TelemetryLayer)'s counts into its
/// metrics handles. [`MetricsService`](crate::MetricsService) calls it
/// before each scrape, and a thread (`keel-telemetry-flush`) every
/// [`FLUSH_INTERVAL`], so other recorders see the counts within that.
/// Call it yourself before rendering a recorder of your own.
pub fn flush() {
    let registry: Vec<&'static LayerStats> = REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for stats in registry {
        stats.flush();
    }
}

/// Appends, in the Prometheus text format, the latency histogram of every
/// layer made after [`render_natively`]: `db_client_operation_duration_seconds`
/// with `name` and `outcome` labels, its buckets, sum and count.
#[cfg(feature = "prometheus")]
pub(crate) fn render_histograms(out: &mut String) {
    let registry: Vec<&'static LayerStats> = REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let native: Vec<_> = registry
        .into_iter()
        .filter(|s| s.handles.durations.is_none())
        .collect();
    if native.is_empty() {
        return;
    }
    let metric = "db_client_operation_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {metric} Operation latency through the stack, by outcome."
    );
    let _ = writeln!(out, "# TYPE {metric} histogram");
    for stats in native {
        let name = escape(&stats.labels.name);
        for outcome in OperationOutcome::ALL {
            let labels = format!("name=\"{name}\",outcome=\"{}\"", outcome.as_str());
            let (mut cumulative, mut nanos) = (0u64, 0u64);
            for b in 0..BUCKETS {
                for slot in &stats.slots {
                    let cell = &slot.latency[outcome.index()][b];
                    cumulative += cell.count.load(Ordering::Relaxed);
                    nanos = nanos.wrapping_add(cell.nanos.load(Ordering::Relaxed));
                }
                let le = crate::LATENCY_BUCKETS
                    .get(b)
                    .map_or("+Inf".to_owned(), f64::to_string);
                let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let sum = Duration::from_nanos(nanos).as_secs_f64();
            let _ = writeln!(out, "{metric}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{metric}_count{{{labels}}} {cumulative}");
        }
    }
}

/// A label value as the text format wants it.
#[cfg(feature = "prometheus")]
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// How often the flush thread pushes layer counts into the recorder.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

fn start_flusher() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("keel-telemetry-flush".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    flush();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "keel-telemetry: no flush thread; counts reach the recorder only through flush()");
        }
    });
}

/// Slots per layer: one per thread for the first threads that make calls
/// (a runtime's workers start first), at least 16 and twice the cores, plus
/// the shared one.
fn slot_count() -> usize {
    std::thread::available_parallelism()
        .map_or(16, |n| n.get() * 2)
        .clamp(16, 128)
        + 1
}

/// This thread's slot number, given out in order on first use and never
/// reused, so no two threads ever own the same slot.
#[inline]
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|slot| *slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_exported_buckets() {
        assert_eq!(BOUNDS_NS.len(), crate::LATENCY_BUCKETS.len());
        for (ns, secs) in BOUNDS_NS.iter().zip(crate::LATENCY_BUCKETS) {
            let ours = Duration::from_nanos(*ns).as_secs_f64();
            assert!((ours - secs).abs() <= secs * 1e-12, "{ours} vs {secs}");
        }
    }

    /// More threads than slots: the first own theirs, the rest share the
    /// last; no call is lost either way, including calls that start on one
    /// thread and end on another.
    #[test]
    fn every_call_counts_however_many_threads_make_them() {
        let stats = LayerStats::intern(Labels {
            name: "threads".into(),
            db_system: None,
            server_address: None,
        });
        let threads = slot_count() * 2;
        let per_thread = 10_000;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..per_thread {
                        stats.start();
                        stats.finish(OperationOutcome::Ok, Duration::from_micros(1));
                    }
                    stats.start();
                    stats.error(0);
                });
            }
        });
        // The calls left open on each thread end on this one.
        for _ in 0..threads {
            stats.finish(OperationOutcome::Error, Duration::from_micros(1));
        }
        let counts = stats.snapshot();
        assert_eq!(counts.ok, (threads * per_thread) as u64);
        assert_eq!(counts.error, threads as u64);
        assert_eq!(counts.in_flight, 0);
        let errors: u64 = stats
            .slots
            .iter()
            .map(|s| s.errors[0].load(Ordering::Relaxed))
            .sum();
        assert_eq!(errors, threads as u64);
    }

    #[cfg(feature = "prometheus")]
    #[test]
    fn the_native_histogram_puts_each_call_in_its_bucket() {
        render_natively();
        let stats = LayerStats::intern(Labels {
            name: "unit".into(),
            db_system: None,
            server_address: None,
        });
        for micros in [10, 50, 51, 3_000, 20_000_000] {
            stats.start();
            stats.finish(OperationOutcome::Ok, Duration::from_micros(micros));
        }
        stats.start();
        stats.finish(OperationOutcome::Timeout, Duration::from_secs(1));
        let mut text = String::new();
        render_histograms(&mut text);
        let bucket = |outcome: &str, le: &str| -> u64 {
            let prefix = format!(
                "db_client_operation_duration_seconds_bucket{{name=\"unit\",outcome=\"{outcome}\",le=\"{le}\"}} "
            );
            let l = text
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{prefix} in\n{text}"));
            l[prefix.len()..].parse().unwrap_or_else(|_| panic!("{l}"))
        };
        assert_eq!(bucket("ok", "0.00005"), 2);
        assert_eq!(bucket("ok", "0.0001"), 3);
        assert_eq!(bucket("ok", "0.005"), 4);
        assert_eq!(bucket("ok", "10"), 4);
        assert_eq!(bucket("ok", "+Inf"), 5);
        assert_eq!(bucket("timeout", "1"), 1);
        assert_eq!(bucket("timeout", "0.5"), 0);
        let sum = "db_client_operation_duration_seconds_sum{name=\"unit\",outcome=\"ok\"} ";
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(sum))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 20.003_111).abs() < 1e-9, "{sum}");
    }

    #[cfg(feature = "prometheus")]
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("eu \"west\"\\1\n"), "eu \\\"west\\\"\\\\1\\n");
    }

    #[test]
    fn a_bucket_holds_latencies_up_to_its_bound() {
        let at = |ns| BOUNDS_NS.partition_point(|bound| *bound < ns);
        assert_eq!(at(0), 0);
        assert_eq!(at(50_000), 0);
        assert_eq!(at(50_001), 1);
        assert_eq!(at(u64::MAX), BUCKETS - 1);
    }
}
