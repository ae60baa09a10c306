//! The ACME dialect (RFC 8555) at `/acme`: the directory (DigiCert-style `?action=…&orderId=N`
//! carried into the newOrder URL), the request checks in RFC 8555 §6's order (the JWS itself —
//! RS256, ES256, ES384, EdDSA, the external account binding's MAC — is `crate::acme::jws`),
//! problem documents and handlers that translate to and from the ACME domain in the core crate
//! (`crate::acme`), where every rule lives.
pub mod ari;
pub use crate::acme::jws;
pub mod orders;
pub mod problem;
pub mod requests;

use actix_web::{HttpRequest, HttpResponse, get, head, post, web};
use serde_json::Value;

use crate::acme::wire::{AcmeAccount, AcmeProblem, Directory, DirectoryMeta, FlattenedJws};
use crate::acme::{Account, Binding};
use crate::api::body::read_payload;
use crate::app::AppState;
use crate::db::DbConn;
use crate::engine::Engine;
use jws::Jws;
use problem::JwsProblems;
pub use problem::Problem;

/// Every ACME route, registered once: the documented handlers carry their route under their
/// `#[utoipa::path]`; the aliases the directory may list (dry-run, DigiCert-style newOrder URLs)
/// and GET new-nonce are plain routes to the same code, undocumented. No template here can
/// shadow a fixed path (they differ in segment count), so the order is the resources' own.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(directory)
        .service(new_nonce_head)
        .service(new_account)
        .service(account_resource)
        .service(key_change)
        .service(orders::new_order)
        .service(orders::order)
        .service(orders::finalize)
        .service(orders::authz)
        .service(orders::challenge)
        .service(orders::certificate)
        .service(orders::orders_list)
        .service(orders::revoke)
        .service(ari::renewal_info);
    cfg.map(|c| {
        c.route("/acme/dry-run/directory", web::get().to(render_directory))
            .route("/acme/new-nonce", web::get().to(new_nonce_get))
            .route("/acme/o/enroll/new-order", web::post().to(orders::create_order))
            .route("/acme/o/{action}/{n}/new-order", web::post().to(orders::create_order))
            .route("/acme/dry-run/new-order", web::post().to(orders::create_order))
            .route("/acme/dry-run/o/enroll/new-order", web::post().to(orders::create_order))
            .route("/acme/dry-run/o/{action}/{n}/new-order", web::post().to(orders::create_order))
            .route("/acme/dry-run/cert/{id}", web::post().to(orders::dry_run_certificate))
            .route("/acme/renewal-info/{cert_id}", web::head().to(ari::window))
    });
}

/// The base URL clients see: `acme.public_base_url`, else the request's scheme and Host.
pub fn base_url(req: &HttpRequest, state: &AppState) -> String {
    if let Some(b) = state.engine.settings.acme.public_base_url.as_deref().filter(|b| !b.is_empty()) {
        return b.trim_end_matches('/').to_string();
    }
    let ci = req.connection_info();
    format!("{}://{}/acme", ci.scheme(), ci.host())
}

#[cfg(test)]
use crate::acme::OrderAction;
pub use crate::acme::RequestedAction as Action;

/// Checks `action`/`orderId`: unknown action, an orderId that is not 1–19 digits, missing for
/// renew/reissue/duplicate, or present with enroll or without an action → `malformed`.
pub fn parse_action(query: &str) -> Result<(Action, bool), Problem> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let dry = get("dryRun").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    Ok((Action::parse(get("action"), get("orderId"))?, dry))
}

/// The newOrder URL a directory lists for its query.
pub fn new_order_url(base: &str, action: &Action, dry: bool) -> String {
    let root = if dry { format!("{base}/dry-run") } else { base.to_string() };
    format!("{root}/{}new-order", action.url_part())
}

fn fresh_nonce(state: &AppState) -> Result<String, Problem> {
    Ok(state.engine.acme_nonces.issue()?)
}

/// Runs an ACME handler and stamps a fresh `Replay-Nonce` on its answer, error or not.
pub(crate) async fn acme_response(state: &AppState, r: Result<HttpResponse, Problem>) -> Result<HttpResponse, Problem> {
    let nonce = fresh_nonce(state).ok();
    match r {
        Ok(mut resp) => {
            if let Some(n) = nonce
                && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&n)
            {
                resp.headers_mut().insert(actix_web::http::header::HeaderName::from_static("replay-nonce"), v);
            }
            Ok(resp)
        }
        Err(p) => Err(Problem { nonce, ..p }),
    }
}

