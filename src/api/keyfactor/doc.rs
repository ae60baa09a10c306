//! The Keyfactor dialect in the OpenAPI document. The handlers build their answers with
//! `serde_json::json!` (so that one body can be re-cased per request): these types describe those
//! bodies and the requests the handlers read, and are documentation, never constructed.
//!
//! Every answer is documented in PascalCase, as the server sends it by default (and the classic
//! API always). The Keyfactor API answers camelCase instead (the .NET `JsonNamingPolicy.CamelCase`
//! rule: `KeyfactorID` → `keyfactorID`, dictionary keys untouched) when the request body's first
//! key starts with a lower-case letter, or when a GET carries `collectionId=0` without an
//! `x-keyfactor-api-version` header (the tag descriptions in src/openapi.rs say so). Request keys
//! are matched case-insensitively; booleans and integers may also be sent as strings.
#![allow(dead_code)]

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// ---- classic CMS API (/CMSApi/CertEnroll/3/...) ----

/// How the classic API names one issued certificate: `Type` `CMSID` (with `CMSID`), `Thumbprint`
/// (with `Thumbprint`) or `Serial` (with `SerialNumber` and optionally `IssuerDN`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfClassicLookup {
    /// `CMSID`, `Thumbprint` or `Serial`.
    pub r#type: Option<String>,
    #[serde(rename = "CMSID")]
    pub cmsid: Option<i64>,
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: Option<String>,
}

/// `POST /CMSApi/CertEnroll/3/Renew`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfClassicRenewRequest {
    pub lookup: KfClassicLookup,
    /// A template name (default: the certificate's own).
    pub template: Option<String>,
    /// `<ca host>\<CA name>` or a bare CA name.
    #[serde(rename = "CAConfiguration")]
    pub ca_configuration: Option<String>,
    /// Metadata fields of the renewed certificate.
    pub metadata: Option<HashMap<String, String>>,
    /// GUIDs of certificate stores that get the renewed certificate.
    pub cert_stores: Option<Vec<String>>,
    /// Sent by the vendor SDKs and scripts; ignored.
    pub timestamp: Option<String>,
}

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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicMetadataItem {
    #[serde(rename = "MetadataFieldTypeName")]
    pub metadata_field_type_name: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs10Envelope {
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Flags")]
    pub flags: Option<i64>,
    /// The PKCS#10 request, PEM or base64 DER.
    #[serde(rename = "Pkcs10Request")]
    pub pkcs10_request: String,
    #[serde(rename = "TemplateName")]
    pub template_name: Option<String>,
    #[serde(rename = "metadataList")]
    pub metadata_list: Option<Vec<KfClassicMetadataItem>>,
}

/// `POST /CMSApi/CertEnroll/3/Pkcs10`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs10Request {
    #[serde(rename = "Request")]
    pub request: KfClassicPkcs10Envelope,
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Timestamp")]
    pub timestamp: Option<String>,
}

