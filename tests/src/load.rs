//! Load for the fault suite: tasks calling until told to stop, every call
//! under a deadline, and a tally of how the calls ended, from which each
//! fault test prints its row of the suite's table.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// How the calls of a load ended.
#[derive(Debug)]
pub struct Tally {
    start: Instant,
    ok: AtomicU64,
    failed: AtomicU64,
    hung: AtomicU64,
    /// Milliseconds since `start`: the end of the last success and of the
    /// last failure.
    last_ok_ms: AtomicU64,
    last_failed_ms: AtomicU64,
    /// Calls starting at or after this mark (ms) that succeed set
    /// `first_ok_after_mark_ms` (the earliest end).
    mark_ms: AtomicU64,
    first_ok_after_mark_ms: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    /// A tally whose clock starts now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            hung: AtomicU64::new(0),
            last_ok_ms: AtomicU64::new(0),
            last_failed_ms: AtomicU64::new(0),
            mark_ms: AtomicU64::new(u64::MAX),
            first_ok_after_mark_ms: AtomicU64::new(u64::MAX),
            errors: Mutex::new(Vec::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `call` under `deadline` and counts how it ended: `Some` on
    /// success. A failure is kept (the first hundred) for the report.
    pub async fn call<T, E: Display>(
        &self,
        deadline: Duration,
        call: impl Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let began = self.now_ms();
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(value)) => {
                let end = self.now_ms();
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.last_ok_ms.fetch_max(end, Ordering::Relaxed);
                if began >= self.mark_ms.load(Ordering::Relaxed) {
                    self.first_ok_after_mark_ms
                        .fetch_min(end, Ordering::Relaxed);
                }
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.last_failed_ms
                    .fetch_max(self.now_ms(), Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                if errors.len() < 100 {
                    errors.push(e.to_string());
                }
                None
            }
            Err(_) => {
                self.hung.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Calls that succeeded.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Calls that returned an error by their deadline.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Calls still running at their deadline.
    pub fn hung(&self) -> u64 {
        self.hung.load(Ordering::Relaxed)
    }

    /// The first errors seen.
    pub fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the last call to end ended well.
    pub fn last_call_succeeded(&self) -> bool {
        self.last_ok_ms.load(Ordering::Relaxed) > self.last_failed_ms.load(Ordering::Relaxed)
    }

    /// Marks now: [`recovery`](Self::recovery) measures from here.
    pub fn mark(&self) {
        self.first_ok_after_mark_ms
            .store(u64::MAX, Ordering::Relaxed);
        self.mark_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Waits (at most `limit`) for a call begun after the mark to succeed;
    /// returns how long after the mark it ended.
    pub async fn recovery(&self, limit: Duration) -> Option<Duration> {
        let first = || self.first_ok_after_mark_ms.load(Ordering::Relaxed);
        wait_for(limit, || first() != u64::MAX).await?;
        let mark = self.mark_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(first().saturating_sub(mark)))
    }

    /// Prints this fault's row of the suite's table (`FAULT |` lines:
    /// `cargo test -p keel-tests fault -- --nocapture | grep '^FAULT |'`).
    pub fn report(&self, fault: &str, recovery: Option<Duration>, notes: &str) {
        let (ok, failed, hung) = (self.ok(), self.failed(), self.hung());
        let recovery =
            recovery.map_or_else(|| "-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
        #[expect(clippy::print_stdout, reason = "the suite's report")]
        {
            println!(
                "FAULT | {fault} | {} | {ok} | {failed} | {hung} | {recovery} | {notes} |",
                ok + failed + hung
            );
        }
    }
}

/// `tasks` tasks calling `call(task, n)` (n counts each task's calls)
/// under `deadline` until `stop`; a failed call backs off 20 ms, as a
/// caller should rather than spin.
pub fn spawn_load<F, Fut, T, E>(
    tasks: usize,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
    deadline: Duration,
    call: F,
) -> Vec<JoinHandle<()>>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send,
    T: Send,
    E: Display,
{
    (0..tasks)
        .map(|task| {
            let (tally, stop, call) = (Arc::clone(tally), Arc::clone(stop), call.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    if tally.call(deadline, call(task, n)).await.is_none() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    n += 1;
                }
            })
        })
        .collect()
}

/// Polls `condition` every 50 ms until it holds (`Some` of how long that
/// took) or `limit` has passed (`None`).
pub async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the load and waits for its tasks.
///
/// # Panics
/// When a load task panicked.
pub async fn stop_load(stop: &AtomicBool, tasks: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task ends cleanly");
    }
}

/// This process's resident set, in KiB (Linux).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
