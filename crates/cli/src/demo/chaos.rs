//! Fault windows: a calm, then a flaky spell (retries hide it from the
//! callers), then an outage (the breaker opens, callers are turned away at
//! once, and it closes again once the outage is over).
//!
//! A networked database is reached through a [`FaultProxy`]: the flaky
//! spell drops every connection once a second (statements in flight fail;
//! idempotent ones are retried), the outage refuses connections and drops
//! the open ones. SQLite runs in process, so there the faults are injected
//! inside the stack: one attempt in ten fails in the flaky spell, every
//! attempt in the outage, as a refused connection.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use keel::pool::{Backend, DatabaseUrl};
use keel::sqlx;
use keel_fault::{Fault, FaultProxy};

use crate::fail::Failure;

/// Shared by every client; switched by [`Chaos::drive`].
#[derive(Debug, Default)]
pub(crate) struct Chaos {
    enabled: bool,
    /// The proxy in front of a networked database; faults are injected
    /// in the stack when there is none.
    proxy: Option<FaultProxy>,
    /// The share of attempts that fail now, in thousandths.
    ratio: AtomicU32,
    injected: AtomicU64,
}

/// The cycle: calm, flaky, outage, each with the share of attempts that
/// fail (in thousandths).
const CYCLE: [(Duration, u32); 3] = [
    (Duration::from_secs(5), 0),
    (Duration::from_secs(4), 100),
    (Duration::from_secs(3), 1000),
];

impl Chaos {
    pub(crate) fn new(enabled: bool, proxy: Option<FaultProxy>) -> Self {
        Self {
            enabled,
            proxy,
            ..Self::default()
        }
    }

    /// Faults through a proxy (rather than injected in the stack).
    pub(crate) fn proxy(&self) -> Option<&FaultProxy> {
        self.proxy.as_ref()
    }

    /// Whether faults are injected at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether faults strike now.
    pub(crate) fn is_open(&self) -> bool {
        self.ratio.load(Ordering::Relaxed) > 0
    }

    /// Faults injected so far (in the stack: failed attempts; through a
    /// proxy: connection drops).
    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Fails the operation now and then while a window is open: as the
    /// driver reports a refused connection, so keel classifies it as a
    /// connection error (retried; counted by the breaker).
    pub(crate) fn strike(&self) -> Result<(), sqlx::Error> {
        let ratio = self.ratio.load(Ordering::Relaxed);
        if self.proxy.is_none() && ratio > 0 && fastrand::u32(0..1000) < ratio {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (injected by keel demo --chaos)",
            )));
        }
        Ok(())
    }

    /// Runs the cycle until `stop` says so.
    pub(crate) async fn drive(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if !self.enabled {
            return;
        }
        loop {
            for (wait, ratio) in CYCLE {
                self.ratio.store(ratio, Ordering::Relaxed);
                let until = tokio::time::Instant::now() + wait;
                if let Some(proxy) = &self.proxy {
                    proxy.set(if ratio == 1000 {
                        Fault::Refuse
                    } else {
                        Fault::None
                    });
                    if ratio > 0 {
                        proxy.drop_connections();
                        self.injected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // In the flaky spell, a proxy drops connections every second.
                let tick = if self.proxy.is_some() && ratio > 0 && ratio < 1000 {
                    Duration::from_secs(1)
                } else {
                    wait
                };
                loop {
                    let next = (tokio::time::Instant::now() + tick).min(until);
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => {}
                        _ = stop.changed() => {
                            self.ratio.store(0, Ordering::Relaxed);
                            if let Some(proxy) = &self.proxy {
                                proxy.set(Fault::None);
                            }
                            return;
                        }
                    }
                    if tokio::time::Instant::now() >= until {
                        break;
                    }
                    if let Some(proxy) = &self.proxy {
                        proxy.drop_connections();
                        self.injected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// Starts a proxy in front of the database `url` names, and the URL that
/// reaches the database through it.
pub(crate) async fn through_proxy(
    url: Option<&DatabaseUrl>,
) -> Result<(FaultProxy, DatabaseUrl), Failure> {
    let url = url.ok_or_else(|| Failure::input("--chaos needs a database URL"))?;
    let mut parsed = url::Url::parse(url.expose())
        .map_err(|e| Failure::input(format!("the database URL: {e}")))?;
    let host = parsed.host_str().unwrap_or("localhost").to_owned();
    let port = parsed.port().unwrap_or(match url.backend() {
        Backend::MySql => 3306,
        _ => 5432,
    });
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| {
            Failure::environment(format!("cannot resolve the database host `{host}`"))
        })?;
    let proxy = FaultProxy::start(upstream)
        .await
        .map_err(|e| Failure::environment(format!("cannot start the fault proxy: {e}")))?;
    let local = proxy.address();
    let bad =
        |what: &str| Failure::environment(format!("cannot point the URL at the proxy: {what}"));
    parsed.set_ip_host(local.ip()).map_err(|()| bad("host"))?;
    parsed
        .set_port(Some(local.port()))
        .map_err(|()| bad("port"))?;
    let through = parsed
        .as_str()
        .parse()
        .map_err(|e| Failure::environment(format!("the proxied URL: {e}")))?;
    Ok((proxy, through))
}