/// The classic CSR enrollment's answer (`Certificates` empty and `KeyfactorID` 0 while pending).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfClassicPkcs10Response {
    /// Base64 DER, CRLF every 64 characters, no PEM armour.
    pub certificates: Vec<String>,
    #[serde(rename = "KeyfactorID")]
    pub keyfactor_id: i64,
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: Option<String>,
    #[serde(rename = "CMSRequestId")]
    pub cms_request_id: i64,
    /// `Issued` or `Pending`.
    pub request_disposition: String,
    pub disposition_message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicSubjectName {
    #[serde(rename = "CN")]
    pub cn: String,
    #[serde(rename = "O")]
    pub o: Option<String>,
    #[serde(rename = "OU")]
    pub ou: Option<String>,
    #[serde(rename = "L")]
    pub l: Option<String>,
    #[serde(rename = "ST")]
    pub st: Option<String>,
    #[serde(rename = "C")]
    pub c: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicSanElement {
    /// `dns`, `ip`, `email`, `uri` or `upn`.
    pub key: String,
    pub value: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs12Envelope {
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Flags")]
    pub flags: Option<i64>,
    /// The PKCS#12 password (strength rules apply).
    #[serde(rename = "Pkcs12Password")]
    pub pkcs12_password: String,
    #[serde(rename = "SubjectNameAttributes")]
    pub subject_name_attributes: KfClassicSubjectName,
    #[serde(rename = "SubjectAltNameElements")]
    pub subject_alt_name_elements: Option<Vec<KfClassicSanElement>>,
    #[serde(rename = "TemplateName")]
    pub template_name: Option<String>,
    #[serde(rename = "metadataList")]
    pub metadata_list: Option<Vec<KfClassicMetadataItem>>,
}

/// `POST /CMSApi/CertEnroll/3/Pkcs12`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs12Request {
    #[serde(rename = "Request")]
    pub request: KfClassicPkcs12Envelope,
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Timestamp")]
    pub timestamp: Option<String>,
}

/// The classic key-generating enrollment's answer (no `Pkcs12Blob` while pending).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfClassicPkcs12Response {
    /// Base64 PKCS#12 with the key and chain.
    pub pkcs12_blob: Option<String>,
    #[serde(rename = "KeyfactorID")]
    pub keyfactor_id: i64,
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: Option<String>,
    #[serde(rename = "CMSRequestId")]
    pub cms_request_id: i64,
    /// `Issued` or `Pending`.
    pub request_disposition: String,
    pub disposition_message: String,
}

// ---- Keyfactor API (/KeyfactorAPI/...): enrollment ----

/// `POST /KeyfactorAPI/Enrollment/Renew`: `CertificateId` or `Thumbprint`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfEnrollmentRenewRequest {
    pub certificate_id: Option<i64>,
    pub thumbprint: Option<String>,
    pub template: Option<String>,
    /// `<ca host>\<CA name>` or a bare CA name.
    pub certificate_authority: Option<String>,
}

/// A renewal's answer: `ISSUED`, or `PENDING` with `KeyfactorId` 0.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfEnrollmentRenewResponse {
    pub keyfactor_id: i64,
    pub keyfactor_request_id: i64,
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
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

/// `POST /KeyfactorAPI/Enrollment/PFX`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfPfxEnrollmentRequest {
    /// A subject DN with a CN: `CN=a.example.com,O=Acme,OU=Ops`.
    pub subject: String,
    /// The PFX password.
    pub password: String,
    /// Default true.
    pub include_chain: Option<bool>,
    /// SANs by type: `{"dns": ["a.example.com"], "ip4": [...], "email": [...], "uri": [...], "upn": [...]}`.
    #[serde(rename = "SANs")]
    pub sans: Option<HashMap<String, Vec<String>>>,
    pub template: Option<String>,
    pub certificate_authority: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
    /// `RSA` or `ECC`.
    pub key_type: Option<String>,
    pub key_length: Option<i64>,
    /// `P256`, `P384`, `P521`.
    pub curve: Option<String>,
    /// Sent by the vendor SDKs and scripts; ignored.
    pub timestamp: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfPfxCertificateInformation {
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: Option<String>,
    pub thumbprint: Option<String>,
    /// 0 while pending.
    pub keyfactor_id: i64,
    /// Base64 PKCS#12 with the key.
    pub pkcs12_blob: Option<String>,
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
    pub metadata: HashMap<String, String>,
}

/// `POST /KeyfactorAPI/Enrollment/CSR` (header `x-certificateformat`: `PEM` (default) or `DER`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfCsrEnrollmentRequest {
    /// The PKCS#10 request, PEM or base64 DER.
    #[serde(rename = "CSR")]
    pub csr: String,
    /// Default false.
    pub include_chain: Option<bool>,
    pub template: Option<String>,
    pub certificate_authority: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
    /// Sent by the vendor SDKs and scripts; ignored.
    pub timestamp: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfCsrCertificateInformation {
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: Option<String>,
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
    pub metadata: HashMap<String, String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfDeployStore {
    pub store_id: String,
    pub alias: Option<String>,
    /// Default true.
    pub overwrite: Option<bool>,
}

/// `POST /KeyfactorAPI/Enrollment/PFX/Deploy`: `CertificateId` or `RequestId`, and the stores.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfPfxDeployRequest {
    /// Required by the vendor API (the stores get the certificate with the key the store keeps).
    pub password: String,
    pub certificate_id: Option<i64>,
    /// A request id from an enrollment answer.
    pub request_id: Option<i64>,
    /// Store GUIDs.
    pub store_ids: Option<Vec<String>>,
    pub stores: Option<Vec<KfDeployStore>>,
}

