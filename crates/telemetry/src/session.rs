//! Session store operations.

use std::sync::Arc;

use keel_session_store::{Event, Observer};
use metrics::{Counter, Gauge};

use crate::cache::ByName;
use crate::names::{NAME, SESSION_DISK_SIZE, SESSION_OPERATIONS};

/// A session store observer: sessions created, deleted, expired and lost
/// compare-and-swaps (`keel.session.operations` by `operation`), and the
/// size on disk of a disk backend, labelled by each event's store name.
#[derive(Clone, Debug, Default)]
pub struct SessionMetrics {
    stores: Arc<ByName<Handles>>,
}

#[derive(Debug)]
struct Handles {
    created: Counter,
    deleted: Counter,
    expired: Counter,
    conflict: Counter,
    save_dropped: Counter,
    disk: Gauge,
}

impl SessionMetrics {
    /// An observer for any number of stores.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Observer for SessionMetrics {
    fn on_event(&self, event: &Event<'_>) {
        let (Event::Created { name }
        | Event::Deleted { name }
        | Event::Expired { name, .. }
        | Event::Conflict { name }
        | Event::SaveDropped { name }
        | Event::SizeOnDisk { name, .. }) = *event
        else {
            return;
        };
        let h = self.stores.get(name, |name| {
            let op = |operation: &'static str| {
                metrics::counter!(SESSION_OPERATIONS, NAME => name.to_owned(), "operation" => operation)
            };
            Handles {
                created: op("created"),
                deleted: op("deleted"),
                expired: op("expired"),
                conflict: op("conflict"),
                save_dropped: op("save_dropped"),
                disk: metrics::gauge!(SESSION_DISK_SIZE, NAME => name.to_owned()),
            }
        });
        match *event {
            Event::Created { .. } => h.created.increment(1),
            Event::Deleted { .. } => h.deleted.increment(1),
            Event::Expired { count, .. } => h.expired.increment(count as u64),
            Event::Conflict { .. } => h.conflict.increment(1),
            Event::SaveDropped { .. } => h.save_dropped.increment(1),
            #[expect(clippy::cast_precision_loss, reason = "bytes on disk far below 2^53")]
            Event::SizeOnDisk { bytes, .. } => h.disk.set(bytes as f64),
            _ => {}
        }
    }
}
