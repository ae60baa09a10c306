//! The console's pages (GET): each reads through the engine with the signed-in user's access.
use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{Chrome, db, enc, fmt_time, message, render, require};
use crate::app::AppState;
use crate::engine::audit::{self, AuditRecord};
use crate::engine::console::{self as view, InventoryFilter};
use crate::engine::policy;
use crate::vocab::Permission;

type Query = web::Query<HashMap<String, String>>;

fn q_get(q: &Query, k: &str) -> Option<String> {
    q.get(k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

// --- sign-in -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub error: Option<String>,
    pub username: String,
}

pub async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Ok(Some(_)) = super::current(&req, &state).await {
        return super::see_other("/console/");
    }
    login_page(StatusCode::OK, None, "")
}

/// The sign-in form with a fresh double-submit token (cookie and hidden field).
pub fn login_page(status: StatusCode, error: Option<String>, username: &str) -> HttpResponse {
    let token = crate::secrets::random_b64(24).replace(['+', '/', '='], "x");
    let mut res =
        super::render_status(status, &LoginPage { csrf: token.clone(), error, username: username.to_string() });
    let cookie = actix_web::cookie::Cookie::build(super::LOGIN_COOKIE, token)
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Strict)
        .finish();
    let _ = res.add_cookie(&cookie);
    res
}

// --- overview ----------------------------------------------------------------------------------

pub struct Bar {
    pub week: usize,
    pub count: i64,
    pub x: i64,
    pub y: i64,
    pub height: i64,
    pub label: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub chrome: Chrome,
    pub o: std::sync::Arc<view::Overview>,
    pub bars: Vec<Bar>,
    pub max: i64,
    pub oldest: String,
    pub computed: String,
    pub chart_total: i64,
}

/// Chart geometry: 13 bars in a 660×220 box, scaled to the largest week.
fn bars(o: &view::Overview) -> (Vec<Bar>, i64) {
    let max = o.weeks.iter().copied().max().unwrap_or(0).max(1);
    let bars = o
        .weeks
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let h = n * 180 / max;
            Bar {
                week: i,
                count: n,
                x: 40 + i as i64 * 48,
                y: 200 - h,
                height: h,
                label: o.week_starts.get(i).map(|t| t.format("%m-%d").to_string()).unwrap_or_default(),
            }
        })
        .collect();
    (bars, max)
}

pub async fn overview(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let access = s.principal.access.clone();
    let o = match db(&state, move |_, c| view::overview(c, &access).map_err(|e| e.to_string())).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (bars, max) = bars(&o);
    let oldest = o
        .oldest_job
        .map(|t| {
            let age = (crate::db::now() - t).num_seconds().max(0);
            format!("{} ({} s ago)", fmt_time(t), age)
        })
        .unwrap_or_else(|| "none".into());
    let chart_total = o.weeks.iter().sum();
    render(&OverviewPage {
        chrome: Chrome::new(&s, "overview", &req),
        computed: o.computed_at.format("%H:%M:%S UTC").to_string(),
        o,
        bars,
        max,
        oldest,
        chart_total,
    })
}

// --- inventory ---------------------------------------------------------------------------------

pub struct InvRow {
    pub guid: String,
    pub dn: String,
    pub name: String,
    pub folder: String,
    pub state: String,
    pub serial: String,
    pub expires: String,
    pub issuer: String,
}

#[derive(Template)]
#[template(path = "inventory.html")]
pub struct InventoryPage {
    pub chrome: Chrome,
    pub rows: Vec<InvRow>,
    pub q: String,
    pub folder: String,
    pub state: String,
    pub issuer: String,
    pub expires: String,
    pub folders: Vec<String>,
    pub states: Vec<&'static str>,
    pub next: Option<String>,
    pub first_page: bool,
    pub kind: String,
}

