//! The Keyfactor dialect's answers: each handler builds one of these and `respond` serializes it.
//!
//! The types spell their keys in PascalCase, as the server sends them by default (and the classic
//! API always). The Keyfactor API answers camelCase instead (the .NET `JsonNamingPolicy.CamelCase`
//! rule: `KeyfactorID` → `keyfactorID`, dictionary keys untouched) when the request body's first
//! key starts with a lower-case letter, or when a GET carries `collectionId=0` without an
//! `x-keyfactor-api-version` header: `respond` re-cases the serialized value (the tag
//! descriptions in src/openapi.rs say so). Fields the vendor SDK models cannot take as `null`
//! (datetimes, enums, maps) are left out when absent rather than sent as `null`.
use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

// ---- classic CMS API (/CMSApi/CertEnroll/3/...) ----

/// The classic renewal's answer: `Issued` with the new thumbprint, or `Pending` with the request id.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfClassicRenewResponse {
    /// Labels of the stores that get the renewed certificate.
    pub renewed_cert_stores: Vec<String>,
    /// Empty while pending.
    pub thumbprint: String,
    #[serde(rename = "CMSRequestId")]
    pub cms_request_id: i64,
    /// `Issued` or `Pending`.
    pub request_disposition: String,
    pub disposition_message: String,
}

/// The classic CSR enrollment's answer (`Certificates` empty and `KeyfactorID` 0 while pending).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfClassicPkcs10Response {
    /// Base64 DER, CRLF every 64 characters, no PEM armour.
    pub certificates: Vec<String>,
    #[serde(rename = "KeyfactorID")]
    pub keyfactor_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN", skip_serializing_if = "Option::is_none")]
    pub issuer_dn: Option<String>,
    #[serde(rename = "CMSRequestId")]
    pub cms_request_id: i64,
    /// `Issued` or `Pending`.
    pub request_disposition: String,
    pub disposition_message: String,
}

/// The classic key-generating enrollment's answer (no `Pkcs12Blob` while pending).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfClassicPkcs12Response {
    /// Base64 PKCS#12 with the key and chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs12_blob: Option<String>,
    #[serde(rename = "KeyfactorID")]
    pub keyfactor_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN", skip_serializing_if = "Option::is_none")]
    pub issuer_dn: Option<String>,
    #[serde(rename = "CMSRequestId")]
    pub cms_request_id: i64,
    /// `Issued` or `Pending`.
    pub request_disposition: String,
    pub disposition_message: String,
}

// ---- Keyfactor API (/KeyfactorAPI/...): enrollment ----

/// A renewal's answer: `ISSUED`, or `PENDING` with `KeyfactorId` 0.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfEnrollmentRenewResponse {
    pub keyfactor_id: i64,
    pub keyfactor_request_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN", skip_serializing_if = "Option::is_none")]
    pub issuer_dn: Option<String>,
    /// `ISSUED` or `PENDING`.
    pub request_disposition: String,
    pub disposition_message: String,
}

/// Whether a certificate can be renewed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfAvailableRenewal {
    /// 0 not renewable, 1 seamless (re-signs the public key), 2 one-click (new key).
    pub available_renewal_type: i32,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfPfxCertificateInformation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN", skip_serializing_if = "Option::is_none")]
    pub issuer_dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// 0 while pending.
    pub keyfactor_id: i64,
    /// Base64 PKCS#12 with the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs12_blob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub keyfactor_request_id: i64,
    /// `ISSUED` or `PENDING`.
    pub request_disposition: String,
    pub disposition_message: String,
}

/// A PFX enrollment's answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfPfxEnrollmentResponse {
    pub certificate_information: KfPfxCertificateInformation,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfCsrCertificateInformation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN", skip_serializing_if = "Option::is_none")]
    pub issuer_dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// 0 while pending.
    #[serde(rename = "KeyfactorID")]
    pub keyfactor_id: i64,
    /// PEM, or base64 DER with `x-certificateformat: DER`; leaf first; empty while pending.
    pub certificates: Vec<String>,
    pub keyfactor_request_id: i64,
    /// `ISSUED` or `PENDING`.
    pub request_disposition: String,
    pub disposition_message: String,
}

/// A CSR enrollment's answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfCsrEnrollmentResponse {
    pub certificate_information: KfCsrCertificateInformation,
    pub metadata: BTreeMap<String, String>,
}

/// Stores that got an Add job, and store ids that do not exist.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfDeployResponse {
    pub successful_stores: Vec<String>,
    pub failed_stores: Vec<String>,
}

