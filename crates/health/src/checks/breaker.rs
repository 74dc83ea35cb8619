//! Breakers: polled checks, and [`Signal`] as a breaker observer so an
//! opening breaker changes the report at once.

use std::fmt::Display;
use std::hash::Hash;

use keel_breaker::{BreakerRegistry, CircuitBreaker, Event, Info, Observer, State};
use serde_json::{Map, Value, json};

use crate::{HealthCheck, Outcome, Signal, Status};

/// Open and ForcedOpen are Unhealthy, HalfOpen is Degraded, Closed and
/// Disabled are Healthy.
fn status_of(state: State) -> Status {
    match state {
        State::Open | State::ForcedOpen => Status::Unhealthy,
        State::HalfOpen => Status::Degraded,
        _ => Status::Healthy,
    }
}

fn describe(info: &Info) -> Value {
    json!({
        "state": info.state.as_str(),
        "consecutive_failures": info.consecutive_failures,
        "opens": info.opens,
        "rejections": info.rejections,
        "retry_after_ms": info.retry_after.map(|d| d.as_secs_f64() * 1e3),
    })
}

fn message(name: &str, state: State) -> String {
    let name = if name.is_empty() { "the breaker" } else { name };
    format!("{name} is {}", state.as_str().replace('_', "-"))
}

/// A breaker's state, read when the check runs. Add the [`Signal`]
/// observer as well (see the `keel_breaker::Observer` impl on [`Signal`])
/// to see it open at once rather than at the next run.
#[derive(Debug)]
pub struct BreakerCheck {
    breaker: CircuitBreaker,
}

impl BreakerCheck {
    /// Checks `breaker`.
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self { breaker }
    }
}

impl HealthCheck for BreakerCheck {
    async fn check(&self) -> Outcome {
        let info = self.breaker.info();
        let status = status_of(info.state);
        let outcome = match status {
            Status::Healthy => Outcome::healthy(),
            _ => Outcome::new(status, Some(message(self.breaker.name(), info.state))),
        };
        outcome.with_detail("breaker", describe(&info))
    }
}

/// Every breaker of a [`BreakerRegistry`] (one per endpoint or tenant): the
/// worst state decides; each breaker's state is in the details under
/// `breakers`.
#[derive(Debug)]
pub struct BreakerRegistryCheck<K> {
    registry: BreakerRegistry<K>,
}

impl<K> BreakerRegistryCheck<K> {
    /// Checks every breaker in `registry`.
    pub fn new(registry: BreakerRegistry<K>) -> Self {
        Self { registry }
    }
}

impl<K> HealthCheck for BreakerRegistryCheck<K>
where
    K: Eq + Hash + Clone + Display + Send + Sync + 'static,
{
    async fn check(&self) -> Outcome {
        let mut worst = Status::Healthy;
        let mut unwell = Vec::new();
        let mut breakers = Map::new();
        for (key, info) in self.registry.infos() {
            let key = key.to_string();
            let status = status_of(info.state);
            worst = worst.max(status);
            if status != Status::Healthy {
                unwell.push(message(&key, info.state));
            }
            breakers.insert(key, describe(&info));
        }
        let message = (!unwell.is_empty()).then(|| unwell.join("; "));
        Outcome::new(worst, message).with_detail("breakers", breakers)
    }
}

/// A signal as a breaker's observer: each transition sets its status at
/// once (Open and ForcedOpen Unhealthy, HalfOpen Degraded, Closed and
/// Disabled Healthy).
///
/// ```
/// use keel_breaker::{BreakerConfig, CircuitBreaker};
/// use keel_health::{HealthConfig, HealthRegistry, Signal, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let signal = Signal::new();
/// let breaker = CircuitBreaker::builder(BreakerConfig::default())
///     .name("orders-db")
///     .observer(signal.clone())
///     .build()?;
/// let health = HealthRegistry::builder(HealthConfig::default())
///     .signal("orders-db breaker", &signal)
///     .build()?;
/// breaker.force_open();
/// assert_eq!(health.status(), Status::Unhealthy);
/// assert!(!health.is_ready());
/// # Ok(())
/// # }
/// ```
impl Observer for Signal {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Transition { name, to, .. } = *event {
            let status = status_of(to);
            let outcome = match status {
                Status::Healthy => Outcome::healthy(),
                _ => Outcome::new(status, Some(message(name, to))),
            };
            self.set(outcome.with_detail("state", to.as_str()));
        }
    }
}
