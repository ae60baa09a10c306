//! ACME Renewal Information (RFC 9773): `GET renewal-info/{certID}`; the window is the domain's
//! (`crate::acme::renewal_info`).
#[allow(unused_imports)]
use super::doc::*;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{Problem, blocking};
pub use crate::acme::renewal_info::{cert_id, parse_cert_id};
use crate::app::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/acme/renewal-info/{cert_id}", web::get().to(renewal_info))
        .route("/acme/renewal-info/{cert_id}", web::head().to(renewal_info));
}

#[utoipa::path(get, path = "/acme/renewal-info/{cert_id}", tag = "ACME", operation_id = "acme_renewal_info",
    params(("cert_id" = String, Path, description = "base64url(AKI).base64url(serial)")),
    responses((status = 200, description = "The suggested renewal window", body = RenewalInfo),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 404, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn renewal_info(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let _ = req;
    let id = path.into_inner();
    let (start, end) = blocking(&state, move |_, c| Ok(crate::acme::renewal_info::window(c, &id)?)).await?;
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Retry-After", "21600"))
        .content_type("application/json")
        .body(json!({"suggestedWindow": {"start": fmt(start), "end": fmt(end)}}).to_string()))
}
