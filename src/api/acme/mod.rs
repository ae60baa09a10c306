//! The ACME dialect (RFC 8555) at `/acme`. This slice: the directory (with DigiCert-style
//! `?action=…&orderId=N` carried into the newOrder URL), nonces shared through the database,
//! accounts with external account binding (EAB keys bound to a policy subtree), and JWS
//! verification (RS256, ES256, ES384, EdDSA). Orders, authorizations, challenges, finalize,
//! certificates, revocation and ARI are the next slice.
pub mod ari;
pub mod doc;
pub mod dry_run;
pub mod jws;
pub mod orders;
pub mod problem;
pub mod store;
pub mod validation;

use actix_web::{HttpRequest, HttpResponse, web};
#[allow(unused_imports)]
use doc::*;
use serde_json::{Value, json};

use crate::api::body::read_payload;
use crate::app::AppState;
use jws::Jws;
pub use problem::Problem;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/acme/directory", web::get().to(directory))
        .route("/acme/dry-run/directory", web::get().to(directory))
        .route("/acme/new-nonce", web::head().to(new_nonce_head))
        .route("/acme/new-nonce", web::get().to(new_nonce_get))
        .route("/acme/new-account", web::post().to(new_account))
        .route("/acme/acct/{id}", web::post().to(account))
        .route("/acme/key-change", web::post().to(key_change));
    orders::configure(cfg);
    ari::configure(cfg);
}

/// The base URL clients see: `acme.public_base_url`, else the request's scheme and Host.
pub fn base_url(req: &HttpRequest, state: &AppState) -> String {
    if let Some(b) = state.engine.settings.acme.public_base_url.as_deref().filter(|b| !b.is_empty()) {
        return b.trim_end_matches('/').to_string();
    }
    let ci = req.connection_info();
    format!("{}://{}/acme", ci.scheme(), ci.host())
}

/// An automation action from the directory query (§4.2 of the reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Auto,
    Renew(i64),
    Reissue(i64),
    Duplicate(i64),
    Enroll,
}

/// Checks `action`/`orderId`: unknown action, an orderId that is not 1–19 digits, missing for
/// renew/reissue/duplicate, or present with enroll or without an action → `malformed`.
pub fn parse_action(query: &str) -> Result<(Action, bool), Problem> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let dry = get("dryRun").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let order = match get("orderId") {
        Some(o) => {
            if o.is_empty() || o.len() > 19 || !o.chars().all(|c| c.is_ascii_digit()) {
                return Err(Problem::malformed(format!("orderId must be 1 to 19 digits, not {o:?}")));
            }
            Some(o.parse::<i64>().map_err(|_| Problem::malformed("orderId is out of range"))?)
        }
        None => None,
    };
    let action = match (get("action").as_deref(), order) {
        (None, None) => Action::Auto,
        (None, Some(_)) => return Err(Problem::malformed("orderId needs an action (renew, reissue or duplicate)")),
        (Some("renew"), Some(n)) => Action::Renew(n),
        (Some("reissue"), Some(n)) => Action::Reissue(n),
        (Some("duplicate"), Some(n)) => Action::Duplicate(n),
        (Some("enroll"), None) => Action::Enroll,
        (Some("enroll"), Some(_)) => return Err(Problem::malformed("action=enroll takes no orderId")),
        (Some(a @ ("renew" | "reissue" | "duplicate")), None) => {
            return Err(Problem::malformed(format!("action={a} needs an orderId")));
        }
        (Some(a), _) => {
            return Err(Problem::malformed(format!("unknown action {a:?}: use renew, reissue, duplicate or enroll")));
        }
    };
    Ok((action, dry))
}

/// The newOrder URL a directory lists for its query.
pub fn new_order_url(base: &str, action: &Action, dry: bool) -> String {
    let root = if dry { format!("{base}/dry-run") } else { base.to_string() };
    match action {
        Action::Auto => format!("{root}/new-order"),
        Action::Renew(n) => format!("{root}/o/renew/{n}/new-order"),
        Action::Reissue(n) => format!("{root}/o/reissue/{n}/new-order"),
        Action::Duplicate(n) => format!("{root}/o/duplicate/{n}/new-order"),
        Action::Enroll => format!("{root}/o/enroll/new-order"),
    }
}

async fn fresh_nonce(state: &AppState) -> Result<String, Problem> {
    let engine = state.engine.clone();
    web::block(move || -> Result<String, Problem> {
        let mut c = engine.pool.get()?;
        store::issue_nonce(&mut c)
    })
    .await?
}

fn with_nonce(mut p: Problem, nonce: Option<String>) -> Problem {
    p.nonce = nonce;
    p
}

