//! Enroll and renew: validate, then in one transaction move the object to `processing` and
//! enqueue its issuance job. The worker (queue.rs) does the crypto and makes the new version
//! current only when it is issued.
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use diesel::prelude::*;
use openssl::x509::{X509, X509Name, X509NameBuilder};
use serde::{Deserialize, Serialize};

use super::Engine;
use super::csr::Csr;
use super::error::RenewError;
use super::inventory::{self, CertRef};
use super::policy;
use super::validate::{self, PolicyViolation};
use crate::ca::{KeySpec, SanSet};
use crate::db::models::{CertObject, NewCertObject, NewCertVersion};
use crate::db::schema::{cert_objects, certificates, csrs, jobs};
use crate::db::{DbConn, Prepared, new_guid, new_record_guid, now, write_tx};
use crate::vocab::{CsrOrigin, ManagementType, ObjectState};

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
                b.append_entry_by_text(k, v)
                    .map_err(|_| RenewError::BadParameter(k.to_string(), format!("invalid value {v:?}")))?;
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
    /// Re-sign this public key (base64 SPKI DER): Keyfactor's renewal of a certificate whose
    /// private key the gateway does not hold.
    #[serde(default)]
    pub public_key_der: Option<String>,
    /// Extended key usages (`serverAuth`, `clientAuth`, …); absent: server and client auth.
    #[serde(default)]
    pub ekus: Option<Vec<String>>,
    /// Template and metadata recorded with the issued certificate.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// Stores that get a push job when the certificate is issued (same transaction).
    #[serde(default)]
    pub store_ids: Vec<i64>,
    /// Latest notAfter (unix seconds): an ACME reissue stays inside its order's coverage.
    #[serde(default)]
    pub not_after_max: Option<i64>,
    /// SHA-256 of the CSR's public key (SPKI DER, hex), computed when the request was checked.
    #[serde(default)]
    pub public_key_sha256: Option<String>,
    /// The ACME order the job finalizes (`IssueAs::acme_order`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_order: Option<i64>,
}

/// Exactly what a certificate is issued with, whatever its CSR says: ACME issues an order's
/// names (the CSR contributes its key only), with the folder's subject values and the EKUs the
/// folder gives ACME certificates.
#[derive(Debug, Clone, Default)]
pub struct IssueAs {
    pub subject: SubjectSpec,
    pub sans: SanSet,
    pub ekus: Vec<String>,
    /// The ACME order this issuance finalizes: the job's completion makes it `valid` in the
    /// transaction that commits the certificate.
    pub acme_order: Option<i64>,
}

/// A request for a new certificate object (Venafi Certificates/Request).
pub struct EnrollRequest {
    pub policy_dn: String,
    pub object_name: Option<String>,
    pub csr: Option<Csr>,
    pub subject: SubjectSpec,
    pub sans: SanSet,
    pub key_spec: Option<KeySpec>,
    pub management_type: Option<String>,
    /// Template/CA/metadata from a Keyfactor enrollment.
    pub overrides: Option<IssueOverrides>,
    /// Issue these names and EKUs instead of the CSR's (ACME).
    pub issue_as: Option<IssueAs>,
    /// Create the object: an idle object with the DN is not reused (ACME: an order's object
    /// is its own, never one that appeared under its name meanwhile). Refused as in flight.
    pub new_object_only: bool,
}

/// What a Keyfactor template and CA choice change in an issuance.
#[derive(Debug, Clone, Default)]
pub struct IssueOverrides {
    pub ca: Option<String>,
    pub template: Option<String>,
    pub ekus: Option<Vec<String>>,
    pub validity: Option<std::time::Duration>,
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

/// A renewal of an existing object.
pub struct RenewRequest {
    pub certificate: CertRef,
    pub csr: Option<Csr>,
    /// New subject/SANs for a service-generated renewal (vcert's service-side CSR renew).
    pub subject: Option<SubjectSpec>,
    pub sans: Option<SanSet>,
    pub reenable: bool,
    /// The caller's copy of a certificate of this object (must be a version of it).
    pub certificate_data: Option<Vec<u8>>,
    /// Latest notAfter (unix seconds) of the new version: an ACME reissue keeps its end date.
    pub not_after_max: Option<i64>,
    /// The renewing caller's folder permissions: which stores holding the previous certificate
    /// it may push the new one to (unrestricted for the scheduler and the CLI).
    pub access: crate::auth::FolderAccess,
    /// Issue these names and EKUs instead of the CSR's (ACME).
    pub issue_as: Option<IssueAs>,
    /// The object `certificate` names, as the caller read it a moment ago on the same connection
    /// (to check its access): the plan starts from it instead of reading it again. The store
    /// still refuses it if the object changed since (`updated_at`), and the retry reads afresh.
    pub object: Option<crate::db::models::CertObject>,
}

/// A Keyfactor renewal (CertEnroll/3/Renew, Enrollment/Renew).
pub struct KeyfactorRenew {
    pub certificate: CertRef,
    pub template: Option<String>,
    pub ca: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub store_guids: Vec<String>,
    /// The caller's folder permissions: pushing to a store needs write on its folder, and key on
    /// the certificate's folder when the store receives keys.
    pub access: crate::auth::FolderAccess,
}

/// Writes of the caller's that belong with its job (an ACME order's `processing`): run in the
/// transaction that enqueues the job, after it is stored; an error rolls the enqueue back.
pub type WithEnqueue<'a> = &'a dyn Fn(&mut DbConn, &Accepted) -> Result<(), RenewError>;

/// An accepted request: the object and the job that will issue its new version.
#[derive(Debug)]
pub struct Accepted {
    pub object: CertObject,
    pub job_id: i64,
    /// Set when the job was enqueued leased to this request, which is to run it now
    /// (`Engine::run_leased`); otherwise the workers run it.
    pub inline: Option<InlineRun>,
}

/// What `plan_keyfactor` read and decided, for `store_keyfactor`.
struct PlannedKeyfactor {
    obj: CertObject,
    payload_json: String,
    stores: Vec<crate::db::models::Store>,
    /// The current certificate's key, which a job run here re-signs.
    resigned_key: Option<openssl::pkey::PKey<openssl::pkey::Public>>,
    /// The job goes to the request's lease (a built-in CA issues it).
    leased: bool,
}

/// An enrollment checked and planned outside the write transaction that stores it.
struct PlannedEnroll {
    /// The object with the DN, as the plan read it (reused when idle), or None (one is created).
    existing: Option<CertObject>,
    payload_json: String,
    key_spec_json: String,
    csr_origin: CsrOrigin,
    mgmt: ManagementType,
    /// The job goes to the request's lease (a built-in CA issues it).
    leased: bool,
}

/// Why storing a planned enrollment stopped.
enum EnrollStore {
    /// The object changed, or appeared, since the plan read it: plan again in the transaction.
    Changed,
    Refused(RenewError),
}

impl From<RenewError> for EnrollStore {
    fn from(e: RenewError) -> Self {
        EnrollStore::Refused(e)
    }
}

impl From<diesel::result::Error> for EnrollStore {
    fn from(e: diesel::result::Error) -> Self {
        EnrollStore::Refused(e.into())
    }
}

impl EnrollStore {
    fn into_renew_error(self) -> RenewError {
        match self {
            EnrollStore::Changed => RenewError::Internal("the object changed while it was enrolled".into()),
            EnrollStore::Refused(e) => e,
        }
    }
}

/// A renewal checked and planned outside the write transaction that stores it.
struct PlannedRenewal {
    /// The object as the plan read it.
    obj: CertObject,
    payload_json: String,
    /// The job goes to the request's lease (a built-in CA issues it).
    leased: bool,
}

/// A job the accepting request runs itself, and its place among `queue.inline`.
#[derive(Debug)]
pub struct InlineRun {
    pub lease: super::queue::InlineLease,
    _slot: super::queue::InlineSlot,
}

/// Gives a job run here the key of the CSR its request parsed (`InlineLease::csr_key`).
fn with_csr_key(here: &mut Option<InlineRun>, csr: Option<&Csr>) {
    if let (Some(run), Some(csr)) = (here.as_mut(), csr) {
        run.lease.csr_key = csr.public_key().ok();
    }
}

/// Whether a request runs its job itself when it can (`Engine::*_here`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunBy {
    Workers,
    ThisRequest,
}

