//! Classic CMS API: `POST /CMSApi/CertEnroll/3/Renew`, `/3/Pkcs10`, `/3/Pkcs12`.
use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, post, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::doc;
use super::error::{INVALID_REQUEST, KeyfactorAuthErrors, KeyfactorErrorBody, NOT_VISIBLE};
use super::{Casing, KeyfactorError, authenticate, blocking, body, model, respond};
use crate::api::body::LenientBody;
use crate::app::AppState;
use crate::engine::inventory::CertRef;
use crate::engine::queue::JobOutcome;
use crate::engine::renew::KeyfactorRenew;

pub const RENEWED_MESSAGE: &str = "The certificate renewal has been completed successfully. Agent jobs to install the new certificate have been created.";

fn classic_wait(state: &AppState) -> Duration {
    crate::settings::parse_duration(&state.engine.settings.keyfactor.classic_wait).unwrap_or(Duration::from_secs(30))
}

/// `Metadata` as a string map (values of other JSON types are kept as their text).
pub fn metadata(b: &LenientBody) -> BTreeMap<String, String> {
    match b.get("Metadata") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => vec![],
    }
}

/// The classic Lookup structure: CMSID, Thumbprint, or Serial(Number) + IssuerDN.
fn lookup(b: &LenientBody) -> Result<model::LookupFields, KeyfactorError> {
    let Some(Value::Object(m)) = b.get("Lookup") else {
        return Err(KeyfactorError::bad_request("Lookup is required."));
    };
    let l = LenientBody::from_map(m.clone());
    let bad = |e: crate::api::body::BodyError| KeyfactorError::bad_request(e.to_string());
    let t = l.nonblank("Type").map_err(bad)?.unwrap_or_default().to_ascii_lowercase();
    match t.as_str() {
        "cmsid" | "id" | "" if l.get("CMSID").is_some() => {
            Ok((Some(l.int("CMSID").map_err(bad)?.unwrap_or_default()), None, None, None))
        }
        "thumbprint" => Ok((
            None,
            Some(
                l.nonblank("Thumbprint")
                    .map_err(bad)?
                    .ok_or_else(|| KeyfactorError::bad_request("Lookup.Thumbprint is required."))?,
            ),
            None,
            None,
        )),
        "serial" | "serialnumber" => {
            let sn = l.nonblank("SerialNumber").map_err(bad)?.or(l.nonblank("Serial").map_err(bad)?);
            let sn = sn.ok_or_else(|| KeyfactorError::bad_request("Lookup.SerialNumber is required."))?;
            Ok((None, None, Some(sn), l.nonblank("IssuerDN").map_err(bad)?))
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
    request_body(content = doc::KfClassicRenewRequest, example = json!({"Lookup": {"Type": "CMSID", "CMSID": 1}, "Template": "WebServer"})),
    responses(
        (status = 200, description = "Renewed (`Issued`) or queued (`Pending`); waits up to keyfactor.classic_wait", body = doc::KfClassicRenewResponse),
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
    let (b, _) = body(payload, &state).await?;
    let bad = |e: crate::api::body::BodyError| KeyfactorError::bad_request(e.to_string());
    let (id, tp, sn, issuer) = lookup(&b)?;
    let kf = KeyfactorRenew {
        certificate: CertRef::CertificateId(0),
        template: b.nonblank("Template").map_err(bad)?,
        ca: ca_name(&state, b.nonblank("CAConfiguration").map_err(bad)?)?,
        metadata: metadata(&b),
        store_guids: strings(b.get("CertStores")),
        access: principal.access.clone(),
    };
    let (accepted, stores) = blocking(&state, move |e, c| {
        let v = model::lookup_for(c, &principal, "write", id, tp.as_deref(), sn.as_deref(), issuer.as_deref())?;
        Ok(e.renew_keyfactor(c, KeyfactorRenew { certificate: CertRef::CertificateId(v.id), ..kf })?)
    })
    .await?;
    crate::api::observe::note(&req, crate::engine::audit::action::RENEW, accepted.object.dn.clone());
    let labels: Vec<String> = stores.iter().map(crate::engine::stores::store_label).collect();
    tracing::info!(
        object = accepted.object.id,
        job = accepted.job_id,
        stores = labels.len(),
        "Keyfactor classic renewal accepted"
    );
    match state.engine.wait_for_job(accepted.job_id, classic_wait(&state)).await? {
        JobOutcome::Done(Some(cert_id)) => {
            let v = blocking(&state, move |_, c| model::version(c, cert_id)).await?;
            Ok(respond(
                Casing::Pascal,
                json!({
                    "RenewedCertStores": labels,
                    "Thumbprint": v.thumbprint,
                    "CMSRequestId": 0,
                    "RequestDisposition": "Issued",
                    "DispositionMessage": if stores.is_empty() { "The certificate renewal has been completed successfully." } else { RENEWED_MESSAGE },
                }),
            ))
        }
        JobOutcome::Failed(msg) => Err(KeyfactorError::bad_request(format!("The certificate renewal failed: {msg}"))),
        _ => Ok(respond(
            Casing::Pascal,
            json!({
                "RenewedCertStores": labels,
                "Thumbprint": "",
                "CMSRequestId": accepted.job_id,
                "RequestDisposition": "Pending",
                "DispositionMessage": format!(
                    "The renewal is queued (request {}). Agent jobs for the listed stores are created when the certificate is issued; GET /api/v1/jobs/{} tells when.",
                    accepted.job_id, accepted.job_id
                ),
            }),
        )),
    }
}

/// Base64 DER with CRLF every 64 characters and no PEM armour (what classic scripts expect).
pub fn crlf_base64(der: &[u8]) -> String {
    let b = B64.encode(der);
    b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join("\r\n")
}

fn envelope(b: &LenientBody) -> Result<LenientBody, KeyfactorError> {
    match b.get("Request") {
        Some(Value::Object(m)) => Ok(LenientBody::from_map(m.clone())),
        _ => Err(KeyfactorError::bad_request("Request is required.")),
    }
}

fn metadata_list(r: &LenientBody) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Array(a)) = r.get("metadataList") {
        for item in a {
            if let Value::Object(m) = item {
                let l = LenientBody::from_map(m.clone());
                if let (Ok(Some(k)), Ok(Some(v))) = (l.nonblank("MetadataFieldTypeName"), l.str("Value")) {
                    out.insert(k, v);
                }
            }
        }
    }
    out
}

#[utoipa::path(post, path = "/CMSApi/CertEnroll/3/Pkcs10", tag = "Keyfactor: classic (CMSApi)", operation_id = "keyfactor_classic_pkcs10",
    request_body(content = doc::KfClassicPkcs10Request, example = json!({"Request": {"Pkcs10Request": "MIHUMHwCAQAwGjEYMBYGA1UEAwwPcDEwLmV4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEz0xvgjPBOiI2kETWglSdG0gqM6+Y4Jh500pU8CmifsieDX5iZ8Bd1rFDxOTI3cqwYI4SxlWgosbQrtW3nJDVZKAAMAoGCCqGSM49BAMCA0gAMEUCIQDV4l9u1aILRtI8H3gG3qIAWI183px1DKLT9RT5DsZv0wIgMXanxP7upap9XGxZB4SyexQC5m6KoT8t6Q8b1MAcBpI=", "TemplateName": "WebServer", "metadataList": [{"MetadataFieldTypeName": "Email-Contact", "Value": "pki@example.com"}]}})),
    responses(
        (status = 200, description = "Issued or queued", body = doc::KfClassicPkcs10Response),
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
    let (b, _) = body(payload, &state).await?;
    let r = envelope(&b)?;
    let bad = |e: crate::api::body::BodyError| KeyfactorError::bad_request(e.to_string());
    let csr = r
        .nonblank("Pkcs10Request")
        .map_err(bad)?
        .ok_or_else(|| KeyfactorError::bad_request("Request.Pkcs10Request is required."))?;
    let template = r.nonblank("TemplateName").map_err(bad)?;
    let csr = crate::engine::csr::parse_pkcs10(&csr)?;
    let md = metadata_list(&r);
    let issued = super::api::enroll(
        &state,
        super::api::Enrollment {
            csr: Some(csr),
            subject: None,
            sans: Default::default(),
            template,
            ca: None,
            metadata: md,
            key_spec: None,
            access: principal.access.clone(),
            needs_key: false,
        },
        classic_wait(&state),
    )
    .await?;
    match issued {
        super::api::Enrolled::Issued(v) => Ok(respond(
            Casing::Pascal,
            json!({
                "Certificates": [crlf_base64(&v.der)],
                "KeyfactorID": v.id,
                "Thumbprint": v.thumbprint,
                "SerialNumber": v.serial,
                "IssuerDN": v.issuer_dn,
                "CMSRequestId": 0,
                "RequestDisposition": "Issued",
                "DispositionMessage": "The certificate was issued.",
            }),
        )),
        super::api::Enrolled::Pending(job) => Ok(respond(
            Casing::Pascal,
            json!({"Certificates": [], "KeyfactorID": 0, "CMSRequestId": job, "RequestDisposition": "Pending",
                   "DispositionMessage": format!("The request is queued (request {job}).")}),
        )),
    }
}

#[utoipa::path(post, path = "/CMSApi/CertEnroll/3/Pkcs12", tag = "Keyfactor: classic (CMSApi)", operation_id = "keyfactor_classic_pkcs12",
    request_body(content = doc::KfClassicPkcs12Request, example = json!({"Request": {"Pkcs12Password": "Str0ng!Passw0rd#2024", "SubjectNameAttributes": {"CN": "p12.example.com", "OU": "Ops"}, "SubjectAltNameElements": [{"key": "dns", "value": "p12.example.com"}], "TemplateName": "WebServer"}})),
    responses(
        (status = 200, description = "Issued (with key) or queued", body = doc::KfClassicPkcs12Response),
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
    let (b, _) = body(payload, &state).await?;
    let r = envelope(&b)?;
    let bad = |e: crate::api::body::BodyError| KeyfactorError::bad_request(e.to_string());
    let password = r
        .str("Pkcs12Password")
        .map_err(bad)?
        .ok_or_else(|| KeyfactorError::bad_request("Request.Pkcs12Password is required."))?;
    crate::formats::password::check_strength("Pkcs12Password", &password)?;
    let mut subject = crate::engine::renew::SubjectSpec::default();
    if let Some(Value::Object(m)) = r.get("SubjectNameAttributes") {
        let s = LenientBody::from_map(m.clone());
        subject.common_name = s.nonblank("CN").map_err(bad)?;
        subject.organization = s.nonblank("O").map_err(bad)?;
        subject.org_units = s.nonblank("OU").map_err(bad)?.into_iter().collect();
        subject.city = s.nonblank("L").map_err(bad)?;
        subject.state = s.nonblank("ST").map_err(bad)?;
        subject.country = s.nonblank("C").map_err(bad)?;
    }
    if subject.common_name.is_none() {
        return Err(KeyfactorError::bad_request("Request.SubjectNameAttributes.CN is required."));
    }
    let mut sans = crate::ca::SanSet::default();
    if let Some(Value::Array(a)) = r.get("SubjectAltNameElements") {
        for e in a {
            if let Value::Object(m) = e {
                let l = LenientBody::from_map(m.clone());
                let k = l.nonblank("key").map_err(bad)?.unwrap_or_default().to_ascii_lowercase();
                let v = l.nonblank("value").map_err(bad)?.unwrap_or_default();
                match k.as_str() {
                    "dns" | "dnsname" => sans.dns.push(v),
                    "ip" | "ip4" | "ip6" | "ipaddress" => sans.ip.push(v),
                    "email" | "rfc822" | "rfc822name" => sans.email.push(v),
                    "uri" | "url" => sans.uri.push(v),
                    "upn" => sans.upn.push(v),
                    _ => return Err(KeyfactorError::bad_request(format!("Unknown SubjectAltNameElements key '{k}'."))),
                }
            }
        }
    }
    let template = r.nonblank("TemplateName").map_err(bad)?;
    let issued = super::api::enroll(
        &state,
        super::api::Enrollment {
            csr: None,
            subject: Some(subject),
            sans,
            template,
            ca: None,
            metadata: metadata_list(&r),
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
            Ok(respond(
                Casing::Pascal,
                json!({"Pkcs12Blob": B64.encode(p12), "KeyfactorID": v.id, "Thumbprint": v.thumbprint, "SerialNumber": v.serial,
                       "IssuerDN": v.issuer_dn, "CMSRequestId": 0, "RequestDisposition": "Issued",
                       "DispositionMessage": "The certificate was issued."}),
            ))
        }
        super::api::Enrolled::Pending(job) => Ok(respond(
            Casing::Pascal,
            json!({"KeyfactorID": 0, "CMSRequestId": job, "RequestDisposition": "Pending",
                   "DispositionMessage": format!("The request is queued (request {job}).")}),
        )),
    }
}
