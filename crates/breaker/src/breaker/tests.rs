//! Unit tests of the breaker on a manual clock.

use super::rejected::Retry;
use super::*;
use crate::ManualClock;
use crate::clock::Clock;
use crate::config::{HalfOpenConfig, OpenBackoff, Window};
use crate::observer::Event;

fn breaker(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder(config)
        .clock(clock.clone())
        .seed(7)
        .build()
        .unwrap();
    (b, clock)
}

fn fail(b: &CircuitBreaker, n: usize) {
    for _ in 0..n {
        b.try_acquire().unwrap().failure();
    }
}

#[test]
fn default_breaker_builds() {
    assert_eq!(CircuitBreaker::default().state(), State::Closed);
}

#[test]
fn no_trip_policy_is_refused() {
    let err =
        CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(None)).unwrap_err();
    assert_eq!(err.field(), "consecutive_failures");
}

#[test]
fn consecutive_failures_trip_and_successes_reset_the_count() {
    let (b, _) = breaker(BreakerConfig::default().with_consecutive_failures(Some(3)));
    fail(&b, 2);
    b.try_acquire().unwrap().success();
    fail(&b, 2);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.info().consecutive_failures, 2);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
    let info = b.info();
    assert_eq!((info.failures, info.successes, info.opens), (5, 1, 1));
}

#[test]
fn ignored_outcomes_neither_trip_nor_reset() {
    let (b, _) = breaker(BreakerConfig::default().with_consecutive_failures(Some(2)));
    fail(&b, 1);
    b.try_acquire().unwrap().ignore();
    assert_eq!(b.info().consecutive_failures, 1);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.info().ignored, 1);
}

#[test]
fn open_rejects_with_retry_after_then_half_opens() {
    let (b, clock) = breaker(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_open_duration(Duration::from_secs(10)),
    );
    fail(&b, 1);
    clock.advance(Duration::from_secs(4));
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.state(), State::Open);
    assert_eq!(r.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(b.info().retry_after, Some(Duration::from_secs(6)));
    clock.advance(Duration::from_secs(6));
    let trial = b.try_acquire().unwrap();
    assert!(trial.is_trial());
    assert_eq!(b.state(), State::HalfOpen);
    trial.success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.info().rejections, 1);
}

#[test]
fn trial_failure_reopens_with_growing_duration() {
    let (b, clock) = breaker(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_open_duration(Duration::from_secs(1))
            .with_open_backoff(OpenBackoff::new(2.0, Duration::from_secs(3)).with_jitter(0.0)),
    );
    fail(&b, 1);
    for expected in [2, 3, 3] {
        clock.advance(Duration::from_secs(10));
        b.try_acquire().unwrap().failure();
        let r = b.try_acquire().unwrap_err();
        assert_eq!(r.retry_after(), Some(Duration::from_secs(expected)));
    }
    clock.advance(Duration::from_secs(10));
    b.try_acquire().unwrap().success();
    fail(&b, 1);
    // Closing reset the backoff.
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(1))
    );
}

#[test]
fn jitter_shortens_within_bounds() {
    let (b, clock) = breaker(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_open_duration(Duration::from_secs(100))
            .with_open_backoff(OpenBackoff::new(1.0, Duration::from_secs(100)).with_jitter(0.5)),
    );
    let mut seen = Vec::new();
    fail(&b, 1);
    for _ in 0..20 {
        let after = b.try_acquire().unwrap_err().retry_after().unwrap();
        assert!(after > Duration::from_secs(50) && after <= Duration::from_secs(100));
        seen.push(after);
        clock.advance(Duration::from_secs(200));
        b.try_acquire().unwrap().failure();
    }
    seen.dedup();
    assert!(seen.len() > 10, "jitter should vary: {seen:?}");
}

#[test]
fn half_open_needs_success_threshold() {
    let (b, clock) = breaker(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_half_open(HalfOpenConfig::new(2, 3)),
    );
    fail(&b, 1);
    clock.advance(Duration::from_secs(60));
    let t1 = b.try_acquire().unwrap();
    let t2 = b.try_acquire().unwrap();
    assert_eq!(b.try_acquire().unwrap_err().state(), State::HalfOpen);
    t1.success();
    t2.success();
    assert_eq!(b.state(), State::HalfOpen);
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn lost_trial_is_reclaimed_after_max_wait() {
    let (b, clock) = breaker(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_half_open(HalfOpenConfig::new(1, 1).with_max_wait(Duration::from_secs(5))),
    );
    fail(&b, 1);
    clock.advance(Duration::from_secs(60));
    let lost = b.try_acquire().unwrap();
    std::mem::forget(lost); // never reports, never drops
    clock.advance(Duration::from_secs(4));
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_secs(1));
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn stale_verdicts_are_ignored() {
    let (b, clock) = breaker(BreakerConfig::default().with_consecutive_failures(Some(1)));
    let old = b.try_acquire().unwrap();
    fail(&b, 1);
    clock.advance(Duration::from_secs(60));
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
    old.failure(); // issued two generations ago
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.info().failures, 2);
}

