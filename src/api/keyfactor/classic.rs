//! Classic CMS API: `POST /CMSApi/CertEnroll/3/Renew`, `/3/Pkcs10`, `/3/Pkcs12`.
use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, post, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::error::{INVALID_REQUEST, KeyfactorAuthErrors, KeyfactorErrorBody, NOT_VISIBLE};
use super::request::{
    KfClassicLookup, KfClassicMetadataItem, KfClassicPkcs10Request, KfClassicPkcs12Request, KfClassicRenewRequest,
};
use super::response::{KfClassicPkcs10Response, KfClassicPkcs12Response, KfClassicRenewResponse};
use super::{Casing, KeyfactorError, authenticate, body, model, nonblank, respond};
use crate::app::AppState;
use crate::engine::Engine;
use crate::engine::inventory::CertRef;
use crate::engine::queue::Settled;
use crate::engine::renew::KeyfactorRenew;
use crate::vocab::Permission;

pub const RENEWED_MESSAGE: &str = "The certificate renewal has been completed successfully. Agent jobs to install the new certificate have been created.";

fn classic_wait(state: &AppState) -> Duration {
    crate::settings::parse_duration(&state.engine.settings.keyfactor.classic_wait).unwrap_or(Duration::from_secs(30))
}

/// The classic Lookup structure: CMSID, Thumbprint, or Serial(Number) + IssuerDN.
fn lookup(l: Option<KfClassicLookup>) -> Result<model::LookupFields, KeyfactorError> {
    let Some(l) = l else {
        return Err(KeyfactorError::bad_request("Lookup is required."));
    };
    let t = nonblank(l.r#type).unwrap_or_default().to_ascii_lowercase();
    match t.as_str() {
        "cmsid" | "id" | "" if l.cmsid.is_some() => Ok((l.cmsid, None, None, None)),
        "thumbprint" => Ok((
            None,
            Some(nonblank(l.thumbprint).ok_or_else(|| KeyfactorError::bad_request("Lookup.Thumbprint is required."))?),
            None,
            None,
        )),
        "serial" | "serialnumber" => {
            let sn = nonblank(l.serial_number).or(nonblank(l.serial));
            let sn = sn.ok_or_else(|| KeyfactorError::bad_request("Lookup.SerialNumber is required."))?;
            Ok((None, None, Some(sn), nonblank(l.issuer_dn)))
        }
        "cmsid" => Err(KeyfactorError::bad_request("Lookup.CMSID is required.")),
        other => {
            Err(KeyfactorError::bad_request(format!("Unknown Lookup.Type '{other}': use CMSID, Thumbprint or Serial.")))
        }
    }
}

/// The CA name out of a `<ca.host>\NAME` configuration string (or a bare `NAME`); a host part
/// other than `ca.host` (case-insensitive) names a CA this gateway does not have.
pub fn ca_name(state: &AppState, cfg: Option<String>) -> Result<Option<String>, KeyfactorError> {
    let Some(c) = cfg.map(|c| c.trim().to_string()).filter(|c| !c.is_empty()) else { return Ok(None) };
    match c.rsplit_once('\\') {
        Some((host, name)) => {
            if !host.trim().eq_ignore_ascii_case(&state.engine.settings.ca_host()) {
                return Err(KeyfactorError::bad_request(format!("Certificate authority '{c}' does not exist.")));
            }
            Ok(Some(name.trim().to_string()).filter(|s| !s.is_empty()))
        }
        None => Ok(Some(c)),
    }
}

#[utoipa::path(post, path = "/CMSApi/CertEnroll/3/Renew", tag = "Keyfactor: classic (CMSApi)", operation_id = "keyfactor_classic_renew",
    request_body(content = KfClassicRenewRequest, example = json!({"Lookup": {"Type": "CMSID", "CMSID": 1}, "Template": "WebServer"})),
    responses(
        (status = 200, description = "Renewed (`Issued`) or queued (`Pending`); waits up to keyfactor.classic_wait", body = KfClassicRenewResponse),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/cmsapi/certenroll/3/renew")]
pub async fn renew(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, _) = body::<KfClassicRenewRequest>(payload, &state).await?;
    let (id, tp, sn, issuer) = lookup(b.lookup.map(|l| l.0))?;
    let kf = KeyfactorRenew {
        certificate: CertRef::CertificateId(0),
        template: nonblank(b.template),
        ca: ca_name(&state, nonblank(b.ca_configuration))?,
        metadata: b.metadata.unwrap_or_default(),
        store_guids: b.cert_stores.unwrap_or_default(),
        access: principal.access.clone(),
    };
    // Runs the job at once on this request's thread when there is capacity (Engine::accept_then_wait).
    let accept = move |e: &Engine, c: &mut crate::db::DbConn| {
        let v =
            model::lookup_for(c, &principal, Permission::Write, id, tp.as_deref(), sn.as_deref(), issuer.as_deref())?;
        let (accepted, stores) =
            e.renew_keyfactor_here(c, &KeyfactorRenew { certificate: CertRef::CertificateId(v.id), ..kf })?;
        let labels: Vec<String> = stores.iter().map(crate::engine::stores::store_label).collect();
        tracing::info!(
            object = accepted.object.id,
            job = accepted.job_id,
            stores = labels.len(),
            "Keyfactor classic renewal accepted"
        );
        Ok::<_, KeyfactorError>(((accepted.object.dn.clone(), accepted.job_id, labels), accepted))
    };
    let finish = |e: &Engine, c: &mut crate::db::DbConn, _: &(String, i64, Vec<String>), cert_id: i64| {
        model::issued_version(e, c, cert_id)
    };
    let ((dn, job_id, labels), settled) = state.engine.accept_then_wait(classic_wait(&state), accept, finish).await?;
    crate::api::observe::note(&req, crate::engine::audit::action::RENEW, dn);
    match settled {
        Settled::Issued(v) => {
            let message = if labels.is_empty() {
                "The certificate renewal has been completed successfully."
            } else {
                RENEWED_MESSAGE
            };
            respond(
                Casing::Pascal,
                &KfClassicRenewResponse {
                    renewed_cert_stores: labels,
                    thumbprint: v.thumbprint,
                    cms_request_id: 0,
                    request_disposition: "Issued".into(),
                    disposition_message: message.into(),
                },
            )
        }
        Settled::Failed(msg) => Err(KeyfactorError::bad_request(format!("The certificate renewal failed: {msg}"))),
        Settled::Pending => respond(
            Casing::Pascal,
            &KfClassicRenewResponse {
                renewed_cert_stores: labels,
                thumbprint: String::new(),
                cms_request_id: job_id,
                request_disposition: "Pending".into(),
                disposition_message: format!(
                    "The renewal is queued (request {job_id}). Agent jobs for the listed stores are created when the certificate is issued; GET /api/v1/jobs/{job_id} tells when."
                ),
            },
        ),
    }
}

/// Base64 DER with CRLF every 64 characters and no PEM armour (what classic scripts expect).
pub fn crlf_base64(der: &[u8]) -> String {
    let b = B64.encode(der);
    b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join("\r\n")
}

/// `metadataList` entries as metadata fields (entries without a name or value are skipped).
fn metadata_list(items: Option<Vec<KfClassicMetadataItem>>) -> BTreeMap<String, String> {
    items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| Some((nonblank(i.metadata_field_type_name)?, i.value?)))
        .collect()
}

