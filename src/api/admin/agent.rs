//! Native endpoints for store agents (`agent` scope, token bound to a client machine) and for
//! following an issuance request (`GET /api/v1/jobs/{id}`).
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{get, post};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{NativeAuthErrors, NativeError, NativeErrorBody};
use crate::api::body::read_payload;
use crate::api::venafi::authenticate;
use crate::app::AppState;
use crate::engine::inventory::CertBundle;
use crate::engine::stores::{self, STORE_PASSWORD_PURPOSE};

#[derive(Debug, Deserialize, IntoParams)]
pub struct ClaimQuery {
    /// Most jobs to claim at once (default 10).
    pub limit: Option<i64>,
}

/// A store push job handed to an agent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentJob {
    pub job_id: String,
    /// JobHistoryId of this run.
    pub audit_id: i64,
    /// `add` or `remove`.
    pub operation: String,
    pub store_id: String,
    /// `pem-dir`, `pkcs12` or `jks`.
    pub store_type: String,
    pub store_path: String,
    pub alias: Option<String>,
    pub overwrite: bool,
    /// The store's password (PKCS#12 and JKS stores).
    pub store_password: Option<String>,
    pub certificate_id: Option<i64>,
    /// Leaf certificate, PEM.
    pub certificate_pem: Option<String>,
    /// Issuer chain (nearest first), PEM.
    pub chain_pem: Option<String>,
    /// PKCS#8 PEM, only for stores configured to receive keys.
    pub private_key_pem: Option<String>,
    pub common_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentResult {
    /// `success`, `warning` or `failure`.
    pub outcome: String,
    pub message: String,
    /// The run (`audit_id` of the claim) this result is for; a stale run's result is refused.
    #[serde(default)]
    pub audit_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentResultAccepted {
    pub accepted: bool,
}

async fn agent_machine(req: &HttpRequest, state: &AppState) -> Result<String, NativeError> {
    let p = authenticate(req, state, "agent", None).await?;
    p.client_machine.ok_or_else(|| NativeError {
        status: actix_web::http::StatusCode::FORBIDDEN,
        message: "This token is not bound to a client machine: create one with `renewgate agent token create`.".into(),
    })
}

#[utoipa::path(get, path = "/api/v1/agent/jobs", tag = "Native: store agents", params(ClaimQuery),
    responses((status = 200, description = "Claimed jobs (leased for keyfactor.agent_lease_secs, default 5 minutes)", body = Vec<AgentJob>),
              (status = 400, description = "A query parameter that is not an integer", body = NativeErrorBody),
              NativeAuthErrors),
    security(("bearer" = [])))]
#[get("/api/v1/agent/jobs")]
pub async fn claim(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<ClaimQuery>,
) -> Result<HttpResponse, NativeError> {
    let machine = agent_machine(&req, &state).await?;
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let engine = state.engine.clone();
    let lease = state.engine.settings.keyfactor.agent_lease_secs.max(1);
    let jobs = crate::api::observe::block(move || -> Result<Vec<AgentJob>, NativeError> {
        let mut c = engine.pool.get()?;
        let claimed = stores::claim_for_machine(&mut c, &machine, &format!("agent:{machine}"), lease, limit)
            .map_err(|e| NativeError::unavailable(e.to_string()))?;
        let mut out = vec![];
        for cj in claimed {
            let pw = cj
                .store
                .password_enc
                .as_ref()
                .and_then(|p| engine.master.open(STORE_PASSWORD_PURPOSE, p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let mut job = AgentJob {
                job_id: cj.job.guid.clone(),
                audit_id: cj.run_id,
                operation: cj.job.operation.clone(),
                store_id: cj.store.guid.clone(),
                store_type: cj.store.store_type.clone(),
                store_path: cj.store.store_path.clone(),
                alias: cj.job.alias.clone().or(cj.store.alias.clone()),
                overwrite: cj.job.overwrite,
                store_password: pw,
                certificate_id: cj.job.certificate_id,
                certificate_pem: None,
                chain_pem: None,
                private_key_pem: None,
                common_name: None,
            };
            if let Some(cid) = cj.job.certificate_id {
                let v: crate::db::models::CertVersion = crate::engine::lookup::version(&mut c, cid)?;
                let bundle = CertBundle::load(&v, &engine.master, cj.store.include_keys)
                    .map_err(|e| NativeError::unavailable(e.to_string()))?;
                let pem =
                    |x: &openssl::x509::X509| String::from_utf8_lossy(&x.to_pem().unwrap_or_default()).into_owned();
                job.certificate_pem = Some(pem(&bundle.leaf));
                job.chain_pem = Some(bundle.chain.iter().map(pem).collect());
                job.private_key_pem = bundle
                    .key
                    .as_ref()
                    .and_then(|k| k.private_key_to_pem_pkcs8().ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                job.common_name = Some(v.common_name.clone());
                if job.private_key_pem.is_some() {
                    tracing::info!(certificate = cid, store = %cj.store.guid, "private key handed to a store agent");
                }
            }
            out.push(job);
        }
        Ok(out)
    })
    .await??;
    for j in jobs.iter().filter(|j| j.private_key_pem.is_some()) {
        let target = format!("certificate {} to store {}", j.certificate_id.unwrap_or_default(), j.store_id);
        crate::api::observe::note_certificate(
            &req,
            crate::engine::audit::action::KEY_DOWNLOAD,
            target,
            j.certificate_id,
        );
    }
    Ok(HttpResponse::Ok().json(jobs))
}

#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/result", tag = "Native: store agents",
    params(("job_id" = String, Path)), request_body = AgentResult,
    responses((status = 200, body = AgentResultAccepted), (status = 400, body = NativeErrorBody), NativeAuthErrors, (status = 409, description = "The job is not leased to this machine", body = NativeErrorBody)),
    security(("bearer" = [])))]
#[post("/api/v1/agent/jobs/{job_id}/result")]
pub async fn result(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, NativeError> {
    let machine = agent_machine(&req, &state).await?;
    let bytes = read_payload(payload, state.engine.settings.http.max_body_bytes)
        .await
        .map_err(|e| NativeError::bad_request(e.to_string()))?;
    let r: AgentResult =
        serde_json::from_slice(&bytes).map_err(|e| NativeError::bad_request(format!("invalid body: {e}")))?;
    let outcome = r.outcome.to_ascii_lowercase();
    let Some(counted) = ["success", "warning", "failure"].into_iter().find(|o| *o == outcome) else {
        return Err(NativeError::bad_request("outcome must be success, warning or failure"));
    };
    let job = path.into_inner();
    let engine = state.engine.clone();
    let ok = web::block(move || -> Result<bool, NativeError> {
        let mut c = engine.pool.get()?;
        stores::complete(&mut c, &job, &machine, &outcome, &r.message, r.audit_id)
            .map_err(|e| NativeError::unavailable(e.to_string()))
    })
    .await??;
    if ok {
        crate::metrics::METRICS.store_push_result(counted);
    }
    if !ok {
        return Err(NativeError {
            status: actix_web::http::StatusCode::CONFLICT,
            message: "The job is not leased to this machine.".into(),
        });
    }
    Ok(HttpResponse::Ok().json(AgentResultAccepted { accepted: true }))
}

/// An issuance request's state (the `CMSRequestId` / `KeyfactorRequestId` of a pending answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestStatus {
    pub id: i64,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    pub certificate_id: Option<i64>,
    pub thumbprint: Option<String>,
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "Native: jobs", params(("id" = i64, Path)),
    responses((status = 200, body = RequestStatus), (status = 400, description = "The id is not a 64-bit integer", body = NativeErrorBody),
              (status = 401, body = NativeErrorBody), (status = 404, body = NativeErrorBody)),
    security(("bearer" = [])))]
