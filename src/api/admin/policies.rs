//! `/api/v1/policies?dn=…`: policy folders and their settings (configuration:manage).
use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{delete, get, put};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{NativeAuthErrors, NativeError, NativeErrorBody};
use crate::api::body::read_payload;
use crate::api::venafi::authenticate;
use crate::app::AppState;
use crate::db::DbError;
use crate::engine::policy;
use crate::vocab::Permission;

#[derive(Debug, Deserialize, IntoParams)]
pub struct DnQuery {
    /// Policy folder DN, e.g. `\VED\Policy\Web`.
    pub dn: String,
}

// The engine keeps settings as JSON; answers carry them through this type, so the document says
// exactly what a value can be.
/// A policy value: a string, a boolean, or a list (strings; RSA key sizes are integers).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = PolicyValueDoc)]
pub enum PolicyValue {
    Text(String),
    Flag(bool),
    Number(i64),
    List(Vec<PolicyListItem>),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = PolicyListItemDoc)]
pub enum PolicyListItem {
    Text(String),
    Number(i64),
}

impl PolicyValue {
    /// A stored setting (validated when it was written) as an answer's value.
    fn of(v: Value) -> Result<PolicyValue, NativeError> {
        serde_json::from_value(v)
            .map_err(|e| NativeError::internal(format!("a stored policy value has an unexpected shape: {e}")))
    }
}

fn values(m: BTreeMap<String, Value>) -> Result<BTreeMap<String, PolicyValue>, NativeError> {
    m.into_iter().map(|(k, v)| Ok((k, PolicyValue::of(v)?))).collect()
}

/// A PUT body's value: a policy value, or `null` to remove the key from the folder. Kept as JSON
/// so that the engine's validation answers a wrong value with its own message.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct PolicyUpdateValue(pub Value);

impl utoipa::PartialSchema for PolicyUpdateValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name(<PolicyValue as ToSchema>::name()))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .description(Some("A policy value, or null to remove the key from the folder."))
            .into()
    }
}

impl ToSchema for PolicyUpdateValue {
    fn name() -> std::borrow::Cow<'static, str> {
        "PolicyUpdateValueDoc".into()
    }
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        use utoipa::PartialSchema;
        schemas.push((<PolicyValue as ToSchema>::name().into(), PolicyValue::schema()));
        <PolicyValue as ToSchema>::schemas(schemas);
    }
}

/// One effective setting: value, the folder it comes from, lock flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveSettingBody {
    pub value: PolicyValue,
    pub folder: String,
    pub locked: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyResponse {
    pub dn: String,
    pub settings: BTreeMap<String, PolicyValue>,
    pub locked: Vec<String>,
    /// What is in force here, inherited values included.
    pub effective: BTreeMap<String, EffectiveSettingBody>,
}

/// PUT body: a key given replaces its value, `null` removes it; `locked` (when present) is the
/// folder's full list of locked keys.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PolicyUpdate {
    pub dn: Option<String>,
    #[serde(default)]
    pub settings: BTreeMap<String, PolicyUpdateValue>,
    pub locked: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedResponse {
    pub deleted: bool,
}

fn response(
    c: &mut crate::db::DbConn,
    access: &crate::auth::FolderAccess,
    dn: &str,
) -> Result<PolicyResponse, NativeError> {
    let f = policy::find_folder_for(c, access, dn)
        .map_err(DbError::from)?
        .ok_or_else(|| NativeError::not_found(format!("PolicyDN: {dn} does not exist.")))?;
    let own = policy::FolderSettings::of(&f);
    let eff = policy::effective(c, &f.dn).map_err(DbError::from)?;
    Ok(PolicyResponse {
        dn: f.dn,
        settings: values(own.settings)?,
        locked: own.locked,
        effective: eff
            .values
            .into_iter()
            .map(|(k, v)| {
                Ok((k, EffectiveSettingBody { value: PolicyValue::of(v.value)?, folder: v.folder, locked: v.locked }))
            })
            .collect::<Result<_, NativeError>>()?,
    })
}

