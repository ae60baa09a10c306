//! The Venafi TPP dialect (`/vedauth`, `/vedsdk`): a thin adapter over the engine.
//! Paths arrive lower-cased with the trailing slash trimmed (see `app::normalize_vendor_path`).
pub mod authorize;
pub mod certificates;
pub mod error;

use actix_web::{HttpRequest, web};

use crate::api::body::{LenientBody, read_payload};
use crate::app::AppState;
use crate::auth::{self, Principal};
pub use error::VenafiError;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.map(|cfg| {
        cfg.route("/vedauth/authorize/oauth", web::post().to(authorize::oauth))
            .route("/vedauth/authorize/token", web::post().to(authorize::refresh))
            .route("/vedauth/authorize/verify", web::get().to(authorize::verify))
            .route("/vedauth/revoke/token", web::get().to(authorize::revoke))
            .route("/vedauth/revoke/token", web::post().to(authorize::revoke))
            .route("/vedsdk/authorize", web::post().to(authorize::legacy_login))
            .route("/vedsdk/systemstatus/version", web::get().to(authorize::version))
            .route("/vedsdk/certificates/request", web::post().to(certificates::request))
            .route("/vedsdk/certificates/retrieve", web::post().to(certificates::retrieve_post))
            .route("/vedsdk/certificates/retrieve", web::get().to(certificates::retrieve_get))
            .route("/vedsdk/certificates/renew", web::post().to(certificates::renew))
            .route("/vedsdk/certificates/checkpolicy", web::post().to(certificates::check_policy))
            .route("/vedsdk/certificates", web::get().to(certificates::search))
            .route("/vedsdk/certificates/reset", web::post().to(certificates::reset))
            .route("/vedsdk/certificates/revoke", web::post().to(certificates::revoke))
            .route("/vedsdk/certificates/{guid}", web::get().to(certificates::details))
            .route("/vedsdk/certificates/{guid}", web::put().to(certificates::update))
            .route("/vedsdk/config/dntoguid", web::post().to(certificates::dn_to_guid))
    });
}

/// The bearer token from `Authorization: Bearer`, or `X-Venafi-Api-Key` (with or without `Bearer `).
pub fn presented_token(req: &HttpRequest) -> Option<String> {
    let h = req.headers();
    if let Some(v) = h.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_string());
        }
    }
    if let Some(v) = h.get("x-venafi-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let v = if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") { &v[7..] } else { v };
        if !v.is_empty() {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Authenticates the request and checks the scope the call needs (`None` restriction = bare scope;
/// `("", None)` = any valid token).
pub async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    scope: &'static str,
    restriction: Option<&'static str>,
) -> Result<Principal, VenafiError> {
    let token = presented_token(req).ok_or(VenafiError::Unauthorized)?;
    let engine = state.engine.clone();
    let principal = web::block(move || {
        let mut conn = engine.pool.get()?;
        Ok::<_, VenafiError>(auth::authenticate_token(&mut conn, &token))
    })
    .await??
    .map_err(|_| VenafiError::Unauthorized)?;
    crate::api::observe::set_actor(req, &principal.user_name);
    if !scope.is_empty() && !principal.scopes.allows(scope, restriction) {
        let needed = match restriction {
            Some(r) => format!("{scope}:{r}"),
            None => scope.to_string(),
        };
        return Err(VenafiError::InsufficientScope(needed));
    }
    Ok(principal)
}

/// Reads a JSON body leniently, answering bad ones in the Venafi error shape.
pub async fn json_body(payload: web::Payload, state: &AppState) -> Result<LenientBody, VenafiError> {
    let bytes = read_payload(payload, state.engine.settings.http.max_body_bytes).await?;
    Ok(LenientBody::parse(&bytes)?)
}

pub fn json_ok(v: &impl serde::Serialize) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_string(v).unwrap_or_else(|_| "{}".into()))
}