#[get("/api/v1/jobs/{id}")]
pub async fn request_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, NativeError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let id: i64 = path.into_inner().parse().map_err(|_| NativeError::bad_request("the id must be an integer"))?;
    let engine = state.engine.clone();
    let st = web::block(move || -> Result<RequestStatus, NativeError> {
        let mut c = engine.pool.get()?;
        let j = crate::engine::inventory::job(&mut c, id)
            .map_err(|e| NativeError::unavailable(e.to_string()))?
            .ok_or_else(|| NativeError::not_found(format!("no request {id}")))?;
        if !crate::engine::access::job_visible(&mut c, &principal.access, j.object_id)
            .map_err(|e| NativeError::unavailable(e.to_string()))?
        {
            return Err(NativeError::not_found(format!("no request {id}")));
        }
        let tp = match j.result_cert_id {
            Some(cid) => crate::engine::lookup::find_thumbprint(&mut c, cid)?,
            None => None,
        };
        Ok(RequestStatus {
            id,
            state: j.state.to_string(),
            certificate_id: j.result_cert_id,
            thumbprint: tp,
            error: j.error,
        })
    })
    .await??;
    Ok(HttpResponse::Ok().json(st))
}

/// base64 helper kept for agent clients that want DER.
pub fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// The answer of `POST /api/v1/agent/token`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentTokenRenewal {
    /// True when a new token replaced the one used for this call (which is now revoked).
    pub renewed: bool,
    /// The new token (only when renewed): the agent writes it to its token file.
    pub token: Option<String>,
    /// RFC 3339 expiry of the token now in force.
    pub expires_at: String,
}

#[utoipa::path(post, path = "/api/v1/agent/token", tag = "Native: store agents",
    responses((status = 200, description = "Renewed when a third of the token's lifetime or less remains; otherwise unchanged", body = AgentTokenRenewal),
              NativeAuthErrors),
    security(("bearer" = [])))]
#[post("/api/v1/agent/token")]
pub async fn renew_token(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, NativeError> {
    let p = authenticate(&req, &state, "agent", None).await?;
    agent_machine(&req, &state).await?;
    let engine = state.engine.clone();
    let current = p.token_expires_at;
    let renewed = crate::api::observe::block(move || -> Result<_, NativeError> {
        let mut c = engine.pool.get()?;
        crate::auth::renew_agent_token(&mut c, &p).map_err(|e| match e {
            crate::auth::AuthError::BadToken => NativeError {
                status: actix_web::http::StatusCode::UNAUTHORIZED,
                message: "This token was renewed or revoked already.".into(),
            },
            other => NativeError::unavailable(other.to_string()),
        })
    })
    .await??;
    let rfc = |t: chrono::NaiveDateTime| t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = match renewed {
        Some(t) => AgentTokenRenewal { renewed: true, expires_at: rfc(t.expires_at), token: Some(t.access_token) },
        None => AgentTokenRenewal { renewed: false, token: None, expires_at: current.map(rfc).unwrap_or_default() },
    };
    Ok(HttpResponse::Ok().json(body))
}