#[utoipa::path(get, path = "/acme/directory", tag = "ACME", operation_id = "acme_directory",
    description = "The directory. `?action=renew|reissue|duplicate&orderId=N` or `?action=enroll` (and `&dryRun=1`) \
        are carried into the newOrder URL it lists.",
    params(("action" = Option<String>, Query, description = "renew, reissue, duplicate or enroll"),
           ("orderId" = Option<i64>, Query, description = "Inventory object id (1–19 digits)"),
           ("dryRun" = Option<String>, Query, description = "1: dry-run newOrder URLs")),
    responses((status = 200, description = "The directory", body = Directory),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
#[get("/acme/directory")]
pub async fn directory(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    render_directory(req, state).await
}

/// The directory at `/acme/directory` and `/acme/dry-run/directory` (whose newOrder URL is a
/// dry-run one).
async fn render_directory(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let base = base_url(&req, &state);
    let (action, mut dry) = parse_action(req.query_string())?;
    if req.path().starts_with("/acme/dry-run/") {
        dry = true;
    }
    Ok(HttpResponse::Ok().json(Directory {
        new_nonce: format!("{base}/new-nonce"),
        new_account: format!("{base}/new-account"),
        new_order: new_order_url(&base, &action, dry),
        revoke_cert: format!("{base}/revoke-cert"),
        key_change: format!("{base}/key-change"),
        renewal_info: format!("{base}/renewal-info"),
        meta: DirectoryMeta { external_account_required: state.engine.settings.acme.eab_required },
    }))
}

#[utoipa::path(head, path = "/acme/new-nonce", tag = "ACME", operation_id = "acme_new_nonce_head",
    responses((status = 200, description = "A fresh nonce in Replay-Nonce",
        headers(("Replay-Nonce" = String, description = "A nonce for the next JWS")))))]
#[head("/acme/new-nonce")]
pub async fn new_nonce_head(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    nonce_response(&req, &state)
}

fn nonce_response(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, Problem> {
    let n = fresh_nonce(state)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Replay-Nonce", n))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Link", format!("<{}/directory>;rel=\"index\"", base_url(req, state))))
        .finish())
}

/// GET new-nonce (RFC 8555 §7.2): the same nonce, answered 204.
async fn new_nonce_get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let mut r = nonce_response(&req, &state)?;
    *r.status_mut() = actix_web::http::StatusCode::NO_CONTENT;
    Ok(r)
}

/// Account keys already built, by their stored JWK text. Building one checks the point
/// (`EC_KEY_check_key`: a scalar multiplication, more than the signature check itself), and every
/// request signed with `kid` needs its account's key. The key is a pure function of the text, so
/// an entry never goes stale: a key change stores another text. Bounded: emptied when full.
static ACCOUNT_KEYS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, openssl::pkey::PKey<openssl::pkey::Public>>>,
> = std::sync::LazyLock::new(Default::default);
const ACCOUNT_KEYS_MAX: usize = 4096;

/// An account's stored key.
pub(crate) fn account_key(a: &Account) -> Result<openssl::pkey::PKey<openssl::pkey::Public>, Problem> {
    if let Some(k) = ACCOUNT_KEYS.lock().unwrap_or_else(|p| p.into_inner()).get(&a.jwk) {
        return Ok(k.clone());
    }
    let jwk: Value = serde_json::from_str(&a.jwk).map_err(|e| Problem::server(e.to_string()))?;
    let key = jws::key_from_jwk(jwk.as_object().ok_or_else(|| Problem::server("stored JWK"))?)?;
    let mut keys = ACCOUNT_KEYS.lock().unwrap_or_else(|p| p.into_inner());
    if keys.len() >= ACCOUNT_KEYS_MAX {
        keys.clear();
    }
    keys.insert(a.jwk.clone(), key.clone());
    Ok(key)
}

/// The request URL as the client signed it (scheme, host, path and query).
fn request_url(req: &HttpRequest, state: &AppState) -> String {
    let base = base_url(req, state);
    let path = req.path().strip_prefix("/acme").unwrap_or(req.path());
    match req.query_string() {
        "" => format!("{base}{path}"),
        q => format!("{base}{path}?{q}"),
    }
}

/// A verified request: the JWS, and the account when it was signed with `kid`.
pub struct Verified {
    pub jws: Jws,
    pub account: Option<Account>,
}

/// Who signed a request, as its protected header says.
enum Signer {
    /// Its own key (`jwk`): new accounts, revocation by the certificate's key. Its signature and
    /// url are already checked (`read_signed`): junk signed with any key costs no blocking hop.
    Jwk,
    /// An account (`kid`), by id: its key is the account's, read on the blocking thread.
    Kid { id: i64, kid: String },
}

