//! The console's forms (POST): each checks the session's CSRF token and the same scope and
//! folder permission as its API twin, calls the same engine operation, and is audited like it
//! (source `console`).
use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{Chrome, db, enc, form, message, require_post, scoped_form, see_other};
use crate::api::observe;
use crate::app::AppState;
use crate::auth::login::LoginError;
use crate::auth::sessions;
use crate::engine::audit::action;
use crate::engine::inventory::CertRef;
use crate::engine::{RenewError, access, policy};
use crate::formats::{OutputFormat, OutputOptions, Pkcs12Profile};
use crate::vocab::Permission;

type Form = HashMap<String, String>;

fn field(f: &Form, k: &str) -> String {
    f.get(k).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The page of a certificate, with a message code.
fn back_to(guid: &str, ok: &str) -> HttpResponse {
    see_other(&format!("/console/certificates/{}?ok={ok}", enc(guid)))
}

/// An engine refusal as a page (the Venafi wording, which the engine's errors carry).
fn refused(s: &sessions::ConsoleSession, req: &HttpRequest, e: &RenewError) -> HttpResponse {
    let status = match e {
        RenewError::DoesNotExist(_) | RenewError::NoRights(_) | RenewError::PolicyDoesNotExist(_) => {
            StatusCode::NOT_FOUND
        }
        RenewError::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let text = match e {
        RenewError::Internal(_) => "The request could not be completed.".to_string(),
        other => crate::api::venafi::error::message(other),
    };
    message(status, Some(Chrome::new(s, "inventory", req)), "Refused", &text)
}

// --- sign-in and sign-out ----------------------------------------------------------------------

pub async fn login(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let f = match form(payload, &state).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let cookie = req.cookie(super::LOGIN_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    let given = f.get("csrf").cloned().unwrap_or_default();
    if cookie.is_empty() || !super::constant_time_eq(cookie.as_bytes(), given.as_bytes()) {
        return super::pages::login_page(
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Please sign in again.".into()),
            "",
        );
    }
    let username = field(&f, "username");
    let password = f.get("password").cloned().unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return super::pages::login_page(StatusCode::OK, Some("Enter your user name and password.".into()), &username);
    }
    let source = crate::api::client_ip(&req, &state.engine.settings);
    let old = req.cookie(super::SESSION_COOKIE).map(|c| c.value().to_string());
    let engine = state.engine.clone();
    let name = username.clone();
    let r = observe::block(move || -> Result<Result<String, LoginError>, String> {
        let mut c = engine.pool.get().map_err(|e| e.to_string())?;
        let user = match engine.login.check_password(&mut c, &name, &password, source, "console") {
            Ok(u) => u,
            Err(e) => return Ok(Err(e)),
        };
        // A sign-in always starts a new session: whatever the browser held is ended.
        if let Some(old) = old {
            sessions::end(&mut c, &old).map_err(|e| e.to_string())?;
        }
        Ok(Ok(sessions::start(&mut c, &user).map_err(|e| e.to_string())?))
    })
    .await;
    match r {
        Ok(Ok(Ok(secret))) => {
            let mut res = see_other("/console/");
            let _ = res.add_cookie(&super::session_cookie(&secret));
            let _ = res.add_removal_cookie(&super::expired_cookie(super::LOGIN_COOKIE));
            res
        }
        Ok(Ok(Err(LoginError::Throttled(d)))) => {
            let mut res = super::pages::login_page(
                StatusCode::TOO_MANY_REQUESTS,
                Some(format!(
                    "Too many failed sign-ins. Try again in {} seconds.",
                    crate::auth::login::retry_after_secs(d)
                )),
                &username,
            );
            if let Ok(v) =
                actix_web::http::header::HeaderValue::from_str(&crate::auth::login::retry_after_secs(d).to_string())
            {
                res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, v);
            }
            res
        }
        Ok(Ok(Err(LoginError::Busy))) => super::pages::login_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("The gateway is busy. Try again in a moment.".into()),
            &username,
        ),
        // 200, not 401: a form page carries no WWW-Authenticate challenge.
        Ok(Ok(Err(LoginError::Auth(_)))) => super::pages::login_page(
            StatusCode::OK,
            Some("Sign-in failed: wrong user name or password.".into()),
            &username,
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console sign-in failed");
            super::pages::login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("Sign-in is unavailable right now.".into()),
                &username,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "console sign-in failed");
            super::pages::login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("Sign-in is unavailable right now.".into()),
                &username,
            )
        }
    }
}