/// `POST /KeyfactorAPI/Enrollment/PFX/Replace`: every store entry holding the existing
/// certificate gets the new one under the same alias.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfPfxReplaceRequest {
    pub existing_certificate_id: i64,
    pub certificate_id: i64,
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
    pub revocation_eff_date: Option<String>,
    /// Present on revoked certificates (RFC 5280 reason code).
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
    pub metadata: Option<HashMap<String, String>>,
    pub detailed_key_usage: KfDetailedKeyUsage,
}

/// `POST /KeyfactorAPI/Certificates/Download` (header `x-certificateformat`: `PEM` (default),
/// `DER` or `P7B`): `CertID` (or `CertificateId`), `Thumbprint`, or `SerialNumber` (+ `IssuerDN`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfDownloadRequest {
    #[serde(rename = "CertID")]
    pub cert_id: Option<i64>,
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: Option<String>,
    /// Default false.
    pub include_chain: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfDownloadResponse {
    /// Base64 of the file in the requested format.
    pub content: String,
}

/// `POST /KeyfactorAPI/Certificates/Recover` (header `x-certificateformat`: `PFX` (default), `PEM`
/// or `JKS`): the certificate with its private key.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfRecoverRequest {
    pub password: String,
    #[serde(rename = "CertID")]
    pub cert_id: Option<i64>,
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN")]
    pub issuer_dn: Option<String>,
    /// Default false.
    pub include_chain: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct KfRecoverResponse {
    /// Base64 of the file (PKCS#12, PEM with an encrypted PKCS#8 key, or JKS).
    #[serde(rename = "PFX")]
    pub pfx: String,
    #[serde(rename = "FileName")]
    pub file_name: String,
}

/// `POST /KeyfactorAPI/Certificates/Revoke`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfRevokeRequest {
    pub certificate_ids: Vec<i64>,
    /// RFC 5280 reason code (default 0).
    pub reason: Option<i32>,
    pub comment: Option<String>,
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

/// `POST /KeyfactorAPI/CertificateStores`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfCreateStoreRequest {
    pub client_machine: String,
    pub storepath: String,
    /// 1 PEM directory (default), 2 PKCS#12 file, 3 JKS file.
    pub cert_store_type: Option<i64>,
    /// The store password (the vendor's `{"SecretValue": …}` object is accepted too).
    pub password: Option<String>,
    /// JSON text (or an object) with `alias` and `includeKeys`.
    pub properties: Option<String>,
}

/// One entry of a store's inventory.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct KfStoreInventoryItem {
    /// The entry's alias.
    pub name: String,
    pub certificates: Vec<KfCertificate>,
    pub parameters: HashMap<String, String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfStoreTarget {
    /// The store's GUID.
    pub certificate_store_id: String,
    pub alias: Option<String>,
    /// Default false.
    pub overwrite: Option<bool>,
}

/// `POST /KeyfactorAPI/CertificateStores/Certificates/Add`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfStoresAddRequest {
    pub certificate_id: i64,
    pub certificate_stores: Vec<KfStoreTarget>,
}

/// `POST /KeyfactorAPI/CertificateStores/Certificates/Remove` (the entry under `Alias`, or the
/// store's own alias).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfStoresRemoveRequest {
    pub certificate_stores: Vec<KfStoreTarget>,
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

/// `POST /KeyfactorAPI/OrchestratorJobs/Acknowledge`: job history ids of failed runs.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfAcknowledgeRequest {
    pub job_audit_ids: Vec<i64>,
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
