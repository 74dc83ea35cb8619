//! The once-a-second line (the dashboard) and the closing summary.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use keel::Database;
use keel::pool::SqlxConnection;
use serde_json::{Value, json};

use super::chaos::Chaos;
use super::stats::{DemoStats, Op};

/// One second of the run, as the status page charts it.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) second: u64,
    pub(crate) ops_per_s: u64,
    pub(crate) failed_per_s: u64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) in_use: usize,
    pub(crate) idle: usize,
    pub(crate) waiting: usize,
    pub(crate) breaker: &'static str,
    pub(crate) retries: u64,
    pub(crate) sessions: usize,
    pub(crate) chaos: bool,
}

/// The last five minutes of samples.
#[derive(Debug, Default)]
pub(crate) struct History(Mutex<VecDeque<Sample>>);

const KEEP: usize = 300;

impl History {
    pub(crate) fn push(&self, sample: Sample) {
        let mut h = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if h.len() == KEEP {
            h.pop_front();
        }
        h.push_back(sample);
    }

    /// The last `n` samples, oldest first.
    pub(crate) fn recent(&self, n: usize) -> Vec<Sample> {
        let h = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.iter().skip(h.len().saturating_sub(n)).cloned().collect()
    }

    pub(crate) fn to_json(&self) -> Value {
        let h = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let samples: Vec<Value> = h
            .iter()
            .map(|s| {
                json!({
                    "t": s.second,
                    "ops": s.ops_per_s,
                    "failed": s.failed_per_s,
                    "p50_ms": s.p50.as_secs_f64() * 1e3,
                    "p99_ms": s.p99.as_secs_f64() * 1e3,
                    "in_use": s.in_use,
                    "idle": s.idle,
                    "waiting": s.waiting,
                    "breaker": s.breaker,
                    "retries": s.retries,
                    "sessions": s.sessions,
                    "chaos": s.chaos,
                })
            })
            .collect();
        json!({ "samples": samples })
    }
}

/// One dashboard line.
pub(crate) fn line(s: &Sample) -> String {
    format!(
        "t={:>3}s  ops/s {:>6}  failed/s {:>4}  p50 {:>7}  p99 {:>7}  pool in use/idle/waiting {}/{}/{}  breaker {:<9}  retries {:>5}  sessions {:>5}{}",
        s.second,
        s.ops_per_s,
        s.failed_per_s,
        ms(s.p50),
        ms(s.p99),
        s.in_use,
        s.idle,
        s.waiting,
        s.breaker,
        s.retries,
        s.sessions,
        if s.chaos { "  [faults injected]" } else { "" }
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

/// The closing table.
pub(crate) fn summary<C: SqlxConnection + 'static>(
    db: &Database<C>,
    stats: &DemoStats,
    chaos: &Chaos,
    ran: Duration,
) -> String {
    let m = db.metrics_snapshot();
    let (ok, failed) = stats.total();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nkeel demo: {:.1}s, database `{}`",
        ran.as_secs_f64(),
        db.name()
    );
    let _ = writeln!(out, "\n| operation | ok | failed |\n|---|---:|---:|");
    for op in Op::ALL {
        let (o, f) = stats.by_op(op);
        let _ = writeln!(out, "| {} | {o} | {f} |", op.name());
    }
    let _ = writeln!(out, "| all | {ok} | {failed} |");
    #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = ok as f64 / ran.as_secs_f64().max(1e-9);
    let _ = writeln!(out, "\nthroughput {rate:.0} ops/s");
    let _ = writeln!(
        out,
        "latency p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(stats.quantile(0.5)),
        ms(stats.quantile(0.9)),
        ms(stats.quantile(0.99)),
        ms(stats.quantile(0.999)),
        ms(stats.quantile(1.0)),
    );
    let errors = stats.errors();
    if errors.is_empty() {
        let _ = writeln!(out, "errors: none");
    } else {
        let _ = writeln!(out, "\n| error | count |\n|---|---:|");
        for (kind, n) in errors {
            let _ = writeln!(out, "| {kind} | {n} |");
        }
    }
    let _ = writeln!(
        out,
        "\nretries {}  breaker opened {} time(s), {} transition(s), now {}",
        m.retries,
        m.breaker_opens,
        m.breaker_transitions,
        db.breaker_info().state.as_str()
    );
    let _ = writeln!(
        out,
        "connections created {}  reused {}",
        m.connections_created, m.connections_reused
    );
    match chaos.proxy() {
        Some(proxy) => {
            let _ = writeln!(
                out,
                "faults: {} connection drops at the proxy; {} connection attempts reached it",
                chaos.injected(),
                proxy.attempts()
            );
        }
        None if chaos.enabled() => {
            let _ = writeln!(out, "faults injected in the stack {}", chaos.injected());
        }
        None => {}
    }
    out
}
