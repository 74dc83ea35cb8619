//! Model test: random sequences of acquisitions, outcomes in any order (so
//! several trials are in flight at once), drops, time advances and manual
//! commands, checked step by step against a small reference model of the
//! state machine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::collections::VecDeque;
use std::time::Duration;

use keel_breaker::{
    BreakerConfig, CircuitBreaker, HalfOpenConfig, ManualClock, OpenBackoff, Outcome, OwnedPermit,
    State, Window,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Params {
    threshold: Option<u32>,
    /// (window size, min calls, failure rate)
    rate: Option<(u32, u32, f64)>,
    permitted: u32,
    success_threshold: u32,
    open_ms: u64,
    multiplier: Option<f64>,
    max_wait_ms: u64,
}

impl Params {
    fn config(&self) -> BreakerConfig {
        let mut c = BreakerConfig::default()
            .with_consecutive_failures(self.threshold)
            .with_open_duration(Duration::from_millis(self.open_ms))
            .with_half_open(
                HalfOpenConfig::new(self.permitted, self.success_threshold)
                    .with_max_wait(Duration::from_millis(self.max_wait_ms)),
            );
        if let Some((size, min_calls, rate)) = self.rate {
            c = c
                .with_window(Window::Count { calls: size })
                .with_min_calls(min_calls)
                .with_failure_rate(rate);
        }
        if let Some(m) = self.multiplier {
            c = c.with_open_backoff(
                OpenBackoff::new(m, Duration::from_millis(self.open_ms * 10)).with_jitter(0.0),
            );
        }
        c
    }
}

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    Report(usize, Outcome),
    Drop(usize),
    Advance(u64),
    Reset,
    ForceOpen,
    Disable,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Closed,
    Trial,
    Untracked,
}

#[derive(Debug, Default)]
struct Counts {
    successes: u64,
    failures: u64,
    ignored: u64,
    cancelled: u64,
    rejections: u64,
    opens: u64,
}

/// The reference: plain fields, one step at a time, written from the spec.
struct Model {
    p: Params,
    now: u64,
    state: State,
    generation: u64,
    consecutive: u32,
    window: VecDeque<bool>,
    open_until: u64,
    trips: u32,
    in_flight: u32,
    successes: u32,
    last_trial_at: u64,
    counts: Counts,
}

impl Model {
    fn new(p: Params) -> Self {
        Self {
            p,
            now: 0,
            state: State::Closed,
            generation: 0,
            consecutive: 0,
            window: VecDeque::new(),
            open_until: 0,
            trips: 0,
            in_flight: 0,
            successes: 0,
            last_trial_at: 0,
            counts: Counts::default(),
        }
    }

    fn enter(&mut self, to: State) {
        self.generation += 1;
        self.in_flight = 0;
        self.successes = 0;
        match to {
            State::Open => {
                let mut d = self.p.open_ms as f64;
                if let Some(m) = self.p.multiplier {
                    d = (d * m.powi(self.trips as i32)).min((self.p.open_ms * 10) as f64);
                }
                self.open_until = self.now + d.round() as u64;
                self.trips += 1;
                self.counts.opens += 1;
            }
            State::HalfOpen => self.last_trial_at = self.now,
            State::Closed => {
                self.consecutive = 0;
                self.window.clear();
                self.trips = 0;
            }
            _ => {}
        }
        self.state = to;
    }

    fn acquire(&mut self) -> Result<(Kind, u64), (State, Option<u64>)> {
        loop {
            match self.state {
                State::Closed => return Ok((Kind::Closed, self.generation)),
                State::Disabled => return Ok((Kind::Untracked, self.generation)),
                State::ForcedOpen => {
                    self.counts.rejections += 1;
                    return Err((State::ForcedOpen, None));
                }
                State::Open => {
                    if self.now < self.open_until {
                        self.counts.rejections += 1;
                        return Err((State::Open, Some(self.open_until - self.now)));
                    }
                    self.enter(State::HalfOpen);
                }
                State::HalfOpen => {
                    if self.in_flight < self.p.permitted {
                        self.last_trial_at = self.now;
                        self.in_flight += 1;
                        return Ok((Kind::Trial, self.generation));
                    }
                    if self.now - self.last_trial_at < self.p.max_wait_ms {
                        self.counts.rejections += 1;
                        return Err((State::HalfOpen, None));
                    }
                    let kept = self.successes;
                    self.enter(State::HalfOpen);
                    self.successes = kept;
                }
                _ => unreachable!(),
            }
        }
    }