/// Runs an ACME handler and stamps a fresh `Replay-Nonce` on its answer, error or not.
pub(crate) async fn acme_response(state: &AppState, r: Result<HttpResponse, Problem>) -> Result<HttpResponse, Problem> {
    let nonce = fresh_nonce(state).await.ok();
    match r {
        Ok(mut resp) => {
            if let Some(n) = nonce
                && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&n)
            {
                resp.headers_mut().insert(actix_web::http::header::HeaderName::from_static("replay-nonce"), v);
            }
            Ok(resp)
        }
        Err(p) => Err(with_nonce(p, nonce)),
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
pub async fn directory(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let base = base_url(&req, &state);
    let (action, mut dry) = parse_action(req.query_string())?;
    if req.path().starts_with("/acme/dry-run/") {
        dry = true;
    }
    let body = json!({
        "newNonce": format!("{base}/new-nonce"),
        "newAccount": format!("{base}/new-account"),
        "newOrder": new_order_url(&base, &action, dry),
        "revokeCert": format!("{base}/revoke-cert"),
        "keyChange": format!("{base}/key-change"),
        "renewalInfo": format!("{base}/renewal-info"),
        "meta": {"externalAccountRequired": state.engine.settings.acme.eab_required},
    });
    Ok(HttpResponse::Ok().content_type("application/json").body(body.to_string()))
}

#[utoipa::path(head, path = "/acme/new-nonce", tag = "ACME", operation_id = "acme_new_nonce_head",
    responses((status = 200, description = "A fresh nonce in Replay-Nonce",
        headers(("Replay-Nonce" = String, description = "A nonce for the next JWS")))))]
pub async fn new_nonce_head(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let n = fresh_nonce(&state).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Replay-Nonce", n))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Link", format!("<{}/directory>;rel=\"index\"", base_url(&req, &state))))
        .finish())
}

pub async fn new_nonce_get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    let n = fresh_nonce(&state).await?;
    Ok(HttpResponse::NoContent()
        .insert_header(("Replay-Nonce", n))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Link", format!("<{}/directory>;rel=\"index\"", base_url(&req, &state))))
        .finish())
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
    pub account: Option<store::Account>,
}

/// The RFC 8555 §6 pipeline: content type, flattened JWS, alg, key (jwk or kid), signature, url,
/// then the nonce (after the signature, so junk does not burn nonces).
pub async fn verify_request(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
    jwk_allowed: bool,
) -> Result<Verified, Problem> {
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
    let (key, account) = match (jws.jwk(), jws.kid()) {
        (Some(_), Some(_)) => return Err(Problem::malformed("the protected header has both 'jwk' and 'kid'")),
        (None, None) => return Err(Problem::malformed("the protected header has neither 'jwk' nor 'kid'")),
        (Some(jwk), None) => {
            if !jwk_allowed {
                return Err(Problem::malformed("this resource needs a 'kid' (an account URL), not a 'jwk'"));
            }
            (jws::key_from_jwk(jwk)?, None)
        }
        (None, Some(kid)) => {
            if jwk_allowed && req.path() == "/acme/new-account" {
                return Err(Problem::malformed("newAccount needs a 'jwk'"));
            }
            let id = kid
                .rsplit_once("/acct/")
                .and_then(|(_, id)| id.parse::<i64>().ok())
                .ok_or_else(|| Problem::new(400, "accountDoesNotExist", format!("no account {kid}")))?;
            let engine = state.engine.clone();
            let acct = web::block(move || -> Result<Option<store::Account>, Problem> {
                let mut c = engine.pool.get()?;
                store::account(&mut c, id)
            })
            .await??
            .ok_or_else(|| Problem::new(400, "accountDoesNotExist", format!("no account {kid}")))?;
            if acct.status != "valid" {
                return Err(Problem::new(401, "unauthorized", format!("account {kid} is {}", acct.status)));
            }
            let jwk: Value = serde_json::from_str(&acct.jwk).map_err(|e| Problem::server(e.to_string()))?;
            (jws::key_from_jwk(jwk.as_object().ok_or_else(|| Problem::server("stored JWK"))?)?, Some(acct))
        }
    };
    jws.verify(&key)?;
    let want = request_url(req, state);
    if jws.url() != Some(want.as_str()) {
        return Err(Problem::new(
            401,
            "unauthorized",
            format!("the JWS url {:?} is not the request URL {want}", jws.url().unwrap_or("")),
        ));
    }
    let nonce =
        jws.nonce().ok_or_else(|| Problem::new(400, "badNonce", "the protected header has no nonce"))?.to_string();
    if jws::b64u_decode(&nonce).is_err() {
        return Err(Problem::malformed("the nonce is not base64url"));
    }
    let engine = state.engine.clone();
    let fresh = web::block(move || -> Result<bool, Problem> {
        let mut c = engine.pool.get()?;
        store::consume_nonce(&mut c, &nonce)
    })
    .await??;
    if !fresh {
        return Err(Problem::new(400, "badNonce", "the nonce is unknown, used or expired"));
    }
    // Authenticated from here on: the audit trail may record what this request does.
    crate::api::observe::set_actor(req, "acme");
    Ok(Verified { jws, account })
}

