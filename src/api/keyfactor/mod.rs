//! The Keyfactor Command dialect: classic `/CMSApi/CertEnroll/3/*` and the Keyfactor API
//! (`/KeyfactorAPI`). Paths arrive lower-cased (see `app::normalize_vendor_path`). Responses are
//! PascalCase, or camelCase (the .NET rule) for v11-style callers; request keys are matched
//! case-insensitively. Errors are `{"ErrorCode": "0x…", "Message": "…"}`.
pub mod api;
pub mod classic;
pub mod error;
pub mod model;
pub mod request;
pub mod response;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::body::{Lenient, LenientBody, read_payload};
use crate::app::AppState;
use crate::auth::{self, Principal};
use crate::vocab::Permission;
pub use error::KeyfactorError;

/// The dialect's routes, in an order where no `{id}` template comes before a fixed path it would
/// also match; each handler carries its actix route (lower-case: vendor paths arrive lower-cased)
/// under its `#[utoipa::path]`, so this registration is also the document's list of paths.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(classic::renew)
        .service(classic::pkcs10)
        .service(classic::pkcs12)
        .service(api::enrollment_renew)
        .service(api::available_renewal_id)
        .service(api::available_renewal_thumbprint)
        .service(api::enrollment_pfx)
        .service(api::enrollment_csr)
        .service(api::pfx_deploy)
        .service(api::pfx_replace)
        .service(api::certificates_query)
        .service(api::certificates_download)
        .service(api::certificates_recover)
        .service(api::certificates_revoke)
        .service(api::certificate_get)
        .service(api::stores_list)
        .service(api::stores_create)
        .service(api::stores_add)
        .service(api::stores_remove)
        .service(api::stores_get)
        .service(api::stores_inventory)
        .service(api::job_history)
        .service(api::scheduled_jobs)
        .service(api::acknowledge)
        .service(api::templates_list)
        .service(api::cas)
        .service(api::status_endpoints);
}

/// PascalCase (v1, docs, classic) or camelCase (v11) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Casing {
    Pascal,
    Camel,
}

/// Rule 1: mirror the first top-level key of a JSON body; rule 3: a GET without
/// `x-keyfactor-api-version` but with `collectionId=0` is a v11 caller; otherwise PascalCase.
pub fn casing(req: &HttpRequest, body: Option<&[u8]>) -> Casing {
    if let Some(b) = body
        && let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(b)
        && let Some(k) = m.keys().next()
    {
        return if k.chars().next().is_some_and(|c| c.is_ascii_lowercase()) { Casing::Camel } else { Casing::Pascal };
    }
    let no_version = req.headers().get("x-keyfactor-api-version").is_none();
    let q = LenientBody::from_query(req.query_string());
    if no_version && q.str("collectionId").ok().flatten().as_deref() == Some("0") {
        return Casing::Camel;
    }
    Casing::Pascal
}

/// .NET `JsonNamingPolicy.CamelCase` on one name (`SANs` → `saNs`, `KeyfactorID` → `keyfactorID`).
pub fn dotnet_camel(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for i in 0..chars.len() {
        if i == 1 && !chars[i].is_uppercase() {
            break;
        }
        let has_next = i + 1 < chars.len();
        if i > 0 && has_next && !chars[i + 1].is_uppercase() {
            if chars[i + 1] == ' ' {
                chars[i] = chars[i].to_ascii_lowercase();
            }
            break;
        }
        chars[i] = chars[i].to_ascii_lowercase();
    }
    chars.into_iter().collect()
}

/// Dictionary-valued fields whose own keys are data and are never re-cased.
const DICTIONARY_FIELDS: &[&str] =
    &["Metadata", "AdditionalEnrollmentFields", "JobFields", "EnrollmentContext", "SANs", "Parameters"];

fn camelize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if DICTIONARY_FIELDS.contains(&k.as_str()) { v } else { camelize(v) };
                    (dotnet_camel(&k), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(camelize).collect()),
        other => other,
    }
}