#[test]
fn failure_rate_trips_after_min_calls() {
    let (b, _) = breaker(
        BreakerConfig::default()
            .with_consecutive_failures(None)
            .with_failure_rate(0.5)
            .with_window(Window::Count { calls: 10 })
            .with_min_calls(4),
    );
    b.try_acquire().unwrap().success();
    fail(&b, 2);
    assert_eq!(b.state(), State::Closed, "3 calls < min_calls");
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Open, "2 of 4 failed");
    let window = b.info().window.unwrap();
    assert_eq!((window.calls, window.failures), (4, 2));
}

/// Trips when half the calls of the last 10 s (at least 4) failed.
fn half_of_ten_seconds() -> (CircuitBreaker, ManualClock) {
    breaker(
        BreakerConfig::default()
            .with_consecutive_failures(None)
            .with_failure_rate(0.5)
            .with_window(Window::Time {
                duration: Duration::from_secs(10),
                buckets: 10,
            })
            .with_min_calls(4),
    )
}

#[test]
fn time_window_forgets_old_failures() {
    let (b, clock) = half_of_ten_seconds();
    fail(&b, 3);
    clock.advance(Duration::from_secs(11));
    for _ in 0..3 {
        b.try_acquire().unwrap().success();
    }
    fail(&b, 1);
    assert_eq!(b.state(), State::Closed, "1 of 4 in the window");
    assert_eq!(b.info().window.unwrap().calls, 4);
}

/// A success reads a time window only while it may hold a failure; one
/// nearly a window old still counts, and the success that brings the
/// calls up to `min_calls` trips.
#[test]
fn a_time_window_trips_on_the_success_that_reaches_min_calls() {
    let (b, clock) = half_of_ten_seconds();
    fail(&b, 2);
    clock.advance(Duration::from_millis(9_500));
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed, "3 calls < min_calls");
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Open, "2 of 4 failed");
}

/// On the system clock a time window of wide buckets reads the kernel's
/// coarse clock: it counts, trips and forgets as on the precise one.
#[test]
fn a_system_clock_time_window_counts_trips_and_forgets() {
    let half_of = |duration, buckets| {
        CircuitBreaker::new(
            BreakerConfig::default()
                .with_consecutive_failures(None)
                .with_failure_rate(0.5)
                .with_window(Window::Time { duration, buckets })
                .with_min_calls(4),
        )
        .unwrap()
    };
    let b = half_of(Duration::from_secs(3600), 10);
    fail(&b, 3);
    assert_eq!(b.info().window.unwrap().failures, 3);
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Open, "3 of 4 failed");

    // Buckets of 100 ms, the narrowest counted on the coarse clock.
    let b = half_of(Duration::from_millis(200), 2);
    fail(&b, 3);
    // Past the window and the coarse clock's tick, whatever the machine's load.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(b.info().window.unwrap().calls, 0);
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn slow_calls_trip() {
    let (b, clock) = breaker(
        BreakerConfig::default()
            .with_consecutive_failures(None)
            .with_slow_calls(0.5, Duration::from_secs(1))
            .with_window(Window::Count { calls: 4 })
            .with_min_calls(2),
    );
    b.try_acquire().unwrap().success();
    let slow = b.try_acquire().unwrap();
    clock.advance(Duration::from_secs(2));
    slow.success();
    assert_eq!(b.state(), State::Open);
}

#[test]
fn manual_states() {
    let (b, _) = breaker(BreakerConfig::default().with_consecutive_failures(Some(1)));
    b.force_open();
    let r = b.try_acquire().unwrap_err();
    assert_eq!((r.state(), r.retry_after()), (State::ForcedOpen, None));
    b.disable();
    fail(&b, 10);
    assert_eq!(b.state(), State::Disabled);
    b.reset();
    assert_eq!(b.state(), State::Closed);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
    b.reset();
    b.try_acquire().unwrap().success();
}