    fn report(&mut self, kind: Kind, generation: u64, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.counts.successes += 1,
            Outcome::Failure => self.counts.failures += 1,
            _ => self.counts.ignored += 1,
        }
        if generation != self.generation || outcome == Outcome::Ignored && kind == Kind::Closed {
            return;
        }
        match kind {
            Kind::Untracked => {}
            Kind::Closed => {
                let failed = outcome == Outcome::Failure;
                let mut trip = false;
                if failed {
                    if let Some(t) = self.p.threshold {
                        self.consecutive += 1;
                        trip |= self.consecutive >= t;
                    }
                } else {
                    self.consecutive = 0;
                }
                if let Some((size, min_calls, rate)) = self.p.rate {
                    self.window.push_back(failed);
                    if self.window.len() > size as usize {
                        self.window.pop_front();
                    }
                    let calls = self.window.len() as f64;
                    let failures = self.window.iter().filter(|f| **f).count() as f64;
                    trip |= calls >= f64::from(min_calls) && failures / calls >= rate;
                }
                if trip {
                    self.enter(State::Open);
                }
            }
            Kind::Trial => {
                if self.state != State::HalfOpen {
                    return;
                }
                match outcome {
                    Outcome::Failure => self.enter(State::Open),
                    Outcome::Success => {
                        self.in_flight -= 1;
                        self.successes += 1;
                        if self.successes >= self.p.success_threshold {
                            self.enter(State::Closed);
                        }
                    }
                    _ => self.in_flight -= 1,
                }
            }
        }
    }

    fn abandon(&mut self, kind: Kind, generation: u64) {
        self.counts.cancelled += 1;
        if kind == Kind::Trial && generation == self.generation && self.state == State::HalfOpen {
            self.in_flight -= 1;
        }
    }
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop::option::of(1u32..5),
        prop::option::of((
            1u32..8,
            1u32..6,
            prop_oneof![Just(0.25), Just(0.5), Just(1.0)],
        )),
        1u32..4,
        1u32..4,
        1u64..50,
        prop::option::of(prop_oneof![Just(1.0), Just(2.0), Just(3.0)]),
        1u64..100,
    )
        .prop_filter("needs a trip policy", |(t, r, ..)| {
            t.is_some() || r.is_some()
        })
        .prop_map(
            |(threshold, rate, permitted, success_threshold, open_ms, multiplier, max_wait_ms)| {
                Params {
                    threshold,
                    rate,
                    permitted,
                    success_threshold,
                    open_ms,
                    multiplier,
                    max_wait_ms,
                }
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => Just(Op::Acquire),
        30 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Report(i, o)),
        6 => any::<usize>().prop_map(Op::Drop),
        15 => (1u64..60).prop_map(Op::Advance),
        1 => Just(Op::Reset),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Disable),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn breaker_follows_the_reference_model(p in params(), ops in prop::collection::vec(op(), 1..200)) {
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::builder(p.config()).clock(clock.clone()).build().unwrap();
        let mut model = Model::new(p);
        let mut held: Vec<(OwnedPermit, Kind, u64)> = Vec::new();

        for op in ops {
            match op {
                Op::Acquire => {
                    let real = breaker.try_acquire_owned();
                    match (model.acquire(), real) {
                        (Ok((kind, generation)), Ok(permit)) => {
                            prop_assert_eq!(kind == Kind::Trial, permit.is_trial());
                            held.push((permit, kind, generation));
                        }
                        (Err((state, after)), Err(rejected)) => {
                            prop_assert_eq!(state, rejected.state());
                            prop_assert_eq!(after.map(Duration::from_millis), rejected.retry_after());
                        }
                        (m, r) => prop_assert!(false, "model {:?} vs real {:?}", m, r.map(|_| ())),
                    }
                }
                Op::Report(i, outcome) if !held.is_empty() => {
                    let (permit, kind, generation) = held.swap_remove(i % held.len());
                    model.report(kind, generation, outcome);
                    permit.record(outcome);
                }
                Op::Drop(i) if !held.is_empty() => {
                    let (permit, kind, generation) = held.swap_remove(i % held.len());
                    model.abandon(kind, generation);
                    drop(permit);
                }
                Op::Report(..) | Op::Drop(_) => {}
                Op::Advance(ms) => {
                    model.now += ms;
                    clock.advance(Duration::from_millis(ms));
                }
                Op::Reset => {
                    model.enter(State::Closed);
                    breaker.reset();
                }
                Op::ForceOpen => {
                    model.enter(State::ForcedOpen);
                    breaker.force_open();
                }
                Op::Disable => {
                    model.enter(State::Disabled);
                    breaker.disable();
                }
            }
            let info = breaker.info();
            prop_assert_eq!(info.state, model.state);
            let c = &model.counts;
            prop_assert_eq!(
                (info.successes, info.failures, info.ignored, info.cancelled, info.rejections, info.opens),
                (c.successes, c.failures, c.ignored, c.cancelled, c.rejections, c.opens)
            );
            if model.state == State::Closed && model.p.threshold.is_some() {
                prop_assert_eq!(info.consecutive_failures, model.consecutive);
            }
        }
    }
}