/// A 200 JSON answer in the caller's casing: the typed answer serialized as it is spelled
/// (PascalCase), re-cased for camelCase callers.
pub fn respond(casing: Casing, answer: &impl Serialize) -> Result<HttpResponse, KeyfactorError> {
    let v = serde_json::to_value(answer).map_err(|e| KeyfactorError::unavailable(e.to_string()))?;
    let v = if casing == Casing::Camel { camelize(v) } else { v };
    Ok(HttpResponse::Ok().content_type("application/json; charset=utf-8").body(v.to_string()))
}

/// A string field that, if sent, is not blank (a blank one counts as absent).
pub fn nonblank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Verified Basic credentials, cached briefly by a hash of the header so that argon2 does not
/// run on every request.
/// A hit is re-checked against the user's row (enabled, same password hash; current scope and
/// folders): one indexed read, so disabling a user or changing a password takes effect at once.
static BASIC_CACHE: Mutex<Option<HashMap<String, CachedSignIn>>> = Mutex::new(None);

/// A cached Basic sign-in: the user's id, its password hash then, and when.
type CachedSignIn = (i64, String, Instant);
const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);

/// The cache, also after a panic while it was held: it only holds verified sign-ins, each
/// re-checked against the user's row on use, so a half-made update cannot grant anything.
fn basic_cache() -> std::sync::MutexGuard<'static, Option<HashMap<String, CachedSignIn>>> {
    BASIC_CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `DOMAIN\user`, `user@domain` or `user`.
pub fn bare_user(u: &str) -> &str {
    let u = u.rsplit('\\').next().unwrap_or(u);
    u.split('@').next().unwrap_or(u)
}

/// Authenticates Basic (cached) or Bearer credentials and checks the scope.
pub async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    scope: &'static str,
    restriction: Option<&'static str>,
) -> Result<Principal, KeyfactorError> {
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_string();
    let principal = if header.len() > 6 && header[..6].eq_ignore_ascii_case("basic ") {
        let key = crate::secrets::sha256_hex(header.as_bytes());
        let cached = basic_cache()
            .get_or_insert_with(HashMap::new)
            .get(&key)
            .filter(|(_, _, t)| t.elapsed() < BASIC_CACHE_TTL)
            .map(|(id, hash, _)| (*id, hash.clone()));
        let fresh = match cached {
            Some((user_id, hash)) => {
                let engine = state.engine.clone();
                web::block(move || -> Result<Option<Principal>, KeyfactorError> {
                    let mut c = engine.pool.get()?;
                    auth::recheck_password_principal(&mut c, user_id, &hash)
                        .map_err(|e| KeyfactorError::unavailable(e.to_string()))
                })
                .await??
            }
            None => None,
        };
        match fresh {
            Some(p) => p,
            None => {
                let decoded = B64
                    .decode(header[6..].trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(KeyfactorError::unauthorized())?;
                let (user, pass) = decoded.split_once(':').ok_or(KeyfactorError::unauthorized())?;
                let user = bare_user(user).to_string();
                let pass = pass.to_string();
                let engine = state.engine.clone();
                let source = crate::api::client_ip(req, &state.engine.settings);
                let (p, hash) = web::block(move || -> Result<Option<(Principal, String)>, KeyfactorError> {
                    let mut c = engine.pool.get()?;
                    match engine.login.check_password(&mut c, &user, &pass, source, "keyfactor") {
                        Ok(u) => Ok(Some((
                            auth::password_principal(&u).map_err(|e| KeyfactorError::bad_request(e.to_string()))?,
                            u.password_hash,
                        ))),
                        Err(auth::login::LoginError::Auth(auth::AuthError::Db(e))) => {
                            Err(KeyfactorError::unavailable(e.to_string()))
                        }
                        Err(auth::login::LoginError::Auth(_)) => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                })
                .await??
                .ok_or(KeyfactorError::unauthorized())?;
                let mut g = basic_cache();
                let m = g.get_or_insert_with(HashMap::new);
                if m.len() > 10_000 {
                    m.retain(|_, (_, _, t)| t.elapsed() < BASIC_CACHE_TTL);
                    if m.len() > 10_000 {
                        m.clear();
                    }
                }
                m.insert(key, (p.user_id, hash, Instant::now()));
                p
            }
        }
    } else if header.len() > 7 && header[..7].eq_ignore_ascii_case("bearer ") {
        let token = header[7..].trim().to_string();
        let engine = state.engine.clone();
        web::block(move || -> Result<Result<Principal, auth::AuthError>, KeyfactorError> {
            let mut c = engine.pool.get()?;
            Ok(auth::authenticate_token(&mut c, &token))
        })
        .await??
        .map_err(|_| KeyfactorError::unauthorized())?
    } else {
        return Err(KeyfactorError::unauthorized());
    };
    crate::api::observe::set_actor(req, &principal.user_name);
    if !scope.is_empty() && !principal.scopes.allows(scope, restriction) {
        return Err(KeyfactorError::forbidden(match restriction {
            Some(r) => format!("This operation needs the {scope}:{r} permission."),
            None => format!("This operation needs the {scope} permission."),
        }));
    }
    Ok(principal)
}

/// Reads a body into its request type (lenient JSON, see `Lenient`) and also returns the raw
/// bytes for casing detection.
pub async fn body<T: DeserializeOwned>(
    payload: web::Payload,
    state: &AppState,
) -> Result<(T, web::Bytes), KeyfactorError> {
    let bytes = read_payload(payload, state.engine.settings.http.max_body_bytes)
        .await
        .map_err(|e| KeyfactorError::bad_request(e.to_string()))?;
    let b = Lenient::<T>::parse(&bytes).map_err(|e| KeyfactorError::bad_request(e.to_string()))?;
    Ok((b, bytes))
}

/// Runs blocking engine work on the blocking pool with a connection.
pub async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&crate::engine::Engine, &mut crate::db::DbConn) -> Result<T, KeyfactorError> + Send + 'static,
) -> Result<T, KeyfactorError> {
    let engine = state.engine.clone();
    crate::api::observe::block(move || {
        let mut c = engine.pool.get()?;
        f(&engine, &mut c)
    })
    .await?
}

