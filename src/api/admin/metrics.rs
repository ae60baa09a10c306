//! `GET /metrics`: Prometheus text format. Process counters (HTTP requests, renewals and
//! enrollments by dialect, issuance latency, store push results) come from `crate::metrics`;
//! gauges about the shared database (queue depth and age, store push jobs, certificates by state
//! and by days to expiry) are counted at scrape time by `engine::stats`; rendered here.
use actix_web::get;
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::{NativeError, NativeErrorBody};
use crate::app::AppState;
use crate::db::now;
use crate::engine::stats::{self, DbGauges};
use crate::metrics::{header, sample};

fn render(g: &DbGauges, backend: &str) -> String {
    let mut out = String::new();
    header(&mut out, "renewgate_build_info", "The gateway's version and storage backend.", "gauge");
    sample(&mut out, "renewgate_build_info", &[("version", env!("CARGO_PKG_VERSION")), ("backend", backend)], 1.0);
    crate::metrics::render_process(&mut out);
    header(&mut out, "renewgate_queue_depth", "Issuance jobs waiting or running, by state (whole database).", "gauge");
    for st in ["queued", "running"] {
        let n = g.jobs.iter().find(|(s, _)| s == st).map(|x| x.1).unwrap_or(0);
        sample(&mut out, "renewgate_queue_depth", &[("state", st)], n as f64);
    }
    header(
        &mut out,
        "renewgate_queue_oldest_job_age_seconds",
        "Age of the oldest issuance job still waiting or running (0 when the queue is empty).",
        "gauge",
    );
    let age = g.oldest_job.map(|t| (now() - t).num_milliseconds().max(0) as f64 / 1000.0).unwrap_or(0.0);
    sample(&mut out, "renewgate_queue_oldest_job_age_seconds", &[], age);
    header(
        &mut out,
        "renewgate_store_push_jobs",
        "Store push jobs by state (waiting, running, done, failed).",
        "gauge",
    );
    for st in ["waiting", "running", "done", "failed"] {
        let n = g.store_jobs.iter().find(|(s, _)| s == st).map(|x| x.1).unwrap_or(0);
        sample(&mut out, "renewgate_store_push_jobs", &[("state", st)], n as f64);
    }
    header(
        &mut out,
        "renewgate_certificates",
        "Certificate objects by state (active, processing, error, disabled).",
        "gauge",
    );
    for st in ["active", "processing", "error", "disabled"] {
        let n: i64 =
            g.objects.iter().filter(|(s, d, _)| if st == "disabled" { *d } else { !*d && s == st }).map(|x| x.2).sum();
        sample(&mut out, "renewgate_certificates", &[("state", st)], n as f64);
    }
    header(
        &mut out,
        "renewgate_certificates_by_expiry",
        "Current certificates by days until they expire (expired, 0-7, 7-30, 30-90, 90+).",
        "gauge",
    );
    for (b, n) in &g.expiry {
        sample(&mut out, "renewgate_certificates_by_expiry", &[("days", b)], *n as f64);
    }
    out
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
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render(&g, state.engine.backend.name())))
}
