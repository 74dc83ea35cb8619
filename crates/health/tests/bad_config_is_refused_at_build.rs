//! Bad schedules and names are refused when the registry is built, with the
//! field named; outside a runtime the build says why it cannot run checks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use keel_health::{BuildError, HealthConfig, HealthRegistry, Outcome, Signal};

fn field(result: Result<HealthRegistry, BuildError>) -> String {
    match result {
        Err(BuildError::Config(e)) => {
            assert!(e.to_string().starts_with("invalid health config `"), "{e}");
            e.field().to_owned()
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn each_mistake_names_its_field() {
    let ok = || async { Outcome::healthy() };
    let zero = HealthConfig::new(Duration::ZERO, Duration::from_secs(1));
    assert_eq!(field(HealthRegistry::builder(zero).build()), "interval");

    let long = HealthConfig::new(Duration::from_secs(5), Duration::from_secs(5));
    let result = HealthRegistry::builder(HealthConfig::default())
        .check_with("orders-db", ok, long)
        .build();
    assert_eq!(field(result), "checks.orders-db.timeout");

    let signal = Signal::new();
    let result = HealthRegistry::builder(HealthConfig::default())
        .check("db", ok)
        .signal("db", &signal)
        .build();
    assert_eq!(field(result), "checks.db");

    let result = HealthRegistry::builder(HealthConfig::default())
        .check(" ", ok)
        .build();
    assert_eq!(field(result), "checks. ");
}

#[test]
fn outside_a_runtime_the_build_says_it_needs_one() {
    let err = HealthRegistry::builder(HealthConfig::default())
        .check("db", || async { Outcome::healthy() })
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::NoRuntime));
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[test]
fn a_config_file_reads_human_durations() {
    let config: HealthConfig = toml::from_str("interval = \"15s\"\ntimeout = \"1500ms\"").unwrap();
    assert_eq!(
        config,
        HealthConfig::new(Duration::from_secs(15), Duration::from_millis(1500))
    );
    let err = toml::from_str::<HealthConfig>("intervall = \"15s\"").unwrap_err();
    assert!(err.to_string().contains("intervall"), "{err}");
}