fn to_b64<T>(v: Result<Vec<u8>, T>) -> Result<String, RenewError>
where
    RenewError: From<T>,
{
    Ok(B64.encode(v?))
}

/// Where a renewal's certificate goes: the stores the request names (checked by the caller with
/// `stores::stores_for_push`), plus the stores holding the object's previous certificate unless
/// the folder's `push_on_renew` is false. One rule for every path (Venafi, Keyfactor, ACME,
/// scheduler, CLI). A held store gets the new certificate only if the renewing caller may push
/// it there (`stores::check_push`: write on the store's folder, key on the object's folder for a
/// store receiving keys), and a store receiving keys only when the renewal generates a key (a
/// key-less version would leave the old key beside the new certificate).
fn push_targets(
    c: &mut DbConn,
    p: &policy::EffectivePolicy,
    obj: &CertObject,
    requested: &[i64],
    access: &crate::auth::FolderAccess,
    generates_key: bool,
) -> Result<Vec<i64>, RenewError> {
    let mut ids = requested.to_vec();
    if p.push_on_renew() {
        for sid in super::scheduler::stores_holding(c, obj.id)? {
            let Some(store) = super::stores::find_store_by_id(c, sid)? else { continue };
            if super::stores::check_push(access, &store, &obj.policy_dn).is_ok()
                && (generates_key || !store.include_keys)
            {
                ids.push(sid);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Engine {
    /// Works out what to issue for a request in a folder: checks CSR origin, key reuse and the
    /// policy, applies locked values and defaults, and returns the job payload.
    #[allow(clippy::too_many_arguments)]
    fn plan_issue(
        &self,
        c: &mut DbConn,
        p: &policy::EffectivePolicy,
        csr: Option<&Csr>,
        subject: &SubjectSpec,
        sans: &SanSet,
        requested_key: Option<KeySpec>,
        object_id: Option<i64>,
        reason: &str,
    ) -> Result<(IssuePayload, CsrOrigin, Option<KeySpec>), RenewError> {
        let mut csr_key_sha256 = None;
        let origin_folder = p.get("csr_origin").map(|s| s.folder.clone()).unwrap_or_else(|| p.dn.clone());
        match (csr.is_some(), p.csr_origin()) {
            (false, Some(CsrOrigin::User)) => {
                return Err(RenewError::Policy(PolicyViolation::CsrRequired(origin_folder)));
            }
            (true, Some(CsrOrigin::Service)) => {
                return Err(RenewError::Policy(PolicyViolation::ServiceCsrRequired(origin_folder)));
            }
            _ => {}
        }
        let key_spec = match csr {
            Some(req) => {
                let pk = req.public_key()?;
                let spec = KeySpec::of_key(&pk).ok_or_else(|| {
                    RenewError::BadParameter(
                        "PKCS10".into(),
                        "the CSR's key type is not supported (RSA or EC P-256/P-384/P-521)".into(),
                    )
                })?;
                let fp = crate::ca::public_key_fingerprint(&pk);
                if compromised_key(c, &fp)? {
                    return Err(RenewError::Policy(PolicyViolation::CompromisedKey));
                }
                if let Some(oid) = object_id
                    && !p.key_reuse()
                {
                    let reused: i64 = crate::on_backend!(c, |c| certificates::table
                        .filter(certificates::object_id.eq(oid))
                        .filter(certificates::public_key_sha256.eq(&fp))
                        .count()
                        .get_result(c))?;
                    if reused > 0 {
                        return Err(RenewError::Policy(PolicyViolation::KeyReuse));
                    }
                }
                csr_key_sha256 = Some(fp);
                spec
            }
            None => p.default_key_spec(requested_key),
        };
        let final_subject = validate::check(p, subject, sans, Some(key_spec)).map_err(RenewError::Policy)?;
        // What is issued is the checked form: A-labels, no trailing dot, canonical IPs.
        let sans = crate::names::normalize_sans(sans).map_err(|e| RenewError::Policy(PolicyViolation::BadName(e)))?;
        let payload = IssuePayload {
            csr_der: csr.map(|r| to_b64(r.to_der())).transpose()?,
            subject_der: Some(to_b64(final_subject.to_name()?.to_der())?),
            sans: Some(sans),
            generate_key: if csr.is_none() { Some(key_spec) } else { None },
            ca: p.issuer_for(Some(key_spec)),
            validity_secs: p.validity(self.default_validity).as_secs(),
            reason: reason.into(),
            public_key_der: None,
            ekus: None,
            template: None,
            metadata: None,
            store_ids: vec![],
            not_after_max: None,
            public_key_sha256: csr_key_sha256,
            acme_order: None,
        };
        Ok((
            payload,
            if csr.is_some() { CsrOrigin::User } else { CsrOrigin::Service },
            if csr.is_none() { Some(key_spec) } else { None },
        ))
    }

    /// Starts an enrollment: creates the object (or reuses one with the same DN that is idle)
    /// and enqueues its issuance.
    pub fn enroll(&self, conn: &mut DbConn, req: &EnrollRequest) -> Result<Accepted, RenewError> {
        self.enroll_by(conn, req, RunBy::Workers, None)
    }

    /// `enroll` for a request that waits for its certificate: the job is enqueued leased to it
    /// when it may run it here (`Accepted::inline`).
    pub fn enroll_here(&self, conn: &mut DbConn, req: &EnrollRequest) -> Result<Accepted, RenewError> {
        self.enroll_by(conn, req, RunBy::ThisRequest, None)
    }

    /// `enroll_here`, with the caller's own writes in the transaction that enqueues the job.
    pub fn enroll_here_with(
        &self,
        conn: &mut DbConn,
        req: &EnrollRequest,
        with_enqueue: WithEnqueue<'_>,
    ) -> Result<Accepted, RenewError> {
        self.enroll_by(conn, req, RunBy::ThisRequest, Some(with_enqueue))
    }

    fn enroll_by(
        &self,
        conn: &mut DbConn,
        req: &EnrollRequest,
        by: RunBy,
        with_enqueue: Option<WithEnqueue<'_>>,
    ) -> Result<Accepted, RenewError> {
        let mut here = self.inline_candidate(by);
        let policy_dn = policy::normalize_dn(&req.policy_dn);
        let csr_subject = req.csr.as_ref().map(|c| validate::subject_of(c.subject_name()));
        let name = req
            .object_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| req.subject.common_name.clone().filter(|n| !n.trim().is_empty()))
            .or_else(|| csr_subject.as_ref().and_then(|s| s.common_name.clone()).filter(|n| !n.is_empty()))
            .ok_or_else(|| {
                RenewError::BadParameter(
                    "ObjectName".into(),
                    "an ObjectName, a Subject or a CSR with a common name is required".into(),
                )
            })?;
        if name.contains('\\') {
            return Err(RenewError::BadParameter("ObjectName".into(), "ObjectName must not contain '\\'.".into()));
        }
        let dn = format!("{policy_dn}\\{}", name.trim());
        let (subject, sans) = match (&req.issue_as, &req.csr, csr_subject) {
            (Some(i), _, _) => (i.subject.clone(), i.sans.clone()),
            (None, Some(csr), Some(s)) => (s, SanSet::of_csr(csr)),
            _ => {
                let mut s = req.subject.clone();
                if s.common_name.is_none() {
                    s.common_name = Some(name.trim().to_string());
                }
                (s, req.sans.clone())
            }
        };
        // As a renewal: checked and planned without the writer lock, then stored in a short
        // transaction that first makes sure the object it found (or found absent) is still so.
        // If not, the whole enrollment runs again inside one transaction, which gives the same
        // answer a serial run would.
        let plan = |c: &mut DbConn| -> Result<PlannedEnroll, RenewError> {
            if policy::find_folder(c, &policy_dn)?.is_none() {
                return Err(RenewError::PolicyDoesNotExist(policy_dn.clone()));
            }
            let p = policy::effective(c, &policy_dn)?;
            let existing = inventory::find_object(c, &CertRef::Dn(dn.clone()))?;
            let (mut payload, csr_origin, key_spec) = self.plan_issue(
                c,
                &p,
                req.csr.as_ref(),
                &subject,
                &sans,
                req.key_spec,
                existing.as_ref().map(|o| o.id),
                "enroll",
            )?;
            if let Some(o) = &req.overrides {
                if let Some(ca) = &o.ca {
                    payload.ca = locked_ca(&p, ca)?;
                }
                if let Some(v) = o.validity.filter(|_| !p.get("validity").is_some_and(|s| s.locked)) {
                    payload.validity_secs = v.as_secs();
                }
                payload.template = o.template.clone();
                payload.ekus = o.ekus.clone();
                payload.metadata = o.metadata.clone();
            }
            if let Some(i) = &req.issue_as {
                payload.ekus = Some(i.ekus.clone());
                payload.acme_order = i.acme_order;
            }
            check_upstream(c, &p, &payload)?;
            let payload_json = serde_json::to_string(&payload).map_err(|e| RenewError::Internal(e.to_string()))?;
            let key_spec_json = key_spec.map(|k| serde_json::to_string(&k).unwrap_or_default()).unwrap_or_default();
            let mgmt = match req.management_type.as_deref() {
                Some(m) => ManagementType::parse_any_case(m).ok_or_else(|| {
                    RenewError::BadParameter("ManagementType".into(), format!("Unknown ManagementType {m}."))
                })?,
                None => p.management_type(),
            };
            if let Some(o) = &existing
                && (o.state == ObjectState::Processing || req.new_object_only)
            {
                return Err(RenewError::AlreadyProcessing(o.dn.clone()));
            }
            let leased = self.lease_if_builtin(c, &here, &payload.ca)?.is_some();
            Ok(PlannedEnroll { existing, payload_json, key_spec_json, csr_origin, mgmt, leased })
        };
        // `optimistic`: the plan was made outside this transaction; an object that changed (or
        // appeared) since then is `Changed`, and the caller plans again inside one.
        let store = |c: &mut DbConn, plan: PlannedEnroll, optimistic: bool| -> Result<(Accepted, bool), EnrollStore> {
            let obj_id = match &plan.existing {
                Some(o) => {
                    let target = cert_objects::table.find(o.id).filter(cert_objects::state.ne(ObjectState::Processing));
                    let changes = (
                        cert_objects::csr_origin.eq(plan.csr_origin),
                        cert_objects::key_spec.eq(&plan.key_spec_json),
                        cert_objects::disabled.eq(false),
                        cert_objects::state.eq(ObjectState::Active),
                        cert_objects::updated_at.eq(now()),
                    );
                    let n = if optimistic {
                        diesel::update(target.filter(cert_objects::updated_at.eq(o.updated_at))).set(changes).execute(c)
                    } else {
                        diesel::update(target).set(changes).execute(c)
                    }
                    .map_err(RenewError::from)?;
                    if n != 1 {
                        return Err(if optimistic {
                            EnrollStore::Changed
                        } else {
                            RenewError::AlreadyProcessing(o.dn.clone()).into()
                        });
                    }
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
                            state: ObjectState::Active,
                            disabled: false,
                            management_type: plan.mgmt,
                            csr_origin: plan.csr_origin,
                            key_spec: &plan.key_spec_json,
                            current_cert_id: None,
                            pending_job_id: None,
                            last_error: None,
                            created_at: ts,
                            updated_at: ts,
                        })
                        .returning(cert_objects::id)
                        .get_result(c)
                        .map_err(|e| match e {
                            // The DN was created since the plan read it absent: plan again.
                            diesel::result::Error::DatabaseError(
                                diesel::result::DatabaseErrorKind::UniqueViolation,
                                _,
                            ) if optimistic => EnrollStore::Changed,
                            // Two requests creating the same DN at once: the loser sees it in flight.
                            diesel::result::Error::DatabaseError(
                                diesel::result::DatabaseErrorKind::UniqueViolation,
                                _,
                            ) => RenewError::AlreadyProcessing(dn.clone()).into(),
                            other => RenewError::from(other).into(),
                        })?
                }
            };
            let lease = here.as_ref().filter(|_| plan.leased).map(|run| &run.lease);
            let (job_id, _) = enqueue(c, (obj_id, &dn), &plan.payload_json, lease, None)?;
            if let Some(csr) = &req.csr {
                store_csr(c, obj_id, job_id, csr)?;
            }
            let object = inventory::find_object(c, &CertRef::ObjectId(obj_id))?
                .ok_or_else(|| RenewError::Internal("object vanished".into()))?;
            let accepted = Accepted { object, job_id, inline: None };
            if let Some(f) = with_enqueue {
                f(c, &accepted)?;
            }
            Ok((accepted, plan.leased))
        };
        let planned = plan(conn)?;
        let optimistic = self.writer.write_tx(conn, |c| store(c, planned, true));
        let (accepted, leased) = match optimistic {
            Err(EnrollStore::Changed) => self
                .writer
                .write_tx(conn, |c| {
                    let planned = plan(c)?;
                    store(c, planned, false)
                })
                .map_err(EnrollStore::into_renew_error)?,
            other => other.map_err(EnrollStore::into_renew_error)?,
        };
        with_csr_key(&mut here, req.csr.as_ref());
        Ok(self.accepted(accepted, leased, &mut here))
    }

    /// A slot and a lease, when a request that waits for its certificate may run its job here.
    fn inline_candidate(&self, by: RunBy) -> Option<InlineRun> {
        if by == RunBy::Workers {
            return None;
        }
        let slot = self.inline_slot()?;
        Some(InlineRun { lease: self.inline_lease(), _slot: slot })
    }

    /// The candidate's lease, when the job's issuer is a built-in CA (an upstream order can take
    /// minutes and runs in the workers).
    fn lease_if_builtin<'a>(
        &self,
        c: &mut DbConn,
        here: &'a Option<InlineRun>,
        ca: &str,
    ) -> Result<Option<&'a super::queue::InlineLease>, RenewError> {
        use crate::ca::builtin::{ISSUING_CA, ISSUING_RSA_CA};
        let Some(run) = here else { return Ok(None) };
        let builtin = ca == ISSUING_CA || ca == ISSUING_RSA_CA || crate::ca::BuiltinCa::find_row(c, ca)?.is_some();
        Ok(builtin.then_some(&run.lease))
    }

    /// After the commit: a job leased to the request goes with its answer; any other wakes the workers.
    fn accepted(&self, mut a: Accepted, leased: bool, here: &mut Option<InlineRun>) -> Accepted {
        if leased {
            a.inline = here.take();
        } else {
            self.signals.job_enqueued();
        }
        a
    }

    /// Checks the state rules of a renewal (without changing anything).
    pub fn check_renewable(obj: &CertObject, reenable: bool) -> Result<(), RenewError> {
        if obj.state == ObjectState::Processing {
            return Err(RenewError::AlreadyProcessing(obj.dn.clone()));
        }
        if obj.state == ObjectState::Error {
            return Err(RenewError::ErrorState(obj.dn.clone()));
        }
        match obj.management_type {
            // TPP renews Provisioning objects too (and then provisions them); only Unassigned and
            // Monitoring objects are not for renewal.
            ManagementType::Enrollment | ManagementType::Provisioning => {}
            ManagementType::Monitoring => return Err(RenewError::MonitoringOnly(obj.dn.clone())),
            other @ ManagementType::Unassigned => {
                return Err(RenewError::InvalidManagementType(obj.dn.clone(), other.to_string()));
            }
        }
        if obj.disabled && !reenable {
            return Err(RenewError::Disabled(obj.dn.clone()));
        }
        Ok(())
    }

    /// Starts a renewal of an existing object. The new version becomes current only when issued.
    pub fn renew(&self, conn: &mut DbConn, req: &RenewRequest) -> Result<Accepted, RenewError> {
        self.renew_by(conn, req, RunBy::Workers, None)
    }

    /// `renew` for a request that waits for its certificate: the job is enqueued leased to it
    /// when it may run it here (`Accepted::inline`).
    pub fn renew_here(&self, conn: &mut DbConn, req: &RenewRequest) -> Result<Accepted, RenewError> {
        self.renew_by(conn, req, RunBy::ThisRequest, None)
    }

    /// `renew_here`, with the caller's own writes in the transaction that enqueues the job.
    pub fn renew_here_with(
        &self,
        conn: &mut DbConn,
        req: &RenewRequest,
        with_enqueue: WithEnqueue<'_>,
    ) -> Result<Accepted, RenewError> {
        self.renew_by(conn, req, RunBy::ThisRequest, Some(with_enqueue))
    }

    fn renew_by(
        &self,
        conn: &mut DbConn,
        req: &RenewRequest,
        by: RunBy,
        with_enqueue: Option<WithEnqueue<'_>>,
    ) -> Result<Accepted, RenewError> {
        let mut here = self.inline_candidate(by);
        // Checked and planned without the writer lock (on SQLite the one lock every write waits
        // for), then stored in a short transaction that first makes sure the object has not
        // changed since it was read. If it has, or it is being renewed, the whole renewal runs
        // again inside one transaction, which gives the same answer a serial run would.
        let plan = self.plan_renewal(conn, req, req.object.clone(), &here)?;
        let seen = plan.obj.updated_at;
        let store = |c: &mut DbConn, plan, unchanged_since| {
            let stored = self.store_renewal(c, plan, req, &here, unchanged_since)?;
            if let Some(f) = with_enqueue {
                f(c, &stored.0)?;
            }
            Ok::<_, RenewError>(stored)
        };
        let at_once = if with_enqueue.is_none() && !(req.reenable && plan.obj.disabled) {
            let csr = req.csr.as_ref().map(|c| c.der());
            Self::store_renewal_at_once(conn, (&plan.obj, &plan.payload_json, plan.leased), csr, &here, seen)
        } else {
            Ok(None)
        };
        // Not tried, or the statement failed: in a transaction.
        let optimistic =
            at_once.transpose().unwrap_or_else(|| self.writer.write_tx(conn, |c| store(c, plan, Some(seen))));
        let (accepted, leased) = match optimistic {
            Err(RenewError::AlreadyProcessing(_)) => self.writer.write_tx(conn, |c| {
                let plan = self.plan_renewal(c, req, None, &here)?;
                store(c, plan, None)
            })?,
            other => other?,
        };
        with_csr_key(&mut here, req.csr.as_ref());
        Ok(self.accepted(accepted, leased, &mut here))
    }

    /// `renew` inside the caller's write transaction (the scheduler's); the caller signals the workers.
    pub fn renew_tx(&self, c: &mut DbConn, req: &RenewRequest) -> Result<Accepted, RenewError> {
        let plan = self.plan_renewal(c, req, None, &None)?;
        self.store_renewal(c, plan, req, &None, None).map(|(a, _)| a)
    }

    /// The renewal's checks and its job's payload: reads only.
    fn plan_renewal(
        &self,
        c: &mut DbConn,
        req: &RenewRequest,
        known: Option<crate::db::models::CertObject>,
        here: &Option<InlineRun>,
    ) -> Result<PlannedRenewal, RenewError> {
        let obj = match known {
            Some(obj) => obj,
            None => inventory::find_object(c, &req.certificate)?.ok_or_else(|| match &req.certificate {
                CertRef::Dn(dn) => RenewError::DoesNotExist(dn.clone()),
                other => RenewError::DoesNotExist(format!("{other:?}")),
            })?,
        };
        Self::check_renewable(&obj, req.reenable)?;
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
        if req.csr.is_none() && obj.csr_origin == CsrOrigin::User {
            return Err(RenewError::UserCsrRequired(obj.dn.clone()));
        }
        let p = policy::effective(c, &obj.policy_dn)?;
        // The current certificate is decoded only when its subject, names or key type are needed
        // (OpenSSL 3 decodes slowly): never for a renewal with a CSR, whose key and names are the CSR's.
        let stored_spec_json: Option<KeySpec> = serde_json::from_str(&obj.key_spec).ok();
        let needs_cert = req.csr.is_none() && (req.issue_as.is_none() || stored_spec_json.is_none());
        let cur_cert = match needs_cert {
            true => inventory::current_version(c, &obj)?.map(|v| X509::from_der(&v.der)).transpose()?,
            false => None,
        };
        let (subject, sans) = match (&req.issue_as, &req.csr) {
            (Some(i), _) => (i.subject.clone(), i.sans.clone()),
            (None, Some(csr)) => (validate::subject_of(csr.subject_name()), SanSet::of_csr(csr)),
            (None, None) => {
                let mut s = cur_cert
                    .as_ref()
                    .map(|c| validate::subject_of(c.subject_name()))
                    .unwrap_or_else(|| SubjectSpec { common_name: Some(obj.name.clone()), ..Default::default() });
                if let Some(cn) = req.subject.as_ref().and_then(|r| r.common_name.clone()) {
                    s.common_name = Some(cn);
                }
                let sans = match (&req.sans, &cur_cert) {
                    (Some(x), _) if !x.is_empty() => x.clone(),
                    (_, Some(cc)) => SanSet::of_cert(cc),
                    _ => SanSet::default(),
                };
                (s, sans)
            }
        };
        // A service-generated object keeps its key type (the folder's policy may override it).
        let stored_spec: Option<KeySpec> = stored_spec_json
            .or_else(|| cur_cert.as_ref().and_then(|cc| cc.public_key().ok().and_then(|k| KeySpec::of_key(&k))));
        let (mut payload, _, _) =
            self.plan_issue(c, &p, req.csr.as_ref(), &subject, &sans, stored_spec, Some(obj.id), "renew")?;
        payload.not_after_max = req.not_after_max;
        if let Some(i) = &req.issue_as {
            payload.ekus = Some(i.ekus.clone());
            payload.acme_order = i.acme_order;
        }
        payload.store_ids = push_targets(c, &p, &obj, &[], &req.access, payload.generate_key.is_some())?;
        check_upstream(c, &p, &payload)?;
        let payload_json = serde_json::to_string(&payload).map_err(|e| RenewError::Internal(e.to_string()))?;
        let leased = self.lease_if_builtin(c, here, &payload.ca)?.is_some();
        Ok(PlannedRenewal { obj, payload_json, leased })
    }

    /// Stores a planned renewal (inside the caller's write transaction): its job, its CSR and the
    /// object's new state. With `unchanged_since`, the object must still be as the plan read it
    /// (else `AlreadyProcessing`, and nothing is kept). True when the job was leased to `here`.
    fn store_renewal(
        &self,
        c: &mut DbConn,
        plan: PlannedRenewal,
        req: &RenewRequest,
        here: &Option<InlineRun>,
        unchanged_since: Option<chrono::NaiveDateTime>,
    ) -> Result<(Accepted, bool), RenewError> {
        let PlannedRenewal { mut obj, payload_json, leased } = plan;
        let lease = here.as_ref().filter(|_| leased).map(|run| &run.lease);
        let (job_id, ts) = enqueue(c, (obj.id, &obj.dn), &payload_json, lease, unchanged_since)?;
        if req.reenable && obj.disabled {
            diesel::update(cert_objects::table.find(obj.id))
                .set(cert_objects::disabled.eq(false))
                .execute(c)
                .map_err(|e| RenewError::ReenableFailed(e.to_string()))?;
            obj.disabled = false;
        }
        if let Some(csr) = &req.csr {
            store_csr(c, obj.id, job_id, csr)?;
        }
        let object = processing_since(obj, job_id, ts);
        Ok((Accepted { object, job_id, inline: None }, lease.is_some()))
    }

    /// On PostgreSQL, `store_renewal` of an unchanged object as one statement, in no transaction
    /// (`queue::enqueue_renewal_at_once`): for a renewal with nothing else to write beside its
    /// job (no caller's writes, no re-enabling). `AlreadyProcessing` when the object changed since
    /// the plan read it, or is being renewed: nothing was written, and the caller runs the
    /// renewal again in a transaction. `None` when the statement failed (nothing was written
    /// either): the caller stores the plan step by step, whose failure names the step in the
    /// vendor's words (a job, or a manual CSR, that could not be written); also `None` on SQLite,
    /// where each statement is an in-process call and the transaction costs no round trips.
    /// Keyfactor's renewals take it too (no CSR): `(obj, payload_json, leased)` is either plan's.
    fn store_renewal_at_once(
        conn: &mut DbConn,
        (obj, payload_json, leased): (&CertObject, &str, bool),
        csr: Option<&[u8]>,
        here: &Option<InlineRun>,
        seen: chrono::NaiveDateTime,
    ) -> Result<Option<(Accepted, bool)>, RenewError> {
        let DbConn::Postgresql(pg) = conn else { return Ok(None) };
        let lease = here.as_ref().filter(|_| leased).map(|run| &run.lease);
        let (job_id, ts) = match super::queue::enqueue_renewal_at_once(pg, obj.id, seen, payload_json, lease, csr) {
            Ok(Some(stored)) => stored,
            Ok(None) => return Err(RenewError::AlreadyProcessing(obj.dn.clone())),
            Err(e) => {
                tracing::debug!(error = %e, object = obj.id, "one-statement enqueue failed; storing step by step");
                return Ok(None);
            }
        };
        let object = processing_since(obj.clone(), job_id, ts);
        Ok(Some((Accepted { object, job_id, inline: None }, lease.is_some())))
    }

    /// Keyfactor's renewal: no CSR. An object whose key the gateway holds gets a new key of the
    /// same type; any other is renewed by re-signing its current public key (exempt from the
    /// key-reuse rule). Template and CA overrides, metadata and stores ride along with the job.
    pub fn renew_keyfactor(
        &self,
        conn: &mut DbConn,
        req: &KeyfactorRenew,
    ) -> Result<(Accepted, Vec<crate::db::models::Store>), RenewError> {
        self.renew_keyfactor_by(conn, req, RunBy::Workers)
    }

    /// `renew_keyfactor` for a request that waits for its certificate (`Accepted::inline`).
    pub fn renew_keyfactor_here(
        &self,
        conn: &mut DbConn,
        req: &KeyfactorRenew,
    ) -> Result<(Accepted, Vec<crate::db::models::Store>), RenewError> {
        self.renew_keyfactor_by(conn, req, RunBy::ThisRequest)
    }

    fn renew_keyfactor_by(
        &self,
        conn: &mut DbConn,
        req: &KeyfactorRenew,
        by: RunBy,
    ) -> Result<(Accepted, Vec<crate::db::models::Store>), RenewError> {
        let mut here = self.inline_candidate(by);
        // As `renew_by`: checked and planned without the writer lock, then stored in a short
        // transaction that first makes sure the object has not changed since it was read; if it
        // has (or is being renewed), the whole renewal runs again inside one transaction.
        // On PostgreSQL the store is first tried as one statement, as `renew_by` does.
        let plan = self.plan_keyfactor(conn, req, &here)?;
        let seen = plan.obj.updated_at;
        let at_once =
            Self::store_renewal_at_once(conn, (&plan.obj, &plan.payload_json, plan.leased), None, &here, seen);
        let optimistic = at_once
            .transpose()
            .unwrap_or_else(|| self.writer.write_tx(conn, |c| self.store_keyfactor(c, &plan, &here, Some(seen))));
        let ((accepted, leased), plan) = match optimistic {
            Err(RenewError::AlreadyProcessing(_)) => self.writer.write_tx(conn, |c| {
                let plan = self.plan_keyfactor(c, req, &here)?;
                let stored = self.store_keyfactor(c, &plan, &here, None)?;
                Ok::<_, RenewError>((stored, plan))
            })?,
            other => (other?, plan),
        };
        if let Some(run) = here.as_mut() {
            run.lease.csr_key = plan.resigned_key;
        }
        Ok((self.accepted(accepted, leased, &mut here), plan.stores))
    }

    /// A Keyfactor renewal's checks and its job's payload: reads only.
    fn plan_keyfactor(
        &self,
        c: &mut DbConn,
        req: &KeyfactorRenew,
        here: &Option<InlineRun>,
    ) -> Result<PlannedKeyfactor, RenewError> {
        let mut resigned_key = None;
        let obj = inventory::find_object(c, &req.certificate)?
            .ok_or_else(|| RenewError::DoesNotExist(format!("{:?}", req.certificate)))?;
        Self::check_renewable(&obj, false)?;
        let current = inventory::current_version(c, &obj)?.ok_or_else(|| {
            RenewError::BadParameter("Lookup".into(), format!("Certificate {} has not been issued yet.", obj.dn))
        })?;
        let stores = super::stores::stores_for_push(c, &req.access, &req.store_guids, &obj.policy_dn)?;
        let template = match &req.template {
            Some(t) => Some(super::templates::find(c, t)?.ok_or_else(|| {
                RenewError::BadParameter("Template".into(), format!("Template '{t}' does not exist."))
            })?),
            None => None,
        };
        let ca_name = match &req.ca {
            Some(name) => {
                let row = crate::ca::BuiltinCa::find_row(c, name)?.ok_or_else(|| {
                    RenewError::BadParameter(
                        "CAConfiguration".into(),
                        format!("Certificate authority '{name}' does not exist."),
                    )
                })?;
                Some(row)
            }
            None => None,
        };
        let p = policy::effective(c, &obj.policy_dn)?;
        let parts = crate::ca::cert_parts::cert_parts(&current.der)?;
        let subject = validate::subject_of(&parts.subject);
        let sans = parts.sans;
        let pk = parts.public_key;
        let cur_spec = KeySpec::of_key(&pk);
        let (generate_key, public_key_der) = if current.key_enc.is_some() {
            (Some(p.default_key_spec(cur_spec)), None)
        } else {
            // The key a job run here re-signs without decoding it from the payload again.
            let key = crate::ca::legacy_form(&pk).unwrap_or_else(|| pk.clone());
            let der = key.public_key_to_der()?;
            resigned_key = Some(key);
            (None, Some(B64.encode(der)))
        };
        let final_subject =
            validate::check(&p, &subject, &sans, generate_key.or(cur_spec)).map_err(RenewError::Policy)?;
        // Issued in the checked form, as on every other path.
        let sans = crate::names::normalize_sans(&sans).map_err(|e| RenewError::Policy(PolicyViolation::BadName(e)))?;
        // A folder's locked validity wins over the template's.
        let validity = template
            .as_ref()
            .and_then(|t| t.validity.as_deref())
            .filter(|_| !p.get("validity").is_some_and(|s| s.locked))
            .and_then(|v| crate::settings::parse_duration(v).ok())
            .unwrap_or_else(|| p.validity(self.default_validity));
        let payload = IssuePayload {
            csr_der: None,
            subject_der: Some(to_b64(final_subject.to_name()?.to_der())?),
            sans: Some(sans),
            generate_key,
            ca: match ca_name {
                Some(n) => locked_ca(&p, &n)?,
                None => p.issuer_for(generate_key.or(cur_spec)),
            },
            validity_secs: validity.as_secs(),
            reason: "renew".into(),
            public_key_der,
            ekus: template.as_ref().map(super::templates::ekus_of),
            template: template.map(|t| t.name),
            metadata: if req.metadata.is_empty() { None } else { Some(req.metadata.clone()) },
            store_ids: push_targets(
                c,
                &p,
                &obj,
                &stores.iter().map(|s| s.id).collect::<Vec<_>>(),
                &req.access,
                generate_key.is_some(),
            )?,
            not_after_max: None,
            public_key_sha256: None,
            acme_order: None,
        };
        check_upstream(c, &p, &payload)?;
        let payload_json = serde_json::to_string(&payload).map_err(|e| RenewError::Internal(e.to_string()))?;
        let leased = self.lease_if_builtin(c, here, &payload.ca)?.is_some();
        Ok(PlannedKeyfactor { obj, payload_json, stores, resigned_key, leased })
    }

    /// Stores a planned Keyfactor renewal (inside the caller's write transaction); with
    /// `unchanged_since`, only if the object has not changed since the plan read it.
    fn store_keyfactor(
        &self,
        c: &mut DbConn,
        plan: &PlannedKeyfactor,
        here: &Option<InlineRun>,
        unchanged_since: Option<chrono::NaiveDateTime>,
    ) -> Result<(Accepted, bool), RenewError> {
        let lease = here.as_ref().filter(|_| plan.leased).map(|run| &run.lease);
        let (job_id, ts) = enqueue(c, (plan.obj.id, &plan.obj.dn), &plan.payload_json, lease, unchanged_since)?;
        let object = processing_since(plan.obj.clone(), job_id, ts);
        Ok((Accepted { object, job_id, inline: None }, lease.is_some()))
    }

    /// Disables (or enables) a certificate object by DN; returns its DN.
    pub fn set_disabled(&self, conn: &mut DbConn, dn: &str, disabled: bool) -> Result<String, RenewError> {
        let obj = inventory::find_object(conn, &CertRef::Dn(dn.to_string()))?
            .ok_or_else(|| RenewError::DoesNotExist(dn.to_string()))?;
        diesel::update(cert_objects::table.find(obj.id))
            .set((cert_objects::disabled.eq(disabled), cert_objects::updated_at.eq(now())))
            .execute(conn)?;
        Ok(obj.dn)
    }

    /// Clears the error state of an object (Venafi Certificates/Reset); with `restart`, queues
    /// its issuance again. Returns false when no reset was needed.
    pub fn reset(&self, conn: &mut DbConn, r: &CertRef, restart: bool) -> Result<bool, RenewError> {
        let done = write_tx(conn, None, |c| -> Result<bool, RenewError> {
            let obj = inventory::find_object(c, r)?.ok_or_else(|| RenewError::DoesNotExist(format!("{r:?}")))?;
            if obj.state != ObjectState::Error {
                return Ok(false);
            }
            let failed_payload: Option<String> = match obj.pending_job_id {
                Some(j) => jobs::table.find(j).select(jobs::payload).first(c).optional()?,
                None => None,
            };
            diesel::update(cert_objects::table.find(obj.id))
                .set((
                    cert_objects::state.eq(ObjectState::Active),
                    cert_objects::pending_job_id.eq(None::<i64>),
                    cert_objects::last_error.eq(None::<String>),
                    cert_objects::updated_at.eq(now()),
                ))
                .execute(c)?;
            if restart && let Some(payload) = failed_payload {
                enqueue(c, (obj.id, &obj.dn), &payload, None, None)?;
            }
            Ok(true)
        })?;
        if done && restart {
            self.signals.job_enqueued();
        }
        Ok(done)
    }

    /// Revokes the current certificate of an object (or the version with a thumbprint), with a
    /// reason code (0–5); `disable` also disables the object. Returns false when it was already revoked.
    pub fn revoke(
        &self,
        conn: &mut DbConn,
        r: &CertRef,
        reason: i32,
        comments: &str,
        disable: bool,
    ) -> Result<bool, RenewError> {
        use crate::db::schema::revocations;
        // Under the CRL lock: a CRL being made either lists this revocation or is marked stale by it.
        write_tx(conn, Some(crate::ca::crl::CRL_LOCK), |c| -> Result<bool, RenewError> {
            let obj = inventory::find_object(c, r)?.ok_or_else(|| RenewError::DoesNotExist(format!("{r:?}")))?;
            let cert_id = match r {
                CertRef::Thumbprint(t) => certificates::table
                    .filter(certificates::object_id.eq(obj.id))
                    .filter(certificates::thumbprint.eq(inventory::normalize_thumbprint(t)))
                    .select(certificates::id)
                    .first::<i64>(c)
                    .optional()?,
                _ => obj.current_cert_id,
            }
            .ok_or_else(|| {
                RenewError::BadParameter(
                    "CertificateDN".into(),
                    format!("Certificate {} has no issued certificate to revoke.", obj.dn),
                )
            })?;
            let already: i64 =
                revocations::table.filter(revocations::certificate_id.eq(cert_id)).count().get_result(c)?;
            if disable {
                diesel::update(cert_objects::table.find(obj.id))
                    .set((cert_objects::disabled.eq(true), cert_objects::updated_at.eq(now())))
                    .execute(c)?;
            }
            if already > 0 {
                return Ok(false);
            }
            diesel::insert_into(revocations::table)
                .values((
                    revocations::certificate_id.eq(cert_id),
                    revocations::reason.eq(reason),
                    revocations::comments.eq(comments),
                    revocations::revoked_at.eq(now()),
                ))
                .execute(c)?;
            if reason == REASON_KEY_COMPROMISE {
                record_compromised_key(c, cert_id)?;
            }
            // A certificate from an upstream CA is revoked there too, by a durable job.
            if let Some((issuer, _)) = crate::ca::upstream::db::issued_by(c, cert_id)?
                && crate::ca::upstream::db::find_any(c, &issuer)?.is_some()
            {
                Self::enqueue_upstream_revoke(
                    c,
                    obj.id,
                    &super::queue::UpstreamRevoke { issuer, certificate_id: cert_id, reason },
                )?;
            }
            crate::ca::crl::mark_stale(c, cert_id)?;
            Ok(true)
        })
        .inspect(|fresh| {
            if *fresh {
                self.signals.job_enqueued();
            }
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
        let mgmt = ManagementType::parse_any_case(management_type).ok_or_else(|| {
            RenewError::BadParameter("management-type".into(), format!("unknown management type {management_type:?}"))
        })?;
        let certs = X509::stack_from_pem(pem)
            .map_err(|_| RenewError::BadParameter("FILE".into(), "no PEM certificates found".into()))?;
        if certs.is_empty() {
            return Err(RenewError::BadParameter("FILE".into(), "no PEM certificates found".into()));
        }
        let key = key_pem.map(openssl::pkey::PKey::private_key_from_pem).transpose().map_err(|_| {
            RenewError::BadParameter("key".into(), "not a PEM private key (unencrypted PKCS#8 or traditional)".into())
        })?;
        let is_ca = |c: &X509| -> bool {
            // Self-issued, or marked CA in BasicConstraints (openssl's check_purpose is not bound:
            // use the text form of the extension).
            c.to_text().map(|t| String::from_utf8_lossy(&t).contains("CA:TRUE")).unwrap_or(false)
        };
        let (leaves, cas): (Vec<X509>, Vec<X509>) = certs.into_iter().partition(|c| !is_ca(c));
        if leaves.is_empty() {
            return Err(RenewError::BadParameter("FILE".into(), "the file holds only CA certificates".into()));
        }
        let chain_pem: String =
            cas.iter().filter_map(|c| c.to_pem().ok()).map(|p| String::from_utf8_lossy(&p).into_owned()).collect();
        let mut out = vec![];
        crate::names::check_folder_dn(&policy_dn)
            .map_err(|e| RenewError::BadParameter("PolicyDN".into(), e.to_string()))?;
        write_tx(conn, None, |c| -> Result<(), RenewError> {
            policy::ensure_folder(c, &policy_dn)?;
            for leaf in &leaves {
                let der = leaf.to_der()?;
                let pubkey = leaf.public_key()?;
                let key_enc = match key.as_ref().filter(|k| k.public_eq(&pubkey)) {
                    Some(k) => Some(
                        self.master
                            .seal(inventory::KEY_PURPOSE, &k.private_key_to_pkcs8()?)
                            .map_err(|e| RenewError::Internal(e.to_string()))?,
                    ),
                    None => None,
                };
                let key_matches = key_enc.is_some();
                let cn = crate::ca::common_name(leaf.subject_name());
                let base = if cn.is_empty() { crate::ca::thumbprint(&der) } else { cn };
                let mut name = base.clone();
                let mut n = 1;
                while inventory::find_object(c, &CertRef::Dn(format!("{policy_dn}\\{name}")))?.is_some() {
                    n += 1;
                    name = format!("{base} ({n})");
                }
                let dn = format!("{policy_dn}\\{name}");
                let guid = new_guid();
                let ts = now();
                let spec = KeySpec::of_key(&pubkey);
                let spec_json = if key_matches {
                    spec.map(|s| serde_json::to_string(&s).unwrap_or_default()).unwrap_or_default()
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
                        state: ObjectState::Active,
                        disabled: false,
                        management_type: mgmt,
                        csr_origin: if key_matches { CsrOrigin::Service } else { CsrOrigin::User },
                        key_spec: &spec_json,
                        current_cert_id: None,
                        pending_job_id: None,
                        last_error: None,
                        created_at: ts,
                        updated_at: ts,
                    })
                    .execute(c)?;
                let obj_id: i64 =
                    cert_objects::table.filter(cert_objects::guid.eq(&guid)).select(cert_objects::id).first(c)?;
                let vguid = new_record_guid();
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
                let cert_id: i64 =
                    certificates::table.filter(certificates::guid.eq(&vguid)).select(certificates::id).first(c)?;
                inventory::record_names(c, cert_id, obj_id, &der)?;
                diesel::update(cert_objects::table.find(obj_id))
                    .set((cert_objects::current_cert_id.eq(cert_id), cert_objects::updated_at.eq(now())))
                    .execute(c)?;
                out.push((obj_id, cert_id, dn));
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// A public upstream CA logs every certificate in Certificate Transparency: the folder must
/// restrict its domains, and names such a CA refuses are refused here, before any order.
fn check_upstream(c: &mut DbConn, p: &policy::EffectivePolicy, payload: &IssuePayload) -> Result<(), RenewError> {
    use crate::ca::builtin::{ISSUING_CA, ISSUING_RSA_CA};
    if payload.ca == ISSUING_CA || payload.ca == ISSUING_RSA_CA {
        return Ok(());
    }
    let Some(row) = crate::ca::upstream::db::find(c, &payload.ca)? else { return Ok(()) };
    let public = serde_json::from_str::<crate::ca::upstream::UpstreamConfig>(&row.config).is_ok_and(|c| c.public);
    if !public {
        return Ok(());
    }
    if p.domains().is_empty() {
        return Err(RenewError::Policy(PolicyViolation::PublicIssuer(format!(
            "The certificate authority '{}' is public (its certificates appear in Certificate Transparency logs): the policy folder must restrict its domains.",
            row.name
        ))));
    }
    let names = payload.sans.iter().flat_map(|s| s.dns.iter());
    for n in names {
        if let Some(problem) = crate::ca::upstream::public_name_problem(n) {
            return Err(RenewError::Policy(PolicyViolation::PublicIssuer(format!(
                "The certificate authority '{}' is public: {problem}.",
                row.name
            ))));
        }
    }
    Ok(())
}

/// Inserts a queued job and marks the object `processing` (inside the caller's transaction).
/// A CA override, unless the folder locks another CA.
fn locked_ca(p: &policy::EffectivePolicy, wanted: &str) -> Result<String, RenewError> {
    match p.get("ca") {
        Some(s) if s.locked && !p.ca().is_some_and(|ca| ca.eq_ignore_ascii_case(wanted)) => {
            Err(RenewError::BadParameter(
                "CAConfiguration".into(),
                format!(
                    "The policy folder {} locks the certificate authority to '{}'.",
                    s.folder,
                    p.ca().unwrap_or_default()
                ),
            ))
        }
        _ => Ok(wanted.to_string()),
    }
}

/// The object as its enqueue leaves it (processing job `job_id` since `ts`), without reading it
/// again.
fn processing_since(
    mut obj: crate::db::models::CertObject,
    job_id: i64,
    ts: chrono::NaiveDateTime,
) -> crate::db::models::CertObject {
    obj.state = ObjectState::Processing;
    obj.pending_job_id = Some(job_id);
    obj.last_error = None;
    obj.updated_at = ts;
    obj
}

/// Stores a user-provided CSR beside its job (the "manual CSR" of the Venafi messages).
fn store_csr(c: &mut DbConn, object_id: i64, job_id: i64, csr: &Csr) -> Result<(), RenewError> {
    crate::on_backend!(c, |c| Prepared(
        diesel::insert_into(csrs::table)
            .values((
                csrs::object_id.eq(object_id),
                csrs::job_id.eq(job_id),
                csrs::der.eq(csr.der()),
                csrs::created_at.eq(now()),
            ))
            .returning(csrs::id)
    )
    .write(c))
    .map_err(|e| RenewError::CsrWriteFailed(db_message(&e)))?;
    Ok(())
}

/// The text of a database error as a vendor message shows it.
pub fn db_message(e: &diesel::result::Error) -> String {
    match e {
        diesel::result::Error::DatabaseError(_, info) => info.message().to_string(),
        other => other.to_string(),
    }
}

/// The CRL reason a key is never used again after (RFC 5280 keyCompromise).
const REASON_KEY_COMPROMISE: i32 = 1;

/// Was a certificate with this key (SPKI SHA-256) revoked for key compromise (reason 1)?
pub fn compromised_key(c: &mut DbConn, public_key_sha256: &str) -> Result<bool, diesel::result::Error> {
    use crate::db::schema::compromised_keys;
    // Every CSR is checked: on the concrete connection (`on_backend`).
    let n: i64 = crate::on_backend!(c, |c| compromised_keys::table.find(public_key_sha256).count().get_result(c))?;
    Ok(n > 0)
}

/// Adds the key of certificate `cert_id` to the compromised keys (once: revocations run under
/// the CRL lock, so two of them cannot both find the key absent).
fn record_compromised_key(c: &mut DbConn, cert_id: i64) -> Result<(), diesel::result::Error> {
    use crate::db::schema::compromised_keys;
    let key: String = certificates::table.find(cert_id).select(certificates::public_key_sha256).first(c)?;
    if !compromised_key(c, &key)? {
        diesel::insert_into(compromised_keys::table)
            .values((
                compromised_keys::public_key_sha256.eq(key),
                compromised_keys::certificate_id.eq(cert_id),
                compromised_keys::revoked_at.eq(now()),
            ))
            .execute(c)?;
    }
    Ok(())
}

/// Enqueues an object's job and marks the object processing; `AlreadyProcessing` when it already
/// is, or (with `unchanged_since`) when it changed after that instant.
fn enqueue(
    c: &mut DbConn,
    (object_id, dn): (i64, &str),
    payload: &str,
    lease: Option<&super::queue::InlineLease>,
    unchanged_since: Option<chrono::NaiveDateTime>,
) -> Result<(i64, chrono::NaiveDateTime), RenewError> {
    let ts = now();
    let job_id = super::queue::insert_job_leased(c, super::queue::KIND_ISSUE, object_id, payload, lease)
        .map_err(|e| RenewError::StoreFailed(dn.to_string(), db_message(&e)))?;
    // The state guard makes "one renewal in flight" hold even between two instances.
    let target = cert_objects::table.find(object_id).filter(cert_objects::state.ne(ObjectState::Processing));
    let changes = (
        cert_objects::state.eq(ObjectState::Processing),
        cert_objects::pending_job_id.eq(job_id),
        cert_objects::last_error.eq(None::<String>),
        cert_objects::updated_at.eq(ts),
    );
    let n = match unchanged_since {
        // On the concrete connection (`on_backend`): this runs under the SQLite writer lock.
        Some(seen) => crate::on_backend!(c, |c| Prepared(
            diesel::update(target.filter(cert_objects::updated_at.eq(seen))).set(changes).returning(cert_objects::id)
        )
        .write(c)),
        None => crate::on_backend!(c, |c| Prepared(diesel::update(target).set(changes).returning(cert_objects::id))
            .write(c)),
    }
    .map_err(|e| RenewError::StoreFailed(dn.to_string(), db_message(&e)))?;
    if n != 1 {
        return Err(RenewError::AlreadyProcessing(dn.to_string()));
    }
    Ok((job_id, ts))
}