// ---- certificates ----

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfSubjectAltNameElement {
    pub id: i64,
    pub value: String,
    /// 1 email, 2 DNS, 6 URI, 7 IP, 100 UPN.
    pub r#type: i32,
    pub value_hash: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfExtendedKeyUsage {
    pub id: i64,
    pub oid: String,
    pub display_name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfLocationCount {
    pub r#type: String,
    pub count: i64,
}

/// A store entry holding the certificate.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfCertificateLocation {
    pub store_machine: String,
    pub store_path: String,
    /// 1 PEM directory, 2 PKCS#12 file, 3 JKS file.
    pub store_type: i64,
    pub alias: String,
    pub chain_level: i64,
    /// The store's GUID.
    pub cert_store_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfDetailedKeyUsage {
    pub crl_sign: bool,
    pub data_encipherment: bool,
    pub decipher_only: bool,
    pub digital_signature: bool,
    pub encipher_only: bool,
    pub key_agreement: bool,
    pub key_cert_sign: bool,
    pub key_encipherment: bool,
    pub non_repudiation: bool,
    pub hex_code: String,
}

/// A certificate (the vendor's CertificateRetrievalResponse).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfCertificate {
    pub id: i64,
    pub thumbprint: String,
    pub serial_number: String,
    #[serde(rename = "IssuedDN")]
    pub issued_dn: String,
    #[serde(rename = "IssuedCN")]
    pub issued_cn: String,
    #[schema(format = DateTime)]
    pub import_date: String,
    #[schema(format = DateTime)]
    pub not_before: String,
    #[schema(format = DateTime)]
    pub not_after: String,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: String,
    pub principal_id: i64,
    pub template_id: i64,
    /// 1 active, 2 revoked.
    pub cert_state: i32,
    pub key_size_in_bits: i64,
    /// 0 unknown, 1 RSA, 3 ECC.
    pub key_type: i32,
    pub requester_id: i64,
    #[serde(rename = "IssuedOU")]
    pub issued_ou: String,
    pub issued_email: String,
    pub key_usage: i64,
    pub signing_algorithm: String,
    pub cert_state_string: String,
    pub key_type_string: String,
    pub curve: String,
    pub certificate_authority_id: i64,
    pub certificate_authority_name: String,
    #[serde(rename = "CARecordId")]
    pub ca_record_id: String,
    pub cert_request_id: i64,
    pub certificate_key_id: i64,
    #[serde(rename = "CARowIndex")]
    pub ca_row_index: i64,
    pub template_name: String,
    pub principal_name: String,
    pub requester_name: String,
    pub archived_key: bool,
    pub has_private_key: bool,
    pub key_recoverable: bool,
    pub revocation_comment: String,
    /// Present on revoked certificates.
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_eff_date: Option<String>,
    /// Present on revoked certificates (RFC 5280 reason code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<i32>,
    /// Base64 DER.
    pub content_bytes: String,
    pub extended_key_usages: Vec<KfExtendedKeyUsage>,
    pub subject_alt_name_elements: Vec<KfSubjectAltNameElement>,
    #[serde(rename = "CRLDistributionPoints")]
    pub crl_distribution_points: Vec<String>,
    pub locations_count: Vec<KfLocationCount>,
    #[serde(rename = "SSLLocations")]
    pub ssl_locations: Vec<String>,
    pub locations: Vec<KfCertificateLocation>,
    /// Metadata fields, with the Venafi DN of the same certificate as `CertificateDN`. Left out in
    /// store inventories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    pub detailed_key_usage: KfDetailedKeyUsage,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfDownloadResponse {
    /// Base64 of the file in the requested format.
    pub content: String,
}

#[derive(Serialize, ToSchema)]
pub struct KfRecoverResponse {
    /// Base64 of the file (PKCS#12, PEM with an encrypted PKCS#8 key, or JKS).
    #[serde(rename = "PFX")]
    pub pfx: String,
    #[serde(rename = "FileName")]
    pub file_name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfRevokeResponse {
    pub revoked_ids: Vec<i64>,
    pub suspended_certs: Vec<i64>,
}

// ---- certificate stores and orchestrator jobs ----

/// A certificate store.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfCertificateStore {
    /// The store's GUID.
    pub id: String,
    pub container_id: i64,
    pub display_name: String,
    pub client_machine: String,
    pub storepath: String,
    /// 1 PEM directory, 2 PKCS#12 file, 3 JKS file.
    pub cert_store_type: i64,
    pub approved: bool,
    pub create_if_missing: bool,
    /// JSON text: `{"type": …, "alias": …, "includeKeys": …}`.
    pub properties: String,
    pub agent_assigned: bool,
    pub container_name: String,
    pub set_new_password_allowed: bool,
}

/// One entry of a store's inventory.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfStoreInventoryItem {
    /// The entry's alias.
    pub name: String,
    pub certificates: Vec<KfCertificate>,
    pub parameters: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfJobSchedule {
    pub immediate: bool,
}

/// One run of a store job.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfJobHistory {
    pub job_history_id: i64,
    pub agent_machine: String,
    pub client_machine: String,
    pub store_path: String,
    /// The job's GUID.
    pub job_id: String,
    pub schedule: KfJobSchedule,
    /// `Management`.
    pub job_type: String,
    #[schema(format = DateTime)]
    pub operation_start: String,
    /// Absent while the run is in progress.
    #[schema(format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_end: Option<String>,
    pub message: String,
    /// 0 unknown, 2 success, 3 warning, 4 failure.
    pub result: i32,
    /// 1 waiting, 2 in process, 3 completed, 4 acknowledged, 5 completed (will retry).
    pub status: i32,
}