pub async fn logout(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let f = match form(payload, &state).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = require_post(&req, &state, &f).await {
        return r;
    }
    if let Some(secret) = req.cookie(super::SESSION_COOKIE).map(|c| c.value().to_string()) {
        let _ = db(&state, move |_, c| sessions::end(c, &secret).map_err(|e| e.to_string())).await;
    }
    let mut res = see_other("/console/login");
    let _ = res.add_removal_cookie(&super::expired_cookie(super::SESSION_COOKIE));
    res
}

// --- a certificate's actions -------------------------------------------------------------------

pub async fn renew(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "certificate", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let guid = path.into_inner();
    let principal = s.principal.clone();
    let g = guid.clone();
    let reenable = f.contains_key("reenable");
    let r = db(&state, move |e, c| {
        let o = match access::object(c, &principal.access, &CertRef::Guid(g.clone()), &g, Permission::Write) {
            Ok(o) => o,
            Err(err) => return Ok(Err(err)),
        };
        let req = crate::engine::renew::RenewRequest {
            certificate: CertRef::ObjectId(o.id),
            csr: None,
            subject: None,
            sans: None,
            reenable,
            certificate_data: None,
            not_after_max: None,
            access: principal.access.clone(),
            issue_as: None,
            object: Some(o.clone()),
        };
        Ok(e.renew(c, &req).map(|a| (a, o.dn)))
    })
    .await;
    let (accepted, dn) = match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            observe::note(&req, action::RENEW, guid.clone());
            return refused(&s, &req, &e);
        }
        Err(r) => return r,
    };
    observe::note(&req, action::RENEW, dn);
    crate::engine::console::invalidate_overview();
    // "Renew now": wait a little for the new certificate, like an API client with a short
    // WorkToDoTimeout; a longer job stays queued and the page shows it processing.
    let ok = match state.engine.wait_for_job(accepted.job_id, Duration::from_secs(10)).await {
        Ok(crate::engine::queue::JobOutcome::Done(_)) => "renewed-done",
        _ => "renewed",
    };
    back_to(&guid, ok)
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "certificate", Some("revoke")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let guid = path.into_inner();
    let reason: i32 = field(&f, "reason").parse().unwrap_or(0);
    if !(0..=5).contains(&reason) {
        return message(
            StatusCode::BAD_REQUEST,
            Some(Chrome::new(&s, "inventory", &req)),
            "Refused",
            "Unknown reason.",
        );
    }
    let comments = field(&f, "comments");
    let disable = f.contains_key("disable");
    let principal = s.principal.clone();
    let g = guid.clone();
    let r = db(&state, move |e, c| {
        let o = match access::object(c, &principal.access, &CertRef::Guid(g.clone()), &g, Permission::Write) {
            Ok(o) => o,
            Err(err) => return Ok(Err(err)),
        };
        Ok(e.revoke(c, &CertRef::ObjectId(o.id), reason, &comments, disable).map(|fresh| (fresh, o.dn)))
    })
    .await;
    match r {
        Ok(Ok((fresh, dn))) => {
            observe::note(&req, action::REVOKE, dn);
            crate::engine::console::invalidate_overview();
            back_to(&guid, if fresh { "revoked" } else { "already-revoked" })
        }
        Ok(Err(e)) => {
            observe::note(&req, action::REVOKE, guid.clone());
            refused(&s, &req, &e)
        }
        Err(r) => r,
    }
}

async fn set_disabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    guid: String,
    payload: web::Payload,
    disabled: bool,
) -> HttpResponse {
    let (s, _) = match scoped_form(&req, &state, payload, "certificate", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let principal = s.principal.clone();
    let g = guid.clone();
    let r = db(&state, move |e, c| {
        let o = match access::object(c, &principal.access, &CertRef::Guid(g.clone()), &g, Permission::Write) {
            Ok(o) => o,
            Err(err) => return Ok(Err(err)),
        };
        Ok(e.set_disabled(c, &o.dn, disabled))
    })
    .await;
    match r {
        Ok(Ok(dn)) => {
            tracing::info!(%dn, disabled, "certificate object disabled flag set from the console");
            crate::engine::console::invalidate_overview();
            back_to(&guid, if disabled { "disabled" } else { "enabled" })
        }
        Ok(Err(e)) => refused(&s, &req, &e),
        Err(r) => r,
    }
}

pub async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    set_disabled(req, state, path.into_inner(), payload, true).await
}

