//! [`HealthRegistryBuilder`]: checks, signals, version, observer; `build`
//! validates them all and starts the check loops.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, watch};

use super::{CheckSlot, Entry, HealthRegistry, Kind, Owner, Shared, runner};
use crate::check::DynCheck;
use crate::observer::DynObserver;
use crate::status::PENDING;
use crate::{ConfigError, HealthCheck, HealthConfig, NoopObserver, Observer, Signal};

/// Builds a [`HealthRegistry`]; from [`HealthRegistry::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct HealthRegistryBuilder {
    defaults: HealthConfig,
    entries: Vec<Pending>,
    version: Option<String>,
    observer: DynObserver,
}

struct Pending {
    name: String,
    kind: PendingKind,
}

enum PendingKind {
    Check(Arc<dyn DynCheck>, HealthConfig),
    Signal(Signal),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Why [`HealthRegistryBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A schedule or a name cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// There is no tokio runtime to run the checks on.
    #[error("the health registry must be built inside a tokio runtime: its checks run there")]
    NoRuntime,
}

impl HealthRegistryBuilder {
    pub(super) fn new(defaults: HealthConfig) -> Self {
        Self {
            defaults,
            entries: Vec::new(),
            version: None,
            observer: DynObserver(Box::new(NoopObserver)),
        }
    }

    /// Adds a check run on the default schedule.
    pub fn check(self, name: impl Into<String>, check: impl HealthCheck) -> Self {
        let defaults = self.defaults;
        self.check_with(name, check, defaults)
    }

    /// Adds a check with its own schedule.
    pub fn check_with(
        mut self,
        name: impl Into<String>,
        check: impl HealthCheck,
        config: HealthConfig,
    ) -> Self {
        self.entries.push(Pending {
            name: name.into(),
            kind: PendingKind::Check(Arc::new(check), config),
        });
        self
    }

    /// Adds a [`Signal`]: its status counts in the report from the moment it
    /// is set.
    pub fn signal(mut self, name: impl Into<String>, signal: &Signal) -> Self {
        self.entries.push(Pending {
            name: name.into(),
            kind: PendingKind::Signal(signal.clone()),
        });
        self
    }

    /// The service's version, shown in the detailed report
    /// (`env!("CARGO_PKG_VERSION")` of the binary, typically).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Receives every status change (the registry also logs them).
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = DynObserver(Box::new(observer));
        self
    }

    /// Validates every schedule and name, then starts one loop per check on
    /// the current tokio runtime; each runs its first check at once.
    ///
    /// # Errors
    ///
    /// [`BuildError::Config`] names the field: `interval` / `timeout` for
    /// the defaults, `checks.NAME.interval` for one check's schedule,
    /// `checks.NAME` for an empty or duplicate name.
    /// [`BuildError::NoRuntime`] outside a tokio runtime.
    pub fn build(self) -> Result<HealthRegistry, BuildError> {
        self.defaults.validate()?;
        let mut names = HashSet::new();
        for pending in &self.entries {
            let field = format!("checks.{}", pending.name);
            if pending.name.trim().is_empty() {
                return Err(ConfigError::new(field, "a check or signal needs a name").into());
            }
            if !names.insert(pending.name.as_str()) {
                return Err(ConfigError::new(
                    field,
                    "duplicate name: each check and signal needs its own",
                )
                .into());
            }
            if let PendingKind::Check(_, config) = &pending.kind {
                config.validate_as(&field)?;
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;

        let mut checks = Vec::new();
        let entries = self
            .entries
            .into_iter()
            .enumerate()
            .map(|(index, pending)| {
                let kind = match pending.kind {
                    PendingKind::Check(check, config) => {
                        checks.push((index, check));
                        Kind::Check(CheckSlot {
                            config,
                            status: AtomicU8::new(PENDING),
                            last: Mutex::new(None),
                            trigger: Notify::new(),
                            wanted: AtomicBool::new(false),
                            started: AtomicU64::new(0),
                            runs: watch::Sender::new(0),
                        })
                    }
                    PendingKind::Signal(signal) => Kind::Signal(signal),
                };
                Entry {
                    name: pending.name.into(),
                    kind,
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            entries,
            draining: AtomicBool::new(false),
            started: Instant::now(),
            version: self.version,
            announced: AtomicU8::new(PENDING),
            observer: self.observer,
        });
        shared.announced.store(
            shared.overall().0.to_u8(),
            std::sync::atomic::Ordering::Release,
        );
        for (index, entry) in shared.entries.iter().enumerate() {
            if let Kind::Signal(signal) = &entry.kind {
                signal.listen(Arc::downgrade(&shared), index);
            }
        }
        let (stop, _) = watch::channel(false);
        for (index, check) in checks {
            runtime.spawn(runner::run(
                Arc::clone(&shared),
                index,
                check,
                stop.subscribe(),
            ));
        }
        Ok(HealthRegistry {
            shared,
            owner: Arc::new(Owner { stop }),
        })
    }
}
