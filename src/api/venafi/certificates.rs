//! `/vedsdk/certificates/*`: request, retrieve, renew, search, checkpolicy, details, dntoguid.
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::{QUEUED_FOR_RENEWAL, WORK_TO_DO_TIMEOUT};
use super::{VenafiError, authenticate, json_body, json_ok};
use crate::api::body::LenientBody;
use crate::app::AppState;
use crate::auth::Principal;
use crate::ca::{EcCurve, KeySpec, SanSet};
use crate::db::DbError;
use crate::db::models::{CertObject, CertVersion};
use crate::engine::inventory::{self, CertBundle, CertRef};
use crate::engine::queue::JobOutcome;
use crate::engine::renew::{EnrollRequest, RenewRequest, SubjectSpec};
use crate::engine::{Engine, RenewError, csr, policy};
use crate::formats::{self, OutputFormat, OutputOptions, Pkcs12Profile};
use crate::vocab::{CsrOrigin, JobState, ObjectState, Permission};

/// `{"Error": "...", "Success": false}`
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    error: String,
    success: bool,
}

/// SAN entry: Type 0 = UPN, 1 = e-mail, 2 = DNS, 6 = URI, 7 = IP.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SubjectAltNameDoc {
    r#type: i32,
    name: String,
}

/// `POST /vedsdk/certificates/request` (keys are matched case-insensitively; booleans and
/// integers may be strings).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct CertificateRequestDoc {
    #[serde(rename = "PolicyDN")]
    policy_dn: String,
    object_name: Option<String>,
    #[serde(rename = "PKCS10")]
    pkcs10: Option<String>,
    subject: Option<String>,
    subject_alt_names: Option<Vec<SubjectAltNameDoc>>,
    organization: Option<String>,
    organizational_unit: Option<Vec<String>>,
    city: Option<String>,
    state: Option<String>,
    country: Option<String>,
    /// `RSA` or `ECC`.
    key_algorithm: Option<String>,
    key_bit_size: Option<i64>,
    /// `P256`, `P384`, `P521`.
    elliptic_curve: Option<String>,
    pkix_parameter_set: Option<String>,
    management_type: Option<String>,
    /// Seconds to wait for issuance (0–120).
    work_to_do_timeout: Option<i64>,
    format: Option<String>,
    include_chain: Option<bool>,
    root_first_order: Option<bool>,
    include_private_key: Option<bool>,
    password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateRequestResponse {
    #[serde(rename = "CertificateDN")]
    certificate_dn: String,
    guid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct RetrieveRequestDoc {
    #[serde(rename = "CertificateDN")]
    certificate_dn: String,
    /// `Base64`, `Base64 (PKCS #8)`, `DER`, `PKCS #7`, `PKCS #12`, `JKS`.
    format: String,
    include_chain: Option<bool>,
    root_first_order: Option<bool>,
    include_private_key: Option<bool>,
    password: Option<String>,
    keystore_password: Option<String>,
    friendly_name: Option<String>,
    work_to_do_timeout: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RetrieveResponse {
    /// base64 of the file bytes.
    certificate_data: String,
    filename: String,
    format: String,
}

/// Not ready yet (202) or failed (500).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessingStatus {
    stage: i64,
    status: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct RenewRequestDoc {
    #[serde(rename = "CertificateDN")]
    certificate_dn: String,
    #[serde(rename = "PKCS10")]
    pkcs10: Option<String>,
    subject: Option<String>,
    subject_alt_names: Option<Vec<SubjectAltNameDoc>>,
    reenable: Option<bool>,
    work_to_do_timeout: Option<i64>,
    /// The caller's copy of the current certificate (base64).
    certificate_data: Option<String>,
    format: Option<String>,
    include_chain: Option<bool>,
    root_first_order: Option<bool>,
    include_private_key: Option<bool>,
    password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RenewResponse {
    success: bool,
    #[serde(rename = "CertificateDN")]
    certificate_dn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct CheckPolicyRequest {
    #[serde(rename = "PolicyDN")]
    policy_dn: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct DnToGuidRequest {
    #[serde(rename = "ObjectDN")]
    object_dn: String,
}

// Loosely typed answers (checkpolicy, search, details) are documented as objects with their
// keys; `Value` keeps the vendor's exact key spellings.
/// A policy value and whether the folder locks it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct LockedStringDoc {
    locked: bool,
    value: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct LockedIntDoc {
    locked: bool,
    value: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct LockedListDoc {
    locked: bool,
    values: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct KeyPairPolicyDoc {
    /// `RSA` or `ECC`.
    key_algorithm: LockedStringDoc,
    key_size: LockedIntDoc,
    elliptic_curve: LockedStringDoc,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct SubjectPolicyDoc {
    city: LockedStringDoc,
    country: LockedStringDoc,
    organization: LockedStringDoc,
    organizational_unit: LockedListDoc,
    organizational_units: LockedListDoc,
    state: LockedStringDoc,
}

/// The effective policy of a folder as TPP's CheckPolicy reports it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct CheckPolicyDoc {
    certificate_authority: LockedStringDoc,
    csr_generation: LockedStringDoc,
    key_generation: LockedStringDoc,
    key_pair: KeyPairPolicyDoc,
    management_type: LockedStringDoc,
    private_key_reuse_allowed: bool,
    subj_alt_name_dns_allowed: bool,
    subj_alt_name_email_allowed: bool,
    subj_alt_name_ip_allowed: bool,
    subj_alt_name_upn_allowed: bool,
    subj_alt_name_uri_allowed: bool,
    subject: SubjectPolicyDoc,
    unique_subject_enforced: bool,
    whitelisted_domains: Vec<String>,
    wildcards_allowed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CheckPolicyResponse {
    #[schema(value_type = CheckPolicyDoc)]
    policy: Value,
    #[schema(value_type = Option<String>)]
    error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SearchResponse {
    #[schema(value_type = Vec<CertificateObjectDoc>)]
    certificates: Vec<Value>,
    data_range: String,
    total_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DnToGuidResponse {
    #[serde(rename = "ClassName")]
    class_name: String,
    #[serde(rename = "GUID")]
    guid: String,
    #[serde(rename = "Result")]
    result: i64,
    #[serde(rename = "Revision")]
    revision: i64,
}

fn run_blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine, &mut crate::db::DbConn) -> Result<T, VenafiError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, VenafiError>> {
    let engine = engine.clone();
    async move {
        crate::api::observe::block(move || {
            let mut conn = engine.pool.get()?;
            f(&engine, &mut conn)
        })
        .await?
    }
}

/// WorkToDoTimeout: absent → the configured default; 0–120 s.
fn work_to_do_timeout(body: &LenientBody, state: &AppState) -> Result<u64, VenafiError> {
    match body.int("WorkToDoTimeout")? {
        None => Ok(state.engine.settings.venafi.work_to_do_timeout),
        Some(n) if (0..=120).contains(&n) => Ok(n as u64),
        Some(n) => Err(VenafiError::BadRequest(format!("WorkToDoTimeout must be between 0 and 120 seconds; got {n}."))),
    }
}

/// Output options from a Retrieve/Renew/Request body. `renew_defaults` applies Renew's
/// IncludePrivateKey default (true only for key-carrying container formats with a Password).
fn output_options(
    body: &LenientBody,
    default_format: Option<OutputFormat>,
    renew_defaults: bool,
    settings: &crate::settings::Settings,
) -> Result<OutputOptions, VenafiError> {
    let format = match body.nonblank("Format")? {
        Some(f) => {
            OutputFormat::parse(&f).ok_or_else(|| VenafiError::BadRequest(format!("Invalid Format value: {f}.")))?
        }
        None => default_format.ok_or_else(|| VenafiError::BadRequest("Format is required.".into()))?,
    };
    let password = body.str("Password")?.filter(|p| !p.is_empty());
    let explicit_key = body.bool("IncludePrivateKey")?;
    let include_private_key = match explicit_key {
        Some(v) => v,
        None => {
            renew_defaults
                && matches!(format, OutputFormat::Base64Pkcs8 | OutputFormat::Pkcs12 | OutputFormat::Jks)
                && password.is_some()
        }
    };
    let opts = OutputOptions {
        format,
        include_chain: body.bool("IncludeChain")?.unwrap_or(false),
        root_first: body.bool("RootFirstOrder")?.unwrap_or(false),
        include_private_key,
        password,
        keystore_password: body.str("KeystorePassword")?.filter(|p| !p.is_empty()),
        friendly_name: body.nonblank("FriendlyName")?,
        pkcs12_profile: match body.nonblank("Pkcs12Profile")? {
            Some(p) => Pkcs12Profile::parse(&p).ok_or_else(|| {
                VenafiError::BadRequest(format!("Invalid Pkcs12Profile value: {p}. Use modern or legacy."))
            })?,
            None => Pkcs12Profile::parse(&settings.formats.pkcs12_profile).unwrap_or(Pkcs12Profile::Modern),
        },
    };
    formats::validate(&opts)?;
    Ok(opts)
}

const KEY_NOT_IN_VAULT: &str = "Failed to lookup private key, error: Failed to lookup private key vault id";

fn render_version(engine: &Engine, v: &CertVersion, opts: &OutputOptions) -> Result<formats::Rendered, VenafiError> {
    let bundle = CertBundle::load(v, &engine.master, opts.include_private_key)?;
    if opts.include_private_key && bundle.key.is_none() {
        return Err(VenafiError::BadRequest(KEY_NOT_IN_VAULT.into()));
    }
    if opts.include_private_key {
        tracing::info!(certificate = v.id, "private key released in a download");
    }
    Ok(formats::render(&bundle, opts)?)
}

fn subject_alt_names(body: &LenientBody) -> Result<SanSet, VenafiError> {
    let mut s = SanSet::default();
    for item in body.array("SubjectAltNames")? {
        let Value::Object(m) = item else {
            return Err(VenafiError::BadRequest("SubjectAltNames entries must be objects with Type and Name.".into()));
        };
        let e = LenientBody::from_map(m);
        let t = e.int("Type")?.ok_or_else(|| VenafiError::BadRequest("SubjectAltNames entry without Type.".into()))?;
        let name =
            e.nonblank("Name")?.ok_or_else(|| VenafiError::BadRequest("SubjectAltNames entry without Name.".into()))?;
        match t {
            0 => s.upn.push(name),
            1 => s.email.push(name),
            2 => s.dns.push(name),
            6 => s.uri.push(name),
            7 => {
                name.parse::<std::net::IpAddr>()
                    .map_err(|_| VenafiError::BadRequest(format!("SubjectAltNames: {name} is not an IP address.")))?;
                s.ip.push(name)
            }
            other => {
                return Err(VenafiError::BadRequest(format!("SubjectAltNames: unknown Type {other}.")));
            }
        }
    }
    Ok(s)
}

fn string_list(body: &LenientBody, key: &str) -> Result<Vec<String>, VenafiError> {
    match body.get(key) {
        None => Ok(vec![]),
        Some(Value::Array(a)) => Ok(a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
        Some(_) => Ok(body.nonblank(key)?.into_iter().collect()),
    }
}

fn key_spec(body: &LenientBody) -> Result<Option<KeySpec>, VenafiError> {
    if let Some(oid) = body.nonblank("PkixParameterSet")? {
        return match KeySpec::from_pkix_parameter_set(&oid) {
            Some(KeySpec::Rsa(bits)) if ![2048, 3072, 4096].contains(&bits) => {
                Err(VenafiError::BadRequest(format!("Unsupported PkixParameterSet {oid}.")))
            }
            Some(spec) => Ok(Some(spec)),
            None => Err(VenafiError::BadRequest(format!("Unsupported PkixParameterSet {oid}."))),
        };
    }
    match body.nonblank("KeyAlgorithm")?.map(|a| a.to_ascii_uppercase()) {
        None => Ok(None),
        Some(a) if a == "RSA" => {
            let bits = body.int("KeyBitSize")?.unwrap_or(2048);
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(VenafiError::BadRequest(format!("Unsupported KeyBitSize {bits}.")));
            }
            Ok(Some(KeySpec::Rsa(bits as u32)))
        }
        Some(a) if a == "ECC" || a == "EC" || a == "ECDSA" => {
            let curve = body.nonblank("EllipticCurve")?.unwrap_or_else(|| "P256".into());
            EcCurve::parse(&curve)
                .map(|c| Some(KeySpec::Ec(c)))
                .ok_or_else(|| VenafiError::BadRequest(format!("Unsupported EllipticCurve {curve}.")))
        }
        Some(a) => Err(VenafiError::BadRequest(format!("Unsupported KeyAlgorithm {a}."))),
    }
}

fn parse_csr(body: &LenientBody) -> Result<Option<openssl::x509::X509Req>, VenafiError> {
    match body.nonblank("PKCS10")? {
        Some(text) => Ok(Some(csr::parse_pkcs10(&text)?)),
        None => Ok(None),
    }
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Request", tag = "Venafi: certificates",
    request_body = CertificateRequestDoc,
    responses((status = 200, body = CertificateRequestResponse), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody), (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn request(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body = json_body(payload, &state).await?;
    let policy_dn =
        body.nonblank("PolicyDN")?.ok_or_else(|| VenafiError::BadRequest("PolicyDN is required.".into()))?;
    let folder = crate::engine::access::folder(&principal.access, &policy_dn, Permission::Write)?;
    let timeout = work_to_do_timeout(&body, &state)?;
    let opts = output_options(&body, Some(OutputFormat::Base64), false, &state.engine.settings)?;
    if opts.include_private_key && !crate::engine::access::may_read_keys(&principal.access, &folder) {
        return Err(VenafiError::BadRequest(NO_KEY_PERMISSION.into()));
    }
    let csr = parse_csr(&body)?;
    let subject = SubjectSpec {
        common_name: body.nonblank("Subject")?,
        organization: body.nonblank("Organization")?,
        org_units: string_list(&body, "OrganizationalUnit")?,
        city: body.nonblank("City")?,
        state: body.nonblank("State")?,
        country: body.nonblank("Country")?,
    };
    let enroll = EnrollRequest {
        policy_dn,
        object_name: body.nonblank("ObjectName")?,
        csr,
        subject,
        sans: subject_alt_names(&body)?,
        key_spec: key_spec(&body)?,
        management_type: body.nonblank("ManagementType")?,
        overrides: None,
        issue_as: None,
    };
    let accepted = run_blocking(&state.engine, move |e, c| Ok(e.enroll(c, enroll)?)).await?;
    let mut resp = CertificateRequestResponse {
        certificate_dn: accepted.object.dn.clone(),
        guid: format!("{{{}}}", accepted.object.guid),
        certificate_data: None,
        filename: None,
        format: None,
    };
    if timeout > 0
        && let JobOutcome::Done(Some(cert_id)) =
            state.engine.wait_for_job(accepted.job_id, Duration::from_secs(timeout)).await?
    {
        let with_key = opts.include_private_key;
        let r = run_blocking(&state.engine, move |e, c| {
            let v = certificate_by_id(c, cert_id)?;
            render_version(e, &v, &opts)
        })
        .await?;
        if with_key {
            // A key handed out is audited whichever call hands it out.
            crate::api::observe::note_certificate(
                &req,
                crate::engine::audit::action::KEY_DOWNLOAD,
                resp.certificate_dn.clone(),
                Some(cert_id),
            );
        }
        resp.certificate_data = Some(B64.encode(&r.bytes));
        resp.filename = Some(r.filename);
        resp.format = Some(r.format.vendor_name().into());
    }
    Ok(json_ok(&resp))
}

const NO_KEY_PERMISSION: &str =
    "You do not have Private Key Read permission on this certificate; the private key cannot be included.";

/// Looks an object up for a caller: absent, or outside the caller's folders for `perm`, gives
/// one answer for a folder-limited caller so that nothing about other folders leaks.
fn object_for(
    c: &mut crate::db::DbConn,
    p: &Principal,
    r: &CertRef,
    dn_text: &str,
    perm: Permission,
) -> Result<CertObject, VenafiError> {
    Ok(crate::engine::access::object(c, &p.access, r, dn_text, perm)?)
}

fn certificate_by_id(c: &mut crate::db::DbConn, id: i64) -> Result<CertVersion, VenafiError> {
    Ok(crate::engine::lookup::version(c, id)?)
}

/// Retrieve's three answers: the file, "not ready" (202) or "failed" (500, as TPP documents).
enum RetrieveAnswer {
    Ready(formats::Rendered),
    Pending(i64, String),
    Failed(String),
}

async fn retrieve_common(
    state: &AppState,
    principal: &Principal,
    body: LenientBody,
) -> Result<RetrieveAnswer, VenafiError> {
    let dn = body.nonblank("CertificateDN")?.ok_or(VenafiError::Renew(RenewError::MissingDn))?;
    let opts = output_options(&body, None, false, &state.engine.settings)?;
    let timeout = body.int("WorkToDoTimeout")?.unwrap_or(0).clamp(0, 120) as u64;
    let dn2 = dn.clone();
    let p2 = principal.clone();
    let obj =
        run_blocking(&state.engine, move |_, c| object_for(c, &p2, &CertRef::Dn(dn2.clone()), &dn2, Permission::Read))
            .await?;
    if opts.include_private_key && !crate::engine::access::may_read_keys(&principal.access, &obj.policy_dn) {
        return Err(VenafiError::BadRequest(NO_KEY_PERMISSION.into()));
    }
    if let (Some(job_id), true) = (obj.pending_job_id, timeout > 0 && obj.state == ObjectState::Processing) {
        state.engine.wait_for_job(job_id, Duration::from_secs(timeout)).await?;
    }
    run_blocking(&state.engine, move |e, c| {
        let obj = inventory::find_object(c, &CertRef::Dn(dn.clone()))?
            .ok_or(VenafiError::Renew(RenewError::DoesNotExist(dn.clone())))?;
        object_answer(e, c, &obj, &opts)
    })
    .await
}

fn object_answer(
    e: &Engine,
    c: &mut crate::db::DbConn,
    obj: &CertObject,
    opts: &OutputOptions,
) -> Result<RetrieveAnswer, VenafiError> {
    match obj.state {
        ObjectState::Processing => {
            let job = obj.pending_job_id.map(|id| inventory::job(c, id)).transpose()?.flatten();
            let (stage, status) = match job.as_ref().map(|j| j.state) {
                Some(JobState::Running) => (500, "Post CSR".to_string()),
                _ if obj.current_cert_id.is_some() => (100, QUEUED_FOR_RENEWAL.to_string()),
                _ => (100, "WebSDK CertRequest Module Requested Certificate".to_string()),
            };
            Ok(RetrieveAnswer::Pending(stage, status))
        }
        ObjectState::Error => Ok(RetrieveAnswer::Failed(format!(
            "Post CSR failed with error: {}",
            obj.last_error.clone().unwrap_or_default()
        ))),
        _ => match inventory::current_version(c, obj)? {
            Some(v) => Ok(RetrieveAnswer::Ready(render_version(e, &v, opts)?)),
            None => Ok(RetrieveAnswer::Pending(0, "Waiting for new CSR.".into())),
        },
    }
}

fn pending_response(stage: i64, status: String) -> HttpResponse {
    HttpResponse::build(StatusCode::ACCEPTED)
        .content_type("application/json; charset=utf-8")
        .body(json!({"Stage": stage, "Status": status}).to_string())
}

fn failed_response(stage: i64, status: String) -> HttpResponse {
    HttpResponse::build(StatusCode::INTERNAL_SERVER_ERROR)
        .content_type("application/json; charset=utf-8")
        .body(json!({"Stage": stage, "Status": status}).to_string())
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Retrieve", tag = "Venafi: certificates",
    request_body = RetrieveRequestDoc,
    responses(
        (status = 200, body = RetrieveResponse),
        (status = 202, description = "Not issued yet: call again", body = ProcessingStatus),
        (status = 400, body = ErrorBody),
        (status = 401, body = super::authorize::OAuthErrorBody),
        (status = 403, body = super::authorize::OAuthErrorBody),
        (status = 500, description = "Issuance failed (documented by the vendor)", body = ProcessingStatus)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn retrieve_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body = json_body(payload, &state).await?;
    let key_dn = body
        .nonblank("CertificateDN")
        .ok()
        .flatten()
        .filter(|_| body.bool("IncludePrivateKey").ok().flatten() == Some(true));
    let answer = retrieve_common(&state, &principal, body).await;
    if let (Some(dn), Err(_) | Ok(RetrieveAnswer::Ready(_))) = (key_dn, &answer) {
        crate::api::observe::note(&req, crate::engine::audit::action::KEY_DOWNLOAD, dn);
    }
    Ok(match answer? {
        RetrieveAnswer::Ready(r) => json_ok(&RetrieveResponse {
            certificate_data: B64.encode(&r.bytes),
            filename: r.filename,
            format: r.format.vendor_name().into(),
        }),
        RetrieveAnswer::Pending(stage, status) => pending_response(stage, status),
        RetrieveAnswer::Failed(status) => failed_response(500, status),
    })
}

/// A certificate file: PEM (`Base64`, `Base64 (PKCS #8)`), DER, PKCS #7, PKCS #12 or JKS bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct CertificateFile(Vec<u8>);

#[utoipa::path(get, path = "/vedsdk/Certificates/Retrieve", tag = "Venafi: certificates",
    params(("CertificateDN" = String, Query), ("Format" = String, Query), ("IncludeChain" = Option<bool>, Query),
           ("RootFirstOrder" = Option<bool>, Query), ("IncludePrivateKey" = Option<bool>, Query), ("Password" = Option<String>, Query)),
    responses(
        (status = 200, description = "The file itself, with its MIME type and a Content-Disposition filename", content(
            (CertificateFile = "application/x-pem-file"),
            (CertificateFile = "application/x-x509-ca-cert"),
            (CertificateFile = "application/x-pkcs7-certificates"),
            (CertificateFile = "application/x-pkcs12"),
            (CertificateFile = "application/octet-stream"))),
        (status = 202, body = ProcessingStatus),
        (status = 400, body = ErrorBody),
        (status = 401, body = super::authorize::OAuthErrorBody),
        (status = 403, body = super::authorize::OAuthErrorBody),
        (status = 500, body = ProcessingStatus)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn retrieve_get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body = LenientBody::from_query(req.query_string());
    let key_dn = body
        .nonblank("CertificateDN")
        .ok()
        .flatten()
        .filter(|_| body.bool("IncludePrivateKey").ok().flatten() == Some(true));
    let answer = retrieve_common(&state, &principal, body).await;
    if let (Some(dn), Err(_) | Ok(RetrieveAnswer::Ready(_))) = (key_dn, &answer) {
        crate::api::observe::note(&req, crate::engine::audit::action::KEY_DOWNLOAD, dn);
    }
    Ok(match answer? {
        RetrieveAnswer::Ready(r) => HttpResponse::Ok()
            .content_type(r.format.mime())
            .insert_header(("Content-Disposition", format!("attachment; filename=\"{}\"", r.filename)))
            .body(r.bytes),
        RetrieveAnswer::Pending(stage, status) => pending_response(stage, status),
        RetrieveAnswer::Failed(status) => failed_response(500, status),
    })
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Renew", tag = "Venafi: certificates",
    request_body = RenewRequestDoc,
    responses(
        (status = 200, description = "Accepted (and, with WorkToDoTimeout, issued)", body = RenewResponse),
        (status = 202, description = "Accepted, not issued within WorkToDoTimeout", body = ErrorBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = super::authorize::OAuthErrorBody),
        (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn renew(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body = json_body(payload, &state).await?;
    let dn = body.nonblank("CertificateDN")?.ok_or(VenafiError::Renew(RenewError::MissingDn))?;
    crate::api::observe::note(&req, crate::engine::audit::action::RENEW, dn.clone());
    let timeout = work_to_do_timeout(&body, &state)?;
    // Output parameters are validated before anything is queued.
    let opts = output_options(&body, Some(OutputFormat::Base64), true, &state.engine.settings)?;
    let csr = parse_csr(&body)?;
    let subject_cn = body.nonblank("Subject")?;
    let sans = subject_alt_names(&body)?;
    let certificate_data = match body.nonblank("CertificateData")? {
        Some(d) => Some(
            B64.decode(d.trim()).map_err(|_| VenafiError::BadRequest("CertificateData is not valid base64.".into()))?,
        ),
        None => None,
    };
    let renew_req = RenewRequest {
        certificate: CertRef::Dn(dn.clone()),
        csr,
        subject: subject_cn.map(|cn| SubjectSpec { common_name: Some(cn), ..Default::default() }),
        sans: if sans.is_empty() { None } else { Some(sans) },
        reenable: body.bool("Reenable")?.unwrap_or(false),
        certificate_data,
        not_after_max: None,
        access: principal.access.clone(),
        issue_as: None,
    };
    let explicit_key = body.bool("IncludePrivateKey")?.unwrap_or(false);
    let p2 = principal.clone();
    let dn2 = dn.clone();
    let (accepted, may_read_key) = run_blocking(&state.engine, move |e, c| {
        // Write permission on the object's folder (one answer for absent and forbidden).
        let o = object_for(c, &p2, &renew_req.certificate, &dn2, Permission::Write)?;
        let may_read_key = crate::engine::access::may_read_keys(&p2.access, &o.policy_dn);
        if explicit_key {
            // An explicit request for the key must be answerable before anything is queued.
            if !may_read_key {
                return Err(VenafiError::BadRequest(NO_KEY_PERMISSION.into()));
            }
            if o.csr_origin != CsrOrigin::Service {
                return Err(VenafiError::BadRequest(KEY_NOT_IN_VAULT.into()));
            }
        }
        Ok((e.renew(c, renew_req)?, may_read_key))
    })
    .await?;
    let dn = accepted.object.dn.clone();
    tracing::info!(object = accepted.object.id, job = accepted.job_id, "renewal accepted");
    if timeout == 0 {
        return Ok(json_ok(&RenewResponse {
            success: true,
            certificate_dn: dn,
            certificate_data: None,
            filename: None,
            format: None,
        }));
    }
    match state.engine.wait_for_job(accepted.job_id, Duration::from_secs(timeout)).await? {
        JobOutcome::Done(Some(cert_id)) => {
            let r = run_blocking(&state.engine, move |e, c| {
                let v = certificate_by_id(c, cert_id)?;
                let mut opts = opts;
                if v.key_enc.is_none() || !may_read_key {
                    // Renew's default: the answer simply carries no key when there is none.
                    opts.include_private_key = false;
                }
                Ok((render_version(e, &v, &opts)?, opts.include_private_key.then_some(v.id)))
            })
            .await?;
            let (r, key_of) = r;
            if let Some(cid) = key_of {
                crate::api::observe::note_certificate(
                    &req,
                    crate::engine::audit::action::KEY_DOWNLOAD,
                    dn.clone(),
                    Some(cid),
                );
            }
            Ok(json_ok(&RenewResponse {
                success: true,
                certificate_dn: dn,
                certificate_data: Some(B64.encode(&r.bytes)),
                filename: Some(r.filename),
                format: Some(r.format.vendor_name().into()),
            }))
        }
        JobOutcome::Failed(msg) => Err(VenafiError::BadRequest(format!(
            "Certificate {dn} has encountered an error while processing, Status: Post CSR failed with error: {msg}, Stage: 500."
        ))),
        _ => Ok(HttpResponse::build(StatusCode::ACCEPTED)
            .content_type("application/json; charset=utf-8")
            .body(json!({"Error": WORK_TO_DO_TIMEOUT, "Success": false}).to_string())),
    }
}

// Documentation-only shapes of the answers built with `json!` (their keys are the vendor's).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SansDoc {
    #[serde(rename = "DNS")]
    dns: Vec<String>,
    #[serde(rename = "IP")]
    ip: Vec<String>,
    #[serde(rename = "Email")]
    email: Vec<String>,
    #[serde(rename = "URI")]
    uri: Vec<String>,
    #[serde(rename = "UPN")]
    upn: Vec<String>,
}

/// The current certificate of an object.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct X509SummaryDoc {
    #[serde(rename = "CN")]
    cn: String,
    #[serde(rename = "Issuer")]
    issuer: String,
    #[serde(rename = "SANS")]
    sans: SansDoc,
    /// Hex serial number.
    #[serde(rename = "Serial")]
    serial: String,
    /// SHA-1 thumbprint, upper-case hex.
    #[serde(rename = "Thumbprint")]
    thumbprint: String,
    #[serde(rename = "ValidFrom")]
    valid_from: String,
    #[serde(rename = "ValidTo")]
    valid_to: String,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct DetailsLinkDoc {
    #[serde(rename = "Details")]
    details: String,
}

/// One certificate object (search results).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CertificateObjectDoc {
    #[serde(rename = "CreatedOn")]
    created_on: String,
    #[serde(rename = "DN")]
    dn: String,
    /// `{guid}`.
    #[serde(rename = "Guid")]
    guid: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ParentDn")]
    parent_dn: String,
    #[serde(rename = "SchemaClass")]
    schema_class: String,
    /// Null while the object has no certificate yet.
    #[serde(rename = "X509")]
    x509: Option<X509SummaryDoc>,
    #[serde(rename = "_links")]
    links: Vec<DetailsLinkDoc>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProcessingDetailsDoc {
    #[serde(rename = "InError")]
    in_error: bool,
    #[serde(rename = "InProcess")]
    in_process: bool,
    /// 500 while processing, else -1.
    #[serde(rename = "Stage")]
    stage: i64,
    #[serde(rename = "Status")]
    status: String,
}

/// `GET /vedsdk/Certificates/{guid}`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CertificateDetailsDoc {
    #[serde(rename = "CreatedOn")]
    created_on: String,
    #[serde(rename = "DN")]
    dn: String,
    #[serde(rename = "Guid")]
    guid: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ParentDn")]
    parent_dn: String,
    #[serde(rename = "SchemaClass")]
    schema_class: String,
    #[serde(rename = "X509")]
    x509: Option<X509SummaryDoc>,
    #[serde(rename = "_links")]
    links: Vec<DetailsLinkDoc>,
    /// `Enrollment`, `Monitoring`, `Provisioning` or `Unassigned`.
    #[serde(rename = "ManagementType")]
    management_type: String,
    /// The inventory object's id (ACME `orderId`).
    #[serde(rename = "ObjectId")]
    object_id: i64,
    #[serde(rename = "Disabled")]
    disabled: bool,
    /// Same as `X509`.
    #[serde(rename = "CertificateDetails")]
    certificate_details: Option<X509SummaryDoc>,
    #[serde(rename = "ProcessingDetails")]
    processing_details: ProcessingDetailsDoc,
    /// `ServiceGenerated` or `UserProvided`.
    #[serde(rename = "CsrOrigin")]
    csr_origin: String,
}

fn x509_summary(obj: &CertObject, v: Option<&CertVersion>) -> Value {
    let (sans, cn) = match v.and_then(|v| openssl::x509::X509::from_der(&v.der).ok()) {
        Some(c) => (SanSet::of_cert(&c), crate::ca::common_name(c.subject_name())),
        None => (SanSet::default(), String::new()),
    };
    let iso = |t: chrono::NaiveDateTime| t.and_utc().format("%Y-%m-%dT%H:%M:%S.0000000Z").to_string();
    json!({
        "CreatedOn": iso(obj.created_at),
        "DN": obj.dn,
        "Guid": format!("{{{}}}", obj.guid),
        "Name": obj.name,
        "ParentDn": obj.policy_dn,
        "SchemaClass": "X509 Certificate",
        "X509": v.map(|v| json!({
            "CN": cn,
            "Issuer": v.issuer_dn,
            "SANS": {"DNS": sans.dns, "IP": sans.ip, "Email": sans.email, "URI": sans.uri, "UPN": sans.upn},
            "Serial": v.serial,
            "Thumbprint": v.thumbprint,
            "ValidFrom": iso(v.not_before),
            "ValidTo": iso(v.not_after),
        })).unwrap_or(Value::Null),
        "_links": [{"Details": format!("/vedsdk/certificates/{{{}}}", obj.guid)}],
    })
}

#[utoipa::path(get, path = "/vedsdk/Certificates/", tag = "Venafi: certificates",
    params(("Thumbprint" = Option<String>, Query, description = "SHA-1 thumbprint (hex; case, spaces and colons ignored)"),
           ("Limit" = Option<i64>, Query), ("Offset" = Option<i64>, Query)),
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody), (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn search(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let q = LenientBody::from_query(req.query_string());
    let thumbprint = q.nonblank("Thumbprint")?;
    let limit = q.int("Limit")?.unwrap_or(100).clamp(1, 1000);
    let offset = q.int("Offset")?.unwrap_or(0).max(0);
    let (items, total) = run_blocking(&state.engine, move |_, c| {
        use crate::engine::search;
        match thumbprint {
            Some(tp) => {
                let found = crate::engine::access::readable_by_thumbprint(c, &principal.access, &tp)?;
                let total = found.len() as i64;
                Ok((found.iter().map(|(o, v)| x509_summary(o, Some(v))).collect::<Vec<_>>(), total))
            }
            None => {
                let (page, total) = search::objects_for(c, &principal.access, limit, offset)?;
                let mut out = vec![];
                for o in &page {
                    let v = inventory::current_version(c, o)?;
                    out.push(x509_summary(o, v.as_ref()));
                }
                Ok((out, total))
            }
        }
    })
    .await?;
    let n = items.len() as i64;
    let body = SearchResponse {
        certificates: items,
        data_range: format!("Certificates {} to {}", offset.saturating_add(1), offset.saturating_add(n)),
        total_count: total,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .insert_header(("X-Record-Count", total.to_string()))
        .body(serde_json::to_string(&body).unwrap_or_default()))
}

fn lv(locked: bool, v: Value) -> Value {
    json!({"Locked": locked, "Value": v})
}

/// The CheckPolicy answer (reference §3.1) from the effective policy of a folder.
pub fn check_policy_body(p: &policy::EffectivePolicy) -> Value {
    let s = |k: &str| match p.string(k) {
        Some((v, l)) => lv(l, json!(v)),
        None => lv(false, Value::Null),
    };
    let (alg, alg_locked) = p.string("key_algorithm").unwrap_or_else(|| ("RSA".into(), false));
    let sizes = p.rsa_key_sizes();
    let curves = p.ec_curves();
    let sizes_locked = p.get("rsa_key_sizes").is_some_and(|x| x.locked);
    let curves_locked = p.get("ec_curves").is_some_and(|x| x.locked);
    let (ous, ous_locked) = p.list("org_units").unwrap_or_default();
    let origin = p.csr_origin();
    let origin_locked = origin.is_some();
    let types = p.san_types();
    let allowed = |t: &str| types.iter().any(|x| x == t);
    let mgmt_locked = p.get("management_type").is_some_and(|x| x.locked);
    let ca_locked = p.get("ca").is_some_and(|x| x.locked);
    json!({
        "CertificateAuthority": lv(ca_locked, p.ca().map(|ca| json!(ca)).unwrap_or(Value::Null)),
        "CsrGeneration": lv(origin_locked, json!(if origin == Some(CsrOrigin::Service) { "ServiceGenerated" } else { "UserProvided" })),
        "KeyGeneration": lv(origin_locked, json!(if origin == Some(CsrOrigin::User) { "UserProvided" } else { "Central" })),
        "KeyPair": {
            "KeyAlgorithm": lv(alg_locked, json!(alg)),
            "KeySize": lv(sizes_locked || alg_locked, json!(sizes.first().copied().unwrap_or(2048))),
            "EllipticCurve": lv(curves_locked, if alg == "ECC" || p.get("ec_curves").is_some() { json!(curves.first().map(|c| c.name())) } else { Value::Null }),
        },
        "ManagementType": lv(mgmt_locked, json!(p.management_type())),
        "PrivateKeyReuseAllowed": p.key_reuse(),
        "SubjAltNameDnsAllowed": allowed("dns"),
        "SubjAltNameEmailAllowed": allowed("email"),
        "SubjAltNameIpAllowed": allowed("ip"),
        "SubjAltNameUpnAllowed": allowed("upn"),
        "SubjAltNameUriAllowed": allowed("uri"),
        "Subject": {
            "City": s("city"),
            "Country": s("country"),
            "Organization": s("organization"),
            "OrganizationalUnit": {"Locked": ous_locked, "Values": ous},
            "OrganizationalUnits": {"Locked": ous_locked, "Values": ous},
            "State": s("state"),
        },
        "UniqueSubjectEnforced": false,
        "WhitelistedDomains": p.domains(),
        "WildcardsAllowed": p.wildcards(),
    })
}

#[utoipa::path(post, path = "/vedsdk/Certificates/CheckPolicy", tag = "Venafi: certificates",
    request_body = CheckPolicyRequest,
    responses((status = 200, body = CheckPolicyResponse), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody), (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn check_policy(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body = json_body(payload, &state).await?;
    let dn = body.nonblank("PolicyDN")?.ok_or_else(|| VenafiError::BadRequest("PolicyDN is required.".into()))?;
    let norm = policy::normalize_dn(&dn);
    let eff = run_blocking(&state.engine, move |_, c| {
        crate::engine::access::existing_folder(c, &principal.access, &norm)?;
        Ok(policy::effective(c, &norm).map_err(DbError::from)?)
    })
    .await?;
    Ok(json_ok(&CheckPolicyResponse { policy: check_policy_body(&eff), error: None }))
}

#[utoipa::path(get, path = "/vedsdk/Certificates/{guid}", tag = "Venafi: certificates",
    params(("guid" = String, Path, description = "Certificate object GUID, with or without braces")),
    responses((status = 200, description = "Certificate object details", body = CertificateDetailsDoc), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody), (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn details(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let guid = path.into_inner();
    let v = run_blocking(&state.engine, move |_, c| {
        let obj = crate::engine::access::readable_object(c, &principal.access, &guid)?
            .ok_or_else(|| VenafiError::BadRequest(format!("Certificate {guid} does not exist or you do not have sufficient rights to the object.")))?;
        let cur = inventory::current_version(c, &obj)?;
        let job = obj.pending_job_id.map(|id| inventory::job(c, id)).transpose()?.flatten();
        let mut s = x509_summary(&obj, cur.as_ref());
        let m = s.as_object_mut().unwrap();
        m.insert("ManagementType".into(), json!(obj.management_type));
        // The inventory object's id: ACME's orderId (and what `cert import` prints).
        m.insert("ObjectId".into(), json!(obj.id));
        m.insert("Disabled".into(), json!(obj.disabled));
        m.insert("CertificateDetails".into(), m.get("X509").cloned().unwrap_or(Value::Null));
        m.insert(
            "ProcessingDetails".into(),
            json!({
                "InError": obj.state == ObjectState::Error,
                "InProcess": obj.state == ObjectState::Processing,
                "Stage": if obj.state == ObjectState::Processing { 500 } else { -1 },
                "Status": match obj.state {
                    ObjectState::Error => format!("Post CSR failed with error: {}", obj.last_error.clone().unwrap_or_default()),
                    ObjectState::Processing => if job.is_some_and(|j| j.state == JobState::Running) { "Post CSR".into() } else { QUEUED_FOR_RENEWAL.into() },
                    _ => String::new(),
                },
            }),
        );
        m.insert("CsrOrigin".into(), json!(if obj.csr_origin == CsrOrigin::Service { "ServiceGenerated" } else { "UserProvided" }));
        Ok(s)
    })
    .await?;
    Ok(json_ok(&v))
}

#[utoipa::path(post, path = "/vedsdk/Config/DnToGuid", tag = "Venafi: config",
    request_body = DnToGuidRequest,
    responses((status = 200, body = DnToGuidResponse), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn dn_to_guid(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let body = json_body(payload, &state).await?;
    let dn = body.nonblank("ObjectDN")?.ok_or_else(|| VenafiError::BadRequest("ObjectDN is required.".into()))?;
    let found = run_blocking(&state.engine, move |_, c| {
        Ok(crate::engine::access::guid_of(c, &principal.access, &dn)?.map(|(class, guid)| (class.to_string(), guid)))
    })
    .await?;
    Ok(match found {
        Some((class, guid)) => {
            json_ok(&DnToGuidResponse { class_name: class, guid: format!("{{{guid}}}"), result: 1, revision: 1 })
        }
        None => json_ok(&DnToGuidResponse { class_name: String::new(), guid: String::new(), result: 400, revision: 0 }),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct ResetRequest {
    #[serde(rename = "CertificateDN")]
    certificate_dn: String,
    /// Queue the failed issuance again after clearing the error.
    restart: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ResetResponse {
    processing_reset_completed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_completed: Option<bool>,
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Reset", tag = "Venafi: certificates",
    request_body = ResetRequest,
    responses((status = 200, body = ResetResponse), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody), (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body = json_body(payload, &state).await?;
    let dn = body.nonblank("CertificateDN")?.ok_or(VenafiError::Renew(RenewError::MissingDn))?;
    let restart = body.bool("Restart")?.unwrap_or(false);
    let done = run_blocking(&state.engine, move |e, c| {
        let o = object_for(c, &principal, &CertRef::Dn(dn.clone()), &dn, Permission::Write).map_err(|_| {
            VenafiError::BadRequest(format!(
                "Certificate {dn} does not exist or you do not have sufficient rights to the object."
            ))
        })?;
        Ok(e.reset(c, &CertRef::ObjectId(o.id), restart)?)
    })
    .await?;
    if !done {
        return Err(VenafiError::BadRequest(
            "Reset is not completed. No reset is required for the certificate.".into(),
        ));
    }
    Ok(json_ok(&ResetResponse { processing_reset_completed: true, restart_completed: restart.then_some(true) }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct RevokeRequest {
    #[serde(rename = "CertificateDN")]
    certificate_dn: Option<String>,
    thumbprint: Option<String>,
    /// 0 none, 1 key compromise, 2 CA compromise, 3 affiliation changed, 4 superseded, 5 cessation of operation.
    reason: Option<i32>,
    comments: Option<String>,
    /// Also disable the certificate object.
    disable: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RevokeResponse {
    /// False when the certificate was already revoked.
    requested: bool,
    success: bool,
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Revoke", tag = "Venafi: certificates",
    request_body = RevokeRequest,
    responses((status = 200, body = RevokeResponse), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody), (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("revoke")).await?;
    let body = json_body(payload, &state).await?;
    let (r, text) = match (body.nonblank("CertificateDN")?, body.nonblank("Thumbprint")?) {
        (Some(dn), _) => (CertRef::Dn(dn.clone()), dn),
        (None, Some(tp)) => (CertRef::Thumbprint(tp.clone()), tp),
        (None, None) => return Err(VenafiError::BadRequest("CertificateDN or Thumbprint is required.".into())),
    };
    crate::api::observe::note(&req, crate::engine::audit::action::REVOKE, text.clone());
    let reason = body.int("Reason")?.unwrap_or(0);
    if !(0..=5).contains(&reason) {
        return Err(VenafiError::BadRequest(format!("Invalid Reason {reason}: use 0 to 5.")));
    }
    let comments = body.str("Comments")?.unwrap_or_default();
    let disable = body.bool("Disable")?.unwrap_or(false);
    let requested = run_blocking(&state.engine, move |e, c| {
        let o = object_for(c, &principal, &r, &text, Permission::Write)?;
        let target = match &r {
            CertRef::Thumbprint(_) => r.clone(),
            _ => CertRef::ObjectId(o.id),
        };
        Ok(e.revoke(c, &target, reason as i32, &comments, disable)?)
    })
    .await?;
    Ok(json_ok(&RevokeResponse { requested, success: true }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct AttributeDataRequest {
    /// `[{"Name": "Disabled", "Value": ["1"]}]`; other attributes are accepted and ignored.
    #[schema(value_type = Vec<AttributeDoc>)]
    attribute_data: Vec<Value>,
}

/// One attribute of a `PUT /vedsdk/Certificates/{guid}` body.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct AttributeDoc {
    name: String,
    value: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SuccessResponse {
    success: bool,
}

#[utoipa::path(put, path = "/vedsdk/Certificates/{guid}", tag = "Venafi: certificates",
    params(("guid" = String, Path, description = "Certificate object GUID, with or without braces")),
    request_body = AttributeDataRequest,
    responses((status = 200, body = SuccessResponse), (status = 400, body = ErrorBody), (status = 401, body = super::authorize::OAuthErrorBody), (status = 403, body = super::authorize::OAuthErrorBody)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body = json_body(payload, &state).await?;
    let mut disabled = None;
    for item in body.array("AttributeData")? {
        let Value::Object(m) = item else {
            return Err(VenafiError::BadRequest("AttributeData entries must be objects with Name and Value.".into()));
        };
        let e = LenientBody::from_map(m);
        let name = e.nonblank("Name")?.unwrap_or_default();
        if name.eq_ignore_ascii_case("Disabled") {
            let v = match e.get("Value") {
                Some(Value::Array(a)) => a.first().cloned().unwrap_or(Value::Null),
                Some(v) => v.clone(),
                None => Value::Null,
            };
            disabled = Some(
                matches!(v.as_str().map(str::trim), Some("1") | Some("true") | Some("True"))
                    || v == json!(1)
                    || v == json!(true),
            );
        }
    }
    let guid = path.into_inner();
    run_blocking(&state.engine, move |e, c| {
        let o = object_for(c, &principal, &CertRef::Guid(guid.clone()), &guid, Permission::Write)?;
        if let Some(d) = disabled {
            e.set_disabled(c, &o.dn, d)?;
        }
        Ok(())
    })
    .await?;
    Ok(json_ok(&SuccessResponse { success: true }))
}