/// The pipeline for resources that need an account (`kid`): the verified JWS and its account.
pub async fn verify_account(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
) -> Result<(Jws, store::Account), Problem> {
    let v = verify_request(req, state, payload, false).await?;
    // With jwk refused, a verified request always names its account.
    let account = v.account.ok_or_else(|| Problem::malformed("this resource needs a 'kid' (an account URL)"))?;
    Ok((v.jws, account))
}

fn account_json(a: &store::Account, base: &str) -> Value {
    let contact: Value = serde_json::from_str(&a.contact).unwrap_or(json!([]));
    json!({"status": a.status, "contact": contact, "orders": format!("{base}/acct/{}/orders", a.id)})
}

fn check_contacts(v: Option<&Value>) -> Result<Vec<String>, Problem> {
    let Some(v) = v else { return Ok(vec![]) };
    let arr = v.as_array().ok_or_else(|| Problem::malformed("contact must be an array of URLs"))?;
    let mut out = vec![];
    for c in arr {
        let s = c.as_str().ok_or_else(|| Problem::malformed("contact entries must be strings"))?;
        let Some(addr) = s.strip_prefix("mailto:") else {
            return Err(Problem::new(
                400,
                "unsupportedContact",
                format!("only mailto: contacts are supported, not {s}"),
            ));
        };
        if !addr.contains('@') || addr.contains(',') || addr.starts_with('@') || addr.ends_with('@') {
            return Err(Problem::new(400, "invalidContact", format!("{s} is not an e-mail address")));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

#[utoipa::path(post, path = "/acme/new-account", tag = "ACME", operation_id = "acme_new_account", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    description = "Creates (201) or finds (200, `onlyReturnExisting`) the account of the JWS key; EAB required by default.",
    responses((status = 201, description = "Account created", body = AcmeAccount),
        (status = 200, description = "The key's existing account", body = AcmeAccount),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn new_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = new_account_inner(&req, &state, payload).await;
    acme_response(&state, r).await
}

async fn new_account_inner(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let v = verify_request(req, state, payload, true).await?;
    let base = base_url(req, state);
    let body: Value = if v.jws.payload.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&v.jws.payload)
            .map_err(|e| Problem::malformed(format!("the payload is not JSON: {e}")))?
    };
    let jwk = v.jws.jwk().cloned().ok_or_else(|| Problem::malformed("newAccount needs a 'jwk'"))?;
    let thumb = jws::thumbprint(&jwk)?;
    let only_existing = body.get("onlyReturnExisting").and_then(|x| x.as_bool()).unwrap_or(false);
    let contacts = check_contacts(body.get("contact"))?;
    let eab = body.get("externalAccountBinding").cloned();
    let outer_url = v.jws.url().unwrap_or("").to_string();
    let eab_required = state.engine.settings.acme.eab_required;
    let canonical = jws::canonical_jwk(&jwk)?;
    let engine = state.engine.clone();
    let (acct, created) = web::block(move || -> Result<(store::Account, bool), Problem> {
        let mut c = engine.pool.get()?;
        if let Some(a) = store::account_by_thumbprint(&mut c, &thumb)? {
            return Ok((a, false));
        }
        if only_existing {
            return Err(Problem::new(400, "accountDoesNotExist", "no account exists for this key"));
        }
        let binding = match eab {
            Some(e) => Some(store::check_eab(&mut c, &engine.master, &e, &outer_url, &thumb)?),
            None if eab_required => {
                return Err(Problem::new(
                    403,
                    "externalAccountRequired",
                    "an external account binding is required: get a key with `renewgate acme eab create`",
                ));
            }
            None => None,
        };
        let a = store::create_account(&mut c, &thumb, &canonical, &contacts, binding)?;
        Ok((a, true))
    })
    .await??;
    let mut body = account_json(&acct, &base);
    if created && acct.eab_kid.is_some() {
        body["externalAccountBinding"] =
            v.jws.payload_json().get("externalAccountBinding").cloned().unwrap_or(Value::Null);
    }
    let mut r = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(r.insert_header(("Location", format!("{base}/acct/{}", acct.id)))
        .insert_header(("Link", format!("<{base}/directory>;rel=\"index\"")))
        .content_type("application/json")
        .body(body.to_string()))
}

#[utoipa::path(post, path = "/acme/acct/{id}", tag = "ACME", operation_id = "acme_account", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account (updated contacts or deactivated)", body = AcmeAccount),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 403, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
pub async fn account(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let r = account_inner(&req, &state, path.into_inner(), payload).await;
    acme_response(&state, r).await
}

async fn account_inner(
    req: &HttpRequest,
    state: &AppState,
    id: String,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let (jws, acct) = verify_account(req, state, payload).await?;
    let base = base_url(req, state);
    if acct.id.to_string() != id {
        return Err(Problem::unauthorized("this account URL is not the signer's"));
    }
    let mut acct = acct;
    if !jws.payload.is_empty() {
        let body: Value = serde_json::from_slice(&jws.payload)
            .map_err(|e| Problem::malformed(format!("the payload is not JSON: {e}")))?;
        let contacts = match body.get("contact") {
            Some(c) => Some(check_contacts(Some(c))?),
            None => None,
        };
        let deactivate = match body.get("status").and_then(|s| s.as_str()) {
            Some("deactivated") => true,
            Some(other) => {
                return Err(Problem::malformed(format!(
                    "an account's status can only be set to deactivated, not {other}"
                )));
            }
            None => false,
        };
        let engine = state.engine.clone();
        let aid = acct.id;
        acct = web::block(move || -> Result<store::Account, Problem> {
            let mut c = engine.pool.get()?;
            store::update_account(&mut c, aid, contacts, deactivate)
        })
        .await??;
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Link", format!("<{base}/directory>;rel=\"index\"")))
        .content_type("application/json")
        .body(account_json(&acct, &base).to_string()))
}