pub async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    set_disabled(req, state, path.into_inner(), payload, false).await
}

pub async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "certificate", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let guid = path.into_inner();
    let restart = f.contains_key("restart");
    let principal = s.principal.clone();
    let g = guid.clone();
    let r = db(&state, move |e, c| {
        let o = match access::object(c, &principal.access, &CertRef::Guid(g.clone()), &g, Permission::Write) {
            Ok(o) => o,
            Err(err) => return Ok(Err(err)),
        };
        Ok(e.reset(c, &CertRef::ObjectId(o.id), restart))
    })
    .await;
    match r {
        Ok(Ok(done)) => {
            crate::engine::console::invalidate_overview();
            back_to(&guid, if done { "reset" } else { "not-in-error" })
        }
        Ok(Err(e)) => refused(&s, &req, &e),
        Err(r) => r,
    }
}

/// Downloads the current certificate in a chosen format (POST only). A private key needs the
/// `key` permission, a file password, and the signed-in user's own password again.
pub async fn download(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let f = match form(payload, &state).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let s = match require_post(&req, &state, &f).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let guid = path.into_inner();
    let Some(format) = OutputFormat::parse(&field(&f, "format")) else {
        return message(
            StatusCode::BAD_REQUEST,
            Some(Chrome::new(&s, "inventory", &req)),
            "Refused",
            "Choose a format.",
        );
    };
    let with_key = f.contains_key("include_private_key");
    let opts = OutputOptions {
        format,
        include_chain: f.contains_key("include_chain"),
        root_first: false,
        include_private_key: with_key,
        password: f.get("password").filter(|p| !p.is_empty()).cloned(),
        keystore_password: None,
        friendly_name: None,
        pkcs12_profile: Pkcs12Profile::parse(&state.engine.settings.formats.pkcs12_profile)
            .unwrap_or(Pkcs12Profile::Modern),
    };
    if let Err(e) = crate::formats::validate(&opts) {
        return message(StatusCode::BAD_REQUEST, Some(Chrome::new(&s, "inventory", &req)), "Refused", &e.to_string());
    }
    let account_password = f.get("account_password").cloned().unwrap_or_default();
    let source = crate::api::client_ip(&req, &state.engine.settings);
    let principal = s.principal.clone();
    let g = guid.clone();
    let target = std::sync::Arc::new(std::sync::Mutex::new(guid.clone()));
    let named = target.clone();
    let r = db(&state, move |e, c| -> Result<Result<(crate::formats::Rendered, String, i64), String>, String> {
        let o = match access::object(c, &principal.access, &CertRef::Guid(g.clone()), &g, Permission::Read) {
            Ok(o) => o,
            Err(err) => return Ok(Err(crate::api::venafi::error::message(&err))),
        };
        // A refused download is audited under the object's DN, like a successful one.
        if let Ok(mut t) = named.lock() {
            t.clone_from(&o.dn);
        }
        if with_key {
            if !access::may_read_keys(&principal.access, &o.policy_dn) {
                return Ok(Err("Your account may not read private keys in this folder.".into()));
            }
            match e.login.check_password(c, &principal.user_name, &account_password, source, "console") {
                Ok(_) => {}
                Err(LoginError::Throttled(_)) => {
                    return Ok(Err("Too many failed password checks; try again later.".into()));
                }
                Err(_) => return Ok(Err("Your account password was not correct.".into())),
            }
        }
        let Some(v) = crate::engine::inventory::current_version(c, &o).map_err(|e| e.to_string())? else {
            return Ok(Err("This certificate has no issued version yet.".into()));
        };
        let bundle = crate::engine::inventory::CertBundle::load(&v, &e.master, with_key).map_err(|e| e.to_string())?;
        if with_key && bundle.key.is_none() {
            return Ok(Err("The gateway does not hold this certificate's private key.".into()));
        }
        let rendered = crate::formats::render(&bundle, &opts).map_err(|e| e.to_string())?;
        if with_key {
            tracing::info!(certificate = v.id, "private key released in a console download");
        }
        Ok(Ok((rendered, o.dn, v.id)))
    })
    .await;
    match r {
        Ok(Ok((rendered, dn, cert_id))) => {
            if with_key {
                observe::note_certificate(&req, action::KEY_DOWNLOAD, dn, Some(cert_id));
            }
            HttpResponse::Ok()
                .content_type(rendered.format.mime())
                .insert_header((
                    "Content-Disposition",
                    format!("attachment; filename=\"{}\"", rendered.filename.replace(['"', '\\', '\r', '\n'], "_")),
                ))
                .body(rendered.bytes)
        }
        Ok(Err(text)) => {
            if with_key {
                let t = target.lock().map(|t| t.clone()).unwrap_or(guid);
                observe::note(&req, action::KEY_DOWNLOAD, t);
            }
            message(StatusCode::FORBIDDEN, Some(Chrome::new(&s, "inventory", &req)), "Refused", &text)
        }
        Err(r) => r,
    }
}