pub async fn inventory(req: HttpRequest, state: web::Data<AppState>, q: Query) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = InventoryFilter {
        q: q_get(&q, "q"),
        folder: q_get(&q, "folder"),
        state: q_get(&q, "state"),
        issuer: q_get(&q, "issuer"),
        expires_within_days: q_get(&q, "expires").and_then(|d| d.parse().ok()),
        after: q_get(&q, "after"),
        limit: view::PAGE,
    };
    let access = s.principal.access.clone();
    let f2 = filter.clone();
    let (page, folders) = match db(&state, move |_, c| {
        let page = view::inventory(c, &access, &f2).map_err(|e| e.to_string())?;
        let folders = view::folder_names(c, &access).map_err(|e| e.to_string())?;
        Ok((page, folders))
    })
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let base: Vec<(&str, String)> = [
        ("q", filter.q.clone()),
        ("folder", filter.folder.clone()),
        ("state", filter.state.clone()),
        ("issuer", filter.issuer.clone()),
        ("expires", filter.expires_within_days.map(|d| d.to_string())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let next = page.next.as_ref().map(|after| {
        let mut params = base.clone();
        params.push(("after", after.clone()));
        format!("/console/inventory?{}", serde_urlencoded::to_string(&params).unwrap_or_default())
    });
    let kind = match &page.kind {
        view::SearchKind::None => "",
        view::SearchKind::Hex(_) => "serial or thumbprint",
        view::SearchKind::DnPrefix(_) => "DN prefix",
        view::SearchKind::NamePrefix(_) => "name prefix (CN, SAN or object name)",
        view::SearchKind::Substring(_) => "substring",
    }
    .to_string();
    let rows = page
        .rows
        .into_iter()
        .map(|r| InvRow {
            guid: r.object.guid.trim_matches(['{', '}']).to_string(),
            state: if r.object.disabled { "disabled".into() } else { r.object.state.to_string() },
            dn: r.object.dn,
            name: r.object.name,
            folder: r.object.policy_dn,
            serial: r.serial.unwrap_or_default(),
            expires: r.not_after.map(fmt_time).unwrap_or_default(),
            issuer: r.issuer.unwrap_or_default(),
        })
        .collect();
    render(&InventoryPage {
        chrome: Chrome::new(&s, "inventory", &req),
        rows,
        q: filter.q.unwrap_or_default(),
        folder: filter.folder.unwrap_or_default(),
        state: filter.state.unwrap_or_default(),
        issuer: filter.issuer.unwrap_or_default(),
        expires: filter.expires_within_days.map(|d| d.to_string()).unwrap_or_default(),
        folders,
        states: vec!["active", "processing", "error", "disabled"],
        next,
        first_page: filter.after.is_none(),
        kind,
    })
}

// --- a certificate -----------------------------------------------------------------------------

pub struct VersionView {
    pub serial: String,
    pub thumbprint: String,
    pub not_before: String,
    pub not_after: String,
    pub issuer: String,
    pub key_type: String,
    pub sans: String,
    pub current: bool,
    pub revoked: bool,
}

pub struct RunView {
    pub store: String,
    pub alias: String,
    pub operation: String,
    pub state: String,
    pub attempts: i32,
    pub message: String,
    pub runs: Vec<String>,
}

#[derive(Template)]
#[template(path = "certificate.html")]
pub struct CertificatePage {
    pub chrome: Chrome,
    pub guid: String,
    pub dn: String,
    pub folder: String,
    pub state: String,
    pub disabled: bool,
    pub in_error: bool,
    pub last_error: String,
    pub management_type: String,
    pub csr_origin: String,
    pub versions: Vec<VersionView>,
    pub stores: Vec<RunView>,
    pub audit: Vec<AuditRecord>,
    pub may_write: bool,
    pub may_revoke: bool,
    pub may_read_keys: bool,
    pub has_key: bool,
    pub has_cert: bool,
}

pub async fn certificate(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let guid = path.into_inner();
    let access = s.principal.access.clone();
    let g = guid.clone();
    let page = match db(&state, move |_, c| view::certificate_page(c, &access, &g).map_err(|e| e.to_string())).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                Some(Chrome::new(&s, "inventory", &req)),
                "Not found",
                "There is no such certificate.",
            );
        }
        Err(r) => return r,
    };
    let scopes = &s.principal.scopes;
    let versions: Vec<VersionView> = page
        .versions
        .iter()
        .map(|v| VersionView {
            serial: v.version.serial.clone(),
            thumbprint: v.version.thumbprint.clone(),
            not_before: fmt_time(v.version.not_before),
            not_after: fmt_time(v.version.not_after),
            issuer: v.version.issuer_dn.clone(),
            key_type: v.key_type.clone(),
            sans: v.sans.join(", "),
            current: v.current,
            revoked: v.revoked,
        })
        .collect();
    let stores = page
        .stores
        .iter()
        .flat_map(|i| {
            let label = crate::engine::stores::store_label(&i.store);
            let mut out: Vec<RunView> = i
                .runs
                .iter()
                .map(|(j, runs)| RunView {
                    store: label.clone(),
                    alias: j.alias.clone().unwrap_or_else(|| i.alias.clone()),
                    operation: j.operation.clone(),
                    state: j.state.to_string(),
                    attempts: j.attempts,
                    message: j.message.clone().unwrap_or_default(),
                    runs: runs
                        .iter()
                        .map(|r| {
                            format!(
                                "{}: {}",
                                fmt_time(r.operation_start),
                                if r.message.is_empty() { "ok" } else { &r.message }
                            )
                        })
                        .collect(),
                })
                .collect();
            if out.is_empty() {
                out.push(RunView {
                    store: label,
                    alias: i.alias.clone(),
                    operation: "installed".into(),
                    state: String::new(),
                    attempts: 0,
                    message: String::new(),
                    runs: vec![],
                });
            }
            out
        })
        .collect();
    render(&CertificatePage {
        chrome: Chrome::new(&s, "inventory", &req),
        guid: page.object.guid.trim_matches(['{', '}']).to_string(),
        dn: page.object.dn.clone(),
        folder: page.object.policy_dn.clone(),
        state: page.object.state.to_string(),
        disabled: page.object.disabled,
        in_error: page.object.state == crate::vocab::ObjectState::Error,
        last_error: page.object.last_error.clone().unwrap_or_default(),
        management_type: page.object.management_type.to_string(),
        csr_origin: page.object.csr_origin.to_string(),
        has_cert: page.object.current_cert_id.is_some(),
        versions,
        stores,
        audit: page.audit,
        may_write: page.may_write && scopes.allows("certificate", Some("manage")),
        may_revoke: page.may_write && scopes.allows("certificate", Some("revoke")),
        may_read_keys: page.may_read_keys,
        has_key: page.has_key,
    })
}

