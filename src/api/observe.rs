//! Cross-cutting request plumbing: a request id (from `X-Request-Id` or new) on a tracing span
//! around the whole request, so every log line of the request carries it; the access log line;
//! HTTP, renewal and enrollment metrics by route template; and the audit records the handler
//! noted (or the route implies), written when the response is known.
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use tracing::Instrument;

use crate::app::AppState;
use crate::engine::audit::{self, action};
use crate::metrics::{HttpRequestLabels, METRICS};

/// The id of the request being served (also sent back as `X-Request-Id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who the request authenticated as (set by the dialects' authentication).
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// What a handler did that the audit trail records.
#[derive(Debug, Clone)]
pub struct Note {
    pub action: &'static str,
    pub target: String,
    pub certificate_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
struct Notes(Vec<Note>);

/// Records the authenticated user of this request (for the audit trail).
pub fn set_actor(req: &HttpRequest, name: &str) {
    req.extensions_mut().insert(Actor(name.to_string()));
}

/// What an ACME finalize that went through did, noted by its handler (which has just read the
/// order) so that its audit record and metric need no lookup of their own: for a renew or
/// reissue order, the object it renewed (its DN), else None (an enrollment).
#[derive(Debug, Clone)]
pub struct AcmeFinalized {
    pub renewed: Option<String>,
}

pub fn note_acme_finalized(req: &HttpRequest, finalized: AcmeFinalized) {
    req.extensions_mut().insert(finalized);
}

/// Notes an audited action on `target` (a DN, thumbprint or id); written with the response's outcome.
pub fn note(req: &HttpRequest, action: &'static str, target: impl Into<String>) {
    note_certificate(req, action, target, None);
}

pub fn note_certificate(req: &HttpRequest, action: &'static str, target: impl Into<String>, cert: Option<i64>) {
    let mut ext = req.extensions_mut();
    let target = target.into();
    if ext.get::<Notes>().is_none() {
        ext.insert(Notes::default());
    }
    let Some(notes) = ext.get_mut::<Notes>() else { return };
    // A handler may note the same thing at its start and once it knows more: keep the fuller one.
    notes.0.retain(|n| !(n.action == action && (n.target == target || n.target.is_empty())));
    notes.0.push(Note { action, target, certificate_id: cert });
}

/// `web::block` that keeps the request's span (and so its request id) on the blocking thread.
pub fn block<F, R>(f: F) -> impl Future<Output = Result<R, actix_web::error::BlockingError>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    web::block(move || span.in_scope(f))
}

fn dialect_of(path: &str) -> &'static str {
    let p = path.to_ascii_lowercase();
    if p.starts_with("/vedsdk") || p.starts_with("/vedauth") {
        "venafi"
    } else if p.starts_with("/cmsapi") || p.starts_with("/keyfactorapi") {
        "keyfactor"
    } else if p.starts_with("/acme") {
        "acme"
    } else if p.starts_with("/console") {
        "console"
    } else {
        "native"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Renew,
    Enroll,
    Revoke,
    KeyDownload,
    EnrollWithKey,
    PolicyChange,
    AcmeFinalize,
}

/// What a route does, for the counters and the audit trail (patterns as registered; vendor paths
/// arrive lower-cased).
fn classify(method: &str, pattern: &str) -> Option<Kind> {
    Some(match (method, pattern) {
        ("POST", "/vedsdk/certificates/renew" | "/cmsapi/certenroll/3/renew" | "/keyfactorapi/enrollment/renew") => {
            Kind::Renew
        }
        ("POST", "/vedsdk/certificates/request" | "/cmsapi/certenroll/3/pkcs10" | "/keyfactorapi/enrollment/csr") => {
            Kind::Enroll
        }
        ("POST", "/cmsapi/certenroll/3/pkcs12" | "/keyfactorapi/enrollment/pfx") => Kind::EnrollWithKey,
        ("POST", "/vedsdk/certificates/revoke" | "/keyfactorapi/certificates/revoke" | "/acme/revoke-cert") => {
            Kind::Revoke
        }
        ("POST", "/keyfactorapi/certificates/recover") => Kind::KeyDownload,
        ("POST", "/console/certificates/{guid}/renew") => Kind::Renew,
        ("POST", "/console/certificates/{guid}/revoke") => Kind::Revoke,
        ("POST", "/console/policies") => Kind::PolicyChange,
        ("PUT" | "DELETE", "/api/v1/policies") => Kind::PolicyChange,
        ("POST", "/acme/order/{id}/finalize") => Kind::AcmeFinalize,
        _ => return None,
    })
}

