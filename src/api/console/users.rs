//! Users and tokens (`security:manage`): list, add, disable, enable, set a password, create and
//! revoke tokens. A granter gives no more than it holds (`auth::check_grant`) and changes only
//! users it could have created (`auth::may_manage`); each change is audited as the CLI's is.
use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{Chrome, db, message, need_scope, render, require, scoped_form, see_other};
use crate::api::observe;
use crate::app::AppState;
use crate::auth::{self, Scopes};
use crate::engine::audit::action;
use crate::engine::console as view;

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub chrome: Chrome,
    pub users: Vec<view::UserRow>,
    pub tokens: Vec<view::TokenRow>,
    pub created_token: Option<(String, String, String)>,
}

impl UsersPage {
    pub fn when(&self, t: impl std::borrow::Borrow<chrono::NaiveDateTime>) -> String {
        super::fmt_time(t)
    }
    /// A user's folder grants as `DN:perms`, one per line ("every folder" when unlimited).
    pub fn grants(&self, folders: &str) -> String {
        if folders.trim().is_empty() {
            return "every folder".into();
        }
        serde_json::from_str::<Vec<auth::FolderGrant>>(folders)
            .map(|g| {
                g.iter()
                    .map(|g| format!("{}:{}", g.dn, g.perms.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
}

async fn show(
    req: &HttpRequest,
    state: &AppState,
    s: &auth::sessions::ConsoleSession,
    created: Option<(String, String, String)>,
) -> HttpResponse {
    let r = db(state, |_, c| view::users_page(c).map_err(|e| e.to_string())).await;
    match r {
        Ok((users, tokens)) => {
            render(&UsersPage { chrome: Chrome::new(s, "users", req), users, tokens, created_token: created })
        }
        Err(r) => r,
    }
}

pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = need_scope(&s, &req, "security", Some("manage")) {
        return r;
    }
    show(&req, &state, &s, None).await
}

fn refused(s: &auth::sessions::ConsoleSession, req: &HttpRequest, text: &str) -> HttpResponse {
    message(StatusCode::BAD_REQUEST, Some(Chrome::new(s, "users", req)), "Refused", text)
}

fn cli_like(actor: &str, action: &str, target: &str, detail: &str) -> crate::engine::audit::Entry {
    crate::engine::audit::Entry {
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: "success".into(),
        detail: detail.to_string(),
        source: "console".into(),
        ..Default::default()
    }
}

pub async fn add(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "security", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = f.get("username").map(|x| x.trim().to_string()).unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control() || c == ':') {
        return refused(&s, &req, "Give a user name (no control characters, no ':').");
    }
    let scope_text = f.get("scope").map(|x| x.trim()).filter(|x| !x.is_empty()).unwrap_or(auth::scopes::DEFAULT_USER);
    let scopes = match Scopes::parse(scope_text) {
        Ok(s) => s,
        Err(e) => return refused(&s, &req, &format!("Scope: {e}")),
    };
    let mut grants = vec![];
    for line in f.get("folders").map(String::as_str).unwrap_or("").lines().map(str::trim).filter(|l| !l.is_empty()) {
        match auth::parse_folder_grant(line) {
            Ok(g) => grants.push(g),
            Err(e) => return refused(&s, &req, &format!("Folder grant '{line}': {e}")),
        }
    }
    if let Err(e) = auth::check_grant(&s.principal, &scopes, &grants) {
        return refused(&s, &req, &e);
    }
    let actor = s.principal.user_name.clone();
    let n = name.clone();
    let r = db(&state, move |_, c| {
        Ok(match auth::add_user(c, &n, &password, &scopes, &grants) {
            Ok(u) => {
                crate::engine::audit::record(
                    c,
                    &cli_like(&actor, action::USER_CHANGE, &u.name, &format!("added, scope {}", u.max_scope)),
                )
                .map_err(|e| e.to_string())?;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        })
    })
    .await;
    match r {
        Ok(Ok(())) => see_other("/console/users?ok=user-added"),
        Ok(Err(text)) => refused(&s, &req, &text),
        Err(r) => r,
    }
}

/// What a change of a user answers with (`?ok=` code), records, and whether one may make it to
/// one's own account.
struct UserChange {
    ok: &'static str,
    detail: &'static str,
    on_self: bool,
}

/// Runs `change` on a user the granter may manage, audits it, and answers with `ok`.
async fn change_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: String,
    payload: web::Payload,
    what: UserChange,
    change: impl FnOnce(&mut crate::db::DbConn, &str, &HashMap<String, String>) -> Result<(), String> + Send + 'static,
) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "security", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let principal = s.principal.clone();
    let r = db(&state, move |_, c| {
        let Some(target) = auth::find_user(c, &name).map_err(|e| e.to_string())? else {
            return Ok(Err(format!("user {name} does not exist")));
        };
        if let Err(e) = auth::may_manage(&principal, &target) {
            return Ok(Err(e));
        }
        if !what.on_self && target.id == principal.user_id {
            return Ok(Err("You cannot do this to your own account (it would lock you out).".into()));
        }
        if let Err(e) = change(c, &target.name, &f) {
            return Ok(Err(e));
        }
        crate::engine::audit::record(
            c,
            &cli_like(&principal.user_name, action::USER_CHANGE, &target.name, what.detail),
        )
        .map_err(|e| e.to_string())?;
        Ok(Ok(()))
    })
    .await;
    match r {
        Ok(Ok(())) => see_other(&format!("/console/users?ok={}", what.ok)),
        Ok(Err(text)) => refused(&s, &req, &text),
        Err(r) => r,
    }
}

pub async fn disable(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    change_user(
        req,
        state,
        path.into_inner(),
        payload,
        UserChange { ok: "user-disabled", detail: "disabled, tokens revoked", on_self: false },
        |c, n, _| auth::set_user_disabled(c, n, true).map(|_| ()).map_err(|e| e.to_string()),
    )
    .await
}

pub async fn enable(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    change_user(
        req,
        state,
        path.into_inner(),
        payload,
        UserChange { ok: "user-enabled", detail: "enabled", on_self: true },
        |c, n, _| auth::set_user_disabled(c, n, false).map(|_| ()).map_err(|e| e.to_string()),
    )
    .await
}

pub async fn password(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    change_user(
        req,
        state,
        path.into_inner(),
        payload,
        UserChange { ok: "password", detail: "password changed, tokens revoked", on_self: true },
        |c, n, f| {
            let pw = f.get("password").cloned().unwrap_or_default();
            auth::set_password(c, n, &pw).map(|_| ()).map_err(|e| e.to_string())
        },
    )
    .await
}

/// Creates a token for a user (shown once), within that user's scope and the granter's.
pub async fn token_create(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let (s, f) = match scoped_form(&req, &state, payload, "security", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = f.get("user").map(|x| x.trim().to_string()).unwrap_or_default();
    let scopes = match Scopes::parse(f.get("scope").map(String::as_str).unwrap_or("")) {
        Ok(sc) => sc,
        Err(e) => return refused(&s, &req, &format!("Scope: {e}")),
    };
    let principal = s.principal.clone();
    let lifetime = crate::settings::parse_duration(&state.engine.settings.auth.token_lifetime)
        .unwrap_or(std::time::Duration::from_secs(3600));
    let r = db(&state, move |_, c| {
        let Some(target) = auth::find_user(c, &name).map_err(|e| e.to_string())? else {
            return Ok(Err(format!("user {name} does not exist")));
        };
        if let Err(e) = auth::may_manage(&principal, &target) {
            return Ok(Err(e));
        }
        if let Some(missing) = principal.scopes.first_missing(&scopes) {
            return Ok(Err(format!("you cannot grant {missing}: you do not hold it")));
        }
        let t = match auth::issue_token(c, &target, &scopes, "renewgate-console", "console", lifetime, None) {
            Ok(t) => t,
            Err(auth::AuthError::Scope(m)) => return Ok(Err(format!("{} may not hold {m}", target.name))),
            Err(e) => return Err(e.to_string()),
        };
        crate::engine::audit::record(
            c,
            &cli_like(
                &principal.user_name,
                action::TOKEN_CHANGE,
                &target.name,
                &format!("token created, scope {}, expires {}", t.scope, t.expires_at),
            ),
        )
        .map_err(|e| e.to_string())?;
        Ok(Ok((t.access_token, target.name, super::fmt_time(t.expires_at))))
    })
    .await;
    match r {
        Ok(Ok(created)) => {
            observe::set_actor(&req, &s.principal.user_name);
            show(&req, &state, &s, Some(created)).await
        }
        Ok(Err(text)) => refused(&s, &req, &text),
        Err(r) => r,
    }
}

pub async fn token_revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    payload: web::Payload,
) -> HttpResponse {
    let (s, _) = match scoped_form(&req, &state, payload, "security", Some("manage")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let id = path.into_inner();
    let principal = s.principal.clone();
    let r = db(&state, move |_, c| {
        let Some(owner) = view::token_owner(c, id).map_err(|e| e.to_string())? else {
            return Ok(Err("no such token".to_string()));
        };
        if let Err(e) = auth::may_manage(&principal, &owner) {
            return Ok(Err(e));
        }
        if view::revoke_token_by_id(c, id).map_err(|e| e.to_string())? {
            crate::engine::audit::record(
                c,
                &cli_like(&principal.user_name, action::TOKEN_CHANGE, &owner.name, "token revoked"),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(Ok(()))
    })
    .await;
    match r {
        Ok(Ok(())) => see_other("/console/users?ok=token-revoked"),
        Ok(Err(text)) => refused(&s, &req, &text),
        Err(r) => r,
    }
}
