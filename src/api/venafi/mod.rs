//! The Venafi TPP dialect (`/vedauth`, `/vedsdk`): a thin adapter over the engine.
//! Paths arrive lower-cased with the trailing slash trimmed (see `app::normalize_vendor_path`).
pub mod authorize;
pub mod certificates;
pub mod error;
pub mod fields;

use actix_web::{HttpRequest, web};

use serde::de::DeserializeOwned;

use crate::api::body::{Lenient, LenientBody, read_payload};
use crate::app::AppState;
use crate::auth::{self, Principal};
pub use error::{ErrorBody, OAuthErrorBody, VenafiError, VenafiErrors, VenafiTokenErrors};

/// The dialect's routes; each handler carries its actix route under its `#[utoipa::path]`, so this
/// registration also yields the document's paths. Fixed `/vedsdk/certificates/...` paths come
/// before `/vedsdk/certificates/{guid}`, which would otherwise take them.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(authorize::oauth)
        .service(authorize::refresh)
        .service(authorize::verify)
        .service(authorize::revoke)
        .service(authorize::legacy_login)
        .service(authorize::version)
        .service(certificates::request)
        .service(certificates::retrieve_post)
        .service(certificates::retrieve_get)
        .service(certificates::renew)
        .service(certificates::check_policy)
        .service(certificates::search)
        .service(certificates::reset)
        .service(certificates::revoke)
        .service(certificates::details)
        .service(certificates::update)
        .service(certificates::dn_to_guid);
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
        token_principal(&mut conn, &token)
    })
    .await??;
    crate::api::observe::set_actor(req, &principal.user_name);
    require_scope(&principal, scope, restriction)?;
    Ok(principal)
}

/// Who a bearer token belongs to, on a connection the caller already holds (a call that does
/// all its work in one blocking hop authenticates there).
pub fn token_principal(conn: &mut crate::db::DbConn, token: &str) -> Result<Principal, VenafiError> {
    auth::authenticate_token(conn, token).map_err(|_| VenafiError::Unauthorized)
}

/// The scope check of `authenticate`, for a principal already authenticated.
pub fn require_scope(
    principal: &Principal,
    scope: &'static str,
    restriction: Option<&'static str>,
) -> Result<(), VenafiError> {
    if !scope.is_empty() && !principal.scopes.allows(scope, restriction) {
        let needed = match restriction {
            Some(r) => format!("{scope}:{r}"),
            None => scope.to_string(),
        };
        return Err(VenafiError::InsufficientScope(needed));
    }
    Ok(())
}

/// Reads a request body as a JSON object with lower-cased keys, answering bad ones in the Venafi
/// error shape (the OAuth calls type it themselves: their field errors have another OAuth code).
pub async fn json_object(payload: web::Payload, state: &AppState) -> Result<LenientBody, VenafiError> {
    let bytes = read_payload(payload, state.engine.settings.http.max_body_bytes).await?;
    Ok(LenientBody::parse(&bytes)?)
}

/// Reads a request body into its typed struct under the lenient rules (`Lenient<T>`).
pub async fn json_body<T: DeserializeOwned>(payload: web::Payload, state: &AppState) -> Result<T, VenafiError> {
    Ok(Lenient::<T>::from_body(json_object(payload, state).await?)?)
}

pub fn json_ok(v: &impl serde::Serialize) -> actix_web::HttpResponse {
    json_with(actix_web::http::StatusCode::OK, v)
}

/// A typed answer with its status, as the dialect sends JSON (`charset=utf-8`).
pub fn json_with(status: actix_web::http::StatusCode, v: &impl serde::Serialize) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_string(v).unwrap_or_else(|_| "{}".into()))
}
