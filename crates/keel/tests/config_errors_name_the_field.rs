//! Bad configs are refused with the field path (or the variable) and what
//! was expected; a password never appears in an error or in `Debug`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use keel::{ConfigError, DatabaseConfig};

fn refused(toml: &str) -> ConfigError {
    DatabaseConfig::from_toml(toml).expect_err(toml)
}

#[test]
fn an_unknown_key_is_named_with_its_path() {
    let err = refused("[pool]\nmax_sise = 4\n");
    assert_eq!(err.field(), "pool.max_sise");
    assert!(err.reason().contains("unknown field `max_sise`"), "{err}");
    assert!(
        err.reason().contains("max_size"),
        "says what was expected: {err}"
    );
}

#[test]
fn a_negative_size_is_refused() {
    let err = refused("[pool]\nmax_size = -4\n");
    assert_eq!(err.field(), "pool.max_size");
    assert!(err.reason().contains("-4"), "{err}");
}

#[test]
fn a_url_without_a_host_names_the_host() {
    let err = refused("url = \"postgres://app:s3cret@:5432/orders\"\n");
    assert_eq!(err.field(), "url");
    assert!(err.reason().contains("host"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn a_maximum_below_the_minimum_is_refused() {
    let err = refused("[pool]\nmax_size = 2\nmin_idle = 5\n");
    assert_eq!(err.field(), "pool.min_idle");
    assert!(err.reason().contains("max_size"), "{err}");
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    let err = refused("[pool]\nwait_timeout = \"30\"\n");
    assert_eq!(err.field(), "pool.wait_timeout");
    let err = refused("[health]\ninterval = 30\n");
    assert_eq!(err.field(), "health.interval");
}

#[test]
fn nested_errors_carry_their_section() {
    let err = refused("[health]\ninterval = \"5s\"\ntimeout = \"5s\"\n");
    assert_eq!(err.field(), "health.timeout");
    let err = refused("[retry.connection]\nmax_attempts = 0\n");
    assert!(err.field().starts_with("retry."), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid database config `{}`: {}",
            err.field(),
            err.reason()
        )
    );
}

#[test]
fn a_missing_url_is_named_when_the_config_is_checked() {
    let err = DatabaseConfig::default().validate().unwrap_err();
    assert_eq!(err.field(), "url");
    assert!(err.reason().contains("DATABASE_URL"), "{err}");
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_environment_overrides_the_file_and_reads_plain_seconds() {
    let file = DatabaseConfig::from_toml("name = \"orders\"\n[pool]\nmax_size = 4\n").unwrap();
    let config = file
        .with_vars(vars(&[
            ("DATABASE_URL", "postgres://app:s3cret@db:5432/orders"),
            ("DATABASE_POOL_SIZE", "2"),
            ("DATABASE_MAX_CONNECTIONS", "20"),
            ("DATABASE_MAX_OVERFLOW", "10"),
            ("DATABASE_POOL_TIMEOUT", "30"),
            ("DATABASE_POOL_RECYCLE", "3600"),
            ("DATABASE_HEALTH_CHECK_INTERVAL", "60"),
            ("DATABASE_RETRY_ATTEMPTS", "3"),
            ("DATABASE_RETRY_DELAY", "2.0"),
            ("DATABASE_MAX_RETRY_DELAY", "60s"),
        ]))
        .unwrap();
    assert_eq!(config.name, "orders");
    assert_eq!(
        (
            config.pool.min_idle,
            config.pool.max_size,
            config.pool.max_overflow
        ),
        (2, 20, 10)
    );
    assert_eq!(config.pool.wait_timeout, Duration::from_secs(30));
    assert_eq!(config.pool.max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(config.health.interval, Duration::from_secs(60));
    let connection = config.retry.connection.clone().unwrap();
    assert_eq!(connection.max_attempts, 3);
    assert_eq!(connection.base, Duration::from_secs(2));
    assert_eq!(connection.max_delay, Duration::from_secs(60));
    config.validate().unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
}

#[test]
fn a_bad_variable_is_named() {
    let err = DatabaseConfig::default()
        .with_vars(vars(&[("DATABASE_POOL_TIMEOUT", "soon")]))
        .unwrap_err();
    assert_eq!(err.field(), "DATABASE_POOL_TIMEOUT");
    assert!(err.reason().contains("seconds"), "{err}");
    let err = DatabaseConfig::default()
        .with_vars(vars(&[("DATABASE_MAX_CONNECTIONS", "-1")]))
        .unwrap_err();
    assert_eq!(err.field(), "DATABASE_MAX_CONNECTIONS");
    let err = DatabaseConfig::default()
        .with_vars(vars(&[(
            "DATABASE_URL",
            "postgres://app:s3cret@db:54x2/orders",
        )]))
        .unwrap_err();
    assert_eq!(err.field(), "DATABASE_URL");
    assert!(err.reason().contains("port"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn a_config_file_is_read_and_its_errors_say_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.toml");
    std::fs::write(&path, "url = \"sqlite::memory:\"\n[pool]\nmax_size = 3\n").unwrap();
    assert_eq!(DatabaseConfig::from_file(&path).unwrap().pool.max_size, 3);
    let missing = dir.path().join("missing.toml");
    let err = DatabaseConfig::from_file(&missing).unwrap_err();
    assert!(err.reason().contains("missing.toml"), "{err}");
}

#[test]
fn a_shown_config_keeps_the_password_out() {
    let config = DatabaseConfig::new("postgres://app:s3cret@db:5432/orders".parse().unwrap());
    let shown = toml::to_string(&config).unwrap();
    assert!(
        shown.contains("postgres://app:***@db:5432/orders"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"));
}
