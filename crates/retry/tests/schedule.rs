//! Delays: the exact sequence in paused time, and invariants under proptest.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_retry::{
    BudgetConfig, ErrorClass, Event, GaveUp, Jitter, Retrier, RetryBudget, RetryPolicy, Schedule,
    Verdict,
};
use proptest::prelude::*;
use tokio::time::Instant;

/// Runs an operation that fails `failures` times, returning the gaps
/// between attempts and the result.
async fn gaps(policy: RetryPolicy, failures: u32) -> (Vec<Duration>, Result<u32, GaveUp>) {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let retrier = Retrier::new(policy).unwrap();
    let result = retrier
        .run(|| {
            let starts = starts.clone();
            async move {
                let mut s = starts.lock().unwrap();
                s.push(Instant::now());
                let n = s.len() as u32;
                if n <= failures { Err(()) } else { Ok(n) }
            }
        })
        .await
        .map_err(|e| e.reason());
    let starts = starts.lock().unwrap();
    (starts.windows(2).map(|w| w[1] - w[0]).collect(), result)
}

#[tokio::test(start_paused = true)]
async fn unjittered_delays_double_up_to_the_cap() {
    let schedule = Schedule::new(8, Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(1000))
        .with_jitter(Jitter::None);
    let (gaps, result) = gaps(RetryPolicy::default().with_default(schedule), 10).await;
    assert_eq!(
        gaps,
        [100, 200, 400, 800, 1000, 1000, 1000].map(Duration::from_millis)
    );
    assert_eq!(result, Err(GaveUp::Exhausted));
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_gives_the_same_sequence_every_time() {
    let policy = RetryPolicy::default()
        .with_default(Schedule::new(6, Duration::from_millis(100)))
        .with_seed(42);
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let sink = scheduled.clone();
    let retrier = Retrier::builder(policy.clone())
        .observer(move |e: &Event| {
            if let Event::RetryScheduled { delay, .. } = e {
                sink.lock().unwrap().push(*delay);
            }
        })
        .build()
        .unwrap();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let _ = retrier
        .run(|| {
            starts.lock().unwrap().push(Instant::now());
            async { Err::<(), ()>(()) }
        })
        .await;
    // The schedule's own sequence for that seed...
    let mut rng = fastrand::Rng::with_seed(42);
    let mut previous = Duration::from_millis(100);
    let expected: Vec<_> = (1..6)
        .map(|n| {
            previous = policy.fallback.delay(n, previous, &mut rng);
            previous
        })
        .collect();
    let scheduled = scheduled.lock().unwrap().clone();
    assert_eq!(scheduled, expected);
    assert!(scheduled.windows(2).any(|w| w[0] != w[1]), "jitter varies");
    // ...is what was slept (tokio's timer rounds up to the millisecond).
    let starts = starts.lock().unwrap().clone();
    for (gap, delay) in starts.windows(2).map(|w| w[1] - w[0]).zip(&scheduled) {
        assert!(
            gap >= *delay && gap < *delay + Duration::from_millis(2),
            "{gap:?} for {delay:?}"
        );
    }
    // And the same seed gives the same sequence again.
    let (again, _) = gaps(policy, 10).await;
    let (once_more, _) = gaps(retrier.policy().clone(), 10).await;
    assert_eq!(again, once_more);
}

#[tokio::test(start_paused = true)]
async fn each_class_follows_its_own_schedule() {
    let policy = RetryPolicy::default()
        .with_class(
            ErrorClass::Conflict,
            Schedule::new(3, Duration::from_millis(10)).with_jitter(Jitter::None),
        )
        .with_class(
            ErrorClass::Connection,
            Schedule::new(2, Duration::from_secs(2)).with_jitter(Jitter::None),
        );
    let starts = Arc::new(Mutex::new(Vec::new()));
    let classes = [
        ErrorClass::Conflict,
        ErrorClass::Conflict,
        ErrorClass::Connection,
    ];
    let retrier = Retrier::builder(policy)
        .classifier(|class: &ErrorClass| Verdict::no_effect(*class))
        .build()
        .unwrap();
    let err = retrier
        .run(|| {
            let starts = starts.clone();
            async move {
                let mut s = starts.lock().unwrap();
                s.push(Instant::now());
                Err::<(), _>(classes[(s.len() - 1).min(2)])
            }
        })
        .await
        .unwrap_err();
    // conflict, conflict: 10 ms, 20 ms; then conflicts' 3 attempts are used up.
    let starts = starts.lock().unwrap();
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[1] - starts[0], Duration::from_millis(10));
    assert_eq!(starts[2] - starts[1], Duration::from_millis(20));
    assert_eq!((err.reason(), err.attempts()), (GaveUp::Exhausted, 3));
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        Just(Jitter::Proportional),
    ]
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (1u32..8, 1u64..500, 1u64..20, 1.0f64..4.0, jitter()).prop_map(
        |(attempts, base_ms, cap_factor, mult, jitter)| {
            Schedule::new(attempts, Duration::from_millis(base_ms))
                .with_max_delay(Duration::from_millis(base_ms * cap_factor))
                .with_multiplier(mult)
                .with_jitter(jitter)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_delay_is_within_zero_and_max_delay(s in schedule(), seed in any::<u64>()) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut previous = s.base;
        for n in 1..30 {
            let d = s.delay(n, previous, &mut rng);
            prop_assert!(d <= s.max_delay, "{:?} > {:?}", d, s.max_delay);
            previous = d;
        }
    }

    #[test]
    fn attempts_never_exceed_the_limit_nor_the_total_timeout(
        s in schedule(),
        total_ms in prop::option::of(1u64..5_000),
        seed in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let mut policy = RetryPolicy::default().with_default(s.clone()).with_seed(seed);
            if let Some(ms) = total_ms {
                policy = policy.with_total_timeout(Duration::from_millis(ms));
            }
            let begin = Instant::now();
            let (gaps, result) = gaps(policy, u32::MAX).await;
            let attempts = gaps.len() as u32 + 1;
            prop_assert!(attempts <= s.max_attempts);
            prop_assert!(result.is_err());
            if let Some(ms) = total_ms {
                prop_assert!(begin.elapsed() <= Duration::from_millis(ms));
            } else {
                prop_assert_eq!(attempts, s.max_attempts);
            }
            Ok(())
        })?;
    }

    #[test]
    fn the_retry_budget_never_goes_negative(
        ops in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), (2u8..3)], 1..300),
        min_per_sec in 0u32..5,
        ratio in 0.0f64..1.0,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let budget = RetryBudget::new(BudgetConfig::new(Duration::from_secs(1), min_per_sec, ratio)).unwrap();
            for op in ops {
                match op {
                    0 => budget.deposit(),
                    1 => { budget.withdraw(); }
                    _ => tokio::time::advance(Duration::from_millis(150)).await,
                }
                prop_assert!(budget.balance() >= 0.0);
            }
            Ok(())
        })?;
    }
}

proptest! {
    #[test]
    fn within_one_window_retries_stay_within_floor_plus_ratio(
        deposits in 0u64..500,
        min_per_sec in 0u32..5,
        ratio in 0.0f64..1.0,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let granted = rt.block_on(async {
            let budget = RetryBudget::new(BudgetConfig::new(Duration::from_secs(2), min_per_sec, ratio)).unwrap();
            for _ in 0..deposits {
                budget.deposit();
            }
            (0..2_000).filter(|_| budget.withdraw()).count() as f64
        });
        let limit = f64::from(min_per_sec) * 2.0 + ratio * deposits as f64;
        prop_assert!(granted <= limit && granted > limit - 1.0, "{} of {}", granted, limit);
    }
}

#[test]
fn full_jitter_averages_half_the_curve() {
    let s = Schedule::new(10, Duration::from_secs(1)).with_jitter(Jitter::Full);
    let mut rng = fastrand::Rng::with_seed(1);
    let n = 100_000;
    let mean: f64 = (0..n)
        .map(|_| s.delay(1, s.base, &mut rng).as_secs_f64())
        .sum::<f64>()
        / f64::from(n);
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
}