// --- policy ------------------------------------------------------------------------------------

/// Sets (or clears, with an empty value) one setting of a folder, and its lock: needs
/// `configuration:manage` and `write` on the folder, like `PUT /api/v1/policies`.
pub async fn policy_edit(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "configuration", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let dn = match access::folder(&s.principal.access, &field(&f, "dn"), Permission::Write) {
        Ok(dn) => dn,
        Err(e) => return refused(&s, &req, &e),
    };
    observe::note(&req, action::POLICY_CHANGE, dn.clone());
    let key = field(&f, "key");
    let value = field(&f, "value");
    let locked = f.contains_key("locked");
    let d = dn.clone();
    let r = db(&state, move |_, c| {
        // An empty value removes this folder's own setting (the parent's applies again).
        let v = if value.is_empty() { serde_json::Value::Null } else { serde_json::Value::String(value) };
        let settings = std::collections::BTreeMap::from([(key.clone(), v)]);
        let (lock, unlock) = if locked { (vec![key], vec![]) } else { (vec![], vec![key]) };
        // A refusal (a bad value, an unknown key) rolls the transaction back and is shown.
        Ok(crate::db::write_tx(c, None, |tx| -> anyhow::Result<()> {
            policy::merge_folder(tx, &d, &settings, &lock, &unlock).map_err(anyhow::Error::msg)?;
            Ok(())
        })
        .map_err(|e| e.to_string()))
    })
    .await;
    match r {
        Ok(Ok(())) => {
            tracing::info!(dn = %dn, "policy folder updated from the console");
            see_other(&format!("/console/policies?dn={}&ok=policy", enc(&dn)))
        }
        Ok(Err(text)) => message(StatusCode::BAD_REQUEST, Some(Chrome::new(&s, "policies", &req)), "Refused", &text),
        Err(r) => r,
    }
}

// --- stores ------------------------------------------------------------------------------------

pub async fn retry_push(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let (s, _) = match scoped_form(&req, &state, payload, "certificate", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let guid = path.into_inner();
    let principal = s.principal.clone();
    let g = guid.clone();
    let r =
        db(&state, move |_, c| crate::engine::console::retry_push(c, &principal.access, &g).map_err(|e| e.to_string()))
            .await;
    match r {
        Ok(true) => {
            observe::note(&req, action::STORE_CHANGE, format!("store job {guid} retried"));
            see_other("/console/stores?ok=retried")
        }
        Ok(false) => message(
            StatusCode::NOT_FOUND,
            Some(Chrome::new(&s, "stores", &req)),
            "Not found",
            "There is no such failed job you may retry.",
        ),
        Err(r) => r,
    }
}

// --- ACME --------------------------------------------------------------------------------------

/// Creates an EAB key bound to a folder (shown once): whoever holds it may enroll in that
/// folder, so it needs `certificate:manage` and `write` there, as a token enrolling would.
pub async fn eab_create(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "certificate", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let dn = match access::folder(&s.principal.access, &field(&f, "folder"), Permission::Write) {
        Ok(dn) => dn,
        Err(e) => return refused(&s, &req, &e),
    };
    let d = dn.clone();
    let r = db(&state, move |e, c| Ok(crate::acme::db::accounts::create_eab(c, &e.master, &d, false, false))).await;
    match r {
        Ok(Ok((kid, hmac))) => {
            observe::note(&req, action::EAB_CHANGE, kid.clone());
            super::pages::acme_page(&req, &state, &s, Some((kid, hmac, dn))).await
        }
        Ok(Err(text)) => message(StatusCode::BAD_REQUEST, Some(Chrome::new(&s, "acme", &req)), "Refused", &text),
        Err(r) => r,
    }
}