/// Requires `perm` (read, write, key) on the policy folder of a certificate's object; a
/// folder-limited caller gets the not-found answer of a missing id otherwise, so nothing leaks
/// (callers that looked the certificate up by thumbprint or serial use `model::lookup_for`).
pub fn guard(
    c: &mut crate::db::DbConn,
    p: &Principal,
    v: &crate::db::models::CertVersion,
    perm: Permission,
) -> Result<(), KeyfactorError> {
    if crate::engine::access::certificate_allowed(c, &p.access, v, perm)? {
        Ok(())
    } else {
        Err(model::missing(Some(v.id), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotnet_camel_case() {
        assert_eq!(dotnet_camel("SANs"), "saNs");
        assert_eq!(dotnet_camel("CSR"), "csr");
        assert_eq!(dotnet_camel("CertID"), "certID");
        assert_eq!(dotnet_camel("IssuerDN"), "issuerDN");
        assert_eq!(dotnet_camel("KeyfactorID"), "keyfactorID");
        assert_eq!(dotnet_camel("CARowIndex"), "caRowIndex");
        assert_eq!(dotnet_camel("CRLDistributionPoints"), "crlDistributionPoints");
        assert_eq!(dotnet_camel("SSLLocations"), "sslLocations");
        assert_eq!(dotnet_camel("Storepath"), "storepath");
        assert_eq!(dotnet_camel("Thumbprint"), "thumbprint");
    }

    #[test]
    fn dictionary_keys_keep_their_case() {
        let v = serde_json::json!({"Metadata": {"Email-Contact": "x"}, "KeyfactorId": 1, "Items": [{"AbC": 1}]});
        let c = camelize(v);
        assert_eq!(c, serde_json::json!({"metadata": {"Email-Contact": "x"}, "keyfactorId": 1, "items": [{"abC": 1}]}));
    }

    #[test]
    fn user_name_forms() {
        assert_eq!(bare_user("KEYFACTOR\\svc"), "svc");
        assert_eq!(bare_user("svc@example.com"), "svc");
        assert_eq!(bare_user("svc"), "svc");
    }
}
