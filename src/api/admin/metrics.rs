//! `GET /metrics`: Prometheus text format. Process counters (HTTP requests, renewals and
//! enrollments by dialect, issuance latency, store push results) come from `crate::metrics`;
//! gauges about the shared database (queue depth and age, store push jobs, certificates by state
//! and by days to expiry) are counted at scrape time by `engine::stats` into a registry of this
//! scrape, encoded after the process's.
use actix_web::get;
use actix_web::{HttpRequest, HttpResponse, web};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::error::{NativeError, NativeErrorBody};
use crate::app::AppState;
use crate::db::now;
use crate::engine::stats::{self, DbGauges};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildInfoLabels {
    version: &'static str,
    backend: &'static str,
}

/// Jobs and certificate objects by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Current certificates by days until they expire.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExpiryLabels {
    days: &'static str,
}

/// One gauge per state, every state listed even when its count is 0 (an alert on a state must
/// see the series).
fn by_state(states: &[&'static str], count: impl Fn(&str) -> i64) -> Family<StateLabels, Gauge> {
    let family = Family::<StateLabels, Gauge>::default();
    for &state in states {
        family.get_or_create(&StateLabels { state }).set(count(state));
    }
    family
}

/// The gauges of this scrape: the build and the shared database's state. Help texts without
/// their final period: the registry appends one.
fn scrape_registry(g: &DbGauges, backend: &'static str) -> Registry {
    let mut r = Registry::default();
    let build_info = Family::<BuildInfoLabels, Gauge>::default();
    build_info.get_or_create(&BuildInfoLabels { version: env!("CARGO_PKG_VERSION"), backend }).set(1);
    r.register("renewgate_build_info", "The gateway's version and storage backend", build_info);
    let count_of = |rows: &[(String, i64)], st: &str| rows.iter().find(|(s, _)| s == st).map(|x| x.1).unwrap_or(0);
    r.register(
        "renewgate_queue_depth",
        "Issuance jobs waiting or running, by state (whole database)",
        by_state(&["queued", "running"], |st| count_of(&g.jobs, st)),
    );
    let age = Gauge::<f64, AtomicU64>::default();
    age.set(g.oldest_job.map(|t| (now() - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0));
    r.register(
        "renewgate_queue_oldest_job_age_seconds",
        "Age of the oldest issuance job still waiting or running (0 when the queue is empty)",
        age,
    );
    r.register(
        "renewgate_store_push_jobs",
        "Store push jobs by state (waiting, running, done, failed)",
        by_state(&["waiting", "running", "done", "failed"], |st| count_of(&g.store_jobs, st)),
    );
    // A disabled object counts as disabled whatever its state.
    let objects = |st: &str| -> i64 {
        g.objects.iter().filter(|(s, d, _)| if st == "disabled" { *d } else { !*d && s == st }).map(|x| x.2).sum()
    };
    r.register(
        "renewgate_certificates",
        "Certificate objects by state (active, processing, error, disabled)",
        by_state(&["active", "processing", "error", "disabled"], objects),
    );
    let expiry = Family::<ExpiryLabels, Gauge>::default();
    for &(days, n) in &g.expiry {
        expiry.get_or_create(&ExpiryLabels { days }).set(n);
    }
    r.register(
        "renewgate_certificates_by_expiry",
        "Current certificates by days until they expire (expired, 0-7, 7-30, 30-90, 90+)",
        expiry,
    );
    r
}

fn authorized(req: &HttpRequest, token: Option<&str>) -> bool {
    let Some(want) = token.filter(|t| !t.is_empty()) else { return true };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or("");
    given.len() == want.len() && openssl::memcmp::eq(given.as_bytes(), want.as_bytes())
}

#[utoipa::path(get, path = "/metrics", tag = "Native: health",
    responses((status = 200, description = "Prometheus text exposition format; every series is prefixed renewgate_",
               content_type = "text/plain; version=0.0.4", body = String),
              (status = 401, description = "metrics.token is set and the request did not present it", body = NativeErrorBody),
              (status = 503, body = NativeErrorBody)),
    security((), ("bearer" = [])))]
#[get("/metrics")]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, NativeError> {
    if !authorized(&req, state.engine.settings.metrics.token.as_deref()) {
        return Err(NativeError {
            status: actix_web::http::StatusCode::UNAUTHORIZED,
            message: "GET /metrics needs the bearer token configured in metrics.token.".into(),
        });
    }
    let engine = state.engine.clone();
    let g = crate::api::observe::block(move || -> Result<DbGauges, NativeError> {
        let mut c = engine.pool.get()?;
        Ok(stats::gauges(&mut c)?)
    })
    .await??;
    let body = crate::metrics::render(&scrape_registry(&g, state.engine.backend.name()))
        .map_err(|e| NativeError::unavailable(format!("encoding the metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(body))
}
