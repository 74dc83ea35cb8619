//! The registry: runs checks on their schedule, keeps their last results,
//! listens to signals, and answers "how are we?" without waiting on anyone.

mod builder;
mod runner;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};

pub use builder::{BuildError, HealthRegistryBuilder};

use crate::observer::DynObserver;
use crate::report::{EntryReport, Report};
use crate::sync::lock;
use crate::{Event, HealthConfig, Outcome, Signal, Source, Status};

/// Runs health checks periodically (each on its own interval, one run at a
/// time, bounded by its timeout), keeps the last result of each, and
/// follows [`Signal`]s, so a probe reads a cached answer at once and a slow
/// database cannot make probes pile up. Clones share one registry; the
/// checks stop when the last clone is dropped or [`stop`](Self::stop) is
/// called.
///
/// The overall status is the worst of every entry; an entry with no result
/// yet counts as Unhealthy, so readiness fails until the first runs finish.
///
/// ```
/// use keel_health::{HealthConfig, HealthRegistry, Outcome, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), keel_health::BuildError> {
/// let health = HealthRegistry::builder(HealthConfig::default())
///     .check("cache", || async { Outcome::healthy() })
///     .version(env!("CARGO_PKG_VERSION"))
///     .build()?;
/// health.refresh().await; // run every check now and wait for the results
/// assert_eq!(health.status(), Status::Healthy);
/// assert!(health.is_ready());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HealthRegistry {
    shared: Arc<Shared>,
    owner: Arc<Owner>,
}

/// Stops the check loops when the last registry handle goes.
#[derive(Debug)]
struct Owner {
    stop: watch::Sender<bool>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    entries: Vec<Entry>,
    draining: AtomicBool,
    started: Instant,
    version: Option<String>,
    /// The overall status last announced, so each change is one event.
    announced: AtomicU8,
    observer: DynObserver,
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Check(CheckSlot),
    Signal(Signal),
}

#[derive(Debug)]
struct CheckSlot {
    config: HealthConfig,
    /// The last status, or `PENDING`.
    status: AtomicU8,
    last: Mutex<Option<LastRun>>,
    /// Asks the loop to run now (see `refresh`).
    trigger: Notify,
    /// Set by `refresh`, cleared when a run starts.
    wanted: AtomicBool,
    /// Runs started; `runs` counts those completed, for `refresh` to wait on.
    started: AtomicU64,
    runs: watch::Sender<u64>,
}

#[derive(Debug)]
struct LastRun {
    outcome: Outcome,
    latency: Duration,
    at: SystemTime,
}

impl HealthRegistry {
    /// A builder: add checks and signals, then [`build`](HealthRegistryBuilder::build).
    /// `defaults` is the schedule of every check added without its own.
    pub fn builder(defaults: HealthConfig) -> HealthRegistryBuilder {
        HealthRegistryBuilder::new(defaults)
    }

    /// The overall status: the worst entry's, from cached results. Takes a
    /// few atomic loads; never waits on a check.
    pub fn status(&self) -> Status {
        self.shared.overall().0
    }