/// A store job waiting or running.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfScheduledJob {
    /// The job's GUID.
    pub id: String,
    pub client_machine: String,
    /// The store path.
    pub target: String,
    pub schedule: KfJobSchedule,
    #[schema(format = DateTime)]
    pub requested: String,
    /// `Management`.
    pub job_type: String,
}

// ---- templates, CAs, status ----

/// A certificate template (one per Renewgate template, bound to a policy folder).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfTemplate {
    pub id: i64,
    pub common_name: String,
    pub template_name: String,
    pub oid: String,
    pub key_size: String,
    pub key_type: String,
    pub forest_root: String,
    pub friendly_name: String,
    pub key_retention: i64,
    pub key_retention_days: i64,
    pub key_archival: bool,
    pub enrollment_fields: Vec<String>,
    pub allowed_enrollment_types: i64,
    pub template_regexes: Vec<String>,
    pub use_allowed_requesters: bool,
    pub allowed_requesters: Vec<String>,
    pub display_name: String,
    pub requires_approval: bool,
    pub key_usage: i64,
    pub extended_key_usages: Vec<KfExtendedKeyUsage>,
    pub configuration_tenant: String,
    /// The policy folder the template enrolls into.
    #[serde(rename = "PolicyDN")]
    pub policy_dn: String,
}

/// An issuing certificate authority of the gateway.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfCertificateAuthority {
    pub id: i64,
    pub logical_name: String,
    pub host_name: String,
    pub delegate: bool,
    pub delegate_enrollment: bool,
    pub forest_root: String,
    pub configuration_tenant: String,
    pub remote: bool,
    pub agent: String,
    pub standalone: bool,
    pub monitor_thresholds: bool,
    pub issuance_max: i64,
    pub issuance_min: i64,
    pub denial_max: i64,
    pub failure_max: i64,
    #[serde(rename = "RFCEnforcement")]
    pub rfc_enforcement: bool,
    pub properties: String,
    pub allowed_enrollment_types: i64,
    pub key_retention: i64,
    pub key_retention_days: i64,
    pub explicit_credentials: bool,
    pub subscriber_terms: bool,
    pub explicit_user: String,
    pub use_allowed_requesters: bool,
    pub allowed_requesters: Vec<String>,
    #[serde(rename = "EnforceUniqueDN")]
    pub enforce_unique_dn: bool,
    #[serde(rename = "CAType")]
    pub ca_type: i64,
    /// Always empty here (no CA scans).
    pub last_scan: String,
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_the_vendor_spelling_and_leave_absent_fields_out() {
        let pending = KfCsrEnrollmentResponse {
            certificate_information: KfCsrCertificateInformation {
                serial_number: None,
                issuer_dn: None,
                thumbprint: None,
                keyfactor_id: 0,
                certificates: vec![],
                keyfactor_request_id: 9,
                request_disposition: "PENDING".into(),
                disposition_message: "queued".into(),
            },
            metadata: BTreeMap::from([("Email-Contact".to_string(), "x".to_string())]),
        };
        assert_eq!(
            serde_json::to_value(&pending).unwrap(),
            serde_json::json!({"CertificateInformation": {"KeyfactorID": 0, "Certificates": [], "KeyfactorRequestId": 9,
                "RequestDisposition": "PENDING", "DispositionMessage": "queued"}, "Metadata": {"Email-Contact": "x"}})
        );
        let recovered = KfRecoverResponse { pfx: "AA==".into(), file_name: "a.pfx".into() };
        assert_eq!(serde_json::to_value(&recovered).unwrap(), serde_json::json!({"PFX": "AA==", "FileName": "a.pfx"}));
    }
}
