//! Breaker state, transitions and rejections.

use std::sync::{Arc, OnceLock};

use keel_breaker::{CircuitBreaker, Event, Observer, State};
use metrics::{Counter, Gauge};

use crate::Collect;
use crate::cache::ByName;
use crate::names::{BREAKER_REJECTIONS, BREAKER_STATE, BREAKER_TRANSITIONS, NAME};

const STATES: [State; 5] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
];

fn index(state: State) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(0)
}

/// A breaker observer: transitions by `from` and `to`, rejections, and the
/// state gauge (1 for the current state), labelled by each event's breaker
/// name; one observer serves any number of breakers. A breaker that never
/// changed state has no gauge until [`BreakerGauges`] reads it at scrape.
///
/// ```
/// use keel_breaker::{BreakerConfig, CircuitBreaker};
/// use keel_telemetry::BreakerMetrics;
///
/// let breaker = CircuitBreaker::builder(BreakerConfig::default())
///     .name("orders-db")
///     .observer(BreakerMetrics::new())
///     .build()?;
/// # Ok::<(), keel_breaker::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct BreakerMetrics {
    breakers: Arc<ByName<Handles>>,
}

#[derive(Debug)]
struct Handles {
    name: String,
    /// `[from][to]`, resolved on first use: 25 series per breaker would be
    /// noise when a handful ever happen.
    transitions: [[OnceLock<Counter>; 5]; 5],
    rejections: Counter,
    states: [Gauge; 5],
}

fn state_gauges(name: &str) -> [Gauge; 5] {
    STATES.map(
        |state| metrics::gauge!(BREAKER_STATE, NAME => name.to_owned(), "state" => state.as_str()),
    )
}

impl BreakerMetrics {
    /// An observer for any number of breakers.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Observer for BreakerMetrics {
    fn on_event(&self, event: &Event<'_>) {
        let (Event::Transition { name, .. } | Event::Rejected { name, .. }) = *event else {
            return;
        };
        let handles = self.breakers.get(name, |name| Handles {
            name: name.to_owned(),
            transitions: Default::default(),
            rejections: metrics::counter!(BREAKER_REJECTIONS, NAME => name.to_owned()),
            states: state_gauges(name),
        });
        match *event {
            Event::Transition { from, to, .. } => {
                handles.transitions[index(from)][index(to)]
                    .get_or_init(|| {
                        metrics::counter!(BREAKER_TRANSITIONS, NAME => handles.name.clone(), "from" => from.as_str(), "to" => to.as_str())
                    })
                    .increment(1);
                handles.states[index(from)].set(0.0);
                handles.states[index(to)].set(1.0);
            }
            Event::Rejected { .. } => handles.rejections.increment(1),
            _ => {}
        }
    }
}

/// Reads a breaker's state at scrape time into `keel.breaker.state`.
#[derive(Debug)]
pub struct BreakerGauges {
    breaker: CircuitBreaker,
    states: [Gauge; 5],
}

impl BreakerGauges {
    /// Gauges for `breaker`, under its name.
    pub fn new(breaker: CircuitBreaker) -> Self {
        let states = state_gauges(breaker.name());
        Self { breaker, states }
    }
}

impl Collect for BreakerGauges {
    fn collect(&self) {
        let now = index(self.breaker.info().state);
        for (i, gauge) in self.states.iter().enumerate() {
            gauge.set(if i == now { 1.0 } else { 0.0 });
        }
    }
}