/// A request whose form is checked (content type, flattened JWS, alg, jwk or kid) and whose
/// nonce (and, signed with `kid`, signature and url) are still to be (`Signed::verify`, on a
/// blocking thread).
pub struct Signed {
    jws: Jws,
    signer: Signer,
    /// The request URL as the client must have signed it.
    url: String,
}

/// The RFC 8555 §6 checks that need no database: all but the nonce for a `jwk`, the form for a `kid`.
async fn read_signed(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
    jwk_allowed: bool,
) -> Result<Signed, Problem> {
    let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/jose+json") {
        return Err(Problem::new(415, "malformed", "the Content-Type must be application/jose+json"));
    }
    let bytes = read_payload(payload, state.engine.settings.http.max_body_bytes)
        .await
        .map_err(|e| Problem::new(413, "malformed", e.to_string()))?;
    let jws = Jws::parse(&bytes)?;
    let alg = jws.alg().ok_or_else(|| Problem::malformed("the protected header has no 'alg'"))?.to_string();
    if !jws::ALGORITHMS.contains(&alg.as_str()) {
        return Err(jws::JwsError::BadAlgorithm(alg).into());
    }
    let signer = match (jws.jwk().is_some(), jws.kid()) {
        (true, Some(_)) => return Err(Problem::malformed("the protected header has both 'jwk' and 'kid'")),
        (false, None) => return Err(Problem::malformed("the protected header has neither 'jwk' nor 'kid'")),
        (true, None) => {
            if !jwk_allowed {
                return Err(Problem::malformed("this resource needs a 'kid' (an account URL), not a 'jwk'"));
            }
            Signer::Jwk
        }
        (false, Some(kid)) => {
            if jwk_allowed && req.path() == "/acme/new-account" {
                return Err(Problem::malformed("newAccount needs a 'jwk'"));
            }
            let id = kid
                .rsplit_once("/acct/")
                .and_then(|(_, id)| id.parse::<i64>().ok())
                .ok_or_else(|| Problem::new(400, "accountDoesNotExist", format!("no account {kid}")))?;
            Signer::Kid { id, kid: kid.to_string() }
        }
    };
    let url = request_url(req, state);
    if let (Signer::Jwk, Some(jwk)) = (&signer, jws.jwk()) {
        check_signature_and_url(&jws, &jws::key_from_jwk(jwk)?, &url)?;
    }
    Ok(Signed { jws, signer, url })
}

/// The signature under `key`, then the url the client signed.
fn check_signature_and_url(
    jws: &Jws,
    key: &openssl::pkey::PKey<openssl::pkey::Public>,
    url: &str,
) -> Result<(), Problem> {
    jws.verify(key)?;
    if jws.url() != Some(url) {
        return Err(Problem::new(
            401,
            "unauthorized",
            format!("the JWS url {:?} is not the request URL {url}", jws.url().unwrap_or("")),
        ));
    }
    Ok(())
}

impl Signed {
    /// For `kid`: the account, its key, the signature and the url. Then the nonce, consumed
    /// last, so junk does not burn nonces.
    fn verify(self, e: &Engine, c: &mut DbConn) -> Result<Verified, Problem> {
        let Signed { jws, signer, url } = self;
        let account = match signer {
            Signer::Jwk => None,
            Signer::Kid { id, kid } => {
                let acct = crate::acme::accounts::acting(c, id, &kid)?;
                check_signature_and_url(&jws, &account_key(&acct)?, &url)?;
                Some(acct)
            }
        };
        let nonce = jws.nonce().ok_or_else(|| Problem::new(400, "badNonce", "the protected header has no nonce"))?;
        if !e.acme_nonces.consume(c, nonce)? {
            return Err(Problem::new(400, "badNonce", "the nonce is unknown, used or expired"));
        }
        Ok(Verified { jws, account })
    }
}

/// The RFC 8555 §6 pipeline: content type, flattened JWS, alg, key (jwk or kid), signature, url,
/// then the nonce (after the signature, so junk does not burn nonces).
pub async fn verify_request(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
    jwk_allowed: bool,
) -> Result<Verified, Problem> {
    let signed = read_signed(req, state, payload, jwk_allowed).await?;
    let v = blocking(state, move |e, c| signed.verify(e, c)).await?;
    // Authenticated from here on: the audit trail may record what this request does.
    crate::api::observe::set_actor(req, "acme");
    Ok(v)
}

