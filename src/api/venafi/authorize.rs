//! `/vedauth` token endpoints, the legacy `/vedsdk/authorize/` API key, and the version probe.
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, route, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::nonblank;
use super::{ErrorBody, OAuthErrorBody, VenafiError, VenafiTokenErrors, authenticate, json_body, json_object, json_ok};
use crate::api::body::{Lenient, lenient};
use crate::app::AppState;
use crate::auth::login::LoginError;
use crate::auth::{self, AuthError, IssuedToken, Scopes};
use crate::settings::parse_duration;

/// `POST /vedauth/authorize/oauth` request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OAuthRequest {
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    username: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    password: Option<String>,
    /// Application id (vcert sends `vcert-sdk`).
    #[serde(default, deserialize_with = "lenient::string")]
    client_id: Option<String>,
    /// TPP scope string, e.g. `certificate:manage,revoke`.
    #[serde(default, deserialize_with = "lenient::string")]
    scope: Option<String>,
    /// Accepted; the gateway only logs it (at debug level), so any JSON value is taken.
    #[serde(default, deserialize_with = "super::fields::any_text")]
    state: Option<String>,
}

/// Token grant answer (also for refresh).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    /// Expiry, Unix seconds.
    expires: i64,
    expires_in: i64,
    refresh_until: i64,
    scope: String,
    token_type: String,
    identity: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    client_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct VerifyResponse {
    access_issued_on_ISO8601: String,
    access_issued_on_unix_time: i64,
    application: String,
    expires_ISO8601: String,
    expires_unix_time: i64,
    grant_issued_on_ISO8601: String,
    grant_issued_on_unix_time: i64,
    identity: String,
    scope: String,
    /// Seconds left.
    valid_for: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct LegacyLoginRequest {
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    username: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct LegacyLoginResponse {
    #[serde(rename = "APIKey")]
    api_key: String,
    /// `/Date(<ms>)/`
    valid_until: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct VersionResponse {
    version: String,
}

/// The answer of `GET /vedauth/revoke/token`.
// A schema name of its own: `RevokeResponse` is the certificate revocation's answer, and two
// schemas of one name collapse into one in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = TokenRevokeResponse)]
pub struct RevokeResponse {
    revoked: bool,
}

fn invalid_grant(msg: &str) -> VenafiError {
    VenafiError::OAuth(StatusCode::BAD_REQUEST, "invalid_grant", msg.to_string())
}

fn token_response(t: &IssuedToken, user_guid: &str) -> TokenResponse {
    TokenResponse {
        access_token: t.access_token.clone(),
        refresh_token: t.refresh_token.clone(),
        expires: t.expires_at.and_utc().timestamp(),
        expires_in: (t.expires_at - t.issued_at).num_seconds(),
        refresh_until: t.refresh_until.unwrap_or(t.expires_at).and_utc().timestamp(),
        scope: t.scope.to_string(),
        token_type: "Bearer".into(),
        identity: format!("local:{{{user_guid}}}"),
    }
}

fn lifetimes(state: &AppState) -> (std::time::Duration, std::time::Duration) {
    let s = &state.engine.settings.auth;
    (
        parse_duration(&s.token_lifetime).unwrap_or(std::time::Duration::from_secs(90 * 86400)),
        parse_duration(&s.refresh_lifetime).unwrap_or(std::time::Duration::from_secs(365 * 86400)),
    )
}

#[utoipa::path(post, path = "/vedauth/authorize/oauth", tag = "Venafi: authorization",
    request_body = OAuthRequest,
    responses((status = 200, body = TokenResponse), (status = 400, description = "Bad credentials or scope", body = OAuthErrorBody)))]
#[post("/vedauth/authorize/oauth")]
pub async fn oauth(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let source = crate::api::client_ip(&req, &state.engine.settings);
    // A body that is not a JSON object is a bad grant; a field of the wrong type a bad request.
    let object = json_object(payload, &state).await.map_err(|e| invalid_grant(&e.to_string()))?;
    let body = Lenient::<OAuthRequest>::from_body(object)
        .map_err(|e| VenafiError::OAuth(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
    let username = nonblank(body.username)
        .ok_or_else(|| VenafiError::OAuth(StatusCode::BAD_REQUEST, "invalid_request", "username is required".into()))?;
    let password = body.password.unwrap_or_default();
    let client_id = nonblank(body.client_id).unwrap_or_else(|| "renewgate".into());
    let scope_text = nonblank(body.scope).unwrap_or_else(|| auth::scopes::DEFAULT_USER.into());
    tracing::debug!(client_id = %client_id, state = body.state.as_deref(), "token grant requested");
    let requested = Scopes::parse(&scope_text).map_err(|e| {
        VenafiError::OAuth(StatusCode::BAD_REQUEST, "invalid_scope", format!("Invalid scope '{scope_text}': {e}"))
    })?;
    let (life, refresh_life) = lifetimes(&state);
    let engine = state.engine.clone();
    let result = web::block(move || -> Result<Result<(IssuedToken, String), AuthError>, VenafiError> {
        let mut conn = engine.pool.get()?;
        let user = match engine.login.check_password(&mut conn, &username, &password, source, "venafi") {
            Ok(u) => u,
            Err(LoginError::Auth(e)) => return Ok(Err(e)),
            Err(e) => return Err(e.into()),
        };
        Ok(auth::issue_token(&mut conn, &user, &requested, &client_id, "oauth", life, Some(refresh_life))
            .map(|t| (t, user.guid)))
    })
    .await??;
    match result {
        Ok((t, guid)) => {
            tracing::info!(scope = %t.scope, "access token granted");
            Ok(json_ok(&token_response(&t, &guid)))
        }
        Err(AuthError::Scope(_)) => Err(VenafiError::OAuth(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Failed to issue grant: User is not authorized for the requested scope".into(),
        )),
        Err(AuthError::Db(e)) => Err(VenafiError::Internal(e.to_string())),
        Err(_) => Err(invalid_grant("Username/password combination not valid")),
    }
}

#[utoipa::path(post, path = "/vedauth/authorize/token", tag = "Venafi: authorization",
    request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = OAuthErrorBody)))]
