//! ACME Renewal Information (RFC 9773): `GET renewal-info/{certID}` (and HEAD); the window is
//! the domain's (`crate::acme::renewal_info`).
use actix_web::{HttpResponse, get, web};

use super::{Problem, blocking};
pub use crate::acme::renewal_info::{cert_id, parse_cert_id};
use crate::acme::wire::{AcmeProblem, RenewalInfo, SuggestedWindow};
use crate::app::AppState;

#[utoipa::path(get, path = "/acme/renewal-info/{cert_id}", tag = "ACME", operation_id = "acme_renewal_info",
    params(("cert_id" = String, Path, description = "base64url(AKI).base64url(serial)")),
    responses((status = 200, description = "The suggested renewal window", body = RenewalInfo),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 404, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
#[get("/acme/renewal-info/{cert_id}")]
pub async fn renewal_info(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    window(state, path).await
}

/// The window for GET and HEAD (a client may probe with HEAD; actix answers it without the body).
pub(super) async fn window(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let id = path.into_inner();
    let (start, end) = blocking(&state, move |_, c| Ok(crate::acme::renewal_info::window(c, &id)?)).await?;
    let fmt = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Retry-After", "21600"))
        .json(RenewalInfo { suggested_window: SuggestedWindow { start: fmt(start), end: fmt(end) } }))
}
