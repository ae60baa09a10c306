//! `/vedsdk/certificates/*`: request, retrieve, renew, search, checkpolicy, details, dntoguid.
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder, get, post, put, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{QUEUED_FOR_RENEWAL, WORK_TO_DO_TIMEOUT};
use super::fields::{self, Entry, nonblank};
use super::{ErrorBody, VenafiError, VenafiErrors, authenticate, json_body, json_object, json_ok, json_with};
use crate::api::body::{Lenient, LenientBody, lenient};
use crate::app::AppState;
use crate::auth::Principal;
use crate::ca::{EcCurve, KeySpec, SanSet};
use crate::db::DbError;
use crate::db::models::{CertObject, CertVersion};
use crate::engine::inventory::{self, CertBundle, CertRef};
use crate::engine::queue::{JobOutcome, Settled};
use crate::engine::renew::{EnrollRequest, RenewRequest, SubjectSpec};
use crate::engine::{Engine, RenewError, csr, policy};
use crate::formats::{self, OutputFormat, OutputOptions, Pkcs12Profile};
use crate::vocab::{CsrOrigin, JobState, ObjectState, Permission};

/// SAN entry: Type 0 = UPN, 1 = e-mail, 2 = DNS, 6 = URI, 7 = IP.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = SubjectAltNameDoc)]
pub struct SubjectAltName {
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(required = true, value_type = i32)]
    r#type: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    name: Option<String>,
}

/// `POST /vedsdk/certificates/request` (keys are matched case-insensitively; booleans and
/// integers may be strings).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = CertificateRequestDoc)]
pub struct CertificateRequestBody {
    #[serde(rename = "PolicyDN", default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    policy_dn: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    object_name: Option<String>,
    #[serde(rename = "PKCS10", default, deserialize_with = "lenient::string")]
    pkcs10: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    subject: Option<String>,
    #[serde(default, deserialize_with = "lenient::list")]
    #[schema(value_type = Option<Vec<SubjectAltName>>)]
    subject_alt_names: Option<Vec<Entry<SubjectAltName>>>,
    #[serde(default, deserialize_with = "lenient::string")]
    organization: Option<String>,
    /// A list, or one value.
    #[serde(default, deserialize_with = "fields::string_or_list")]
    organizational_unit: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::string")]
    city: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    state: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    country: Option<String>,
    /// `RSA` or `ECC`.
    #[serde(default, deserialize_with = "lenient::string")]
    key_algorithm: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    key_bit_size: Option<i64>,
    /// `P256`, `P384`, `P521`.
    #[serde(default, deserialize_with = "lenient::string")]
    elliptic_curve: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pkix_parameter_set: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    management_type: Option<String>,
    /// Seconds to wait for issuance (0–120).
    #[serde(default, deserialize_with = "lenient::int")]
    work_to_do_timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    format: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    include_chain: Option<bool>,
    #[serde(default, deserialize_with = "lenient::bool")]
    root_first_order: Option<bool>,
    #[serde(default, deserialize_with = "lenient::bool")]
    include_private_key: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    password: Option<String>,
    /// JKS: the store's own password (default: `Password`).
    #[serde(default, deserialize_with = "lenient::string")]
    keystore_password: Option<String>,
    /// PKCS #12 / JKS alias.
    #[serde(default, deserialize_with = "lenient::string")]
    friendly_name: Option<String>,
    /// PKCS #12 encryption: `modern` or `legacy` (default: `formats.pkcs12_profile`).
    #[serde(default, deserialize_with = "lenient::string")]
    pkcs12_profile: Option<String>,
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

/// `POST /vedsdk/certificates/retrieve`, and the query of its GET variant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = RetrieveRequestDoc)]
pub struct RetrieveRequestBody {
    #[serde(rename = "CertificateDN", default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    certificate_dn: Option<String>,
    /// `Base64`, `Base64 (PKCS #8)`, `DER`, `PKCS #7`, `PKCS #12`, `JKS`.
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    format: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    include_chain: Option<bool>,
    #[serde(default, deserialize_with = "lenient::bool")]
    root_first_order: Option<bool>,
    #[serde(default, deserialize_with = "lenient::bool")]
    include_private_key: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    password: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    keystore_password: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    friendly_name: Option<String>,
    /// PKCS #12 encryption: `modern` or `legacy` (default: `formats.pkcs12_profile`).
    #[serde(default, deserialize_with = "lenient::string")]
    pkcs12_profile: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
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

/// `POST /vedsdk/certificates/renew`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = RenewRequestDoc)]
pub struct RenewRequestBody {
    #[serde(rename = "CertificateDN", default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    certificate_dn: Option<String>,
    #[serde(rename = "PKCS10", default, deserialize_with = "lenient::string")]
    pkcs10: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    subject: Option<String>,
    #[serde(default, deserialize_with = "lenient::list")]
    #[schema(value_type = Option<Vec<SubjectAltName>>)]
    subject_alt_names: Option<Vec<Entry<SubjectAltName>>>,
    #[serde(default, deserialize_with = "lenient::bool")]
    reenable: Option<bool>,
    #[serde(default, deserialize_with = "lenient::int")]
    work_to_do_timeout: Option<i64>,
    /// The caller's copy of the current certificate (base64).
    #[serde(default, deserialize_with = "lenient::string")]
    certificate_data: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    format: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    include_chain: Option<bool>,
    #[serde(default, deserialize_with = "lenient::bool")]
    root_first_order: Option<bool>,
    #[serde(default, deserialize_with = "lenient::bool")]
    include_private_key: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    password: Option<String>,
    /// JKS: the store's own password (default: `Password`).
    #[serde(default, deserialize_with = "lenient::string")]
    keystore_password: Option<String>,
    /// PKCS #12 / JKS alias.
    #[serde(default, deserialize_with = "lenient::string")]
    friendly_name: Option<String>,
    /// PKCS #12 encryption: `modern` or `legacy` (default: `formats.pkcs12_profile`).
    #[serde(default, deserialize_with = "lenient::string")]
    pkcs12_profile: Option<String>,
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
pub struct CheckPolicyRequest {
    #[serde(rename = "PolicyDN", default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    policy_dn: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DnToGuidRequest {
    #[serde(rename = "ObjectDN", default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    object_dn: Option<String>,
}

/// A policy value and whether the folder locks it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = LockedStringDoc)]
pub struct LockedString {
    locked: bool,
    value: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = LockedIntDoc)]
pub struct LockedInt {
    locked: bool,
    value: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = LockedListDoc)]
pub struct LockedList {
    locked: bool,
    values: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = KeyPairPolicyDoc)]
