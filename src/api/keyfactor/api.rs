//! The Keyfactor API (`/KeyfactorAPI/...`): enrollment, certificates, stores, orchestrator jobs,
//! templates, CAs and status. Enrollment calls wait at most 4 s (the v1 SDK gives up after 5 s).
use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::classic::ca_name;
use super::error::{INVALID_REQUEST, KeyfactorAuthErrors, KeyfactorErrorBody, NOT_VISIBLE};
use super::request::*;
use super::response::*;
use super::{Casing, KeyfactorError, authenticate, blocking, body, casing, guard, model, nonblank, respond};
use crate::api::body::{BodyError, Entry, Lenient, LenientBody};
use crate::app::AppState;
use crate::ca::{KeySpec, SanSet};
use crate::db::DbError;
use crate::db::models::CertVersion;
use crate::engine::Engine;
use crate::engine::inventory::{CertBundle, CertRef};
use crate::engine::queue::{JobOutcome, Settled};
use crate::engine::renew::{EnrollRequest, IssueOverrides, KeyfactorRenew, SubjectSpec};
use crate::engine::{stores as store_engine, templates};
use crate::formats::{OutputFormat, OutputOptions, Pkcs12Profile};
use crate::vocab::Permission;

pub const API_WAIT: Duration = Duration::from_secs(4);

fn bad(e: &BodyError) -> KeyfactorError {
    KeyfactorError::bad_request(e.to_string())
}

fn path_id(s: &str) -> Result<i64, KeyfactorError> {
    s.parse().map_err(|_| KeyfactorError::bad_request(format!("'{s}' is not a valid id.")))
}

/// A Keyfactor enrollment (PFX, CSR, classic Pkcs10/Pkcs12).
pub struct Enrollment {
    pub csr: Option<renewgate_core::engine::csr::Csr>,
    pub subject: Option<SubjectSpec>,
    pub sans: SanSet,
    pub template: Option<String>,
    pub ca: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub key_spec: Option<KeySpec>,
    /// The caller's folder permissions: write on the template's folder, key too when the answer carries one.
    pub access: crate::auth::FolderAccess,
    pub needs_key: bool,
}

pub enum Enrolled {
    Issued(Box<CertVersion>),
    Pending(i64),
}

/// Enrolls through the engine in the template's policy folder and waits up to `wait`.
pub async fn enroll(state: &AppState, e: Enrollment, wait: Duration) -> Result<Enrolled, KeyfactorError> {
    let accepted = blocking(state, move |engine, c| {
        let tname = e.template.clone().unwrap_or_else(|| templates::DEFAULT_TEMPLATE.into());
        let t = crate::engine::access::template(c, &e.access, &tname, e.needs_key)?
            .ok_or_else(|| KeyfactorError::bad_request(format!("Template '{tname}' does not exist.")))?;
        let ca =
            match &e.ca {
                Some(n) => Some(crate::ca::BuiltinCa::find_row(c, n).map_err(DbError::from)?.ok_or_else(|| {
                    KeyfactorError::bad_request(format!("Certificate authority '{n}' does not exist."))
                })?),
                None => None,
            };
        let subject = e.subject.clone().unwrap_or_default();
        let req = EnrollRequest {
            policy_dn: t.policy_dn.clone(),
            object_name: subject.common_name.clone(),
            csr: e.csr,
            subject,
            sans: e.sans,
            key_spec: e.key_spec,
            management_type: None,
            overrides: Some(IssueOverrides {
                ca,
                template: Some(t.name.clone()),
                ekus: Some(templates::ekus_of(&t)),
                validity: t.validity.as_deref().and_then(|v| crate::settings::parse_duration(v).ok()),
                metadata: if e.metadata.is_empty() { None } else { Some(e.metadata) },
            }),
            issue_as: None,
            new_object_only: false,
        };
        Ok(engine.enroll(c, &req)?)
    })
    .await?;
    match state.engine.wait_for_job(accepted.job_id, wait).await? {
        JobOutcome::Done(Some(id)) => {
            Ok(Enrolled::Issued(Box::new(blocking(state, move |_, c| model::version(c, id)).await?)))
        }
        JobOutcome::Failed(m) => Err(KeyfactorError::bad_request(format!("The enrollment failed: {m}"))),
        _ => Ok(Enrolled::Pending(accepted.job_id)),
    }
}

/// A PKCS#12 (modern profile) of an issued certificate with its key.
pub async fn pfx_of(
    state: &AppState,
    cert_id: i64,
    password: &str,
    include_chain: bool,
) -> Result<Vec<u8>, KeyfactorError> {
    render(state, cert_id, OutputFormat::Pkcs12, Some(password.to_string()), include_chain, true).await
}

async fn render(
    state: &AppState,
    cert_id: i64,
    format: OutputFormat,
    password: Option<String>,
    include_chain: bool,
    with_key: bool,
) -> Result<Vec<u8>, KeyfactorError> {
    blocking(state, move |engine, c| {
        let v = model::version(c, cert_id)?;
        let bundle = CertBundle::load(&v, &engine.master, with_key)?;
        if with_key && bundle.key.is_none() {
            return Err(KeyfactorError {
                status: actix_web::http::StatusCode::BAD_REQUEST,
                code: super::error::NO_PRIVATE_KEY,
                message: "No private key could be found for the given certificate.".into(),
                retry_after: None,
            });
        }
        let opts = OutputOptions {
            format,
            include_chain,
            root_first: false,
            include_private_key: with_key,
            password: password.clone(),
            keystore_password: password.clone(),
            friendly_name: Some(v.common_name.clone()).filter(|s| !s.is_empty()).or(Some("certificate".into())),
            pkcs12_profile: Pkcs12Profile::Modern,
        };
        Ok(crate::formats::render(&bundle, &opts)?.bytes)
    })
    .await
}

