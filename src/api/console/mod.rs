//! The web console at `/console/`: server-rendered pages (askama templates compiled into the
//! binary, no script at all) over the same engine calls as the APIs, with the caller's access.
//!
//! Sessions are cookies (`__Host-`, HttpOnly, Secure, SameSite=Strict) whose secret the core
//! keeps only as a hash (`auth::sessions`); every form carries a CSRF token derived from the
//! session; every answer is `no-store` with a CSP that allows no script. The APIs never read the
//! cookie: they authenticate tokens only.
mod actions;
mod pages;
mod users;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::app::AppState;
use crate::auth::sessions::{self, ConsoleSession};

pub const SESSION_COOKIE: &str = "__Host-renewgate-session";
/// Before sign-in: the login form's CSRF token, double-submitted (cookie and field).
pub const LOGIN_COOKIE: &str = "__Host-renewgate-login";

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; object-src 'none'; base-uri 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/console").wrap(from_fn(security_headers)).get(|| async { see_other("/console/") }));
    cfg.service(
        web::scope("/console")
            .wrap(from_fn(security_headers))
            .route("/", web::get().to(pages::overview))
            .route("/login", web::get().to(pages::login_form))
            .route("/login", web::post().to(actions::login))
            .route("/logout", web::post().to(actions::logout))
            .route("/static/console.css", web::get().to(stylesheet))
            .route("/inventory", web::get().to(pages::inventory))
            .route("/certificates/{guid}", web::get().to(pages::certificate))
            .route("/certificates/{guid}/renew", web::post().to(actions::renew))
            .route("/certificates/{guid}/revoke", web::post().to(actions::revoke))
            .route("/certificates/{guid}/disable", web::post().to(actions::disable))
            .route("/certificates/{guid}/enable", web::post().to(actions::enable))
            .route("/certificates/{guid}/reset", web::post().to(actions::reset))
            .route("/certificates/{guid}/download", web::post().to(actions::download))
            .route("/policies", web::get().to(pages::policies))
            .route("/policies", web::post().to(actions::policy_edit))
            .route("/stores", web::get().to(pages::stores))
            .route("/stores/jobs/{guid}/retry", web::post().to(actions::retry_push))
            .route("/acme", web::get().to(pages::acme))
            .route("/acme/eab", web::post().to(actions::eab_create))
            .route("/audit", web::get().to(pages::audit))
            .route("/audit/export", web::get().to(pages::audit_export))
            .route("/users", web::get().to(users::page))
            .route("/users", web::post().to(users::add))
            .route("/users/{name}/disable", web::post().to(users::disable))
            .route("/users/{name}/enable", web::post().to(users::enable))
            .route("/users/{name}/password", web::post().to(users::password))
            .route("/tokens", web::post().to(users::token_create))
            .route("/tokens/{id}/revoke", web::post().to(users::token_revoke))
            .default_service(web::to(not_found_page)),
    );
}

/// Every console answer: not cached, not framed, no script, no sniffing, no referrer.
async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(res)
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(include_str!("console.css"))
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_string())).finish()
}

/// What every page's layout needs: who is signed in, what they may open, the form token.
pub struct Chrome {
    /// False on pages shown without a session (no navigation then).
    pub signed_in: bool,
    pub user: String,
    pub csrf: String,
    pub users_link: bool,
    /// The navigation entry of this page.
    pub active: &'static str,
    /// `(is_error, text)` shown at the top of the page.
    pub flash: Option<(bool, String)>,
}

impl Chrome {
    pub fn new(s: &ConsoleSession, active: &'static str, req: &HttpRequest) -> Chrome {
        Chrome {
            signed_in: true,
            user: s.principal.user_name.clone(),
            csrf: s.csrf.clone(),
            users_link: s.principal.scopes.allows("security", Some("manage")),
            active,
            flash: flash_of(req),
        }
    }

    pub fn anonymous() -> Chrome {
        Chrome {
            signed_in: false,
            user: String::new(),
            csrf: String::new(),
            users_link: false,
            active: "",
            flash: None,
        }
    }
}

/// Messages after an action, by code (`?ok=renewed`): fixed texts, so a link cannot put words
/// in the console's mouth.
fn flash_of(req: &HttpRequest) -> Option<(bool, String)> {
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).ok()?;
    if let Some(code) = q.get("ok") {
        let text = match code.as_str() {
            "renewed" => "Renewal queued.",
            "renewed-done" => "Renewed: the new certificate is listed below.",
            "revoked" => "Certificate revoked.",
            "already-revoked" => "The certificate was already revoked.",
            "disabled" => "Certificate disabled.",
            "enabled" => "Certificate enabled.",
            "reset" => "Error state cleared.",
            "not-in-error" => "The certificate was not in the error state.",
            "policy" => "Policy saved.",
            "retried" => "Store job queued again.",
            "user-added" => "User added.",
            "user-disabled" => "User disabled; their tokens and sessions are revoked.",
            "user-enabled" => "User enabled.",
            "password" => "Password set; the user's tokens and sessions are revoked.",
            "token-revoked" => "Token revoked.",
            _ => return None,
        };
        return Some((false, text.to_string()));
    }
    None
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
}

/// A page that only says something (a refusal, a missing object), with its status.
pub fn message(status: StatusCode, chrome: Option<Chrome>, title: &str, text: &str) -> HttpResponse {
    let chrome = match chrome {
        Some(mut c) => {
            c.flash = Some((true, text.to_string()));
            c
        }
        None => Chrome::anonymous(),
    };
    render_status(status, &MessagePage { chrome, title: title.to_string(), message: text.to_string() })
}