pub struct KeyPairPolicy {
    /// `RSA` or `ECC`.
    key_algorithm: LockedString,
    key_size: LockedInt,
    elliptic_curve: LockedString,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = SubjectPolicyDoc)]
pub struct SubjectPolicy {
    city: LockedString,
    country: LockedString,
    organization: LockedString,
    organizational_unit: LockedList,
    organizational_units: LockedList,
    state: LockedString,
}

/// The effective policy of a folder as TPP's CheckPolicy reports it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = CheckPolicyDoc)]
pub struct CheckPolicy {
    certificate_authority: LockedString,
    csr_generation: LockedString,
    key_generation: LockedString,
    key_pair: KeyPairPolicy,
    management_type: LockedString,
    private_key_reuse_allowed: bool,
    subj_alt_name_dns_allowed: bool,
    subj_alt_name_email_allowed: bool,
    subj_alt_name_ip_allowed: bool,
    subj_alt_name_upn_allowed: bool,
    subj_alt_name_uri_allowed: bool,
    subject: SubjectPolicy,
    unique_subject_enforced: bool,
    whitelisted_domains: Vec<String>,
    wildcards_allowed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CheckPolicyResponse {
    policy: CheckPolicy,
    /// Always null: refusals are `{"Error", "Success": false}` answers.
    error: Option<String>,
}

/// `GET /vedsdk/certificates/` query (keys case-insensitive, integers as text).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "PascalCase")]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// SHA-1 thumbprint (hex; case, spaces and colons ignored)
    #[serde(default, deserialize_with = "lenient::string")]
    thumbprint: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int")]
    offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SearchResponse {
    certificates: Vec<CertificateObject>,
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

/// The output parameters Request, Retrieve and Renew share, as the body gave them.
struct OutputFields<'a> {
    format: Option<&'a str>,
    password: Option<&'a str>,
    include_private_key: Option<bool>,
    include_chain: Option<bool>,
    root_first_order: Option<bool>,
    keystore_password: Option<&'a str>,
    friendly_name: Option<&'a str>,
    pkcs12_profile: Option<&'a str>,
}

macro_rules! output_fields {
    ($body:expr) => {
        OutputFields {
            format: $body.format.as_deref(),
            password: $body.password.as_deref(),
            include_private_key: $body.include_private_key,
            include_chain: $body.include_chain,
            root_first_order: $body.root_first_order,
            keystore_password: $body.keystore_password.as_deref(),
            friendly_name: $body.friendly_name.as_deref(),
            pkcs12_profile: $body.pkcs12_profile.as_deref(),
        }
    };
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
fn work_to_do_timeout(given: Option<i64>, state: &AppState) -> Result<u64, VenafiError> {
    match given {
        None => Ok(state.engine.settings.venafi.work_to_do_timeout),
        Some(n) if (0..=120).contains(&n) => Ok(n as u64),
        Some(n) => Err(VenafiError::BadRequest(format!("WorkToDoTimeout must be between 0 and 120 seconds; got {n}."))),
    }
}

/// Output options from a Retrieve/Renew/Request body. `renew_defaults` applies Renew's
/// IncludePrivateKey default (true only for key-carrying container formats with a Password).
fn output_options(
    body: &OutputFields<'_>,
    default_format: Option<OutputFormat>,
    renew_defaults: bool,
    settings: &crate::settings::Settings,
) -> Result<OutputOptions, VenafiError> {
    fn given(v: Option<&str>) -> Option<&str> {
        v.filter(|s| !s.trim().is_empty())
    }
    let format = match given(body.format) {
        Some(f) => {
            OutputFormat::parse(f).ok_or_else(|| VenafiError::BadRequest(format!("Invalid Format value: {f}.")))?
        }
        None => default_format.ok_or_else(|| VenafiError::BadRequest("Format is required.".into()))?,
    };
    let password = body.password.filter(|p| !p.is_empty()).map(str::to_string);
    let include_private_key = match body.include_private_key {
        Some(v) => v,
        None => {
            renew_defaults
                && matches!(format, OutputFormat::Base64Pkcs8 | OutputFormat::Pkcs12 | OutputFormat::Jks)
                && password.is_some()
        }
    };
    let opts = OutputOptions {
        format,
        include_chain: body.include_chain.unwrap_or(false),
        root_first: body.root_first_order.unwrap_or(false),
        include_private_key,
        password,
        keystore_password: body.keystore_password.filter(|p| !p.is_empty()).map(str::to_string),
        friendly_name: given(body.friendly_name).map(str::to_string),
        pkcs12_profile: match given(body.pkcs12_profile) {
            Some(p) => Pkcs12Profile::parse(p).ok_or_else(|| {
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

fn subject_alt_names(entries: Option<Vec<Entry<SubjectAltName>>>) -> Result<SanSet, VenafiError> {
    let mut s = SanSet::default();
    for entry in entries.unwrap_or_default() {
        let e = entry.get("SubjectAltNames entries must be objects with Type and Name.")?;
        let t = e.r#type.ok_or_else(|| VenafiError::BadRequest("SubjectAltNames entry without Type.".into()))?;
        let name =
            nonblank(e.name).ok_or_else(|| VenafiError::BadRequest("SubjectAltNames entry without Name.".into()))?;
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

fn key_spec(body: &CertificateRequestBody) -> Result<Option<KeySpec>, VenafiError> {
    if let Some(oid) = nonblank(body.pkix_parameter_set.clone()) {
        return match KeySpec::from_pkix_parameter_set(&oid) {
            Some(KeySpec::Rsa(bits)) if ![2048, 3072, 4096].contains(&bits) => {
                Err(VenafiError::BadRequest(format!("Unsupported PkixParameterSet {oid}.")))
            }
            Some(spec) => Ok(Some(spec)),
            None => Err(VenafiError::BadRequest(format!("Unsupported PkixParameterSet {oid}."))),
        };
    }
    match nonblank(body.key_algorithm.clone()).map(|a| a.to_ascii_uppercase()) {
        None => Ok(None),
        Some(a) if a == "RSA" => {
            let bits = body.key_bit_size.unwrap_or(2048);
            if ![2048, 3072, 4096].contains(&bits) {
                return Err(VenafiError::BadRequest(format!("Unsupported KeyBitSize {bits}.")));
            }
            Ok(Some(KeySpec::Rsa(bits as u32)))
        }
        Some(a) if a == "ECC" || a == "EC" || a == "ECDSA" => {
            let curve = nonblank(body.elliptic_curve.clone()).unwrap_or_else(|| "P256".into());
            EcCurve::parse(&curve)
                .map(|c| Some(KeySpec::Ec(c)))
                .ok_or_else(|| VenafiError::BadRequest(format!("Unsupported EllipticCurve {curve}.")))
        }
        Some(a) => Err(VenafiError::BadRequest(format!("Unsupported KeyAlgorithm {a}."))),
    }
}

fn parse_csr(pkcs10: Option<String>) -> Result<Option<csr::Csr>, VenafiError> {
    match nonblank(pkcs10) {
        Some(text) => Ok(Some(csr::parse_pkcs10(&text)?)),
        None => Ok(None),
    }
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Request", tag = "Venafi: certificates",
    request_body = CertificateRequestBody,
    responses((status = 200, body = CertificateRequestResponse), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[post("/vedsdk/certificates/request")]
pub async fn request(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body: CertificateRequestBody = json_body(payload, &state).await?;
    let policy_dn =
        nonblank(body.policy_dn.clone()).ok_or_else(|| VenafiError::BadRequest("PolicyDN is required.".into()))?;
    let folder = crate::engine::access::folder(&principal.access, &policy_dn, Permission::Write)?;
    let timeout = work_to_do_timeout(body.work_to_do_timeout, &state)?;
    let opts = output_options(&output_fields!(body), Some(OutputFormat::Base64), false, &state.engine.settings)?;
    if opts.include_private_key && !crate::engine::access::may_read_keys(&principal.access, &folder) {
        return Err(VenafiError::BadRequest(NO_KEY_PERMISSION.into()));
    }
    let key_spec = key_spec(&body)?;
    let csr = parse_csr(body.pkcs10)?;
    let subject = SubjectSpec {
        common_name: nonblank(body.subject),
        organization: nonblank(body.organization),
        org_units: body.organizational_unit.unwrap_or_default(),
        city: nonblank(body.city),
        state: nonblank(body.state),
        country: nonblank(body.country),
    };
    let enroll = EnrollRequest {
        policy_dn,
        object_name: nonblank(body.object_name),
        csr,
        subject,
        sans: subject_alt_names(body.subject_alt_names)?,
        key_spec,
        management_type: nonblank(body.management_type),
        overrides: None,
        issue_as: None,
        new_object_only: false,
    };
    let accepted = run_blocking(&state.engine, move |e, c| Ok(e.enroll(c, &enroll)?)).await?;
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
            let v = certificate_by_id(e, c, cert_id)?;
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

/// A version by id (one just issued by this engine is not read again).
fn certificate_by_id(e: &Engine, c: &mut crate::db::DbConn, id: i64) -> Result<CertVersion, VenafiError> {
    Ok(e.recent_versions.version(c, id)?)
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
    body: RetrieveRequestBody,
) -> Result<RetrieveAnswer, VenafiError> {
    let dn = nonblank(body.certificate_dn.clone()).ok_or(VenafiError::Renew(RenewError::MissingDn))?;
    let opts = output_options(&output_fields!(body), None, false, &state.engine.settings)?;
    let timeout = body.work_to_do_timeout.unwrap_or(0).clamp(0, 120) as u64;
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
    json_with(StatusCode::ACCEPTED, &ProcessingStatus { stage, status })
}

fn failed_response(stage: i64, status: String) -> HttpResponse {
    json_with(StatusCode::INTERNAL_SERVER_ERROR, &ProcessingStatus { stage, status })
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Retrieve", tag = "Venafi: certificates",
    request_body = RetrieveRequestBody,
    responses(
        (status = 200, body = RetrieveResponse),
        (status = 202, description = "Not issued yet: call again", body = ProcessingStatus),
        VenafiErrors,
        (status = 500, description = "Issuance failed (documented by the vendor)", body = ProcessingStatus)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[post("/vedsdk/certificates/retrieve")]
pub async fn retrieve_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let raw = json_object(payload, &state).await?;
    let key_dn = key_download(&raw);
    let answer = match Lenient::<RetrieveRequestBody>::from_body(raw) {
        Ok(body) => retrieve_common(&state, &principal, body).await,
        Err(e) => Err(e.into()),
    };
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

/// The object a Retrieve asks the private key of (audited whether or not it is handed out), read
/// from the raw body so that a request failing on another field is audited too.
fn key_download(raw: &LenientBody) -> Option<String> {
    raw.nonblank("CertificateDN").ok().flatten().filter(|_| raw.bool("IncludePrivateKey").ok().flatten() == Some(true))
}

/// A certificate file: PEM (`Base64`, `Base64 (PKCS #8)`), DER, PKCS #7, PKCS #12 or JKS bytes.
// Answered with its MIME type and a Content-Disposition filename (`Responder`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct CertificateFile(formats::Rendered);

impl actix_web::Responder for CertificateFile {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        let CertificateFile(r) = self;
        HttpResponse::Ok()
            .content_type(r.format.mime())
            .insert_header(("Content-Disposition", format!("attachment; filename=\"{}\"", r.filename)))
            .body(r.bytes)
    }
}

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
        VenafiErrors,
        (status = 500, body = ProcessingStatus)),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[get("/vedsdk/certificates/retrieve")]
pub async fn retrieve_get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let raw = LenientBody::from_query(req.query_string());
    let key_dn = key_download(&raw);
    let answer = match Lenient::<RetrieveRequestBody>::from_body(raw) {
        Ok(body) => retrieve_common(&state, &principal, body).await,
        Err(e) => Err(e.into()),
    };
    if let (Some(dn), Err(_) | Ok(RetrieveAnswer::Ready(_))) = (key_dn, &answer) {
        crate::api::observe::note(&req, crate::engine::audit::action::KEY_DOWNLOAD, dn);
    }
    Ok(match answer? {
        RetrieveAnswer::Ready(r) => CertificateFile(r).respond_to(&req),
        RetrieveAnswer::Pending(stage, status) => pending_response(stage, status),
        RetrieveAnswer::Failed(status) => failed_response(500, status),
    })
}

#[utoipa::path(post, path = "/vedsdk/Certificates/Renew", tag = "Venafi: certificates",
    request_body = RenewRequestBody,
    responses(
        (status = 200, description = "Accepted (and, with WorkToDoTimeout, issued)", body = RenewResponse),
        (status = 202, description = "Accepted, not issued within WorkToDoTimeout", body = ErrorBody),
        VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[post("/vedsdk/certificates/renew")]
pub async fn renew(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    // One blocking hop per renewal: the body is read and checked first, and the token on the
    // connection that then renews. A body refused here still answers 401 or 403 first to a
    // caller without a valid token or scope, as every other call does.
    let token = super::presented_token(&req).ok_or(VenafiError::Unauthorized)?;
    let call = match read_renew(&req, payload, &state).await {
        Ok(call) => call,
        Err(e) => {
            authenticate(&req, &state, "certificate", Some("manage")).await?;
            return Err(e);
        }
    };
    let RenewCall { dn, timeout, opts, explicit_key, parts } = call;
    // Who the token belongs to, for the audit trail, whatever the hop then answers.
    let actor = Arc::new(std::sync::OnceLock::<String>::new());
    let actor_in = actor.clone();
    let dn2 = dn.clone();
    // Write permission on the object's folder (one answer for absent and forbidden), then the
    // renewal: run here at once when the request waits and there is capacity.
    let accept = move |e: &Engine, c: &mut crate::db::DbConn| {
        let p2 = super::token_principal(c, &token)?;
        let _ = actor_in.set(p2.user_name.clone());
        super::require_scope(&p2, "certificate", Some("manage"))?;
        let mut renew_req = parts.into_request(CertRef::Dn(dn2.clone()), p2.access.clone())?;
        let o = object_for(c, &p2, &renew_req.certificate, &dn2, Permission::Write)?;
        renew_req.object = Some(o.clone());
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
        let accepted = if timeout == 0 { e.renew(c, &renew_req)? } else { e.renew_here(c, &renew_req)? };
        tracing::info!(object = accepted.object.id, job = accepted.job_id, "renewal accepted");
        Ok(((accepted.object.dn.clone(), may_read_key), accepted))
    };
    let finish = move |e: &Engine, c: &mut crate::db::DbConn, answer: &(String, bool), cert_id: i64| {
        let v = certificate_by_id(e, c, cert_id)?;
        let mut opts = opts;
        if v.key_enc.is_none() || !answer.1 {
            // Renew's default: the answer simply carries no key when there is none.
            opts.include_private_key = false;
        }
        Ok::<_, VenafiError>((render_version(e, &v, &opts)?, opts.include_private_key.then_some(v.id)))
    };
    if timeout == 0 {
        let accepted = run_blocking(&state.engine, accept).await;
        if let Some(name) = actor.get() {
            crate::api::observe::set_actor(&req, name);
        }
        let ((dn, _), _) = accepted?;
        return Ok(json_ok(&RenewResponse {
            success: true,
            certificate_dn: dn,
            certificate_data: None,
            filename: None,
            format: None,
        }));
    }
    let settled = state.engine.accept_then_wait(Duration::from_secs(timeout), accept, finish).await;
    if let Some(name) = actor.get() {
        crate::api::observe::set_actor(&req, name);
    }
    let ((dn, _), settled) = settled?;
    match settled {
        Settled::Issued((r, key_of)) => {
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
        Settled::Failed(msg) => Err(VenafiError::BadRequest(format!(
            "Certificate {dn} has encountered an error while processing, Status: Post CSR failed with error: {msg}, Stage: 500."
        ))),
        Settled::Pending => Ok(json_with(StatusCode::ACCEPTED, &ErrorBody::new(WORK_TO_DO_TIMEOUT))),
    }
}

/// A renew call's body, read and checked: everything but who asks.
struct RenewCall {
    dn: String,
    timeout: u64,
    opts: OutputOptions,
    explicit_key: bool,
    parts: RenewParts,
}

/// The parts of a renew body that cost work to check (a CSR's signature above all): decoded in
/// the blocking hop once the token is known good, so an anonymous caller cannot make the
/// gateway verify CSRs. Checked in the order the call always checked them.
struct RenewParts {
    pkcs10: Option<String>,
    subject: Option<String>,
    subject_alt_names: Option<Vec<Entry<SubjectAltName>>>,
    certificate_data: Option<String>,
    reenable: bool,
}

impl RenewParts {
    /// The renewal of `certificate` for a caller with `access`.
    fn into_request(
        self,
        certificate: CertRef,
        access: crate::auth::FolderAccess,
    ) -> Result<RenewRequest, VenafiError> {
        let csr = parse_csr(self.pkcs10)?;
        let subject_cn = nonblank(self.subject);
        let sans = subject_alt_names(self.subject_alt_names)?;
        let certificate_data = match nonblank(self.certificate_data) {
            Some(d) => Some(
                B64.decode(d.trim())
                    .map_err(|_| VenafiError::BadRequest("CertificateData is not valid base64.".into()))?,
            ),
            None => None,
        };
        Ok(RenewRequest {
            certificate,
            csr,
            subject: subject_cn.map(|cn| SubjectSpec { common_name: Some(cn), ..Default::default() }),
            sans: if sans.is_empty() { None } else { Some(sans) },
            reenable: self.reenable,
            certificate_data,
            not_after_max: None,
            access,
            issue_as: None,
            object: None,
        })
    }
}

async fn read_renew(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<RenewCall, VenafiError> {
    let body: RenewRequestBody = json_body(payload, state).await?;
    let dn = nonblank(body.certificate_dn.clone()).ok_or(VenafiError::Renew(RenewError::MissingDn))?;
    crate::api::observe::note(req, crate::engine::audit::action::RENEW, dn.clone());
    let timeout = work_to_do_timeout(body.work_to_do_timeout, state)?;
    // Output parameters are validated before anything is queued.
    let opts = output_options(&output_fields!(body), Some(OutputFormat::Base64), true, &state.engine.settings)?;
    Ok(RenewCall {
        dn,
        timeout,
        opts,
        explicit_key: body.include_private_key.unwrap_or(false),
        parts: RenewParts {
            pkcs10: body.pkcs10,
            subject: body.subject,
            subject_alt_names: body.subject_alt_names,
            certificate_data: body.certificate_data,
            reenable: body.reenable.unwrap_or(false),
        },
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SansDoc)]
pub struct Sans {
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
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = X509SummaryDoc)]
pub struct X509Summary {
    #[serde(rename = "CN")]
    cn: String,
    #[serde(rename = "Issuer")]
    issuer: String,
    #[serde(rename = "SANS")]
    sans: Sans,
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

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DetailsLinkDoc)]
pub struct DetailsLink {
    #[serde(rename = "Details")]
    details: String,
}

/// One certificate object (search results).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CertificateObjectDoc)]
pub struct CertificateObject {
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
    x509: Option<X509Summary>,
    #[serde(rename = "_links")]
    links: Vec<DetailsLink>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProcessingDetailsDoc)]
pub struct ProcessingDetails {
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

/// `GET /vedsdk/Certificates/{guid}`: the search entry's fields and the object's state.
// The search entry's fields are repeated rather than flattened: a flattened field would turn the
// schema into an `allOf`, and generated SDKs would get another model.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CertificateDetailsDoc)]
pub struct CertificateDetails {
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
    x509: Option<X509Summary>,
    #[serde(rename = "_links")]
    links: Vec<DetailsLink>,
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
    certificate_details: Option<X509Summary>,
    #[serde(rename = "ProcessingDetails")]
    processing_details: ProcessingDetails,
    /// `ServiceGenerated` or `UserProvided`.
    #[serde(rename = "CsrOrigin")]
    csr_origin: String,
}

fn vendor_time(t: chrono::NaiveDateTime) -> String {
    t.and_utc().format("%Y-%m-%dT%H:%M:%S.0000000Z").to_string()
}

fn x509_summary(v: &CertVersion) -> X509Summary {
    let (sans, cn) = match openssl::x509::X509::from_der(&v.der).ok() {
        Some(c) => (SanSet::of_cert(&c), crate::ca::common_name(c.subject_name())),
        None => (SanSet::default(), String::new()),
    };
    X509Summary {
        cn,
        issuer: v.issuer_dn.clone(),
        sans: Sans { dns: sans.dns, ip: sans.ip, email: sans.email, uri: sans.uri, upn: sans.upn },
        serial: v.serial.clone(),
        thumbprint: v.thumbprint.clone(),
        valid_from: vendor_time(v.not_before),
        valid_to: vendor_time(v.not_after),
    }
}

fn certificate_object(obj: &CertObject, v: Option<&CertVersion>) -> CertificateObject {
    CertificateObject {
        created_on: vendor_time(obj.created_at),
        dn: obj.dn.clone(),
        guid: format!("{{{}}}", obj.guid),
        name: obj.name.clone(),
        parent_dn: obj.policy_dn.clone(),
        schema_class: "X509 Certificate".into(),
        x509: v.map(x509_summary),
        links: vec![DetailsLink { details: format!("/vedsdk/certificates/{{{}}}", obj.guid) }],
    }
}

#[utoipa::path(get, path = "/vedsdk/Certificates/", tag = "Venafi: certificates",
    params(SearchQuery),
    responses((status = 200, body = SearchResponse), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[get("/vedsdk/certificates")]
pub async fn search(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let q = Lenient::<SearchQuery>::from_query(req.query_string())?;
    let thumbprint = nonblank(q.thumbprint);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0).max(0);
    let (items, total) = run_blocking(&state.engine, move |_, c| {
        use crate::engine::search;
        match thumbprint {
            Some(tp) => {
                let found = crate::engine::access::readable_by_thumbprint(c, &principal.access, &tp)?;
                let total = found.len() as i64;
                Ok((found.iter().map(|(o, v)| certificate_object(o, Some(v))).collect::<Vec<_>>(), total))
            }
            None => {
                let (page, total) = search::objects_for(c, &principal.access, limit, offset)?;
                let mut out = vec![];
                for o in &page {
                    let v = inventory::current_version(c, o)?;
                    out.push(certificate_object(o, v.as_ref()));
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
    let mut resp = json_ok(&body);
    resp.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("x-record-count"),
        actix_web::http::header::HeaderValue::from(total),
    );
    Ok(resp)
}

/// The CheckPolicy answer (reference §3.1) from the effective policy of a folder.
pub fn check_policy_body(p: &policy::EffectivePolicy) -> CheckPolicy {
    let s = |k: &str| match p.string(k) {
        Some((v, l)) => LockedString { locked: l, value: Some(v) },
        None => LockedString { locked: false, value: None },
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
    let curve =
        if alg == "ECC" || p.get("ec_curves").is_some() { curves.first().map(|c| c.name().to_string()) } else { None };
    CheckPolicy {
        certificate_authority: LockedString { locked: ca_locked, value: p.ca() },
        csr_generation: LockedString {
            locked: origin_locked,
            value: Some(if origin == Some(CsrOrigin::Service) { "ServiceGenerated" } else { "UserProvided" }.into()),
        },
        key_generation: LockedString {
            locked: origin_locked,
            value: Some(if origin == Some(CsrOrigin::User) { "UserProvided" } else { "Central" }.into()),
        },
        key_pair: KeyPairPolicy {
            key_size: LockedInt {
                locked: sizes_locked || alg_locked,
                value: sizes.first().copied().unwrap_or(2048).into(),
            },
            key_algorithm: LockedString { locked: alg_locked, value: Some(alg) },
            elliptic_curve: LockedString { locked: curves_locked, value: curve },
        },
        management_type: LockedString { locked: mgmt_locked, value: Some(p.management_type().to_string()) },
        private_key_reuse_allowed: p.key_reuse(),
        subj_alt_name_dns_allowed: allowed("dns"),
        subj_alt_name_email_allowed: allowed("email"),
        subj_alt_name_ip_allowed: allowed("ip"),
        subj_alt_name_upn_allowed: allowed("upn"),
        subj_alt_name_uri_allowed: allowed("uri"),
        subject: SubjectPolicy {
            city: s("city"),
            country: s("country"),
            organization: s("organization"),
            organizational_unit: LockedList { locked: ous_locked, values: ous.clone() },
            organizational_units: LockedList { locked: ous_locked, values: ous },
            state: s("state"),
        },
        unique_subject_enforced: false,
        whitelisted_domains: p.domains(),
        wildcards_allowed: p.wildcards(),
    }
}

#[utoipa::path(post, path = "/vedsdk/Certificates/CheckPolicy", tag = "Venafi: certificates",
    request_body = CheckPolicyRequest,
    responses((status = 200, body = CheckPolicyResponse), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[post("/vedsdk/certificates/checkpolicy")]
pub async fn check_policy(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body: CheckPolicyRequest = json_body(payload, &state).await?;
    let dn = nonblank(body.policy_dn).ok_or_else(|| VenafiError::BadRequest("PolicyDN is required.".into()))?;
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
    responses((status = 200, description = "Certificate object details", body = CertificateDetails), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[get("/vedsdk/certificates/{guid}")]
pub async fn details(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let guid = path.into_inner();
    let v = run_blocking(&state.engine, move |_, c| {
        let obj = crate::engine::access::readable_object(c, &principal.access, &guid)?.ok_or_else(|| {
            VenafiError::BadRequest(format!(
                "Certificate {guid} does not exist or you do not have sufficient rights to the object."
            ))
        })?;
        let cur = inventory::current_version(c, &obj)?;
        let job = obj.pending_job_id.map(|id| inventory::job(c, id)).transpose()?.flatten();
        let entry = certificate_object(&obj, cur.as_ref());
        let processing = obj.state == ObjectState::Processing;
        Ok(CertificateDetails {
            management_type: obj.management_type.to_string(),
            // The inventory object's id: ACME's orderId (and what `cert import` prints).
            object_id: obj.id,
            disabled: obj.disabled,
            certificate_details: entry.x509.clone(),
            processing_details: ProcessingDetails {
                in_error: obj.state == ObjectState::Error,
                in_process: processing,
                stage: if processing { 500 } else { -1 },
                status: match obj.state {
                    ObjectState::Error => {
                        format!("Post CSR failed with error: {}", obj.last_error.clone().unwrap_or_default())
                    }
                    ObjectState::Processing => {
                        if job.is_some_and(|j| j.state == JobState::Running) {
                            "Post CSR".into()
                        } else {
                            QUEUED_FOR_RENEWAL.into()
                        }
                    }
                    _ => String::new(),
                },
            },
            csr_origin: if obj.csr_origin == CsrOrigin::Service { "ServiceGenerated" } else { "UserProvided" }.into(),
            created_on: entry.created_on,
            dn: entry.dn,
            guid: entry.guid,
            name: entry.name,
            parent_dn: entry.parent_dn,
            schema_class: entry.schema_class,
            x509: entry.x509,
            links: entry.links,
        })
    })
    .await?;
    Ok(json_ok(&v))
}

#[utoipa::path(post, path = "/vedsdk/Config/DnToGuid", tag = "Venafi: config",
    request_body = DnToGuidRequest,
    responses((status = 200, body = DnToGuidResponse), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[post("/vedsdk/config/dntoguid")]
pub async fn dn_to_guid(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", None).await?;
    let body: DnToGuidRequest = json_body(payload, &state).await?;
    let dn = nonblank(body.object_dn).ok_or_else(|| VenafiError::BadRequest("ObjectDN is required.".into()))?;
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
pub struct ResetRequest {
    #[serde(rename = "CertificateDN", default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    certificate_dn: Option<String>,
    /// Queue the failed issuance again after clearing the error.
    #[serde(default, deserialize_with = "lenient::bool")]
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
    responses((status = 200, body = ResetResponse), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[post("/vedsdk/certificates/reset")]
pub async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body: ResetRequest = json_body(payload, &state).await?;
    let dn = nonblank(body.certificate_dn).ok_or(VenafiError::Renew(RenewError::MissingDn))?;
    let restart = body.restart.unwrap_or(false);
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
pub struct RevokeRequest {
    #[serde(rename = "CertificateDN", default, deserialize_with = "lenient::string")]
    certificate_dn: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    thumbprint: Option<String>,
    /// 0 none, 1 key compromise, 2 CA compromise, 3 affiliation changed, 4 superseded, 5 cessation of operation.
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(value_type = Option<i32>)]
    reason: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    comments: Option<String>,
    /// Also disable the certificate object.
    #[serde(default, deserialize_with = "lenient::bool")]
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
    responses((status = 200, body = RevokeResponse), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[post("/vedsdk/certificates/revoke")]
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("revoke")).await?;
    let body: RevokeRequest = json_body(payload, &state).await?;
    let (r, text) = match (nonblank(body.certificate_dn), nonblank(body.thumbprint)) {
        (Some(dn), _) => (CertRef::Dn(dn.clone()), dn),
        (None, Some(tp)) => (CertRef::Thumbprint(tp.clone()), tp),
        (None, None) => return Err(VenafiError::BadRequest("CertificateDN or Thumbprint is required.".into())),
    };
    crate::api::observe::note(&req, crate::engine::audit::action::REVOKE, text.clone());
    let reason = body.reason.unwrap_or(0);
    if !(0..=5).contains(&reason) {
        return Err(VenafiError::BadRequest(format!("Invalid Reason {reason}: use 0 to 5.")));
    }
    let comments = body.comments.unwrap_or_default();
    let disable = body.disable.unwrap_or(false);
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
pub struct AttributeDataRequest {
    /// `[{"Name": "Disabled", "Value": ["1"]}]`; other attributes are accepted and ignored.
    #[serde(default, deserialize_with = "lenient::list")]
    #[schema(required = true, value_type = Vec<Attribute>)]
    attribute_data: Option<Vec<Entry<Attribute>>>,
}

/// One attribute of a `PUT /vedsdk/Certificates/{guid}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = AttributeDoc)]
pub struct Attribute {
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(required = true, value_type = String)]
    name: Option<String>,
    /// A list (TPP's form) or one value; numbers and booleans count as their text.
    #[serde(default, deserialize_with = "fields::texts")]
    #[schema(required = true, value_type = Vec<String>)]
    value: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SuccessResponse {
    success: bool,
}

#[utoipa::path(put, path = "/vedsdk/Certificates/{guid}", tag = "Venafi: certificates",
    params(("guid" = String, Path, description = "Certificate object GUID, with or without braces")),
    request_body = AttributeDataRequest,
    responses((status = 200, body = SuccessResponse), VenafiErrors),
    security(("bearer" = []), ("venafiApiKey" = [])))]
#[put("/vedsdk/certificates/{guid}")]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, VenafiError> {
    let principal = authenticate(&req, &state, "certificate", Some("manage")).await?;
    let body: AttributeDataRequest = json_body(payload, &state).await?;
    let mut disabled = None;
    for entry in body.attribute_data.unwrap_or_default() {
        let attribute = entry.get("AttributeData entries must be objects with Name and Value.")?;
        if nonblank(attribute.name).is_some_and(|n| n.eq_ignore_ascii_case("Disabled")) {
            let first = attribute.value.and_then(|v| v.into_iter().next()).unwrap_or_default();
            disabled = Some(matches!(first.trim(), "1" | "true" | "True"));
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