#[post("/vedauth/authorize/token")]
pub async fn refresh(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, VenafiError> {
    let body: RefreshRequest = json_body(payload, &state).await.map_err(|e| invalid_grant(&e.to_string()))?;
    let refresh = nonblank(body.refresh_token).ok_or_else(|| invalid_grant("refresh_token is required"))?;
    let client_id = nonblank(body.client_id).unwrap_or_else(|| "renewgate".into());
    let (life, refresh_life) = lifetimes(&state);
    let engine = state.engine.clone();
    let result = web::block(move || -> Result<Result<(IssuedToken, String), AuthError>, VenafiError> {
        let mut conn = engine.pool.get()?;
        let t = auth::refresh_token(&mut conn, &refresh, &client_id, life, refresh_life);
        Ok(t.and_then(|t| {
            let p = auth::authenticate_token(&mut conn, &t.access_token)?;
            Ok((t, p.user_guid))
        }))
    })
    .await??;
    match result {
        Ok((t, guid)) => Ok(json_ok(&token_response(&t, &guid))),
        Err(AuthError::Scope(m)) => Err(invalid_grant(&m)),
        Err(AuthError::Db(e)) => Err(VenafiError::Internal(e.to_string())),
        Err(_) => Err(invalid_grant("Grant has been revoked, has expired, or the refresh token is invalid")),
    }
}

#[utoipa::path(get, path = "/vedauth/authorize/verify", tag = "Venafi: authorization",
    responses((status = 200, body = VerifyResponse), VenafiTokenErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[get("/vedauth/authorize/verify")]
pub async fn verify(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VenafiError> {
    let p = authenticate(&req, &state, "", None).await?;
    let issued = p.token_issued_at.unwrap_or_default().and_utc();
    let expires = p.token_expires_at.unwrap_or_default().and_utc();
    let iso = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    Ok(json_ok(&VerifyResponse {
        access_issued_on_ISO8601: iso(issued),
        access_issued_on_unix_time: issued.timestamp(),
        application: p.client_id.clone(),
        expires_ISO8601: iso(expires),
        expires_unix_time: expires.timestamp(),
        grant_issued_on_ISO8601: iso(issued),
        grant_issued_on_unix_time: issued.timestamp(),
        identity: format!("local:{{{}}}", p.user_guid),
        scope: p.scopes.to_string(),
        valid_for: (expires - chrono::Utc::now()).num_seconds().max(0),
    }))
}

#[utoipa::path(get, path = "/vedauth/revoke/token", tag = "Venafi: authorization", operation_id = "revoke_token",
    responses((status = 200, body = RevokeResponse), VenafiTokenErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
// vcert revokes with GET, TPP also takes POST; the document keeps the one operation it had (an
// operation per method would need an operationId each).
#[route("/vedauth/revoke/token", method = "GET", method = "POST")]
pub async fn revoke(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VenafiError> {
    let p = authenticate(&req, &state, "", None).await?;
    let engine = state.engine.clone();
    web::block(move || -> Result<(), VenafiError> {
        let mut conn = engine.pool.get()?;
        if let Some(id) = p.token_id {
            auth::revoke_token_id(&mut conn, id).map_err(|e| VenafiError::Internal(e.to_string()))?;
        }
        Ok(())
    })
    .await??;
    Ok(json_ok(&RevokeResponse { revoked: true }))
}

#[utoipa::path(post, path = "/vedsdk/authorize", tag = "Venafi: authorization",
    request_body = LegacyLoginRequest,
    responses((status = 200, body = LegacyLoginResponse), (status = 400, description = "No username, or a body that is not JSON", body = ErrorBody),
              (status = 401, description = "Wrong credentials", body = OAuthErrorBody)))]
#[post("/vedsdk/authorize")]
pub async fn legacy_login(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let source = crate::api::client_ip(&req, &state.engine.settings);
    let body: LegacyLoginRequest = json_body(payload, &state).await?;
    let username = nonblank(body.username).ok_or_else(|| VenafiError::BadRequest("Username is required.".into()))?;
    let password = body.password.unwrap_or_default();
    let (life, _) = lifetimes(&state);
    let engine = state.engine.clone();
    let result = web::block(move || -> Result<Result<IssuedToken, AuthError>, VenafiError> {
        let mut conn = engine.pool.get()?;
        let user = match engine.login.check_password(&mut conn, &username, &password, source, "venafi") {
            Ok(u) => u,
            Err(LoginError::Auth(e)) => return Ok(Err(e)),
            Err(e) => return Err(e.into()),
        };
        Ok((|| {
            let max = Scopes::parse(&user.max_scope).map_err(|e| AuthError::Scope(e.0))?;
            // The legacy API key has the user's whole scope and a UUID shape, as TPP's had.
            let mut t = auth::issue_token(&mut conn, &user, &max, "legacy-api-key", "apikey", life, None)?;
            t.access_token = t.access_token.clone();
            Ok(t)
        })())
    })
    .await??;
    match result {
        Ok(t) => Ok(json_ok(&LegacyLoginResponse {
            api_key: t.access_token,
            valid_until: format!("/Date({})/", t.expires_at.and_utc().timestamp_millis()),
        })),
        Err(AuthError::Db(e)) => Err(VenafiError::Internal(e.to_string())),
        Err(_) => Err(VenafiError::OAuth(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "Username/password combination not valid".into(),
        )),
    }
}

#[utoipa::path(get, path = "/vedsdk/systemstatus/version", tag = "Venafi: system",
    responses((status = 200, body = VersionResponse), VenafiTokenErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[get("/vedsdk/systemstatus/version")]
pub async fn version(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VenafiError> {
    authenticate(&req, &state, "", None).await?;
    Ok(json_ok(&VersionResponse { version: state.engine.settings.venafi.version.clone() }))
}
