//! Enroll and renew: validate, then in one transaction move the object to `processing` and
//! enqueue its issuance job. The worker (queue.rs) does the crypto and makes the new version
//! current only when it is issued.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use diesel::prelude::*;
use openssl::x509::{X509, X509Name, X509NameBuilder, X509Req};
use serde::{Deserialize, Serialize};

use super::error::RenewError;
use super::inventory::{self, CertRef};
use super::policy;
use super::{Engine, job_state, state};
use crate::ca::{KeySpec, SanSet};
use crate::db::models::{CertObject, NewCertObject, NewCertVersion, NewJob};
use crate::db::schema::{cert_objects, certificates, jobs};
use crate::db::{DbConn, new_guid, now, write_tx};

/// Subject fields given by a caller (service-generated CSRs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubjectSpec {
    pub common_name: Option<String>,
    pub organization: Option<String>,
    pub org_units: Vec<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
}

impl SubjectSpec {
    pub fn to_name(&self) -> Result<X509Name, RenewError> {
        let mut b = X509NameBuilder::new()?;
        let mut add = |k: &str, v: &Option<String>| -> Result<(), RenewError> {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                b.append_entry_by_text(k, v).map_err(|_| {
                    RenewError::BadParameter(k.to_string(), format!("invalid value {v:?}"))
                })?;
            }
            Ok(())
        };
        add("C", &self.country)?;
        add("ST", &self.state)?;
        add("L", &self.city)?;
        add("O", &self.organization)?;
        for ou in &self.org_units {
            add("OU", &Some(ou.clone()))?;
        }
        add("CN", &self.common_name)?;
        Ok(b.build())
    }
}

/// What the issuance job needs; stored as JSON in the job row so a restart loses nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuePayload {
    /// base64 DER of the CSR whose key and names the certificate gets.
    pub csr_der: Option<String>,
    /// base64 DER of the subject name, when there is no CSR.
    pub subject_der: Option<String>,
    pub sans: Option<SanSet>,
    /// Generate a new key of this type (service-generated objects).
    pub generate_key: Option<KeySpec>,
    pub ca: String,
    pub validity_secs: u64,
    /// `enroll` or `renew` (for Retrieve's status text).
    pub reason: String,
}

/// A request for a new certificate object (Venafi Certificates/Request).
pub struct EnrollRequest {
    pub policy_dn: String,
    pub object_name: Option<String>,
    pub csr: Option<X509Req>,
    pub subject: SubjectSpec,
    pub sans: SanSet,
    pub key_spec: Option<KeySpec>,
    pub management_type: Option<String>,
}

/// A renewal of an existing object.
pub struct RenewRequest {
    pub certificate: CertRef,
    pub csr: Option<X509Req>,
    /// New subject/SANs for a service-generated renewal (vcert's service-side CSR renew).
    pub subject: Option<SubjectSpec>,
    pub sans: Option<SanSet>,
    pub reenable: bool,
    /// The caller's copy of a certificate of this object (must be a version of it).
    pub certificate_data: Option<Vec<u8>>,
}

/// An accepted request: the object and the job that will issue its new version.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub object: CertObject,
    pub job_id: i64,
}

pub const CSR_USER: &str = "user";
pub const CSR_SERVICE: &str = "service";
pub const MANAGEMENT_TYPES: &[&str] = &["Enrollment", "Provisioning", "Monitoring", "Unassigned"];

pub fn canonical_management_type(s: &str) -> Option<&'static str> {
    MANAGEMENT_TYPES
        .iter()
        .copied()
        .find(|m| m.eq_ignore_ascii_case(s.trim()))
}

fn to_b64<T>(v: Result<Vec<u8>, T>) -> Result<String, RenewError>
where
    RenewError: From<T>,
{
    Ok(B64.encode(v?))
}

