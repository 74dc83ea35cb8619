//! Helpers shared by the behaviour tests.
#![allow(dead_code, reason = "each test file uses a part")]
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use keel_breaker::{BreakerConfig, CircuitBreaker, ManualClock, State};

/// A breaker on a manual clock, built from `config`.
pub(crate) fn on_manual_clock(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    (breaker, clock)
}

/// A breaker that opens on one failure, already tripped.
pub(crate) fn tripped(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
    let (breaker, clock) = on_manual_clock(config.with_consecutive_failures(Some(1)));
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), State::Open);
    (breaker, clock)
}

/// A tripped breaker whose open duration has just passed: the next call is a trial.
pub(crate) fn due_for_trial(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
    let open_for = config.open_duration;
    let (breaker, clock) = tripped(config);
    clock.advance(open_for);
    (breaker, clock)
}
