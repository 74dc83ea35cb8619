//! Values read at scrape time rather than counted per call.

/// Sets gauges (and catches counters up) from a component's own counts,
/// just before a scrape renders them: the pool already counts its
/// connections, so nothing is updated per checkout. Closures `Fn()`
/// implement it.
pub trait Collect: Send + Sync + 'static {
    /// Reads the component and sets its metrics.
    fn collect(&self);
}

impl<F: Fn() + Send + Sync + 'static> Collect for F {
    fn collect(&self) {
        self();
    }
}