#[utoipa::path(post, path = "/CMSApi/CertEnroll/3/Pkcs10", tag = "Keyfactor: classic (CMSApi)", operation_id = "keyfactor_classic_pkcs10",
    request_body(content = KfClassicPkcs10Request, example = json!({"Request": {"Pkcs10Request": "MIHUMHwCAQAwGjEYMBYGA1UEAwwPcDEwLmV4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEz0xvgjPBOiI2kETWglSdG0gqM6+Y4Jh500pU8CmifsieDX5iZ8Bd1rFDxOTI3cqwYI4SxlWgosbQrtW3nJDVZKAAMAoGCCqGSM49BAMCA0gAMEUCIQDV4l9u1aILRtI8H3gG3qIAWI183px1DKLT9RT5DsZv0wIgMXanxP7upap9XGxZB4SyexQC5m6KoT8t6Q8b1MAcBpI=", "TemplateName": "WebServer", "metadataList": [{"MetadataFieldTypeName": "Email-Contact", "Value": "pki@example.com"}]}})),
    responses(
        (status = 200, description = "Issued or queued", body = KfClassicPkcs10Response),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/cmsapi/certenroll/3/pkcs10")]
pub async fn pkcs10(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, _) = body::<KfClassicPkcs10Request>(payload, &state).await?;
    let r = b.request.ok_or_else(|| KeyfactorError::bad_request("Request is required."))?.0;
    let csr =
        nonblank(r.pkcs10_request).ok_or_else(|| KeyfactorError::bad_request("Request.Pkcs10Request is required."))?;
    let csr = crate::engine::csr::parse_pkcs10(&csr)?;
    let issued = super::api::enroll(
        &state,
        super::api::Enrollment {
            csr: Some(csr),
            subject: None,
            sans: Default::default(),
            template: nonblank(r.template_name),
            ca: None,
            metadata: metadata_list(r.metadata_list),
            key_spec: None,
            access: principal.access.clone(),
            needs_key: false,
        },
        classic_wait(&state),
    )
    .await?;
    match issued {
        super::api::Enrolled::Issued(v) => respond(
            Casing::Pascal,
            &KfClassicPkcs10Response {
                certificates: vec![crlf_base64(&v.der)],
                keyfactor_id: v.id,
                thumbprint: Some(v.thumbprint.clone()),
                serial_number: Some(v.serial.clone()),
                issuer_dn: Some(v.issuer_dn.clone()),
                cms_request_id: 0,
                request_disposition: "Issued".into(),
                disposition_message: "The certificate was issued.".into(),
            },
        ),
        super::api::Enrolled::Pending(job) => respond(
            Casing::Pascal,
            &KfClassicPkcs10Response {
                certificates: vec![],
                keyfactor_id: 0,
                thumbprint: None,
                serial_number: None,
                issuer_dn: None,
                cms_request_id: job,
                request_disposition: "Pending".into(),
                disposition_message: format!("The request is queued (request {job})."),
            },
        ),
    }
}