#[utoipa::path(get, path = "/api/v1/policies", tag = "Native: policies", params(DnQuery),
    responses((status = 200, body = PolicyResponse), (status = 400, body = NativeErrorBody), NativeAuthErrors, (status = 404, body = NativeErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/policies")]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<DnQuery>,
) -> Result<HttpResponse, NativeError> {
    let principal = authenticate(&req, &state, "configuration", None).await?;
    let dn = policy::normalize_dn(&q.dn);
    let engine = state.engine.clone();
    let r =
        web::block(move || -> Result<_, NativeError> { response(&mut *engine.pool.get()?, &principal.access, &dn) })
            .await??;
    Ok(HttpResponse::Ok().json(r))
}

#[utoipa::path(put, path = "/api/v1/policies", tag = "Native: policies", params(DnQuery), request_body = PolicyUpdate,
    responses((status = 200, body = PolicyResponse), (status = 400, body = NativeErrorBody), NativeAuthErrors),
    security(("bearer" = [])))]
#[put("/api/v1/policies")]
pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<DnQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, NativeError> {
    let principal = authenticate(&req, &state, "configuration", Some("manage")).await?;
    let bytes = read_payload(payload, state.engine.settings.http.max_body_bytes)
        .await
        .map_err(|e| NativeError::bad_request(e.to_string()))?;
    let upd: PolicyUpdate =
        serde_json::from_slice(&bytes).map_err(|e| NativeError::bad_request(format!("invalid body: {e}")))?;
    let dn = policy::normalize_dn(&q.dn);
    if let Some(b) = &upd.dn
        && !policy::normalize_dn(b).eq_ignore_ascii_case(&dn)
    {
        return Err(NativeError::bad_request("the body's dn differs from the dn query parameter"));
    }
    // Creating or changing a folder needs write on it; any other folder answers as missing.
    if !policy::may(&principal.access, &dn, Permission::Write) {
        return Err(NativeError::not_found(format!("PolicyDN: {dn} does not exist.")));
    }
    let engine = state.engine.clone();
    let r = crate::api::observe::block(move || -> Result<_, NativeError> {
        let mut c = engine.pool.get()?;
        crate::db::write_tx_as(&mut c, None, |tx| -> Result<(), NativeError> {
            let current = policy::find_folder(tx, &dn)
                .map_err(DbError::from)?
                .map(|f| policy::FolderSettings::of(&f))
                .unwrap_or_default();
            let (lock, unlock) = match &upd.locked {
                Some(l) => (l.clone(), current.locked.iter().filter(|k| !l.contains(k)).cloned().collect()),
                None => (vec![], vec![]),
            };
            let settings: BTreeMap<String, Value> = upd.settings.into_iter().map(|(k, v)| (k, v.0)).collect();
            policy::merge_folder(tx, &dn, &settings, &lock, &unlock).map_err(NativeError::bad_request)?;
            Ok(())
        })?;
        tracing::info!(dn = %dn, "policy folder updated");
        response(&mut c, &principal.access, &dn)
    })
    .await??;
    Ok(HttpResponse::Ok().json(r))
}

#[utoipa::path(delete, path = "/api/v1/policies", tag = "Native: policies", params(DnQuery),
    responses((status = 200, body = DeletedResponse), (status = 400, body = NativeErrorBody), NativeAuthErrors, (status = 404, body = NativeErrorBody)),
    security(("bearer" = [])))]
#[delete("/api/v1/policies")]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<DnQuery>,
) -> Result<HttpResponse, NativeError> {
    let principal = authenticate(&req, &state, "configuration", Some("manage")).await?;
    let dn = policy::normalize_dn(&q.dn);
    if !policy::may(&principal.access, &dn, Permission::Write) {
        return Err(NativeError::not_found("no such policy folder"));
    }
    let engine = state.engine.clone();
    let deleted = web::block(move || -> Result<_, NativeError> {
        let mut c = engine.pool.get()?;
        policy::delete_folder(&mut c, &dn).map_err(NativeError::bad_request)
    })
    .await??;
    if !deleted {
        return Err(NativeError::not_found("no such policy folder"));
    }
    Ok(HttpResponse::Ok().json(DeletedResponse { deleted: true }))
}