pub fn render(t: &impl Template) -> HttpResponse {
    render_status(StatusCode::OK, t)
}

pub fn render_status(status: StatusCode, t: &impl Template) -> HttpResponse {
    match t.render() {
        Ok(body) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            HttpResponse::InternalServerError().content_type("text/plain; charset=utf-8").body("page rendering failed")
        }
    }
}

async fn not_found_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let chrome = current(&req, &state).await.ok().flatten().map(|s| Chrome::new(&s, "", &req));
    message(StatusCode::NOT_FOUND, chrome, "Not found", "There is no such page.")
}

/// The session of this request, if any (and marks the request's actor for the audit trail).
pub async fn current(req: &HttpRequest, state: &AppState) -> Result<Option<ConsoleSession>, HttpResponse> {
    let Some(secret) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()) else {
        return Ok(None);
    };
    let engine = state.engine.clone();
    let found = crate::api::observe::block(move || -> Result<_, String> {
        let mut c = engine.pool.get().map_err(|e| e.to_string())?;
        sessions::find(&mut c, &secret).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match found {
        Ok(Some(s)) => {
            crate::api::observe::set_actor(req, &s.principal.user_name);
            Ok(Some(s))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "console session lookup failed");
            Err(message(StatusCode::SERVICE_UNAVAILABLE, None, "Unavailable", "The console cannot reach its database."))
        }
    }
}

/// The session, or the answer for a request without one (to the sign-in page).
pub async fn require(req: &HttpRequest, state: &AppState) -> Result<ConsoleSession, HttpResponse> {
    match current(req, state).await? {
        Some(s) => Ok(s),
        None => Err(see_other("/console/login")),
    }
}

/// The session of a form post whose `csrf` field matches it (403 otherwise).
pub async fn require_post(
    req: &HttpRequest,
    state: &AppState,
    form: &std::collections::HashMap<String, String>,
) -> Result<ConsoleSession, HttpResponse> {
    let s = require(req, state).await?;
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if !constant_time_eq(given.as_bytes(), s.csrf.as_bytes()) {
        tracing::warn!(path = %req.path(), "console form without a valid CSRF token refused");
        return Err(message(
            StatusCode::FORBIDDEN,
            Some(Chrome::new(&s, "", req)),
            "Refused",
            "This form has expired or did not come from the console. Reload the page and try again.",
        ));
    }
    Ok(s)
}

/// A form post's session and fields: signed in, its CSRF token valid, and holding
/// `scope[:restriction]` (the API twin's); otherwise the answer to send.
pub async fn scoped_form(
    req: &HttpRequest,
    state: &AppState,
    payload: web::Payload,
    scope: &str,
    restriction: Option<&str>,
) -> Result<(ConsoleSession, std::collections::HashMap<String, String>), HttpResponse> {
    let f = form(payload, state).await?;
    let s = require_post(req, state, &f).await?;
    if let Some(r) = need_scope(&s, req, scope, restriction) {
        return Err(r);
    }
    Ok((s, f))
}

/// Needs a scope (as the API twin does): the 403 page when the session lacks it.
pub fn need_scope(
    s: &ConsoleSession,
    req: &HttpRequest,
    scope: &str,
    restriction: Option<&str>,
) -> Option<HttpResponse> {
    if s.principal.scopes.allows(scope, restriction) {
        return None;
    }
    let needed = restriction.map(|r| format!("{scope}:{r}")).unwrap_or_else(|| scope.to_string());
    Some(message(
        StatusCode::FORBIDDEN,
        Some(Chrome::new(s, "", req)),
        "Not allowed",
        &format!("This needs the {needed} scope, which your account does not have."),
    ))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

pub fn session_cookie(secret: &str) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, secret.to_string())
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish()
}

pub fn expired_cookie(name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path("/").secure(true).http_only(true).same_site(SameSite::Strict).finish();
    c.make_removal();
    c
}

/// Reads a url-encoded form body (bounded like every other body).
pub async fn form(
    payload: web::Payload,
    state: &AppState,
) -> Result<std::collections::HashMap<String, String>, HttpResponse> {
    let bytes = crate::api::body::read_payload(payload, state.engine.settings.http.max_body_bytes)
        .await
        .map_err(|e| HttpResponse::BadRequest().content_type("text/plain; charset=utf-8").body(e.to_string()))?;
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .map(|v| v.into_iter().collect())
        .map_err(|_| HttpResponse::BadRequest().content_type("text/plain; charset=utf-8").body("invalid form"))
}

/// Runs blocking engine work on the pool with a connection.
pub async fn db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&crate::engine::Engine, &mut crate::db::DbConn) -> Result<T, String> + Send + 'static,
) -> Result<T, HttpResponse> {
    let engine = state.engine.clone();
    let r = crate::api::observe::block(move || {
        let mut c = engine.pool.get().map_err(|e| e.to_string())?;
        f(&engine, &mut c)
    })
    .await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console request failed");
            Err(message(StatusCode::SERVICE_UNAVAILABLE, None, "Unavailable", "The request could not be completed."))
        }
        Err(e) => {
            tracing::error!(error = %e, "console request failed");
            Err(message(StatusCode::SERVICE_UNAVAILABLE, None, "Unavailable", "The request could not be completed."))
        }
    }
}

/// Date-time as the console shows it (UTC, to the minute).
pub fn fmt_time(t: impl std::borrow::Borrow<chrono::NaiveDateTime>) -> String {
    t.borrow().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// URL-encodes a query value.
pub fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).map(|x| x[2..].to_string()).unwrap_or_default()
}
