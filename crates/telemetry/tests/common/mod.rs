//! A Prometheus recorder local to the test's thread, and its scrape parsed.
#![allow(dead_code, clippy::unwrap_used, reason = "test helpers")]

use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use prometheus_parse::{Sample, Scrape, Value};

pub(crate) struct Local {
    pub(crate) handle: PrometheusHandle,
    _guard: metrics::LocalRecorderGuard<'static>,
}

impl Local {
    /// Flushes the layers' counts, then renders.
    pub(crate) fn render(&self) -> String {
        keel_telemetry::flush();
        self.handle.render()
    }
}

/// Installs a fresh recorder as this thread's default (tests run on a
/// current-thread runtime, so every task records into it).
pub(crate) fn local() -> Local {
    let recorder: &'static PrometheusRecorder = Box::leak(Box::new(
        keel_telemetry::prometheus_builder()
            .unwrap()
            .build_recorder(),
    ));
    let guard = metrics::set_default_local_recorder(recorder);
    keel_telemetry::describe();
    Local {
        handle: recorder.handle(),
        _guard: guard,
    }
}

pub(crate) fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the one sample named `name` whose labels include `labels`.
pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {} samples",
        matching.len()
    );
    matching.first().map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => f64::NAN,
    })
}