#[test]
fn observer_sees_transitions_and_rejections() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let b = CircuitBreaker::builder(BreakerConfig::default().with_consecutive_failures(Some(1)))
        .name("db")
        .observer(move |e: &Event<'_>| sink.lock().unwrap().push(format!("{e:?}")))
        .build()
        .unwrap();
    fail(&b, 1);
    let _ = b.try_acquire();
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("Transition") && events[0].contains("Open"));
    assert!(events[1].contains("Rejected") && events[1].contains("\"db\""));
}

fn system_breaker(open_for: Duration, automatic: bool) -> CircuitBreaker {
    CircuitBreaker::new(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_open_duration(open_for)
            .with_half_open(HalfOpenConfig::default().with_automatic(automatic)),
    )
    .unwrap()
}

#[test]
fn system_clock_rejections_report_retry_after() {
    for automatic in [true, false] {
        let b = system_breaker(Duration::from_secs(3600), automatic);
        fail(&b, 1);
        let rejected = b.try_acquire().unwrap_err();
        let after = rejected.retry_after().unwrap();
        assert!(
            after <= Duration::from_secs(3600) && after > Duration::from_secs(3500),
            "{after:?}"
        );
        assert!(rejected.to_string().contains("retry after"), "{rejected}");
    }
}

/// Polls `b.state()` until it is no longer Open, for at most 30 s.
fn wait_while_open(b: &CircuitBreaker) -> State {
    let start = Instant::now();
    while b.state() == State::Open && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    b.state()
}

#[test]
fn the_timer_moves_an_idle_breaker_to_half_open() {
    let b = system_breaker(Duration::from_millis(50), true);
    let opened = Instant::now();
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
    // No call is made: the timer alone ends the open period, never early.
    assert_eq!(wait_while_open(&b), State::HalfOpen);
    assert!(opened.elapsed() >= Duration::from_millis(50));
    let trial = b.try_acquire().unwrap();
    assert!(trial.is_trial());
    trial.failure();
    // A failed trial reopens, and the timer takes the new period too.
    assert_eq!(b.state(), State::Open);
    assert_eq!(wait_while_open(&b), State::HalfOpen);
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.info().opens, 2);
}

/// A breaker on a manual clock, open for `open_for` after one failure,
/// with the shared timer off: the test drives it.
fn manual_breaker(open_for: Duration) -> (CircuitBreaker, ManualClock) {
    breaker(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_open_duration(open_for)
            .with_half_open(HalfOpenConfig::default().with_automatic(false)),
    )
}

#[test]
fn without_a_driver_the_next_call_ends_the_open_period() {
    let (b, clock) = manual_breaker(Duration::from_millis(20));
    fail(&b, 1);
    clock.advance(Duration::from_millis(40));
    assert_eq!(b.state(), State::Open, "nothing moves it but a call");
    assert!(b.try_acquire().unwrap().is_trial());
}

#[test]
fn handle_timeout_ends_the_open_period_at_its_deadline_never_before() {
    let (b, clock) = manual_breaker(Duration::from_secs(30));
    assert_eq!(b.poll_timeout(), None, "closed: nothing to wait for");
    fail(&b, 1);
    let deadline = b.poll_timeout().unwrap();
    assert_eq!(deadline, clock.now() + Duration::from_secs(30));
    clock.advance(Duration::from_secs(29));
    b.handle_timeout(clock.now());
    assert_eq!(b.state(), State::Open, "not before the deadline");
    clock.advance(Duration::from_secs(1));
    b.handle_timeout(clock.now());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.poll_timeout(), None);
    // A failed trial reopens, with a deadline of its own.
    b.try_acquire().unwrap().failure();
    assert!(b.poll_timeout().unwrap() > deadline);
}

#[test]
fn handle_timeout_leaves_a_reset_or_forced_breaker_alone() {
    let (b, clock) = manual_breaker(Duration::from_millis(20));
    fail(&b, 1);
    b.reset();
    clock.advance(Duration::from_millis(60));
    b.handle_timeout(clock.now());
    assert_eq!(b.state(), State::Closed);
    b.force_open();
    clock.advance(Duration::from_millis(60));
    b.handle_timeout(clock.now());
    assert_eq!(b.state(), State::ForcedOpen);
}

#[test]
fn a_dropped_open_breaker_is_freed() {
    let b = system_breaker(Duration::from_secs(3600), true);
    fail(&b, 1);
    let weak = Arc::downgrade(&b.shared);
    drop(b);
    assert!(weak.upgrade().is_none(), "the timer must not keep it alive");
}

#[test]
fn rejection_message_names_state() {
    let r = Rejected::new(State::Open, Retry::After(Duration::from_secs(3)));
    assert_eq!(r.to_string(), "circuit breaker is open; retry after 3s");
}
