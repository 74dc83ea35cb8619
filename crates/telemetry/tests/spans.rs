//! The `db.operation` span as a tracing subscriber sees it: one per call,
//! with its attributes, the error recorded on it, the inner service's own
//! events inside it.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use keel_telemetry::TelemetryLayer;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as recorded: its name and every field given a value.
#[derive(Clone, Debug, Default)]
struct Seen {
    name: String,
    fields: BTreeMap<String, String>,
    /// Messages of events emitted while it was the current span.
    events: Vec<String>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);
impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// Where a span's record lives in the recorder.
struct Index(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        let mut spans = self.0.lock().unwrap();
        spans.push(seen);
        let index = Index(spans.len() - 1);
        ctx.span(id).unwrap().extensions_mut().insert(index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let index = span.extensions().get::<Index>().unwrap().0;
        values.record(&mut Fields(&mut self.0.lock().unwrap()[index].fields));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let index = span.extensions().get::<Index>().unwrap().0;
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        self.0.lock().unwrap()[index].events.push(message);
    }
}

async fn answer(request: u32) -> Result<u32, BoxError> {
    tracing::info!("querying");
    tokio::task::yield_now().await;
    tracing::info!("answered");
    match request {
        0 => Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
        n => Ok(n),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_call_gets_a_span_with_its_attributes_and_error() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let svc = ServiceBuilder::new()
        .layer(
            TelemetryLayer::new("orders")
                .db_system("postgresql")
                .server_address("db.internal:5432"),
        )
        .service(service_fn(answer));

    assert_eq!(svc.clone().oneshot(7).await.unwrap(), 7);
    svc.clone().oneshot(0).await.unwrap_err();

    let spans = recorder.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "{spans:?}");
    for span in &spans {
        assert_eq!(span.name, "db.operation");
        assert_eq!(span.fields["otel.name"], "orders");
        assert_eq!(span.fields["db.system.name"], "postgresql");
        assert_eq!(span.fields["server.address"], "db.internal:5432");
        // Both events, across the await: the span is entered on every poll.
        assert_eq!(span.events, ["querying", "answered"]);
    }
    assert!(!spans[0].fields.contains_key("error.type"));
    assert_eq!(spans[1].fields["error.type"], "connection");
    assert_eq!(spans[1].fields["otel.status_code"], "ERROR");
}