// --- policy folders ----------------------------------------------------------------------------

pub struct TreeItem {
    pub dn: String,
    pub name: String,
    pub depth: usize,
    pub selected: bool,
}

pub struct SettingView {
    pub key: String,
    pub value: String,
    pub source: String,
    pub locked: bool,
    pub here: bool,
}

#[derive(Template)]
#[template(path = "policies.html")]
pub struct PoliciesPage {
    pub chrome: Chrome,
    pub tree: Vec<TreeItem>,
    pub dn: String,
    pub settings: Vec<SettingView>,
    pub may_edit: bool,
    pub keys: Vec<&'static str>,
}

pub async fn policies(req: HttpRequest, state: web::Data<AppState>, q: Query) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let access = s.principal.access.clone();
    let wanted = q_get(&q, "dn");
    let r = db(&state, move |_, c| {
        let folders = view::folder_names(c, &access).map_err(|e| e.to_string())?;
        let dn = match wanted {
            Some(d) => policy::normalize_dn(&d),
            None => folders.first().cloned().unwrap_or_else(|| policy::ROOT_DN.to_string()),
        };
        let found = crate::engine::access::existing_folder(c, &access, &dn).ok();
        let eff = match &found {
            Some(dn) => Some(policy::effective(c, dn).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok((folders, dn, eff))
    })
    .await;
    let (folders, dn, eff) = match r {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(eff) = eff else {
        return message(
            StatusCode::NOT_FOUND,
            Some(Chrome::new(&s, "policies", &req)),
            "Not found",
            "There is no such policy folder.",
        );
    };
    let tree = folders
        .iter()
        .map(|f| TreeItem {
            depth: f.matches('\\').count().saturating_sub(2),
            name: f.rsplit('\\').next().unwrap_or(f).to_string(),
            selected: f.eq_ignore_ascii_case(&dn),
            dn: f.clone(),
        })
        .collect();
    let settings = eff
        .values
        .iter()
        .map(|(k, v)| SettingView {
            key: k.clone(),
            value: match &v.value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            },
            here: v.folder.eq_ignore_ascii_case(&eff.dn),
            source: v.folder.clone(),
            locked: v.locked,
        })
        .collect();
    render(&PoliciesPage {
        chrome: Chrome::new(&s, "policies", &req),
        may_edit: s.principal.scopes.allows("configuration", Some("manage"))
            && crate::engine::access::folder(&s.principal.access, &eff.dn, Permission::Write).is_ok(),
        dn: eff.dn.clone(),
        tree,
        settings,
        keys: policy::KEYS.to_vec(),
    })
}

// --- stores ------------------------------------------------------------------------------------

pub struct StoreView {
    pub guid: String,
    pub machine: String,
    pub path: String,
    pub kind: String,
    pub folder: String,
    pub last_contact: String,
    pub pending: i64,
    pub failed: i64,
}

pub struct JobView {
    pub guid: String,
    pub store: String,
    pub operation: String,
    pub state: String,
    pub attempts: i32,
    pub message: String,
    pub updated: String,
    pub failed: bool,
}

#[derive(Template)]
#[template(path = "stores.html")]
pub struct StoresPage {
    pub chrome: Chrome,
    pub stores: Vec<StoreView>,
    pub jobs: Vec<JobView>,
    pub may_retry: bool,
}

pub async fn stores(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let access = s.principal.access.clone();
    let page = match db(&state, move |_, c| view::stores_page(c, &access).map_err(|e| e.to_string())).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    render(&StoresPage {
        chrome: Chrome::new(&s, "stores", &req),
        may_retry: s.principal.scopes.allows("certificate", Some("manage")),
        stores: page
            .stores
            .into_iter()
            .map(|r| StoreView {
                guid: r.store.guid.trim_matches(['{', '}']).to_string(),
                machine: r.store.client_machine.clone(),
                path: r.store.store_path.clone(),
                kind: r.store.store_type.clone(),
                folder: r.store.folder().to_string(),
                last_contact: r.last_contact.map(fmt_time).unwrap_or_else(|| "never".into()),
                pending: r.pending,
                failed: r.failed,
            })
            .collect(),
        jobs: page
            .jobs
            .into_iter()
            .map(|(j, st)| JobView {
                guid: j.guid.trim_matches(['{', '}']).to_string(),
                store: crate::engine::stores::store_label(&st),
                failed: j.state == crate::vocab::StoreJobState::Failed,
                operation: j.operation,
                state: j.state.to_string(),
                attempts: j.attempts,
                message: j.message.unwrap_or_default(),
                updated: fmt_time(j.updated_at),
            })
            .collect(),
    })
}

// --- ACME --------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "acme.html")]
pub struct AcmePage {
    pub chrome: Chrome,
    pub accounts: Vec<view::AcmeAccountRow>,
    pub orders: Vec<view::AcmeOrderRow>,
    pub folders: Vec<String>,
    pub created: Option<(String, String, String)>,
    pub directory: String,
}

impl AcmePage {
    pub fn when(&self, t: impl std::borrow::Borrow<chrono::NaiveDateTime>) -> String {
        fmt_time(t)
    }
}

pub async fn acme(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    acme_page(&req, &state, &s, None).await
}

pub async fn acme_page(
    req: &HttpRequest,
    state: &AppState,
    s: &crate::auth::sessions::ConsoleSession,
    created: Option<(String, String, String)>,
) -> HttpResponse {
    let access = s.principal.access.clone();
    let r = db(state, move |_, c| {
        let (a, o) = view::acme_page(c, &access).map_err(|e| e.to_string())?;
        let folders = view::folder_names(c, &access).map_err(|e| e.to_string())?;
        Ok((a, o, folders))
    })
    .await;
    let (accounts, orders, folders) = match r {
        Ok(v) => v,
        Err(r) => return r,
    };
    render(&AcmePage {
        chrome: Chrome::new(s, "acme", req),
        accounts,
        orders,
        folders,
        created,
        directory: format!("{}/acme/directory", state.engine.settings.public_url()),
    })
}

// --- audit -------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub chrome: Chrome,
    pub rows: Vec<AuditRecord>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub since: String,
    pub until: String,
    pub export: String,
    pub actions: Vec<&'static str>,
}

