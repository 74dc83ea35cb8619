//! Clones share one breaker; the registry keeps keys apart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::sync::{Arc, Mutex};

use keel_breaker::{BreakerConfig, BreakerRegistry, CircuitBreaker, Event, State};

#[test]
fn clones_share_state() {
    let breaker =
        CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(Some(2))).unwrap();
    let clone = breaker.clone();
    breaker.try_acquire().unwrap().failure();
    clone.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(clone.info().failures, 2);
    clone.reset();
    assert_eq!(breaker.state(), State::Closed);
    assert!(breaker.same_breaker(&clone));
}

#[test]
fn clones_on_many_threads_count_every_outcome() {
    let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let b = breaker.clone();
            s.spawn(move || {
                for _ in 0..10_000 {
                    b.try_acquire().unwrap().success();
                }
            });
        }
    });
    assert_eq!(breaker.info().successes, 40_000);
}

#[test]
fn registry_keeps_keys_apart() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let registry: BreakerRegistry<String> =
        BreakerRegistry::new(BreakerConfig::default().with_consecutive_failures(Some(1)))
            .unwrap()
            .with_observer(move |e: &Event<'_>| {
                if let Event::Transition { name, to, .. } = e {
                    sink.lock().unwrap().push((name.to_string(), *to));
                }
            });
    registry.get("primary").try_acquire().unwrap().failure();
    assert_eq!(registry.get("primary").state(), State::Open);
    assert_eq!(registry.get("replica").state(), State::Closed);
    assert!(registry.get("replica").try_acquire().is_ok());
    let mut infos = registry.infos();
    infos.sort_by(|a, b| a.0.cmp(&b.0));
    let states: Vec<_> = infos.iter().map(|(k, i)| (k.as_str(), i.state)).collect();
    assert_eq!(
        states,
        [("primary", State::Open), ("replica", State::Closed)]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [("primary".to_string(), State::Open)]
    );
    assert_eq!(registry.get("primary").name(), "primary");
    assert!(registry.remove("primary").is_some());
    assert_eq!(
        registry.get("primary").state(),
        State::Closed,
        "a fresh breaker"
    );
}

#[test]
fn registry_refuses_a_bad_config_up_front() {
    let err = BreakerRegistry::<u32>::new(BreakerConfig::default().with_min_calls(0)).unwrap_err();
    assert_eq!(err.field(), "min_calls");
}