#[utoipa::path(post, path = "/CMSApi/CertEnroll/3/Pkcs12", tag = "Keyfactor: classic (CMSApi)", operation_id = "keyfactor_classic_pkcs12",
    request_body(content = KfClassicPkcs12Request, example = json!({"Request": {"Pkcs12Password": "Str0ng!Passw0rd#2024", "SubjectNameAttributes": {"CN": "p12.example.com", "OU": "Ops"}, "SubjectAltNameElements": [{"key": "dns", "value": "p12.example.com"}], "TemplateName": "WebServer"}})),
    responses(
        (status = 200, description = "Issued (with key) or queued", body = KfClassicPkcs12Response),
        (status = 400, description = INVALID_REQUEST, body = KeyfactorErrorBody),
        KeyfactorAuthErrors,
        (status = 404, description = NOT_VISIBLE, body = KeyfactorErrorBody)),
    security(("bearer" = []), ("basic" = [])))]
#[post("/cmsapi/certenroll/3/pkcs12")]
pub async fn pkcs12(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, KeyfactorError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let (b, _) = body::<KfClassicPkcs12Request>(payload, &state).await?;
    let r = b.request.ok_or_else(|| KeyfactorError::bad_request("Request is required."))?.0;
    let password =
        r.pkcs12_password.ok_or_else(|| KeyfactorError::bad_request("Request.Pkcs12Password is required."))?;
    crate::formats::password::check_strength("Pkcs12Password", &password)?;
    let mut subject = crate::engine::renew::SubjectSpec::default();
    if let Some(s) = r.subject_name_attributes.map(|s| s.0) {
        subject.common_name = nonblank(s.cn);
        subject.organization = nonblank(s.o);
        subject.org_units = nonblank(s.ou).into_iter().collect();
        subject.city = nonblank(s.l);
        subject.state = nonblank(s.st);
        subject.country = nonblank(s.c);
    }
    if subject.common_name.is_none() {
        return Err(KeyfactorError::bad_request("Request.SubjectNameAttributes.CN is required."));
    }
    let mut sans = crate::ca::SanSet::default();
    for entry in r.subject_alt_name_elements.unwrap_or_default() {
        let Some(e) = entry.object().map_err(|e| KeyfactorError::bad_request(e.to_string()))? else { continue };
        let k = nonblank(e.key).unwrap_or_default().to_ascii_lowercase();
        let v = nonblank(e.value).unwrap_or_default();
        match k.as_str() {
            "dns" | "dnsname" => sans.dns.push(v),
            "ip" | "ip4" | "ip6" | "ipaddress" => sans.ip.push(v),
            "email" | "rfc822" | "rfc822name" => sans.email.push(v),
            "uri" | "url" => sans.uri.push(v),
            "upn" => sans.upn.push(v),
            _ => return Err(KeyfactorError::bad_request(format!("Unknown SubjectAltNameElements key '{k}'."))),
        }
    }
    let issued = super::api::enroll(
        &state,
        super::api::Enrollment {
            csr: None,
            subject: Some(subject),
            sans,
            template: nonblank(r.template_name),
            ca: None,
            metadata: metadata_list(r.metadata_list),
            key_spec: None,
            access: principal.access.clone(),
            needs_key: true,
        },
        classic_wait(&state),
    )
    .await?;
    match issued {
        super::api::Enrolled::Issued(v) => {
            let target = format!("certificate {} ({})", v.id, v.thumbprint);
            crate::api::observe::note_certificate(&req, crate::engine::audit::action::KEY_DOWNLOAD, target, Some(v.id));
            let p12 = super::api::pfx_of(&state, v.id, &password, true).await?;
            respond(
                Casing::Pascal,
                &KfClassicPkcs12Response {
                    pkcs12_blob: Some(B64.encode(p12)),
                    keyfactor_id: v.id,
                    thumbprint: Some(v.thumbprint.clone()),
                    serial_number: Some(v.serial.clone()),
                    issuer_dn: Some(v.issuer_dn.clone()),
                    cms_request_id: 0,
                    request_disposition: "Issued".into(),
                    disposition_message: "The certificate was issued.".into(),
                },
            )
        }
        super::api::Enrolled::Pending(job) => respond(
            Casing::Pascal,
            &KfClassicPkcs12Response {
                pkcs12_blob: None,
                keyfactor_id: 0,
                thumbprint: None,
                serial_number: None,
                issuer_dn: None,
                cms_request_id: job,
                request_disposition: "Pending".into(),
                disposition_message: format!("The request is queued (request {job})."),
            },
        ),
    }
}