    /// Whether readiness answers 200: not draining, and not Unhealthy.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.status() != Status::Unhealthy
    }

    /// Readiness answers 503 from now on, while liveness stays 200: call it
    /// when shutdown begins, so the load balancer stops sending traffic
    /// before the service stops taking it.
    pub fn drain(&self) {
        if !self.shared.draining.swap(true, Ordering::AcqRel) {
            tracing::info!("health: draining, readiness now answers 503");
            self.shared.observer.0.on_event(&Event::Draining);
        }
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Stops running checks (their last results stay in the report). The
    /// registry's clones see it too; it cannot be restarted.
    pub fn stop(&self) {
        self.owner.stop.send_replace(true);
    }

    /// How long since the registry was built.
    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Runs every check now (a check already running finishes first, one
    /// run at a time still) and waits until each has a result from a run
    /// started after this call. Probes never need it: use it at startup, or
    /// in tests.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future only stops the waiting; the runs go on.
    pub async fn refresh(&self) {
        let mut waits = Vec::new();
        for entry in &self.shared.entries {
            if let Kind::Check(slot) = &entry.kind {
                let mut runs = slot.runs.subscribe();
                // Runs complete in the order they start: once run number
                // `target` completes, a run that started after now has.
                let target = slot.started.load(Ordering::Acquire) + 1;
                slot.wanted.store(true, Ordering::Release);
                slot.trigger.notify_one();
                waits.push(async move {
                    // Err: the loop stopped; nothing more will come.
                    let _ = runs.wait_for(|n| *n >= target).await;
                });
            }
        }
        for wait in waits {
            wait.await;
        }
    }

    /// The whole report: overall status, what decided it, each entry's last
    /// result. Copies the cached results; never waits on a check.
    pub fn report(&self) -> Report {
        let shared = &self.shared;
        let (status, decided_by) = shared.overall();
        Report {
            status,
            decided_by: decided_by.map(str::to_owned),
            draining: self.is_draining(),
            uptime: self.uptime(),
            version: shared.version.clone(),
            entries: shared.entries.iter().map(Entry::report).collect(),
        }
    }
}

impl Shared {
    /// The worst status and the entry that has it (a signal before a check
    /// of the same status: it is the fresher news).
    fn overall(&self) -> (Status, Option<&str>) {
        let mut worst: Option<(Status, bool, &str)> = None;
        for entry in &self.entries {
            let status = entry.status();
            let is_signal = matches!(entry.kind, Kind::Signal(_));
            if worst.is_none_or(|(s, signal, _)| (status, is_signal) > (s, signal)) {
                worst = Some((status, is_signal, &entry.name));
            }
        }
        match worst {
            Some((Status::Healthy, ..)) | None => (Status::Healthy, None),
            Some((status, _, name)) => (status, Some(name)),
        }
    }

    fn record(&self, index: usize, outcome: Outcome, latency: Duration) {
        let Some(Entry {
            name,
            kind: Kind::Check(slot),
        }) = self.entries.get(index)
        else {
            return;
        };
        let to = outcome.status();
        let message = outcome.message().map(str::to_owned);
        let from = {
            let mut last = lock(&slot.last);
            *last = Some(LastRun {
                outcome,
                latency,
                at: SystemTime::now(),
            });
            slot.status.swap(to.to_u8(), Ordering::AcqRel)
        };
        if from != to.to_u8() {
            self.changed(
                name,
                Source::Check,
                Status::from_u8(from),
                to,
                message.as_deref(),
            );
        }
        slot.runs.send_modify(|n| *n += 1);
    }

    pub(crate) fn signal_changed(
        &self,
        index: usize,
        from: Option<Status>,
        to: Status,
        message: Option<&str>,
    ) {
        if let Some(entry) = self.entries.get(index) {
            self.changed(&entry.name, Source::Signal, from, to, message);
        }
    }

    fn changed(
        &self,
        name: &str,
        source: Source,
        from: Option<Status>,
        to: Status,
        message: Option<&str>,
    ) {
        let message_text = message.unwrap_or("");
        let source_name = source.as_str();
        if to == Status::Healthy {
            tracing::info!(name, source = source_name, status = %to, "health: {name} is healthy");
        } else {
            tracing::warn!(name, source = source_name, status = %to, message = message_text, "health: {name} is {to}: {message_text}");
        }
        self.observer.0.on_event(&Event::Changed {
            name,
            source,
            from,
            to,
            message,
        });
        let (now, decided_by) = self.overall();
        let before = self.announced.swap(now.to_u8(), Ordering::AcqRel);
        if let Some(before) = Status::from_u8(before).filter(|b| *b != now) {
            tracing::info!(from = %before, to = %now, decided_by, "health: overall status {before} -> {now}");
            self.observer.0.on_event(&Event::OverallChanged {
                from: before,
                to: now,
                decided_by,
            });
        }
    }
}

impl Entry {
    fn status(&self) -> Status {
        match &self.kind {
            Kind::Check(slot) => {
                Status::from_u8(slot.status.load(Ordering::Acquire)).unwrap_or(Status::Unhealthy)
            }
            Kind::Signal(signal) => signal.status(),
        }
    }

    fn report(&self) -> EntryReport {
        let name = self.name.to_string();
        match &self.kind {
            Kind::Check(slot) => match &*lock(&slot.last) {
                Some(last) => EntryReport {
                    name,
                    source: Source::Check,
                    status: last.outcome.status(),
                    message: last.outcome.message().map(str::to_owned),
                    details: last.outcome.details().clone(),
                    latency: Some(last.latency),
                    at: Some(last.at),
                },
                None => EntryReport {
                    name,
                    source: Source::Check,
                    status: Status::Unhealthy,
                    message: Some("no result yet".to_owned()),
                    details: serde_json::Map::new(),
                    latency: None,
                    at: None,
                },
            },
            Kind::Signal(signal) => signal.with_state(|state| EntryReport {
                name,
                source: Source::Signal,
                status: state.outcome.status(),
                message: state.outcome.message().map(str::to_owned),
                details: state.outcome.details().clone(),
                latency: None,
                at: Some(state.since),
            }),
        }
    }
}
