//! The native API: health (and, later, stores, agents' job polling, jobs, metrics).
use actix_web::get;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

pub mod agent;
pub mod audit;
pub mod error;
pub mod metrics;
pub mod policies;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(health)
        .service(policies::get)
        .service(policies::put)
        .service(policies::delete)
        .service(agent::claim)
        .service(agent::result)
        .service(agent::renew_token)
        .service(agent::request_status)
        .service(metrics::metrics)
        .service(audit::list);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    status: String,
    /// `ok` or the database error.
    database: String,
    backend: String,
    version: String,
}

#[utoipa::path(get, path = "/health", tag = "Native: health",
    responses((status = 200, description = "Alive and the database answers", body = Health),
              (status = 503, description = "Alive but the database does not answer", body = Health)))]
#[get("/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let engine = state.engine.clone();
    let db = web::block(move || -> Result<(), String> {
        let mut c = engine.pool.get().map_err(|e| e.to_string())?;
        crate::db::ping(&mut c).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let ok = db.is_ok();
    let body = Health {
        status: if ok { "ok".into() } else { "degraded".into() },
        database: db.err().unwrap_or_else(|| "ok".into()),
        backend: state.engine.backend.name().into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let mut r = if ok { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    r.content_type("application/json; charset=utf-8").body(serde_json::to_string(&body).unwrap_or_default())
}
