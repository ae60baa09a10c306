//! `GET /api/v1/audit`: the audit trail (renewals, revocations, key downloads, policy changes),
//! oldest first, the newest `limit` records (configuration scope).
use actix_web::get;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{NativeAuthErrors, NativeError, NativeErrorBody};
use crate::api::venafi::authenticate;
use crate::app::AppState;
use crate::engine::audit::{self, AuditRecord};

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Only this action: `renew`, `revoke`, `key_download`, `policy_change`, `sign_in`, `login_throttled`,
    /// `user_change`, `token_change`, `store_change`, `ca_change`, `eab_change` or `master_key_change`.
    pub action: Option<String>,
    /// Only records with a larger id (follow the trail from the last id seen).
    pub after_id: Option<i64>,
    /// How many of the newest matching records (1–10000, default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditRecord>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "Native: audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = NativeErrorBody), NativeAuthErrors),
    security(("bearer" = [])))]
#[get("/api/v1/audit")]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, NativeError> {
    let principal = authenticate(&req, &state, "configuration", None).await?;
    let q = q.into_inner();
    let known = audit::action::ALL;
    if let Some(a) = &q.action
        && !known.contains(&a.as_str())
    {
        return Err(NativeError::bad_request(format!("unknown action {a:?} (use {})", known.join(", "))));
    }
    // A folder-limited reader sees the records about its folders only.
    let f = audit::Filter {
        action: q.action,
        after_id: q.after_id,
        limit: q.limit.unwrap_or(100).clamp(1, 10_000),
        folders: None,
    };
    let engine = state.engine.clone();
    let records = crate::api::observe::block(move || -> Result<_, NativeError> {
        let mut c = engine.pool.get()?;
        Ok(audit::list_for(&mut c, &principal.access, &f).map_err(crate::db::DbError::from)?)
    })
    .await??;
    Ok(HttpResponse::Ok().json(AuditList { records }))
}