impl Engine {
    /// Starts an enrollment: creates the object (or reuses one with the same DN that is idle)
    /// and enqueues its issuance.
    pub fn enroll(&self, conn: &mut DbConn, req: EnrollRequest) -> Result<Accepted, RenewError> {
        let policy_dn = policy::normalize_dn(&req.policy_dn);
        let name = req
            .object_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| {
                req.subject
                    .common_name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
            })
            .or_else(|| {
                req.csr
                    .as_ref()
                    .map(|c| crate::ca::common_name(c.subject_name()))
                    .filter(|n| !n.is_empty())
            })
            .ok_or_else(|| {
                RenewError::BadParameter(
                    "ObjectName".into(),
                    "an ObjectName, a Subject or a CSR with a common name is required".into(),
                )
            })?;
        if name.contains('\\') {
            return Err(RenewError::BadParameter(
                "ObjectName".into(),
                "must not contain '\\'".into(),
            ));
        }
        let dn = format!("{policy_dn}\\{}", name.trim());
        let (payload, csr_origin, key_spec) = match &req.csr {
            Some(csr) => (
                IssuePayload {
                    csr_der: Some(to_b64(csr.to_der())?),
                    subject_der: None,
                    sans: None,
                    generate_key: None,
                    ca: crate::ca::builtin::ISSUING_CA.into(),
                    validity_secs: self.default_validity.as_secs(),
                    reason: "enroll".into(),
                },
                CSR_USER,
                None,
            ),
            None => {
                let spec = req.key_spec.unwrap_or(KeySpec::DEFAULT);
                let mut subject = req.subject.clone();
                if subject.common_name.is_none() {
                    subject.common_name = Some(name.clone());
                }
                (
                    IssuePayload {
                        csr_der: None,
                        subject_der: Some(to_b64(subject.to_name()?.to_der())?),
                        sans: Some(req.sans.clone()),
                        generate_key: Some(spec),
                        ca: crate::ca::builtin::ISSUING_CA.into(),
                        validity_secs: self.default_validity.as_secs(),
                        reason: "enroll".into(),
                    },
                    CSR_SERVICE,
                    Some(spec),
                )
            }
        };
        let payload_json =
            serde_json::to_string(&payload).map_err(|e| RenewError::Internal(e.to_string()))?;
        let mgmt = req
            .management_type
            .as_deref()
            .map(|m| {
                canonical_management_type(m).ok_or_else(|| {
                    RenewError::BadParameter(
                        "ManagementType".into(),
                        format!("unknown management type {m:?}"),
                    )
                })
            })
            .transpose()?
            .unwrap_or("Enrollment");
        let key_spec_json = key_spec
            .map(|k| serde_json::to_string(&k).unwrap_or_default())
            .unwrap_or_default();
        write_tx(conn, None, |c| -> Result<Accepted, RenewError> {
            if policy::find_folder(c, &policy_dn)?.is_none() {
                return Err(RenewError::PolicyDoesNotExist(policy_dn.clone()));
            }
            let existing = inventory::find_object(c, &CertRef::Dn(dn.clone()))?;
            let obj_id = match existing {
                Some(o) => {
                    if o.state == state::PROCESSING {
                        return Err(RenewError::AlreadyProcessing(o.dn));
                    }
                    diesel::update(cert_objects::table.find(o.id))
                        .set((
                            cert_objects::csr_origin.eq(csr_origin),
                            cert_objects::key_spec.eq(&key_spec_json),
                            cert_objects::disabled.eq(false),
                        ))
                        .execute(c)?;
                    o.id
                }
                None => {
                    let guid = new_guid();
                    let ts = now();
                    diesel::insert_into(cert_objects::table)
                        .values(NewCertObject {
                            guid: &guid,
                            dn: &dn,
                            dn_lower: &dn.to_lowercase(),
                            policy_dn: &policy_dn,
                            name: name.trim(),
                            state: state::ACTIVE,
                            disabled: false,
                            management_type: mgmt,
                            csr_origin,
                            key_spec: &key_spec_json,
                            current_cert_id: None,
                            pending_job_id: None,
                            last_error: None,
                            created_at: ts,
                            updated_at: ts,
                        })
                        .execute(c)?;
                    cert_objects::table
                        .filter(cert_objects::guid.eq(&guid))
                        .select(cert_objects::id)
                        .first(c)?
                }
            };
            let job_id = enqueue(c, obj_id, &payload_json)?;
            let object = inventory::find_object(c, &CertRef::ObjectId(obj_id))?
                .ok_or_else(|| RenewError::Internal("object vanished".into()))?;
            Ok(Accepted { object, job_id })
        })
        .inspect(|_| self.signals.job_enqueued())
    }

    /// Starts a renewal of an existing object. The new version becomes current only when issued.
    pub fn renew(&self, conn: &mut DbConn, req: RenewRequest) -> Result<Accepted, RenewError> {
        let accepted = write_tx(conn, None, |c| -> Result<Accepted, RenewError> {
            let obj = inventory::find_object(c, &req.certificate)?.ok_or_else(|| {
                match &req.certificate {
                    CertRef::Dn(dn) => RenewError::DoesNotExist(dn.clone()),
                    other => RenewError::DoesNotExist(format!("{other:?}")),
                }
            })?;
            if obj.state == state::PROCESSING {
                return Err(RenewError::AlreadyProcessing(obj.dn));
            }
            if obj.state == state::ERROR {
                return Err(RenewError::ErrorState(obj.dn));
            }
            match obj.management_type.as_str() {
                "Enrollment" => {}
                "Monitoring" => return Err(RenewError::MonitoringOnly(obj.dn)),
                other => {
                    return Err(RenewError::InvalidManagementType(
                        obj.dn.clone(),
                        other.to_string(),
                    ));
                }
            }
            if obj.disabled && !req.reenable {
                return Err(RenewError::Disabled(obj.dn));
            }
            let current = inventory::current_version(c, &obj)?;
            if let Some(data) = &req.certificate_data {
                let given = X509::from_der(data)
                    .or_else(|_| X509::from_pem(data))
                    .map_err(|_| RenewError::CertificateMismatch(obj.dn.clone()))?;
                let tp = crate::ca::thumbprint(&given.to_der()?);
                let belongs: i64 = certificates::table
                    .filter(certificates::object_id.eq(obj.id))
                    .filter(certificates::thumbprint.eq(&tp))
                    .count()
                    .get_result(c)?;
                if belongs == 0 {
                    return Err(RenewError::CertificateMismatch(obj.dn));
                }
            }
            let payload = self.renewal_payload(&obj, current.as_ref(), &req)?;
            let payload_json =
                serde_json::to_string(&payload).map_err(|e| RenewError::Internal(e.to_string()))?;
            if req.reenable && obj.disabled {
                diesel::update(cert_objects::table.find(obj.id))
                    .set(cert_objects::disabled.eq(false))
                    .execute(c)?;
            }
            let job_id = enqueue(c, obj.id, &payload_json)?;
            let object = inventory::find_object(c, &CertRef::ObjectId(obj.id))?
                .ok_or_else(|| RenewError::Internal("object vanished".into()))?;
            Ok(Accepted { object, job_id })
        })?;
        self.signals.job_enqueued();
        Ok(accepted)
    }

    fn renewal_payload(
        &self,
        obj: &CertObject,
        current: Option<&crate::db::models::CertVersion>,
        req: &RenewRequest,
    ) -> Result<IssuePayload, RenewError> {
        let base = IssuePayload {
            csr_der: None,
            subject_der: None,
            sans: None,
            generate_key: None,
            ca: crate::ca::builtin::ISSUING_CA.into(),
            validity_secs: self.default_validity.as_secs(),
            reason: "renew".into(),
        };
        if let Some(csr) = &req.csr {
            return Ok(IssuePayload {
                csr_der: Some(to_b64(csr.to_der())?),
                ..base
            });
        }
        if obj.csr_origin == CSR_USER {
            return Err(RenewError::UserCsrRequired(obj.dn.clone()));
        }
        // Service-generated: a new key of the object's type; names from the request, else from
        // the current certificate.
        let spec: KeySpec = serde_json::from_str(&obj.key_spec).ok().unwrap_or_else(|| {
            current
                .and_then(|v| X509::from_der(&v.der).ok())
                .and_then(|c| c.public_key().ok().and_then(|k| KeySpec::of_key(&k)))
                .unwrap_or(KeySpec::DEFAULT)
        });
        let cur_cert = current.map(|v| X509::from_der(&v.der)).transpose()?;
        let subject_der = match (&req.subject, &cur_cert) {
            (Some(s), _) if s.common_name.is_some() => s.to_name()?.to_der()?,
            (_, Some(c)) => c.subject_name().to_der()?,
            _ => SubjectSpec {
                common_name: Some(obj.name.clone()),
                ..Default::default()
            }
            .to_name()?
            .to_der()?,
        };
        let sans = match (&req.sans, &cur_cert) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(c)) => SanSet::of_cert(c),
            _ => SanSet::default(),
        };
        Ok(IssuePayload {
            subject_der: Some(B64.encode(subject_der)),
            sans: Some(sans),
            generate_key: Some(spec),
            ..base
        })
    }

    /// Imports existing certificates into the inventory (`renewgate cert import`).
    /// Returns (object id, certificate id, DN) for each imported end-entity certificate.
    pub fn import(
        &self,
        conn: &mut DbConn,
        policy_dn: &str,
        pem: &[u8],
        key_pem: Option<&[u8]>,
        management_type: &str,
    ) -> Result<Vec<(i64, i64, String)>, RenewError> {
        let policy_dn = policy::normalize_dn(policy_dn);
        let mgmt = canonical_management_type(management_type).ok_or_else(|| {
            RenewError::BadParameter(
                "management-type".into(),
                format!("unknown management type {management_type:?}"),
            )
        })?;
        let certs = X509::stack_from_pem(pem).map_err(|_| {
            RenewError::BadParameter("FILE".into(), "no PEM certificates found".into())
        })?;
        if certs.is_empty() {
            return Err(RenewError::BadParameter(
                "FILE".into(),
                "no PEM certificates found".into(),
            ));
        }
        let key = key_pem
            .map(openssl::pkey::PKey::private_key_from_pem)
            .transpose()
            .map_err(|_| {
                RenewError::BadParameter(
                    "key".into(),
                    "not a PEM private key (unencrypted PKCS#8 or traditional)".into(),
                )
            })?;
        let is_ca = |c: &X509| -> bool {
            // Self-issued, or marked CA in BasicConstraints (openssl's check_purpose is not bound:
            // use the text form of the extension).
            c.to_text()
                .map(|t| String::from_utf8_lossy(&t).contains("CA:TRUE"))
                .unwrap_or(false)
        };
        let (leaves, cas): (Vec<X509>, Vec<X509>) = certs.into_iter().partition(|c| !is_ca(c));
        if leaves.is_empty() {
            return Err(RenewError::BadParameter(
                "FILE".into(),
                "the file holds only CA certificates".into(),
            ));
        }
        let chain_pem: String = cas
            .iter()
            .filter_map(|c| c.to_pem().ok())
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .collect();
        let mut out = vec![];
        write_tx(conn, None, |c| -> Result<(), RenewError> {
            policy::ensure_folder(c, &policy_dn)?;
            for leaf in &leaves {
                let der = leaf.to_der()?;
                let pubkey = leaf.public_key()?;
                let key_matches = key.as_ref().is_some_and(|k| k.public_eq(&pubkey));
                let key_enc = if key_matches {
                    let k = key.as_ref().unwrap();
                    Some(
                        self.master
                            .seal(inventory::KEY_PURPOSE, &k.private_key_to_pkcs8()?)
                            .map_err(|e| RenewError::Internal(e.to_string()))?,
                    )
                } else {
                    None
                };
                let cn = crate::ca::common_name(leaf.subject_name());
                let base = if cn.is_empty() {
                    crate::ca::thumbprint(&der)
                } else {
                    cn
                };
                let mut name = base.clone();
                let mut n = 1;
                while inventory::find_object(c, &CertRef::Dn(format!("{policy_dn}\\{name}")))?
                    .is_some()
                {
                    n += 1;
                    name = format!("{base} ({n})");
                }
                let dn = format!("{policy_dn}\\{name}");
                let guid = new_guid();
                let ts = now();
                let spec = KeySpec::of_key(&pubkey);
                let spec_json = if key_matches {
                    spec.map(|s| serde_json::to_string(&s).unwrap_or_default())
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                diesel::insert_into(cert_objects::table)
                    .values(NewCertObject {
                        guid: &guid,
                        dn: &dn,
                        dn_lower: &dn.to_lowercase(),
                        policy_dn: &policy_dn,
                        name: &name,
                        state: state::ACTIVE,
                        disabled: false,
                        management_type: mgmt,
                        csr_origin: if key_matches { CSR_SERVICE } else { CSR_USER },
                        key_spec: &spec_json,
                        current_cert_id: None,
                        pending_job_id: None,
                        last_error: None,
                        created_at: ts,
                        updated_at: ts,
                    })
                    .execute(c)?;
                let obj_id: i64 = cert_objects::table
                    .filter(cert_objects::guid.eq(&guid))
                    .select(cert_objects::id)
                    .first(c)?;
                let vguid = new_guid();
                diesel::insert_into(certificates::table)
                    .values(NewCertVersion {
                        guid: &vguid,
                        object_id: obj_id,
                        issuer_ca_id: None,
                        der: &der,
                        chain_pem: &chain_pem,
                        serial: &crate::ca::serial_hex(leaf),
                        thumbprint: &crate::ca::thumbprint(&der),
                        common_name: &crate::ca::common_name(leaf.subject_name()),
                        issuer_dn: &crate::ca::name_to_string(leaf.issuer_name()),
                        not_before: crate::ca::asn1_to_naive(leaf.not_before()),
                        not_after: crate::ca::asn1_to_naive(leaf.not_after()),
                        public_key_sha256: &crate::ca::public_key_fingerprint(&pubkey),
                        key_enc: key_enc.as_deref(),
                        job_id: None,
                        created_at: ts,
                    })
                    .execute(c)?;
                let cert_id: i64 = certificates::table
                    .filter(certificates::guid.eq(&vguid))
                    .select(certificates::id)
                    .first(c)?;
                diesel::update(cert_objects::table.find(obj_id))
                    .set(cert_objects::current_cert_id.eq(cert_id))
                    .execute(c)?;
                out.push((obj_id, cert_id, dn));
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Inserts a queued job and marks the object `processing` (inside the caller's transaction).
fn enqueue(c: &mut DbConn, object_id: i64, payload: &str) -> Result<i64, RenewError> {
    let guid = new_guid();
    let ts = now();
    diesel::insert_into(jobs::table)
        .values(NewJob {
            guid: &guid,
            kind: "issue",
            object_id,
            payload,
            state: job_state::QUEUED,
            attempts: 0,
            run_after: ts,
            created_at: ts,
            updated_at: ts,
        })
        .execute(c)?;
    let job_id: i64 = jobs::table
        .filter(jobs::guid.eq(&guid))
        .select(jobs::id)
        .first(c)?;
    // The state guard makes "one renewal in flight" hold even between two instances.
    let n = diesel::update(
        cert_objects::table
            .find(object_id)
            .filter(cert_objects::state.ne(state::PROCESSING)),
    )
    .set((
        cert_objects::state.eq(state::PROCESSING),
        cert_objects::pending_job_id.eq(job_id),
        cert_objects::last_error.eq(None::<String>),
        cert_objects::updated_at.eq(ts),
    ))
    .execute(c)?;
    if n != 1 {
        let dn: String = cert_objects::table
            .find(object_id)
            .select(cert_objects::dn)
            .first(c)?;
        return Err(RenewError::AlreadyProcessing(dn));
    }
    Ok(job_id)
}