/// keyChange (RFC 8555 §7.3.5): the outer JWS is signed by the account's key, the inner one by
/// the new key and names the account and its old key.
#[utoipa::path(post, path = "/acme/key-change", tag = "ACME", operation_id = "acme_key_change", request_body(content = FlattenedJws, content_type = "application/jose+json"),
    responses((status = 200, description = "The account, now bound to the new key", body = AcmeAccount),
        (status = 400, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 401, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json"),
        (status = 409, description = "A problem document", body = AcmeProblem, content_type = "application/problem+json")))]
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
        let body = inner.payload_json();
        if body.get("account").and_then(|a| a.as_str()) != jws.kid() {
            return Err(Problem::malformed("the inner payload names another account"));
        }
        let old =
            body.get("oldKey").and_then(|k| k.as_object()).ok_or_else(|| Problem::malformed("oldKey is required"))?;
        if jws::thumbprint(old)? != account.thumbprint {
            return Err(Problem::malformed("oldKey is not the account's current key"));
        }
        let new_thumb = jws::thumbprint(&new_jwk)?;
        let canonical = jws::canonical_jwk(&new_jwk)?;
        let base = base_url(&req, &state);
        let engine = state.engine.clone();
        let aid = account.id;
        let acct = web::block(move || -> Result<store::Account, Problem> {
            let mut c = engine.pool.get()?;
            if let Some(other) = store::account_by_thumbprint(&mut c, &new_thumb)? {
                let mut p =
                    Problem::new(409, "malformed", format!("the new key already belongs to account {}", other.id));
                p.detail.push_str(" (see Location)");
                return Err(p);
            }
            store::replace_key(&mut c, aid, &new_thumb, &canonical)
        })
        .await??;
        Ok(HttpResponse::Ok().content_type("application/json").body(account_json(&acct, &base).to_string()))
    }
    .await;
    acme_response(&state, r).await
}

impl Jws {
    pub fn payload_json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_queries() {
        assert_eq!(parse_action("").unwrap(), (Action::Auto, false));
        assert_eq!(parse_action("action=renew&orderId=555123456").unwrap(), (Action::Renew(555123456), false));
        assert_eq!(parse_action("action=reissue&orderId=7&dryRun=1").unwrap(), (Action::Reissue(7), true));
        assert_eq!(parse_action("action=duplicate&orderId=8").unwrap().0, Action::Duplicate(8));
        assert_eq!(parse_action("action=enroll").unwrap().0, Action::Enroll);
        for bad in [
            "action=renew",
            "orderId=5",
            "action=enroll&orderId=5",
            "action=fly&orderId=5",
            "action=renew&orderId=x1",
            "action=renew&orderId=12345678901234567890",
        ] {
            assert!(parse_action(bad).is_err(), "{bad}");
        }
        assert_eq!(new_order_url("https://h/acme", &Action::Renew(5), false), "https://h/acme/o/renew/5/new-order");
        assert_eq!(new_order_url("https://h/acme", &Action::Enroll, true), "https://h/acme/dry-run/o/enroll/new-order");
        assert_eq!(new_order_url("https://h/acme", &Action::Auto, false), "https://h/acme/new-order");
    }
}
