//! Every crate's config error has one shape: the path of the bad field, the
//! reason, and a message that names both, whichever crate a user learns
//! first.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

/// What a user reads off one crate's `ConfigError`.
struct Seen {
    field: String,
    reason: String,
    message: String,
}

macro_rules! seen {
    ($err:expr) => {{
        let err = $err;
        Seen {
            field: err.field().to_owned(),
            reason: err.reason().to_owned(),
            message: err.to_string(),
        }
    }};
}

#[test]
fn every_crate_names_the_field_and_the_reason_the_same_way() {
    let policy: keel_retry::RetryPolicy = toml::from_str("[conflict]\nbase = \"0s\"").unwrap();
    let mut pool = keel_pool_core::PoolConfig::default();
    pool.wait_timeout = Duration::ZERO;
    let cases = [
        (
            "breaker",
            "consecutive_failures",
            seen!(
                keel_breaker::BreakerConfig::default()
                    .with_consecutive_failures(Some(0))
                    .validate()
                    .unwrap_err()
            ),
        ),
        (
            "retry policy",
            "conflict.base",
            seen!(policy.validate().unwrap_err()),
        ),
        ("pool", "wait_timeout", seen!(pool.validate().unwrap_err())),
        (
            "session store",
            "max_sessions",
            seen!(
                keel_session_store::StoreConfig::default()
                    .with_max_sessions(Some(0))
                    .validate()
                    .unwrap_err()
            ),
        ),
        (
            "session store",
            "path",
            seen!(
                keel_session_store::SledConfig::new("")
                    .validate()
                    .unwrap_err()
            ),
        ),
    ];
    for (what, field, seen) in cases {
        assert_eq!(seen.field, field, "{}", seen.message);
        assert!(!seen.reason.is_empty(), "{}", seen.message);
        assert_eq!(
            seen.message,
            format!("invalid {what} config `{field}`: {}", seen.reason)
        );
    }
}