/// The pipeline for resources that need an account (`kid`), then `op` with the verified JWS and
/// its account, on the thread and connection that verified them: one blocking hop per request.
pub async fn with_account<T: Send + 'static>(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
    op: impl FnOnce(&Engine, &mut DbConn, Jws, Account) -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    let signed = read_signed(req, state, payload, false).await?;
    let (verified, r) = blocking(state, move |e, c| {
        let v = match signed.verify(e, c) {
            Ok(v) => v,
            Err(p) => return Ok((false, Err(p))),
        };
        // With jwk refused, a verified request always names its account.
        let Some(account) = v.account else {
            return Ok((true, Err(Problem::malformed("this resource needs a 'kid' (an account URL)"))));
        };
        Ok((true, op(e, c, v.jws, account)))
    })
    .await?;
    if verified {
        // Authenticated: the audit trail records what it did, whatever `op` answered.
        crate::api::observe::set_actor(req, "acme");
    }
    r
}

/// `with_account` for handlers that go on outside the blocking pool: the JWS and its account.
pub async fn verify_account(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
) -> Result<(Jws, Account), Problem> {
    with_account(req, state, payload, |_, _, jws, account| Ok((jws, account))).await
}

/// Runs `f` with the engine and a database connection on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine, &mut DbConn) -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    let engine = state.engine.clone();
    web::block(move || {
        let mut c = engine.pool.get()?;
        f(&engine, &mut c)
    })
    .await?
}

/// Verifies an `externalAccountBinding` (RFC 8555 §7.3.4) for an account key with thumbprint
/// `thumb`: the MAC under the stored key, the URL and the key it binds.
fn check_eab(engine: &Engine, c: &mut DbConn, eab: &Value, outer_url: &str, thumb: &str) -> Result<Binding, Problem> {
    let inner = Jws::parse(eab.to_string().as_bytes())
        .map_err(|e| Problem::malformed(format!("externalAccountBinding: {e:?}")))?;
    if inner.nonce().is_some() {
        return Err(Problem::malformed("the external account binding must not carry a nonce"));
    }
    if inner.url() != Some(outer_url) {
        return Err(Problem::malformed("the external account binding's url differs from the request's"));
    }
    if !matches!(inner.alg(), Some("HS256" | "HS384" | "HS512")) {
        return Err(Problem::malformed("the external account binding must use HS256, HS384 or HS512"));
    }
    let kid = inner.kid().ok_or_else(|| Problem::malformed("the external account binding has no kid"))?.to_string();
    let (key, binding) = crate::acme::accounts::eab_key(engine, c, &kid)?;
    jws::verify_eab_mac(&inner, &key)
        .map_err(|_| Problem::unauthorized("the external account binding MAC does not verify"))?;
    let inner_jwk: Value = serde_json::from_slice(&inner.payload)
        .map_err(|_| Problem::malformed("the external account binding payload is not a JWK"))?;
    let inner_thumb =
        jws::thumbprint(inner_jwk.as_object().ok_or_else(|| Problem::malformed("the EAB payload must be a JWK"))?)?;
    if inner_thumb != thumb {
        return Err(Problem::new(
            400,
            "badPublicKey",
            "the external account binding names another key than the request's jwk",
        ));
    }
    Ok(binding)
}

#[utoipa::path(post, path = "/acme/new-account", tag = "ACME", operation_id = "acme_new_account", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    description = "Creates (201) or finds (200, `onlyReturnExisting`) the account of the JWS key; EAB required by default.",
    responses((status = 201, description = "Account created", body = AcmeAccount),
        (status = 200, description = "The key's existing account", body = AcmeAccount),
        JwsProblems,
        (status = 429, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
#[post("/acme/new-account")]
pub async fn new_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let v = verify_request(&req, &state, payload, true).await?;
        let base = base_url(&req, &state);
        let jwk = v.jws.jwk().cloned().ok_or_else(|| Problem::malformed("newAccount needs a 'jwk'"))?;
        let thumb = jws::thumbprint(&jwk)?;
        let canonical = jws::canonical_jwk(&jwk)?;
        let requests::NewAccount { contacts, only_return_existing: only_existing, external_account_binding: eab } =
            requests::NewAccount::parse(&v.jws)?;
        let echo = eab.clone();
        let outer_url = v.jws.url().unwrap_or("").to_string();
        let source = Some(crate::api::client_ip(&req, &state.engine.settings).to_string());
        let (acct, created) = blocking(&state, move |e, c| {
            let binding = match &eab {
                Some(b) if !only_existing => Some(check_eab(e, c, b, &outer_url, &thumb)?),
                _ => None,
            };
            let new = crate::acme::accounts::NewAccount {
                thumbprint: thumb,
                jwk: canonical,
                contacts,
                binding,
                only_return_existing: only_existing,
                source,
            };
            Ok(crate::acme::accounts::find_or_create(e, c, new)?)
        })
        .await?;
        let mut out = AcmeAccount::new(&acct, &base);
        if created && acct.eab_kid.is_some() {
            out.external_account_binding = Some(echo.unwrap_or(Value::Null));
        }
        let mut r = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
        Ok(r.insert_header(("Location", format!("{base}/acct/{}", acct.id)))
            .insert_header(("Link", format!("<{base}/directory>;rel=\"index\"")))
            .json(out))
    }
    .await;
    acme_response(&state, r).await
}