/// The audit filter of the page and the export: actor, action, object (DN prefix or exact
/// target), time range; always limited to the caller's folders.
fn audit_filter(q: &Query) -> (audit::Filter, AuditExtra) {
    let f = audit::Filter { action: q_get(q, "action"), limit: 500, ..Default::default() };
    let parse = |k: &str| {
        q_get(q, k).and_then(|s| {
            chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S"))
                .ok()
                .or_else(|| chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        })
    };
    (
        f,
        AuditExtra {
            actor: q_get(q, "actor"),
            target: q_get(q, "target"),
            since: parse("since"),
            until: parse("until"),
        },
    )
}

pub struct AuditExtra {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub since: Option<chrono::NaiveDateTime>,
    pub until: Option<chrono::NaiveDateTime>,
}

async fn audit_rows(
    state: &AppState,
    s: &crate::auth::sessions::ConsoleSession,
    q: &Query,
    limit: i64,
) -> Result<Vec<AuditRecord>, HttpResponse> {
    let (mut f, extra) = audit_filter(q);
    f.limit = limit;
    let access = s.principal.access.clone();
    db(state, move |_, c| {
        let search = crate::engine::audit::Search {
            actor: extra.actor,
            target: extra.target,
            since: extra.since,
            until: extra.until,
        };
        crate::engine::audit::search_for(c, &access, &f, &search).map_err(|e| e.to_string())
    })
    .await
}

pub async fn audit(req: HttpRequest, state: web::Data<AppState>, q: Query) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rows = match audit_rows(&state, &s, &q, 200).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let params: Vec<(&str, String)> = ["actor", "action", "target", "since", "until"]
        .into_iter()
        .filter_map(|k| q_get(&q, k).map(|v| (k, v)))
        .collect();
    render(&AuditPage {
        chrome: Chrome::new(&s, "audit", &req),
        rows,
        actor: q_get(&q, "actor").unwrap_or_default(),
        action: q_get(&q, "action").unwrap_or_default(),
        target: q_get(&q, "target").unwrap_or_default(),
        since: q_get(&q, "since").unwrap_or_default(),
        until: q_get(&q, "until").unwrap_or_default(),
        export: format!("/console/audit/export?{}", serde_urlencoded::to_string(&params).unwrap_or_default()),
        actions: audit::action::ALL.to_vec(),
    })
}

/// The filtered trail as JSON lines (the native API's record shape), newest last.
pub async fn audit_export(req: HttpRequest, state: web::Data<AppState>, q: Query) -> HttpResponse {
    let s = match require(&req, &state).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut rows = match audit_rows(&state, &s, &q, 100_000).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    rows.reverse();
    let mut body = String::new();
    for r in &rows {
        body.push_str(&serde_json::to_string(r).unwrap_or_default());
        body.push('\n');
    }
    HttpResponse::Ok()
        .content_type("application/jsonl; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"renewgate-audit.jsonl\""))
        .body(body)
}

/// The link of a folder in the policy tree (templates call it).
pub fn folder_link(dn: &str) -> String {
    format!("/console/policies?dn={}", enc(dn))
}

/// The inventory filtered to a folder (templates call it).
pub fn inventory_link(dn: &str) -> String {
    format!("/console/inventory?folder={}", enc(dn))
}
