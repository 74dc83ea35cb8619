//! What the demo serves on `--listen`: the health probes, `/metrics`, a
//! status page at `/` and the samples it charts at `/demo/samples`.

use std::sync::Arc;

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use keel::Database;
use keel::health::HealthService;
use keel::pool::SqlxConnection;
use keel::telemetry::{BreakerGauges, MetricsService, PoolGauges, PrometheusHandle};

use super::report::History;

const STATUS_PAGE: &str = include_str!("../../assets/status.html");

pub(crate) fn router<C: SqlxConnection + 'static>(
    db: &Database<C>,
    prometheus: PrometheusHandle,
    history: Arc<History>,
) -> Router {
    let metrics = MetricsService::new(prometheus)
        .collect(PoolGauges::new(db.pool().clone()))
        .collect(BreakerGauges::new(db.breaker().clone()));
    Router::new()
        .route("/", get(|| async { Html(STATUS_PAGE) }))
        .route(
            "/demo/samples",
            get(move || {
                let history = Arc::clone(&history);
                async move { axum::Json(history.to_json()).into_response() }
            }),
        )
        .route_service("/metrics", metrics)
        .merge(keel::health::router(HealthService::new(
            db.health_registry().clone(),
        )))
}