#[utoipa::path(post, path = "/acme/acct/{id}", tag = "ACME", operation_id = "acme_account", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account (updated contacts or deactivated)", body = AcmeAccount),
        JwsProblems))]
#[post("/acme/acct/{id}")]
pub async fn account_resource(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (jws, acct) = verify_account(&req, &state, payload).await?;
        let base = base_url(&req, &state);
        if acct.id.to_string() != path.into_inner() {
            return Err(Problem::unauthorized("this account URL is not the signer's"));
        }
        let acct = if jws.payload.is_empty() {
            acct
        } else {
            // The domain reads contact and status (RFC 8555 §7.3.2, §7.3.6).
            let body = requests::json(&jws)?;
            blocking(&state, move |_, c| Ok(crate::acme::accounts::update(c, &acct, &body)?)).await?
        };
        Ok(HttpResponse::Ok()
            .insert_header(("Link", format!("<{base}/directory>;rel=\"index\"")))
            .json(AcmeAccount::new(&acct, &base)))
    }
    .await;
    acme_response(&state, r).await
}

/// keyChange (RFC 8555 §7.3.5): the outer JWS is signed by the account's key, the inner one by
/// the new key and names the account and its old key.
#[utoipa::path(post, path = "/acme/key-change", tag = "ACME", operation_id = "acme_key_change", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    responses((status = 200, description = "The account, now bound to the new key", body = AcmeAccount),
        JwsProblems,
        (status = 409, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
#[post("/acme/key-change")]
pub async fn key_change(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = async {
        let (jws, account) = verify_account(&req, &state, payload).await?;
        let inner =
            Jws::parse(&jws.payload).map_err(|e| Problem::malformed(format!("the payload must be a JWS: {e:?}")))?;
        if inner.nonce().is_some() || inner.kid().is_some() {
            return Err(Problem::malformed("the inner JWS must carry a jwk and no nonce"));
        }
        if inner.url() != jws.url() {
            return Err(Problem::malformed("the inner JWS url differs from the outer one"));
        }
        let new_jwk = inner.jwk().cloned().ok_or_else(|| Problem::malformed("the inner JWS has no jwk"))?;
        let new_key = jws::key_from_jwk(&new_jwk)?;
        inner.verify(&new_key)?;
        let change = requests::KeyChange::parse(&inner)?;
        if change.account.as_deref() != jws.kid() {
            return Err(Problem::malformed("the inner payload names another account"));
        }
        let old = change.old_key.ok_or_else(|| Problem::malformed("oldKey is required"))?;
        if jws::thumbprint(&old)? != account.thumbprint {
            return Err(Problem::malformed("oldKey is not the account's current key"));
        }
        let new_thumb = jws::thumbprint(&new_jwk)?;
        let canonical = jws::canonical_jwk(&new_jwk)?;
        let base = base_url(&req, &state);
        let acct =
            blocking(&state, move |_, c| Ok(crate::acme::accounts::change_key(c, &account, &new_thumb, &canonical)?))
                .await?;
        Ok(HttpResponse::Ok().json(AcmeAccount::new(&acct, &base)))
    }
    .await;
    acme_response(&state, r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_queries() {
        assert_eq!(
            parse_action("action=reissue&orderId=7&dryRun=1").unwrap(),
            (Action::On(OrderAction::Reissue, 7), true)
        );
        assert!(parse_action("action=renew").is_err());
        assert_eq!(
            new_order_url("https://h/acme", &Action::On(OrderAction::Renew, 5), false),
            "https://h/acme/o/renew/5/new-order"
        );
        assert_eq!(new_order_url("https://h/acme", &Action::Enroll, true), "https://h/acme/dry-run/o/enroll/new-order");
        assert_eq!(new_order_url("https://h/acme", &Action::Auto, false), "https://h/acme/new-order");
    }
}