/// The audited action a route implies.
fn implied_action(kind: Option<Kind>) -> Option<&'static str> {
    match kind {
        Some(Kind::Renew) => Some(action::RENEW),
        Some(Kind::Revoke) => Some(action::REVOKE),
        Some(Kind::KeyDownload) => Some(action::KEY_DOWNLOAD),
        Some(Kind::PolicyChange) => Some(action::POLICY_CHANGE),
        _ => None,
    }
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    (!s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        .then(|| s.to_string())
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().to_string();
    // Path only, never the query string: GET Retrieve may carry a Password there.
    let path = req.path().to_string();
    let peer = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let span = tracing::info_span!("request", request_id = %request_id);
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_string());
    // The label set owns the method and route; they are read back from it below.
    let labels = HttpRequestLabels { method, route, status };
    METRICS.http_requests.get_or_create(&labels).inc();
    let (method, route) = (&labels.method, &labels.route);
    let ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    if path != "/health" {
        span.in_scope(|| tracing::info!(%peer, %method, %path, status, ms, "request"));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
    }
    let kind = classify(method, route);
    let notes = res.request().extensions().get::<Notes>().cloned().unwrap_or_default();
    // Only an authenticated request is audited (the dialects mark it with `set_actor`; ACME once
    // its JWS verified): otherwise any anonymous client could fill the audit table — a 401, a 429
    // from the login throttle, a bad JWS. The login throttle audits its own closures.
    let authenticated = res.request().extensions().get::<Actor>().is_some();
    if status == 401 || (kind.is_none() && notes.0.is_empty()) {
        return Ok(res);
    }
    let dialect = dialect_of(&path);
    let success = status < 400;
    let outcome = if success { "success" } else { "failure" };
    let actor = res
        .request()
        .extensions()
        .get::<Actor>()
        .map(|a| a.0.clone())
        .unwrap_or_else(|| if dialect == "acme" { "acme".into() } else { "anonymous".into() });
    let mut notes = notes.0;
    // A console form refused before it did anything (no session, a bad CSRF token) noted
    // nothing: it is neither a renewal to count nor an action to audit.
    let kind =
        if dialect == "console" && !notes.iter().any(|n| Some(n.action) == implied_action(kind)) { None } else { kind };
    match kind {
        Some(Kind::Renew) => METRICS.renewal(dialect, outcome),
        Some(Kind::Enroll | Kind::EnrollWithKey) => METRICS.enrollment(dialect, outcome),
        _ => {}
    }
    // What the route implies when the handler noted nothing (it failed early, say).
    let implied = implied_action(kind);
    if let Some(a) = implied
        && !notes.iter().any(|n| n.action == a)
    {
        let target = match kind {
            Some(Kind::PolicyChange) => {
                let q = crate::api::body::LenientBody::from_query(res.request().query_string());
                q.nonblank("dn").ok().flatten().map(|d| crate::engine::policy::normalize_dn(&d)).unwrap_or_default()
            }
            _ => String::new(),
        };
        notes.push(Note { action: a, target, certificate_id: None });
    }
    if !authenticated {
        return Ok(res);
    }
    let Some(state) = res.request().app_data::<web::Data<AppState>>().cloned() else {
        return Ok(res);
    };
    let finalized = res.request().extensions().get::<AcmeFinalized>().cloned();
    let order_id: Option<i64> = match (kind, finalized) {
        // The handler said what the finalize did: counted and noted here, written by the group writer.
        (Some(Kind::AcmeFinalize), Some(f)) => {
            match f.renewed {
                Some(target) => {
                    METRICS.renewal("acme", outcome);
                    notes.push(Note { action: action::RENEW, target, certificate_id: None });
                }
                None => METRICS.enrollment("acme", outcome),
            }
            None
        }
        (Some(Kind::AcmeFinalize), None) => res.request().match_info().get("id").and_then(|s| s.parse().ok()),
        _ => None,
    };
    let detail = format!("HTTP {status}");
    let engine = state.engine.clone();
    let rid = request_id.clone();
    let entry = move |n: Note, actor: &str, detail: &str, rid: &str| audit::Entry {
        actor: actor.to_string(),
        action: n.action.to_string(),
        target: n.target,
        certificate_id: n.certificate_id,
        outcome: outcome.to_string(),
        detail: detail.to_string(),
        source: dialect.to_string(),
        request_id: Some(rid.to_string()),
    };
    let written: Result<Result<(), String>, actix_web::error::BlockingError> = match order_id {
        // Most requests: the records go to the group writer (no blocking hop, one commit shared
        // with the requests finishing at the same time).
        None => {
            let entries = notes.into_iter().map(|n| entry(n, &actor, &detail, &rid)).collect();
            Ok(engine.audit_writer.record(&engine.pool, &engine.writer, entries).instrument(span.clone()).await)
        }
        Some(id) => {
            span.in_scope(|| {
                block(move || -> Result<(), String> {
                    let mut c = engine.pool.get().map_err(|e| e.to_string())?;
                    // An ACME finalize renews or enrolls as its order says (src/api/acme is left alone).
                    use crate::engine::lookup;
                    let row: Option<(String, Option<i64>)> =
                        lookup::acme_order_action(&mut c, id).map_err(|e| e.to_string())?;
                    match row {
                        // A reissue renews the same object too (Engine::renew).
                        Some((a, Some(obj))) if a == "renew" || a == "reissue" => {
                            METRICS.renewal("acme", outcome);
                            // Only a finalize that went through names its order's object: a
                            // refused one may name another account's order.
                            if success {
                                let dn: Option<String> =
                                    lookup::find_object_dn(&mut c, obj).map_err(|e| e.to_string())?;
                                notes.push(Note {
                                    action: action::RENEW,
                                    target: dn.unwrap_or_else(|| format!("object {obj}")),
                                    certificate_id: None,
                                });
                            }
                        }
                        _ => METRICS.enrollment("acme", outcome),
                    }
                    for n in notes {
                        audit::record(&mut c, &entry(n, &actor, &detail, &rid)).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .await
        }
    };
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => span.in_scope(|| tracing::error!(error = %e, "audit record not written")),
        Err(e) => span.in_scope(|| tracing::error!(error = %e, "audit record not written")),
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_by_template() {
        assert_eq!(classify("POST", "/vedsdk/certificates/renew"), Some(Kind::Renew));
        assert_eq!(classify("POST", "/keyfactorapi/enrollment/renew"), Some(Kind::Renew));
        assert_eq!(classify("PUT", "/api/v1/policies"), Some(Kind::PolicyChange));
        assert_eq!(classify("GET", "/api/v1/policies"), None);
        assert_eq!(classify("POST", "/acme/order/{id}/finalize"), Some(Kind::AcmeFinalize));
        assert_eq!(dialect_of("/CMSApi/x"), "keyfactor");
        assert_eq!(dialect_of("/console/certificates/x/renew"), "console");
        assert_eq!(classify("POST", "/console/certificates/{guid}/renew"), Some(Kind::Renew));
        assert!(sane_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(sane_request_id(&HeaderValue::from_static("a b")).is_none());
    }
}