fn certificate_format(req: &HttpRequest, default: &str) -> String {
    req.headers()
        .get("x-certificateformat")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// `SANs` of an enrollment: `{"dns": [...], "ip4": [...], ...}` (keys case-insensitive).
fn sans_of(m: Option<BTreeMap<String, Vec<String>>>) -> Result<SanSet, KeyfactorError> {
    let mut s = SanSet::default();
    for (k, vals) in m.unwrap_or_default() {
        match k.to_ascii_lowercase().as_str() {
            "dns" => s.dns.extend(vals),
            "ip4" | "ip6" | "ip" => s.ip.extend(vals),
            "email" | "rfc822" | "mail" => s.email.extend(vals),
            "uri" | "url" => s.uri.extend(vals),
            "upn" => s.upn.extend(vals),
            other => return Err(KeyfactorError::bad_request(format!("Unknown SAN type '{other}'."))),
        }
    }
    Ok(s)
}

/// A subject DN string (`CN=a.example.com,O=Acme,OU=Ops`) as subject fields.
fn subject_of_dn(dn: &str) -> SubjectSpec {
    let mut s = SubjectSpec::default();
    for part in dn.split([',', ';', '/']) {
        let Some((k, v)) = part.split_once('=') else { continue };
        let v = v.trim().to_string();
        match k.trim().to_ascii_uppercase().as_str() {
            "CN" => s.common_name = Some(v),
            "O" => s.organization = Some(v),
            "OU" => s.org_units.push(v),
            "L" => s.city = Some(v),
            "ST" | "S" => s.state = Some(v),
            "C" => s.country = Some(v),
            _ => {}
        }
    }
    s
}

#[utoipa::path(post, path = "/KeyfactorAPI/Enrollment/Renew", tag = "Keyfactor: enrollment", operation_id = "keyfactor_enrollment_renew",
    request_body(content = KfEnrollmentRenewRequest, example = json!({"CertificateId": 1})),
    responses(
        (status = 200, description = "Renewed, or queued when not issued within 4 s", body = KfEnrollmentRenewResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/enrollment/renew")]
pub async fn enrollment_renew(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfEnrollmentRenewRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let id = b.certificate_id;
    let tp = nonblank(b.thumbprint);
    if id.is_none() && tp.is_none() {
        return Err(KeyfactorError::bad_request("Either CertificateId or Thumbprint is required."));
    }
    let kf = KeyfactorRenew {
        certificate: CertRef::CertificateId(0),
        template: nonblank(b.template),
        ca: ca_name(&state, nonblank(b.certificate_authority))?,
        metadata: BTreeMap::new(),
        store_guids: vec![],
        access: principal.access.clone(),
    };
    // Runs the job at once on this request's thread when there is capacity (Engine::accept_then_wait).
    let accept = move |e: &Engine, c: &mut crate::db::DbConn| {
        let v = model::lookup_for(c, &principal, Permission::Write, id, tp.as_deref(), None, None)?;
        let (accepted, _) =
            e.renew_keyfactor_here(c, &KeyfactorRenew { certificate: CertRef::CertificateId(v.id), ..kf })?;
        Ok::<_, KeyfactorError>(((accepted.object.dn.clone(), accepted.job_id), accepted))
    };
    let finish = |e: &Engine, c: &mut crate::db::DbConn, _: &(String, i64), cid: i64| model::issued_version(e, c, cid);
    let ((dn, job_id), settled) = state.engine.accept_then_wait(API_WAIT, accept, finish).await?;
    crate::api::observe::note(&req, crate::engine::audit::action::RENEW, dn);
    match settled {
        Settled::Issued(v) => respond(
            cs,
            &KfEnrollmentRenewResponse {
                keyfactor_id: v.id,
                keyfactor_request_id: job_id,
                thumbprint: Some(v.thumbprint),
                serial_number: Some(v.serial),
                issuer_dn: Some(v.issuer_dn),
                request_disposition: "ISSUED".into(),
                disposition_message: "The certificate was renewed.".into(),
            },
        ),
        Settled::Failed(m) => Err(KeyfactorError::bad_request(format!("The renewal failed: {m}"))),
        Settled::Pending => respond(
            cs,
            &KfEnrollmentRenewResponse {
                keyfactor_id: 0,
                keyfactor_request_id: job_id,
                thumbprint: None,
                serial_number: None,
                issuer_dn: None,
                request_disposition: "PENDING".into(),
                disposition_message: format!("The renewal is queued (request {job_id})."),
            },
        ),
    }
}

async fn available_renewal(
    req: &HttpRequest,
    state: &AppState,
    id: Option<i64>,
    tp: Option<String>,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(req, state, "certificate", None).await?;
    let cs = casing(req, None);
    let (kind, msg) = blocking(state, move |_, c| {
        let v = model::lookup_for(c, &principal, Permission::Read, id, tp.as_deref(), None, None)?;
        let obj = crate::engine::inventory::find_object(c, &CertRef::ObjectId(v.object_id))?
            .ok_or_else(|| KeyfactorError::not_found("certificate object vanished"))?;
        Ok(match crate::engine::Engine::check_renewable(&obj, false) {
            Err(e) => (0, crate::api::venafi::error::message(&e)),
            Ok(()) if v.key_enc.is_some() => {
                (2, "The certificate can be renewed with a new key (one-click renewal).".to_string())
            }
            Ok(()) => {
                (1, "The certificate can be renewed by re-signing its public key (seamless renewal).".to_string())
            }
        })
    })
    .await?;
    respond(cs, &KfAvailableRenewal { available_renewal_type: kind, message: msg })
}

#[utoipa::path(get, path = "/KeyfactorAPI/Enrollment/AvailableRenewal/Id/{id}", tag = "Keyfactor: enrollment", operation_id = "keyfactor_available_renewal_by_id",
    params(("id" = i64, Path, description = "The certificate id", example = 1)),
    responses(
        (status = 200, body = KfAvailableRenewal),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/enrollment/availablerenewal/id/{id}")]
pub async fn available_renewal_id(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, KeyfactorError> {
    let id = path_id(&path.into_inner())?;
    available_renewal(&req, &state, Some(id), None).await
}

#[utoipa::path(get, path = "/KeyfactorAPI/Enrollment/AvailableRenewal/Thumbprint/{thumbprint}", tag = "Keyfactor: enrollment", operation_id = "keyfactor_available_renewal_by_thumbprint",
    params(("thumbprint" = String, Path, description = "SHA-1 thumbprint (hex)")),
    responses(
        (status = 200, body = KfAvailableRenewal),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/enrollment/availablerenewal/thumbprint/{thumbprint}")]
pub async fn available_renewal_thumbprint(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, KeyfactorError> {
    available_renewal(&req, &state, None, Some(path.into_inner())).await
}

fn key_spec_v11(b: &KfPfxEnrollmentRequest) -> Result<Option<KeySpec>, KeyfactorError> {
    match nonblank(b.key_type.clone()).map(|k| k.to_ascii_uppercase()) {
        None => Ok(None),
        Some(k) if k == "RSA" => Ok(Some(KeySpec::Rsa(b.key_length.unwrap_or(2048) as u32))),
        Some(k) if k == "ECC" || k == "EC" => {
            let curve = nonblank(b.curve.clone()).unwrap_or_else(|| "P256".into());
            crate::ca::EcCurve::parse(&curve)
                .map(|c| Some(KeySpec::Ec(c)))
                .ok_or_else(|| KeyfactorError::bad_request(format!("Unsupported curve {curve}.")))
        }
        Some(k) => Err(KeyfactorError::bad_request(format!("Unsupported key type {k}."))),
    }
}

#[utoipa::path(post, path = "/KeyfactorAPI/Enrollment/PFX", tag = "Keyfactor: enrollment", operation_id = "keyfactor_enrollment_pfx",
    request_body(content = KfPfxEnrollmentRequest, example = json!({"Subject": "CN=pfx.example.com", "Password": "Str0ng!Passw0rd#2024", "IncludeChain": true, "Template": "WebServer", "SANs": {"dns": ["pfx.example.com"]}, "Metadata": {"Email-Contact": "pki@example.com"}})),
    responses(
        (status = 200, description = "Issued (PKCS#12 with the key), or queued when not issued within 4 s", body = KfPfxEnrollmentResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/enrollment/pfx")]
pub async fn enrollment_pfx(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfPfxEnrollmentRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let subject = nonblank(b.subject.clone()).ok_or_else(|| KeyfactorError::bad_request("Subject is required."))?;
    let password = b
        .password
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| KeyfactorError::bad_request("Password is required."))?;
    let include_chain = b.include_chain.unwrap_or(true);
    let subject = subject_of_dn(&subject);
    if subject.common_name.is_none() {
        return Err(KeyfactorError::bad_request("Subject must contain a CN."));
    }
    let key_spec = key_spec_v11(&b)?;
    let e = Enrollment {
        csr: None,
        subject: Some(subject),
        sans: sans_of(b.sans)?,
        template: nonblank(b.template),
        ca: ca_name(&state, nonblank(b.certificate_authority))?,
        metadata: b.metadata.unwrap_or_default(),
        key_spec,
        access: principal.access.clone(),
        needs_key: true,
    };
    let md = e.metadata.clone();
    let information = match enroll(&state, e, API_WAIT).await? {
        Enrolled::Issued(v) => {
            let target = format!("certificate {} ({})", v.id, v.thumbprint);
            crate::api::observe::note_certificate(&req, crate::engine::audit::action::KEY_DOWNLOAD, target, Some(v.id));
            let p12 = pfx_of(&state, v.id, &password, include_chain).await?;
            KfPfxCertificateInformation {
                serial_number: Some(v.serial.clone()),
                issuer_dn: Some(v.issuer_dn.clone()),
                thumbprint: Some(v.thumbprint.clone()),
                keyfactor_id: v.id,
                pkcs12_blob: Some(B64.encode(p12)),
                password: Some(password),
                keyfactor_request_id: v.job_id.unwrap_or(0),
                request_disposition: "ISSUED".into(),
                disposition_message: "The certificate was issued.".into(),
            }
        }
        Enrolled::Pending(job) => KfPfxCertificateInformation {
            serial_number: None,
            issuer_dn: None,
            thumbprint: None,
            keyfactor_id: 0,
            pkcs12_blob: None,
            password: None,
            keyfactor_request_id: job,
            request_disposition: "PENDING".into(),
            disposition_message: format!("The enrollment is queued (request {job})."),
        },
    };
    respond(cs, &KfPfxEnrollmentResponse { certificate_information: information, metadata: md })
}

#[utoipa::path(post, path = "/KeyfactorAPI/Enrollment/CSR", tag = "Keyfactor: enrollment", operation_id = "keyfactor_enrollment_csr",
    params(("x-certificateformat" = Option<String>, Header, description = "`PEM` (default) or `DER`")), request_body(content = KfCsrEnrollmentRequest, example = json!({"CSR": "-----BEGIN CERTIFICATE REQUEST-----\nMIHTMHwCAQAwGjEYMBYGA1UEAwwPY3NyLmV4YW1wbGUuY29tMFkwEwYHKoZIzj0C\nAQYIKoZIzj0DAQcDQgAEPEKVXHcT0PDqX3xbXGeH2XHXA4T0kpq+DBQ3KP/wiZJX\ncy2i3DaNSdVtgFvha+S89n3yqAtiNo6DRqBHhUidcaAAMAoGCCqGSM49BAMCA0cA\nMEQCIFAqK0REGYo+/E4GPcwtgut7XSuR78PgbYwrso2xwZSHAiBs5NuMu1QLrGAq\nEiNOnRQUoE3kfODWei6UELHQ+4iDkg==\n-----END CERTIFICATE REQUEST-----\n", "Template": "WebServer", "IncludeChain": true})),
    responses(
        (status = 200, description = "Issued, or queued when not issued within 4 s", body = KfCsrEnrollmentResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/enrollment/csr")]
pub async fn enrollment_csr(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfCsrEnrollmentRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let csr = nonblank(b.csr).ok_or_else(|| KeyfactorError::bad_request("CSR is required."))?;
    let csr = crate::engine::csr::parse_pkcs10(&csr)?;
    let include_chain = b.include_chain.unwrap_or(false);
    let fmt = certificate_format(&req, "PEM");
    let e = Enrollment {
        csr: Some(csr),
        subject: None,
        sans: SanSet::default(),
        template: nonblank(b.template),
        ca: ca_name(&state, nonblank(b.certificate_authority))?,
        metadata: b.metadata.unwrap_or_default(),
        key_spec: None,
        access: principal.access.clone(),
        needs_key: false,
    };
    let md = e.metadata.clone();
    let information = match enroll(&state, e, API_WAIT).await? {
        Enrolled::Issued(v) => {
            let vid = v.id;
            let certs = blocking(&state, move |engine, c| {
                let v = model::version(c, vid)?;
                let bundle = CertBundle::load(&v, &engine.master, false)?;
                let mut all = vec![bundle.leaf.clone()];
                if include_chain {
                    all.extend(bundle.chain.iter().cloned());
                }
                let out: Result<Vec<String>, KeyfactorError> = all
                    .iter()
                    .map(|x| match fmt.as_str() {
                        "DER" => {
                            x.to_der().map(|d| B64.encode(d)).map_err(|e| KeyfactorError::unavailable(e.to_string()))
                        }
                        _ => x
                            .to_pem()
                            .map(|p| String::from_utf8_lossy(&p).into_owned())
                            .map_err(|e| KeyfactorError::unavailable(e.to_string())),
                    })
                    .collect();
                out
            })
            .await?;
            KfCsrCertificateInformation {
                serial_number: Some(v.serial.clone()),
                issuer_dn: Some(v.issuer_dn.clone()),
                thumbprint: Some(v.thumbprint.clone()),
                keyfactor_id: v.id,
                certificates: certs,
                keyfactor_request_id: v.job_id.unwrap_or(0),
                request_disposition: "ISSUED".into(),
                disposition_message: "The certificate was issued.".into(),
            }
        }
        Enrolled::Pending(job) => KfCsrCertificateInformation {
            serial_number: None,
            issuer_dn: None,
            thumbprint: None,
            keyfactor_id: 0,
            certificates: vec![],
            keyfactor_request_id: job,
            request_disposition: "PENDING".into(),
            disposition_message: format!("The enrollment is queued (request {job})."),
        },
    };
    respond(cs, &KfCsrEnrollmentResponse { certificate_information: information, metadata: md })
}

/// Schedules Add jobs of `cert_id` to stores; returns (successful, failed) store GUIDs.
fn deploy(
    c: &mut crate::db::DbConn,
    principal: &crate::auth::Principal,
    cert_id: i64,
    guids: &[(String, Option<String>, bool)],
) -> Result<(Vec<String>, Vec<String>), KeyfactorError> {
    let v = model::version(c, cert_id)?;
    guard(c, principal, &v, Permission::Write)?;
    let folder = crate::engine::lookup::object_folder(c, v.object_id)?;
    let mut ok = vec![];
    let mut failed = vec![];
    for (g, alias, overwrite) in guids {
        // A store the caller may not use, or one receiving keys the caller may not read, fails
        // like a missing store: nothing is scheduled for it.
        match store_engine::store_for_push(c, &principal.access, g, &folder).ok() {
            Some(s) => {
                crate::db::write_tx(c, None, |tx| {
                    store_engine::schedule(tx, &[s.id], cert_id, "add", alias.as_deref(), *overwrite)
                })
                .map_err(DbError::from)?;
                ok.push(s.guid);
            }
            None => failed.push(g.clone()),
        }
    }
    Ok((ok, failed))
}

#[utoipa::path(post, path = "/KeyfactorAPI/Enrollment/PFX/Deploy", tag = "Keyfactor: enrollment", operation_id = "keyfactor_pfx_deploy",
    request_body = KfPfxDeployRequest,
    responses(
        (status = 200, description = "Add jobs scheduled", body = KfDeployResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/enrollment/pfx/deploy")]
pub async fn pfx_deploy(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfPfxDeployRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    if b.password.is_none() {
        return Err(KeyfactorError::bad_request("Password is required."));
    }
    let cert_id = match (b.certificate_id, b.request_id) {
        (Some(id), _) => id,
        (None, Some(rid)) => {
            blocking(&state, move |_, c| {
                crate::engine::lookup::job_result_certificate(c, rid)?
                    .flatten()
                    .ok_or_else(|| KeyfactorError::not_found(format!("Request {rid} has no issued certificate.")))
            })
            .await?
        }
        _ => return Err(KeyfactorError::bad_request("CertificateId or RequestId is required.")),
    };
    let mut targets: Vec<(String, Option<String>, bool)> =
        b.store_ids.unwrap_or_default().into_iter().map(|g| (g, None, true)).collect();
    for entry in b.stores.unwrap_or_default() {
        let Some(s) = entry.object().map_err(|e| bad(&e))? else { continue };
        if let Some(g) = nonblank(s.store_id) {
            targets.push((g, nonblank(s.alias), s.overwrite.unwrap_or(true)));
        }
    }
    let (ok, failed) = blocking(&state, move |_, c| deploy(c, &principal, cert_id, &targets)).await?;
    respond(cs, &KfDeployResponse { successful_stores: ok, failed_stores: failed })
}

#[utoipa::path(post, path = "/KeyfactorAPI/Enrollment/PFX/Replace", tag = "Keyfactor: enrollment", operation_id = "keyfactor_pfx_replace",
    request_body(content = KfPfxReplaceRequest, example = json!({"ExistingCertificateId": 1, "CertificateId": 1})),
    responses(
        (status = 200, description = "Add jobs scheduled", body = KfDeployResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/enrollment/pfx/replace")]
pub async fn pfx_replace(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfPfxReplaceRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let old =
        b.existing_certificate_id.ok_or_else(|| KeyfactorError::bad_request("ExistingCertificateId is required."))?;
    let new = b.certificate_id.ok_or_else(|| KeyfactorError::bad_request("CertificateId is required."))?;
    let (ok, failed) = blocking(&state, move |_, c| {
        // The replaced certificate must be the caller's to see, like the new one.
        let replaced = model::version(c, old)?;
        guard(c, &principal, &replaced, Permission::Write)?;
        // Every entry the old certificate occupies now gets the new one, under the same alias.
        let holding = store_engine::locations_of(c, old)?;
        let targets: Vec<(String, Option<String>, bool)> =
            holding.into_iter().map(|(s, alias)| (s.guid, Some(alias), true)).collect();
        deploy(c, &principal, new, &targets)
    })
    .await?;
    respond(cs, &KfDeployResponse { successful_stores: ok, failed_stores: failed })
}

#[utoipa::path(get, path = "/KeyfactorAPI/Certificates/{id}", tag = "Keyfactor: certificates", operation_id = "keyfactor_certificate_get",
    params(("id" = i64, Path, description = "The certificate id", example = 1)),
    responses(
        (status = 200, body = KfCertificate),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/certificates/{id}")]
pub async fn certificate_get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let cs = casing(&req, None);
    let id = path_id(&path.into_inner())?;
    let v = blocking(&state, move |_, c| {
        let v = model::version(c, id)?;
        guard(c, &principal, &v, Permission::Read)?;
        model::certificate(c, &v)
    })
    .await?;
    respond(cs, &v)
}

/// The paging query, its parameters' `prefix.` stripped (`pq.queryString` → `queryString`).
fn paged_query(req: &HttpRequest) -> Result<PagedQuery, KeyfactorError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let m: serde_json::Map<String, Value> =
        pairs.into_iter().map(|(k, v)| (k.rsplit('.').next().unwrap_or(&k).to_string(), Value::String(v))).collect();
    Lenient::<PagedQuery>::from_body(LenientBody::from_map(m)).map_err(|e| bad(&e))
}

/// `field -eq "value"` terms joined by AND (the subset of Keyfactor's query language scripts use).
fn query_terms(q: &str) -> Result<Vec<(String, String)>, KeyfactorError> {
    let mut out = vec![];
    for term in q.split(" AND ").map(str::trim).filter(|t| !t.is_empty()) {
        let parts: Vec<&str> = term.splitn(3, ' ').collect();
        if parts.len() != 3 || !parts[1].eq_ignore_ascii_case("-eq") {
            return Err(KeyfactorError::bad_request(format!(
                "Unsupported query term '{term}': use field -eq \"value\"."
            )));
        }
        out.push((parts[0].to_ascii_lowercase(), parts[2].trim_matches('"').to_string()));
    }
    Ok(out)
}

#[utoipa::path(get, path = "/KeyfactorAPI/Certificates", tag = "Keyfactor: certificates", operation_id = "keyfactor_certificates_query",
    params(("pq.queryString" = Option<String>, Query, description = "`field -eq \"value\"` terms joined by ` AND `; fields Id, CertId, Thumbprint, SerialNumber, IssuedCN"),
           ("pq.returnLimit" = Option<i64>, Query, description = "Page size, 1–1000 (default 50)"),
           ("pq.pageReturned" = Option<i64>, Query, description = "Page number from 1")),
    responses(
        (status = 200, body = Vec<KfCertificate>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/certificates")]
pub async fn certificates_query(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let cs = casing(&req, None);
    let q = paged_query(&req)?;
    let terms = query_terms(&q.query_string.unwrap_or_default())?;
    let limit = q.return_limit.unwrap_or(50).clamp(1, 1000);
    let page = q.page_returned.unwrap_or(1).max(1);
    let items = blocking(&state, move |_, c| {
        use crate::engine::search::{self, CertFilter};
        let mut filters = vec![];
        for (k, v) in &terms {
            filters.push(match k.as_str() {
                "id" | "certid" => CertFilter::Id(v.parse::<i64>().unwrap_or(-1)),
                "thumbprint" => CertFilter::Thumbprint(crate::engine::inventory::normalize_thumbprint(v)),
                "serialnumber" => CertFilter::Serial(v.to_ascii_uppercase()),
                "issuedcn" | "cn" => CertFilter::CommonName(v.clone()),
                other => return Err(KeyfactorError::bad_request(format!("Unsupported query field '{other}'."))),
            });
        }
        let offset = (page - 1).saturating_mul(limit);
        let rows: Vec<CertVersion> = search::certificates_for(c, &principal.access, &filters, limit, offset)?;
        rows.iter().map(|v| model::certificate(c, v)).collect::<Result<Vec<_>, _>>()
    })
    .await?;
    respond(cs, &items)
}

/// Looks a certificate up and checks the caller's folder permission on it.
async fn find_guarded(
    state: &AppState,
    principal: crate::auth::Principal,
    (id, tp, sn, iss): model::LookupFields,
    perm: Permission,
) -> Result<CertVersion, KeyfactorError> {
    blocking(state, move |_, c| {
        let v = model::lookup_for(c, &principal, perm, id, tp.as_deref(), sn.as_deref(), iss.as_deref())?;
        Ok(v)
    })
    .await
}

/// How Download and Recover name the certificate: `CertID` (or `CertificateId`), thumbprint,
/// serial number and issuer DN.
fn lookup_fields(
    cert_id: Option<i64>,
    certificate_id: Option<i64>,
    thumbprint: Option<String>,
    serial_number: Option<String>,
    issuer_dn: Option<String>,
) -> model::LookupFields {
    (cert_id.or(certificate_id), nonblank(thumbprint), nonblank(serial_number), nonblank(issuer_dn))
}

#[utoipa::path(post, path = "/KeyfactorAPI/Certificates/Download", tag = "Keyfactor: certificates", operation_id = "keyfactor_certificates_download",
    params(("x-certificateformat" = Option<String>, Header, description = "`PEM` (default), `DER` or `P7B`")), request_body(content = KfDownloadRequest, example = json!({"CertID": 1, "IncludeChain": true})),
    responses(
        (status = 200, body = KfDownloadResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/certificates/download")]
pub async fn certificates_download(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let (b, raw) = body::<KfDownloadRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let include_chain = b.include_chain.unwrap_or(false);
    let (id, tp, sn, iss) = lookup_fields(b.cert_id, b.certificate_id, b.thumbprint, b.serial_number, b.issuer_dn);
    let fmt = match certificate_format(&req, "PEM").as_str() {
        "PEM" => OutputFormat::Base64,
        "DER" => OutputFormat::Der,
        "P7B" | "PKCS7" => OutputFormat::Pkcs7,
        other => {
            return Err(KeyfactorError::bad_request(format!(
                "Unsupported certificate format '{other}': use PEM, DER or P7B."
            )));
        }
    };
    let v = find_guarded(&state, principal, (id, tp, sn, iss), Permission::Read).await?;
    let bytes = render(&state, v.id, fmt, None, include_chain, false).await?;
    respond(cs, &KfDownloadResponse { content: B64.encode(bytes) })
}

#[utoipa::path(post, path = "/KeyfactorAPI/Certificates/Recover", tag = "Keyfactor: certificates", operation_id = "keyfactor_certificates_recover",
    params(("x-certificateformat" = Option<String>, Header, description = "`PFX` (default), `PEM` or `JKS`")), request_body(content = KfRecoverRequest, example = json!({"CertID": 1, "Password": "Str0ng!Passw0rd#2024"})),
    responses(
        (status = 200, body = KfRecoverResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/certificates/recover")]
pub async fn certificates_recover(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfRecoverRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let password =
        b.password.filter(|p| !p.is_empty()).ok_or_else(|| KeyfactorError::bad_request("Password is required."))?;
    let include_chain = b.include_chain.unwrap_or(false);
    let (id, tp, sn, iss) = lookup_fields(b.cert_id, b.certificate_id, b.thumbprint, b.serial_number, b.issuer_dn);
    let (fmt, ext) = match certificate_format(&req, "PFX").as_str() {
        "PFX" | "P12" | "PKCS12" => (OutputFormat::Pkcs12, "pfx"),
        "PEM" => (OutputFormat::Base64Pkcs8, "pem"),
        "JKS" => (OutputFormat::Jks, "jks"),
        other => {
            return Err(KeyfactorError::bad_request(format!(
                "Unsupported certificate format '{other}': use PFX, PEM or JKS."
            )));
        }
    };
    let v = find_guarded(&state, principal, (id, tp, sn, iss), Permission::Key).await?;
    let target = format!("certificate {} ({})", v.id, v.thumbprint);
    crate::api::observe::note_certificate(&req, crate::engine::audit::action::KEY_DOWNLOAD, target, Some(v.id));
    let bytes = render(&state, v.id, fmt, Some(password), include_chain, true).await?;
    tracing::info!(certificate = v.id, "private key recovered through the Keyfactor API");
    let name = if v.common_name.is_empty() { "certificate".to_string() } else { v.common_name.replace('*', "_") };
    respond(cs, &KfRecoverResponse { pfx: B64.encode(bytes), file_name: format!("{name}.{ext}") })
}

#[utoipa::path(post, path = "/KeyfactorAPI/Certificates/Revoke", tag = "Keyfactor: certificates", operation_id = "keyfactor_certificates_revoke",
    request_body = KfRevokeRequest,
    responses(
        (status = 200, body = KfRevokeResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/certificates/revoke")]
pub async fn certificates_revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("revoke")).await?;
    let (b, raw) = body::<KfRevokeRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let ids = b.certificate_ids.ok_or_else(|| KeyfactorError::bad_request("CertificateIds is required."))?;
    let reason = b.reason.unwrap_or(0) as i32;
    let comment = b.comment.unwrap_or_default();
    for id in &ids {
        let target = format!("certificate {id}");
        crate::api::observe::note_certificate(&req, crate::engine::audit::action::REVOKE, target, Some(*id));
    }
    let revoked = blocking(&state, move |e, c| {
        let mut out = vec![];
        for id in ids {
            let v = model::version(c, id)?;
            guard(c, &principal, &v, Permission::Write)?;
            e.revoke(c, &CertRef::Thumbprint(v.thumbprint.clone()), reason, &comment, false)?;
            out.push(id);
        }
        Ok(out)
    })
    .await?;
    respond(cs, &KfRevokeResponse { revoked_ids: revoked, suspended_certs: vec![] })
}

#[utoipa::path(get, path = "/KeyfactorAPI/CertificateStores", tag = "Keyfactor: certificate stores", operation_id = "keyfactor_stores_list",
    responses(
        (status = 200, body = Vec<KfCertificateStore>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/certificatestores")]
pub async fn stores_list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "configuration", None).await?;
    let cs = casing(&req, None);
    let v = blocking(&state, move |_, c| {
        let mut out = vec![];
        for s in store_engine::list_stores_for(c, &principal.access)? {
            let id = store_engine::container_id(c, &s)?;
            out.push(model::store(&s, id));
        }
        Ok(out)
    })
    .await?;
    respond(cs, &v)
}

#[utoipa::path(get, path = "/KeyfactorAPI/CertificateStores/{id}", tag = "Keyfactor: certificate stores", operation_id = "keyfactor_stores_get",
    params(("id" = String, Path, description = "The store GUID")),
    responses(
        (status = 200, body = KfCertificateStore),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/certificatestores/{id}")]
pub async fn stores_get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "configuration", None).await?;
    let cs = casing(&req, None);
    let g = path.into_inner();
    let v = blocking(&state, move |_, c| {
        let s = store_engine::find_store_for(c, &principal.access, &g, Permission::Read)?
            .ok_or_else(|| KeyfactorError::not_found(format!("Certificate store {g} does not exist.")))?;
        let id = store_engine::container_id(c, &s)?;
        Ok(model::store(&s, id))
    })
    .await?;
    respond(cs, &v)
}

/// Creates a store: `ClientMachine`, `Storepath`, `CertStoreType` (1 PEM directory, 2 PKCS#12
/// file, 3 JKS file), optional `Password` and `Properties` (JSON string or object with `alias`,
/// `includeKeys`).
#[utoipa::path(post, path = "/KeyfactorAPI/CertificateStores", tag = "Keyfactor: certificate stores", operation_id = "keyfactor_stores_create",
    request_body(content = KfCreateStoreRequest, example = json!({"ClientMachine": "web01", "Storepath": "/opt/app/tls", "CertStoreType": 1, "Properties": "{\"alias\": \"web\", \"includeKeys\": true}"})),
    responses(
        (status = 200, body = KfCertificateStore),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/certificatestores")]
pub async fn stores_create(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "configuration", Some("manage")).await?;
    let (b, raw) = body::<KfCreateStoreRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let container_name = nonblank(b.container_name);
    let container_id = b.container_id.filter(|id| *id != 0);
    let machine =
        nonblank(b.client_machine).ok_or_else(|| KeyfactorError::bad_request("ClientMachine is required."))?;
    let path = nonblank(b.storepath).ok_or_else(|| KeyfactorError::bad_request("Storepath is required."))?;
    let code = b.cert_store_type.unwrap_or(1);
    let ty = model::store_type_name(code).ok_or_else(|| {
        KeyfactorError::bad_request(format!(
            "Unsupported CertStoreType {code}: use 1 (PEM directory), 2 (PKCS#12) or 3 (JKS)."
        ))
    })?;
    let props =
        b.properties.map(StoreProperties::values).transpose().map_err(KeyfactorError::bad_request)?.unwrap_or_default();
    let alias = nonblank(props.alias);
    let include_keys = props.include_keys.unwrap_or(false);
    let password = b.password;
    let (s, id) = blocking(&state, move |e, c| {
        // The container: ContainerName (a folder DN) or ContainerId (a folder's id); the root without.
        let folder = match (container_name, container_id) {
            (Some(n), _) => Some(n),
            (None, Some(id)) => Some(
                crate::engine::policy::find_folder_by_id(c, id)
                    .map_err(crate::db::DbError::from)?
                    .map(|f| f.dn)
                    // A container outside the caller's folders answers as a missing one.
                    .filter(|dn| crate::engine::policy::may(&principal.access, dn, Permission::Write))
                    .ok_or_else(|| KeyfactorError::bad_request(format!("Container {id} does not exist.")))?,
            ),
            (None, None) => None,
        };
        let s = store_engine::create_store(
            c,
            &e.master,
            &principal.access,
            &store_engine::NewStore {
                client_machine: &machine,
                store_path: &path,
                store_type: ty,
                alias: alias.as_deref(),
                password: password.as_deref(),
                include_keys,
                folder_dn: folder.as_deref(),
            },
        )?;
        crate::engine::audit::record(
            c,
            &crate::engine::audit::Entry {
                actor: principal.user_name.clone(),
                action: crate::engine::audit::action::STORE_CHANGE.into(),
                target: s.guid.clone(),
                outcome: "success".into(),
                detail: format!(
                    "store {} {} ({}) added in {}",
                    s.client_machine,
                    s.store_path,
                    s.store_type,
                    s.folder()
                ),
                source: "keyfactor".into(),
                ..Default::default()
            },
        )
        .map_err(crate::db::DbError::from)?;
        let id = store_engine::container_id(c, &s)?;
        Ok((s, id))
    })
    .await?;
    respond(cs, &model::store(&s, id))
}

#[utoipa::path(get, path = "/KeyfactorAPI/CertificateStores/{id}/Inventory", tag = "Keyfactor: certificate stores", operation_id = "keyfactor_stores_inventory",
    params(("id" = String, Path, description = "The store GUID")),
    responses(
        (status = 200, body = Vec<KfStoreInventoryItem>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/certificatestores/{id}/inventory")]
pub async fn stores_inventory(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "configuration", None).await?;
    let cs = casing(&req, None);
    let g = path.into_inner();
    let v = blocking(&state, move |_, c| {
        let s = store_engine::find_store_for(c, &principal.access, &g, Permission::Read)?
            .ok_or_else(|| KeyfactorError::not_found(format!("Certificate store {g} does not exist.")))?;
        let mut out = vec![];
        for (alias, cid) in store_engine::contents(c, &s)? {
            let v = model::version(c, cid)?;
            // The inventory model of the v1 SDK wants object-valued metadata: leave it out here.
            let cert = KfCertificate { metadata: None, ..model::certificate(c, &v)? };
            out.push(KfStoreInventoryItem { name: alias, certificates: vec![cert], parameters: BTreeMap::new() });
        }
        Ok(out)
    })
    .await?;
    respond(cs, &v)
}

/// `CertificateStores` as (store GUID, alias, overwrite) triples.
fn store_targets(
    stores: Option<Vec<Entry<KfStoreTarget>>>,
) -> Result<Vec<(String, Option<String>, bool)>, KeyfactorError> {
    let stores = stores.ok_or_else(|| KeyfactorError::bad_request("CertificateStores is required."))?;
    stores
        .into_iter()
        .map(|entry| {
            let t = match entry {
                Entry::Object(t) => t,
                Entry::NotAnObject => {
                    return Err(KeyfactorError::bad_request("CertificateStores entries must be objects."));
                }
                Entry::Invalid(e) => return Err(bad(&e)),
            };
            let id = nonblank(t.certificate_store_id)
                .ok_or_else(|| KeyfactorError::bad_request("CertificateStoreId is required."))?;
            Ok((id, nonblank(t.alias), t.overwrite.unwrap_or(false)))
        })
        .collect()
}

#[utoipa::path(post, path = "/KeyfactorAPI/CertificateStores/Certificates/Add", tag = "Keyfactor: certificate stores", operation_id = "keyfactor_stores_add",
    request_body = KfStoresAddRequest,
    responses(
        (status = 200, description = "GUIDs of the scheduled store jobs", body = Vec<String>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/certificatestores/certificates/add")]
pub async fn stores_add(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfStoresAddRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let cert_id = b.certificate_id.ok_or_else(|| KeyfactorError::bad_request("CertificateId is required."))?;
    let targets = store_targets(b.certificate_stores)?;
    let guids = blocking(&state, move |_, c| {
        let v = model::version(c, cert_id)?;
        guard(c, &principal, &v, Permission::Write)?;
        let folder = crate::engine::lookup::object_folder(c, v.object_id)?;
        let guids: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
        let stores = store_engine::stores_for_push(c, &principal.access, &guids, &folder)?;
        let mut out = vec![];
        crate::db::write_tx(c, None, |tx| -> Result<(), DbError> {
            for (s, (_, alias, overwrite)) in stores.iter().zip(targets.iter()) {
                out.extend(store_engine::schedule(tx, &[s.id], cert_id, "add", alias.as_deref(), *overwrite)?);
            }
            Ok(())
        })?;
        Ok(out)
    })
    .await?;
    respond(cs, &guids)
}

#[utoipa::path(post, path = "/KeyfactorAPI/CertificateStores/Certificates/Remove", tag = "Keyfactor: certificate stores", operation_id = "keyfactor_stores_remove",
    request_body = KfStoresRemoveRequest,
    responses(
        (status = 200, description = "GUIDs of the scheduled store jobs", body = Vec<String>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/certificatestores/certificates/remove")]
pub async fn stores_remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, raw) = body::<KfStoresRemoveRequest>(payload, &state).await?;
    let cs = casing(&req, Some(&raw));
    let targets = store_targets(b.certificate_stores)?;
    let guids = blocking(&state, move |_, c| {
        // Removing from a store needs write on the store's folder (another folder's store answers as unknown).
        let guids: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
        let stores = store_engine::resolve_stores_for(c, &principal.access, &guids)?;
        let mut out = vec![];
        crate::db::write_tx(c, None, |tx| -> Result<(), DbError> {
            for (s, (_, alias, _)) in stores.iter().zip(targets.iter()) {
                out.push(store_engine::schedule_remove(tx, s, alias.as_deref())?);
            }
            Ok(())
        })?;
        Ok(out)
    })
    .await?;
    respond(cs, &guids)
}

#[utoipa::path(get, path = "/KeyfactorAPI/OrchestratorJobs/JobHistory", tag = "Keyfactor: orchestrator jobs", operation_id = "keyfactor_job_history",
    params(("pq.queryString" = Option<String>, Query, description = "`field -eq \"value\"` terms joined by ` AND `; fields JobId, Status, Result, JobType, ClientMachine"),
           ("pq.returnLimit" = Option<i64>, Query, description = "Page size, 1–1000 (default 50)"),
           ("pq.pageReturned" = Option<i64>, Query, description = "Page number from 1")),
    responses(
        (status = 200, body = Vec<KfJobHistory>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/orchestratorjobs/jobhistory")]
pub async fn job_history(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "configuration", None).await?;
    let cs = casing(&req, None);
    let q = paged_query(&req)?;
    let terms = query_terms(&q.query_string.unwrap_or_default())?;
    let limit = q.return_limit.unwrap_or(50).clamp(1, 1000);
    let page = q.page_returned.unwrap_or(1).max(1);
    let mut filter = store_engine::HistoryFilter::default();
    for (k, v) in &terms {
        match k.as_str() {
            "jobid" => filter.job_guid = Some(v.clone()),
            "status" => match v.parse() {
                Ok(n) => filter.status = Some(n),
                Err(_) => filter.nothing = true,
            },
            "result" => match v.parse() {
                Ok(n) => filter.result = Some(n),
                Err(_) => filter.nothing = true,
            },
            "jobtype" => filter.nothing |= !v.eq_ignore_ascii_case("Management"),
            "clientmachine" | "agent" => filter.client_machine = Some(v.clone()),
            _ => filter.nothing = true,
        }
    }
    let offset = (page - 1).saturating_mul(limit);
    let rows =
        blocking(&state, move |_, c| Ok(store_engine::history_for(c, &principal.access, &filter, limit, offset)?))
            .await?;
    let out: Vec<KfJobHistory> = rows
        .into_iter()
        .map(|(run, job, store)| KfJobHistory {
            job_history_id: run.id,
            agent_machine: store.client_machine.clone(),
            client_machine: store.client_machine,
            store_path: store.store_path,
            job_id: job.guid,
            schedule: KfJobSchedule { immediate: true },
            job_type: "Management".into(),
            operation_start: model::ts(run.operation_start),
            operation_end: run.operation_end.map(model::ts),
            message: run.message,
            result: run.result,
            status: run.status,
        })
        .collect();
    respond(cs, &out)
}

#[utoipa::path(get, path = "/KeyfactorAPI/OrchestratorJobs/ScheduledJobs", tag = "Keyfactor: orchestrator jobs", operation_id = "keyfactor_scheduled_jobs",
    responses(
        (status = 200, body = Vec<KfScheduledJob>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/orchestratorjobs/scheduledjobs")]
pub async fn scheduled_jobs(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "configuration", None).await?;
    let cs = casing(&req, None);
    let rows = blocking(&state, move |_, c| Ok(store_engine::scheduled_for(c, &principal.access)?)).await?;
    let out: Vec<KfScheduledJob> = rows
        .into_iter()
        .map(|(j, s)| KfScheduledJob {
            id: j.guid,
            client_machine: s.client_machine,
            target: s.store_path,
            schedule: KfJobSchedule { immediate: true },
            requested: model::ts(j.created_at),
            job_type: "Management".into(),
        })
        .collect();
    respond(cs, &out)
}

#[utoipa::path(post, path = "/KeyfactorAPI/OrchestratorJobs/Acknowledge", tag = "Keyfactor: orchestrator jobs", operation_id = "keyfactor_acknowledge",
    request_body(content = KfAcknowledgeRequest, example = json!({"JobAuditIds": []})),
    responses(
        (status = 204, description = "Failed runs acknowledged (other ids are ignored)"),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[post("/keyfactorapi/orchestratorjobs/acknowledge")]
pub async fn acknowledge(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "configuration", Some("manage")).await?;
    let (b, _) = body::<KfAcknowledgeRequest>(payload, &state).await?;
    let ids = b.job_audit_ids.ok_or_else(|| KeyfactorError::bad_request("JobAuditIds is required."))?;
    blocking(&state, move |_, c| Ok(store_engine::acknowledge_for(c, &principal.access, &ids)?)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/KeyfactorAPI/Templates", tag = "Keyfactor: templates and CAs", operation_id = "keyfactor_templates",
    responses(
        (status = 200, body = Vec<KfTemplate>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/templates")]
pub async fn templates_list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, KeyfactorError> {
    authenticate(&req, &state, "configuration", None).await?;
    let cs = casing(&req, None);
    let list = blocking(&state, |_, c| Ok(templates::list(c)?)).await?;
    let out: Vec<KfTemplate> = list
        .iter()
        .map(|t| {
            let ekus = templates::ekus_of(t)
                .iter()
                .zip(1..)
                .map(|(e, id)| {
                    let oid = match e.to_ascii_lowercase().as_str() {
                        "serverauth" => "1.3.6.1.5.5.7.3.1",
                        "clientauth" => "1.3.6.1.5.5.7.3.2",
                        "codesigning" => "1.3.6.1.5.5.7.3.3",
                        _ => "1.3.6.1.5.5.7.3.4",
                    };
                    KfExtendedKeyUsage { id, oid: oid.into(), display_name: e.clone() }
                })
                .collect();
            KfTemplate {
                id: t.id,
                common_name: t.name.clone(),
                template_name: t.name.clone(),
                oid: format!("1.3.6.1.4.1.311.21.8.{}", t.id),
                key_size: "2048".into(),
                key_type: "RSA".into(),
                forest_root: String::new(),
                friendly_name: t.name.clone(),
                key_retention: 0,
                key_retention_days: 0,
                key_archival: false,
                enrollment_fields: vec![],
                allowed_enrollment_types: 1,
                template_regexes: vec![],
                use_allowed_requesters: false,
                allowed_requesters: vec![],
                display_name: t.name.clone(),
                requires_approval: false,
                key_usage: 0,
                extended_key_usages: ekus,
                configuration_tenant: String::new(),
                policy_dn: t.policy_dn.clone(),
            }
        })
        .collect();
    respond(cs, &out)
}

#[utoipa::path(get, path = "/KeyfactorAPI/CertificateAuthority", tag = "Keyfactor: templates and CAs", operation_id = "keyfactor_certificate_authorities",
    responses(
        (status = 200, body = Vec<KfCertificateAuthority>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/certificateauthority")]
pub async fn cas(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, KeyfactorError> {
    authenticate(&req, &state, "configuration", None).await?;
    let cs = casing(&req, None);
    let host = state.engine.settings.ca_host();
    let rows = blocking(&state, |_, c| Ok(crate::ca::BuiltinCa::list_issuing(c).map_err(DbError::from)?)).await?;
    let out: Vec<KfCertificateAuthority> = rows
        .iter()
        .map(|r| KfCertificateAuthority {
            id: r.id,
            logical_name: r.name.clone(),
            host_name: host.clone(),
            delegate: false,
            delegate_enrollment: false,
            forest_root: String::new(),
            configuration_tenant: String::new(),
            remote: false,
            agent: String::new(),
            standalone: true,
            monitor_thresholds: false,
            issuance_max: 0,
            issuance_min: 0,
            denial_max: 0,
            failure_max: 0,
            rfc_enforcement: false,
            properties: "{}".into(),
            allowed_enrollment_types: 0,
            key_retention: 0,
            key_retention_days: 0,
            explicit_credentials: false,
            subscriber_terms: false,
            explicit_user: String::new(),
            use_allowed_requesters: false,
            allowed_requesters: vec![],
            enforce_unique_dn: false,
            ca_type: 0,
            last_scan: String::new(),
            enabled: !r.disabled,
        })
        .collect();
    respond(cs, &out)
}

#[utoipa::path(get, path = "/KeyfactorAPI/Status/Endpoints", tag = "Keyfactor: templates and CAs", operation_id = "keyfactor_status_endpoints",
    responses(
        (status = 200, description = "The operations this gateway serves (`METHOD /path`)", body = Vec<String>),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors),
    security(("bearer" = []), ("basic" = [])))]
#[get("/keyfactorapi/status/endpoints")]
pub async fn status_endpoints(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, KeyfactorError> {
    authenticate(&req, &state, "", None).await?;
    let list = [
        "POST /Enrollment/Renew",
        "GET /Enrollment/AvailableRenewal/Id/{id}",
        "GET /Enrollment/AvailableRenewal/Thumbprint/{thumbprint}",
        "POST /Enrollment/PFX",
        "POST /Enrollment/CSR",
        "POST /Enrollment/PFX/Deploy",
        "POST /Enrollment/PFX/Replace",
        "GET /Certificates",
        "GET /Certificates/{id}",
        "POST /Certificates/Download",
        "POST /Certificates/Recover",
        "POST /Certificates/Revoke",
        "GET /CertificateStores",
        "POST /CertificateStores",
        "GET /CertificateStores/{id}",
        "GET /CertificateStores/{id}/Inventory",
        "POST /CertificateStores/Certificates/Add",
        "POST /CertificateStores/Certificates/Remove",
        "GET /OrchestratorJobs/JobHistory",
        "GET /OrchestratorJobs/ScheduledJobs",
        "POST /OrchestratorJobs/Acknowledge",
        "GET /Templates",
        "GET /CertificateAuthority",
        "GET /Status/Endpoints",
    ];
    respond(Casing::Pascal, &list)
}
