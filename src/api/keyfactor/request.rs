//! The Keyfactor dialect's request bodies: each handler parses its body into one of these through
//! `Lenient<T>` (keys matched case-insensitively, booleans and integers also as strings, unknown
//! keys ignored), and the same type is the operation's `request_body` in the document.
//!
//! Fields the handler requires are still `Option` (the handler answers the vendor's own "… is
//! required." message) and marked required in the schema. Fields that clients send and the
//! gateway ignores (`Timestamp`, `Flags`) accept any value. `deny_unknown_fields` only tells the
//! document that a schema lists every property: `Lenient` drops keys a type does not name before
//! serde sees them, so unknown keys are ignored as the vendor's API ignores them.
use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::body::{Entry, Lenient, LenientBody, lenient};

// ---- field readers for the shapes Keyfactor clients send ----

/// A string map whose values of other JSON types are kept as their text (`Metadata`); anything
/// but an object is no map.
fn text_map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(m) => Some(m.into_iter().map(|(k, v)| (k, text_of(v))).collect()),
        _ => None,
    })
}

fn text_of(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The strings of a list (other elements are skipped), or one string as a list of one; anything
/// else is no list.
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(strings_of(Value::deserialize(d)?))
}

fn strings_of(v: Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => Some(a.into_iter().filter_map(|x| x.as_str().map(str::to_string)).collect()),
        Value::String(s) => Some(vec![s]),
        _ => None,
    }
}

/// The integers of a list (other elements are skipped); anything but a list is no list.
fn int_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(a) => Some(a.iter().filter_map(Value::as_i64).collect()),
        _ => None,
    })
}

/// `SANs`: `{"dns": [...], "ip4": "..."}` — each value a list of strings or one string; anything
/// but an object is no SANs.
fn san_map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, Vec<String>>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(m) => Some(m.into_iter().map(|(k, v)| (k, strings_of(v).unwrap_or_default())).collect()),
        _ => None,
    })
}

/// A list whose elements are read leniently as `T`; elements that are not a valid `T` are
/// skipped (the classic `metadataList` was always read that forgivingly).
fn forgiving_list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(a) => {
            Some(a.into_iter().filter_map(|v| serde_json::from_value::<Lenient<T>>(v).ok()).map(|l| l.0).collect())
        }
        _ => None,
    })
}

/// A store password: a string, or the vendor's `{"SecretValue": …}` object.
fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("SecretValue").or(m.get("secretValue")).and_then(Value::as_str).map(str::to_string),
        _ => None,
    })
}

/// Store `Properties`: JSON text, or the object itself.
fn properties<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StoreProperties>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.trim().is_empty() => Some(StoreProperties::Text(s)),
        Value::Object(m) => Some(StoreProperties::Object(m)),
        _ => None,
    })
}

/// `Properties` of a new store as sent: JSON text (what the document shows) or an object.
#[derive(Debug, Clone)]
pub enum StoreProperties {
    Text(String),
    Object(serde_json::Map<String, Value>),
}

impl StoreProperties {
    /// The `alias` and `includeKeys` the properties carry (none when the JSON is not an object);
    /// the error is the message of a 400.
    pub fn values(self) -> Result<StorePropertyValues, String> {
        let json = match self {
            StoreProperties::Text(s) => serde_json::from_str(&s).map_err(|e| format!("Properties is not JSON: {e}"))?,
            StoreProperties::Object(m) => Value::Object(m),
        };
        match json {
            Value::Object(m) => {
                Lenient::<StorePropertyValues>::from_body(LenientBody::from_map(m)).map_err(|e| e.to_string())
            }
            _ => Ok(StorePropertyValues::default()),
        }
    }
}

// ---- classic CMS API (/CMSApi/CertEnroll/3/...) ----

/// How the classic API names one issued certificate: `Type` `CMSID` (with `CMSID`), `Thumbprint`
/// (with `Thumbprint`) or `Serial` (with `SerialNumber` and optionally `IssuerDN`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfClassicLookup {
    /// `CMSID`, `Thumbprint` or `Serial`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub r#type: Option<String>,
    #[serde(rename = "CMSID", default, deserialize_with = "lenient::int")]
    pub cmsid: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub thumbprint: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub serial_number: Option<String>,
    /// Older scripts' spelling of `SerialNumber`.
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(ignore)]
    pub serial: Option<String>,
    #[serde(rename = "IssuerDN", default, deserialize_with = "lenient::string")]
    pub issuer_dn: Option<String>,
}

/// `POST /CMSApi/CertEnroll/3/Renew`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfClassicRenewRequest {
    #[serde(default, deserialize_with = "lenient::object")]
    #[schema(value_type = KfClassicLookup, required = true)]
    pub lookup: Option<Lenient<KfClassicLookup>>,
    /// A template name (default: the certificate's own).
    #[serde(default, deserialize_with = "lenient::string")]
    pub template: Option<String>,
    /// `<ca host>\<CA name>` or a bare CA name.
    #[serde(rename = "CAConfiguration", default, deserialize_with = "lenient::string")]
    pub ca_configuration: Option<String>,
    /// Metadata fields of the renewed certificate.
    #[serde(default, deserialize_with = "text_map")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// GUIDs of certificate stores that get the renewed certificate.
    #[serde(default, deserialize_with = "string_list")]
    pub cert_stores: Option<Vec<String>>,
    /// Sent by the vendor SDKs and scripts; ignored.
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicMetadataItem {
    #[serde(rename = "MetadataFieldTypeName", default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub metadata_field_type_name: Option<String>,
    #[serde(rename = "Value", default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs10Envelope {
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Flags")]
    #[schema(value_type = Option<i64>)]
    pub flags: Option<IgnoredAny>,
    /// The PKCS#10 request, PEM or base64 DER.
    #[serde(rename = "Pkcs10Request", default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub pkcs10_request: Option<String>,
    #[serde(rename = "TemplateName", default, deserialize_with = "lenient::string")]
    pub template_name: Option<String>,
    #[serde(rename = "metadataList", default, deserialize_with = "forgiving_list")]
    pub metadata_list: Option<Vec<KfClassicMetadataItem>>,
}

/// `POST /CMSApi/CertEnroll/3/Pkcs10`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs10Request {
    #[serde(rename = "Request", default, deserialize_with = "lenient::object")]
    #[schema(value_type = KfClassicPkcs10Envelope, required = true)]
    pub request: Option<Lenient<KfClassicPkcs10Envelope>>,
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Timestamp")]
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicSubjectName {
    #[serde(rename = "CN", default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub cn: Option<String>,
    #[serde(rename = "O", default, deserialize_with = "lenient::string")]
    pub o: Option<String>,
    #[serde(rename = "OU", default, deserialize_with = "lenient::string")]
    pub ou: Option<String>,
    #[serde(rename = "L", default, deserialize_with = "lenient::string")]
    pub l: Option<String>,
    #[serde(rename = "ST", default, deserialize_with = "lenient::string")]
    pub st: Option<String>,
    #[serde(rename = "C", default, deserialize_with = "lenient::string")]
    pub c: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicSanElement {
    /// `dns`, `ip`, `email`, `uri` or `upn`.
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub key: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs12Envelope {
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Flags")]
    #[schema(value_type = Option<i64>)]
    pub flags: Option<IgnoredAny>,
    /// The PKCS#12 password (strength rules apply).
    #[serde(rename = "Pkcs12Password", default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub pkcs12_password: Option<String>,
    #[serde(rename = "SubjectNameAttributes", default, deserialize_with = "lenient::object")]
    #[schema(value_type = KfClassicSubjectName, required = true)]
    pub subject_name_attributes: Option<Lenient<KfClassicSubjectName>>,
    /// Elements that are not objects are skipped, as Keyfactor does.
    #[serde(rename = "SubjectAltNameElements", default, deserialize_with = "lenient::entries")]
    #[schema(value_type = Option<Vec<KfClassicSanElement>>)]
    pub subject_alt_name_elements: Option<Vec<Entry<KfClassicSanElement>>>,
    #[serde(rename = "TemplateName", default, deserialize_with = "lenient::string")]
    pub template_name: Option<String>,
    #[serde(rename = "metadataList", default, deserialize_with = "forgiving_list")]
    pub metadata_list: Option<Vec<KfClassicMetadataItem>>,
}

/// `POST /CMSApi/CertEnroll/3/Pkcs12`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KfClassicPkcs12Request {
    #[serde(rename = "Request", default, deserialize_with = "lenient::object")]
    #[schema(value_type = KfClassicPkcs12Envelope, required = true)]
    pub request: Option<Lenient<KfClassicPkcs12Envelope>>,
    /// Sent by classic scripts; ignored.
    #[serde(rename = "Timestamp")]
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<IgnoredAny>,
}

// ---- Keyfactor API (/KeyfactorAPI/...): enrollment ----

/// `POST /KeyfactorAPI/Enrollment/Renew`: `CertificateId` or `Thumbprint`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfEnrollmentRenewRequest {
    #[serde(default, deserialize_with = "lenient::int")]
    pub certificate_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub thumbprint: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub template: Option<String>,
    /// `<ca host>\<CA name>` or a bare CA name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub certificate_authority: Option<String>,
}

/// `POST /KeyfactorAPI/Enrollment/PFX`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfPfxEnrollmentRequest {
    /// A subject DN with a CN: `CN=a.example.com,O=Acme,OU=Ops`.
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub subject: Option<String>,
    /// The PFX password.
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
    /// Default true.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub include_chain: Option<bool>,
    /// SANs by type: `{"dns": ["a.example.com"], "ip4": [...], "email": [...], "uri": [...], "upn": [...]}`.
    #[serde(rename = "SANs", default, deserialize_with = "san_map")]
    pub sans: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub template: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub certificate_authority: Option<String>,
    #[serde(default, deserialize_with = "text_map")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// `RSA` or `ECC`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub key_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    pub key_length: Option<i64>,
    /// `P256`, `P384`, `P521`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub curve: Option<String>,
    /// Sent by the vendor SDKs and scripts; ignored.
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<IgnoredAny>,
}

/// `POST /KeyfactorAPI/Enrollment/CSR` (header `x-certificateformat`: `PEM` (default) or `DER`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfCsrEnrollmentRequest {
    /// The PKCS#10 request, PEM or base64 DER.
    #[serde(rename = "CSR", default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub csr: Option<String>,
    /// Default false.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub include_chain: Option<bool>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub template: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub certificate_authority: Option<String>,
    #[serde(default, deserialize_with = "text_map")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Sent by the vendor SDKs and scripts; ignored.
    #[schema(value_type = Option<String>)]
    pub timestamp: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfDeployStore {
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub store_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub alias: Option<String>,
    /// Default true.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub overwrite: Option<bool>,
}

/// `POST /KeyfactorAPI/Enrollment/PFX/Deploy`: `CertificateId` or `RequestId`, and the stores.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfPfxDeployRequest {
    /// Required by the vendor API (the stores get the certificate with the key the store keeps).
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    pub certificate_id: Option<i64>,
    /// A request id from an enrollment answer.
    #[serde(default, deserialize_with = "lenient::int")]
    pub request_id: Option<i64>,
    /// Store GUIDs.
    #[serde(default, deserialize_with = "string_list")]
    pub store_ids: Option<Vec<String>>,
    /// Elements that are not objects are skipped, as Keyfactor does.
    #[serde(default, deserialize_with = "lenient::entries")]
    #[schema(value_type = Option<Vec<KfDeployStore>>)]
    pub stores: Option<Vec<Entry<KfDeployStore>>>,
}

/// `POST /KeyfactorAPI/Enrollment/PFX/Replace`: every store entry holding the existing
/// certificate gets the new one under the same alias.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfPfxReplaceRequest {
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(value_type = i64, required = true)]
    pub existing_certificate_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(value_type = i64, required = true)]
    pub certificate_id: Option<i64>,
}

// ---- certificates ----

/// `POST /KeyfactorAPI/Certificates/Download` (header `x-certificateformat`: `PEM` (default),
/// `DER` or `P7B`): `CertID` (or `CertificateId`), `Thumbprint`, or `SerialNumber` (+ `IssuerDN`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfDownloadRequest {
    #[serde(rename = "CertID", default, deserialize_with = "lenient::int")]
    pub cert_id: Option<i64>,
    /// Another spelling of `CertID` (`CertID` wins when both are sent).
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(ignore)]
    pub certificate_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub thumbprint: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN", default, deserialize_with = "lenient::string")]
    pub issuer_dn: Option<String>,
    /// Default false.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub include_chain: Option<bool>,
}

/// `POST /KeyfactorAPI/Certificates/Recover` (header `x-certificateformat`: `PFX` (default), `PEM`
/// or `JKS`): the certificate with its private key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfRecoverRequest {
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub password: Option<String>,
    #[serde(rename = "CertID", default, deserialize_with = "lenient::int")]
    pub cert_id: Option<i64>,
    /// Another spelling of `CertID` (`CertID` wins when both are sent).
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(ignore)]
    pub certificate_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub thumbprint: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub serial_number: Option<String>,
    #[serde(rename = "IssuerDN", default, deserialize_with = "lenient::string")]
    pub issuer_dn: Option<String>,
    /// Default false.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub include_chain: Option<bool>,
}

/// `POST /KeyfactorAPI/Certificates/Revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfRevokeRequest {
    #[serde(default, deserialize_with = "int_list")]
    #[schema(value_type = Vec<i64>, required = true)]
    pub certificate_ids: Option<Vec<i64>>,
    /// RFC 5280 reason code (default 0).
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(value_type = Option<i32>)]
    pub reason: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub comment: Option<String>,
}

// ---- certificate stores and orchestrator jobs ----

/// `POST /KeyfactorAPI/CertificateStores`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfCreateStoreRequest {
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub client_machine: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub storepath: Option<String>,
    /// 1 PEM directory (default), 2 PKCS#12 file, 3 JKS file.
    #[serde(default, deserialize_with = "lenient::int")]
    pub cert_store_type: Option<i64>,
    /// The store password (the vendor's `{"SecretValue": …}` object is accepted too).
    #[serde(default, deserialize_with = "secret")]
    pub password: Option<String>,
    /// JSON text (or an object) with `alias` and `includeKeys`.
    #[serde(default, deserialize_with = "properties")]
    #[schema(value_type = Option<String>)]
    pub properties: Option<StoreProperties>,
    /// The container by its folder DN (the root without one, or without `ContainerId`).
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(ignore)]
    pub container_name: Option<String>,
    /// The container by its folder's id (0 is none).
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(ignore)]
    pub container_id: Option<i64>,
}

/// The `Properties` a new store reads (keys matched case-insensitively).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorePropertyValues {
    #[serde(default, deserialize_with = "lenient::string")]
    pub alias: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub include_keys: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfStoreTarget {
    /// The store's GUID.
    #[serde(default, deserialize_with = "lenient::string")]
    #[schema(value_type = String, required = true)]
    pub certificate_store_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub alias: Option<String>,
    /// Default false.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub overwrite: Option<bool>,
}

/// `POST /KeyfactorAPI/CertificateStores/Certificates/Add`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfStoresAddRequest {
    #[serde(default, deserialize_with = "lenient::int")]
    #[schema(value_type = i64, required = true)]
    pub certificate_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::entries")]
    #[schema(value_type = Vec<KfStoreTarget>, required = true)]
    pub certificate_stores: Option<Vec<Entry<KfStoreTarget>>>,
}

/// `POST /KeyfactorAPI/CertificateStores/Certificates/Remove` (the entry under `Alias`, or the
/// store's own alias).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfStoresRemoveRequest {
    #[serde(default, deserialize_with = "lenient::entries")]
    #[schema(value_type = Vec<KfStoreTarget>, required = true)]
    pub certificate_stores: Option<Vec<Entry<KfStoreTarget>>>,
}

/// `POST /KeyfactorAPI/OrchestratorJobs/Acknowledge`: job history ids of failed runs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KfAcknowledgeRequest {
    #[serde(default, deserialize_with = "int_list")]
    #[schema(value_type = Vec<i64>, required = true)]
    pub job_audit_ids: Option<Vec<i64>>,
}

/// The paging query of `GET /KeyfactorAPI/Certificates` and `/OrchestratorJobs/JobHistory`
/// (`pq.queryString` and so on: the prefix is stripped before matching; documented as parameters).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PagedQuery {
    #[serde(default, deserialize_with = "lenient::string")]
    pub query_string: Option<String>,
    #[serde(default, deserialize_with = "lenient::int")]
    pub return_limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient::int")]
    pub page_returned: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_bodies_read_any_casing_and_loose_types() {
        let b: KfPfxEnrollmentRequest = Lenient::parse(
            br#"{"subject":"CN=a.example","PASSWORD":"pw","includeChain":"false","KeyLength":"3072",
                 "sans":{"dns":["a.example","b.example"],"ip4":"10.0.0.1","uri":7},
                 "metadata":{"Email-Contact":"x@example.com","Count":3},"timestamp":{"any":"thing"},"Other":1}"#,
        )
        .unwrap();
        assert_eq!(b.subject.as_deref(), Some("CN=a.example"));
        assert_eq!(b.password.as_deref(), Some("pw"));
        assert_eq!(b.include_chain, Some(false));
        assert_eq!(b.key_length, Some(3072));
        let sans = b.sans.unwrap();
        assert_eq!(sans["dns"], ["a.example", "b.example"]);
        assert_eq!(sans["ip4"], ["10.0.0.1"]);
        assert!(sans["uri"].is_empty());
        let md = b.metadata.unwrap();
        assert_eq!((md["Email-Contact"].as_str(), md["Count"].as_str()), ("x@example.com", "3"));
        let err = Lenient::<KfPfxEnrollmentRequest>::parse(br#"{"IncludeChain":"maybe"}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"Invalid value for IncludeChain: expected a boolean, got "maybe"."#);
    }

    #[test]
    fn classic_envelopes_and_forgiving_metadata_list() {
        let b: KfClassicPkcs10Request = Lenient::parse(
            br#"{"request":{"pkcs10request":"MII","Flags":"x","MetadataList":[
                 {"metadatafieldtypename":"Email-Contact","value":"a@example.com"},5,{"Value":{"no":1}}]}}"#,
        )
        .unwrap();
        let r = b.request.unwrap().0;
        assert_eq!(r.pkcs10_request.as_deref(), Some("MII"));
        let items = r.metadata_list.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].metadata_field_type_name.as_deref(), Some("Email-Contact"));
        let b: KfClassicRenewRequest =
            Lenient::parse(br#"{"lookup":{"type":"serial","serial":"0a1b"},"certstores":"guid-1"}"#).unwrap();
        let l = b.lookup.unwrap().0;
        assert_eq!((l.r#type.as_deref(), l.serial.as_deref()), (Some("serial"), Some("0a1b")));
        assert_eq!(b.cert_stores.unwrap(), ["guid-1"]);
        // A wrong type inside a nested object is named by its own field, as before typed bodies.
        let err = Lenient::<KfClassicRenewRequest>::parse(br#"{"Lookup":{"CMSID":"abc"}}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"Invalid value for CMSID: expected an integer, got "abc"."#);
        // A Lookup or Request that is not an object is absent: the handler's "… is required." answers.
        let b: KfClassicRenewRequest = Lenient::parse(br#"{"Lookup":"x"}"#).unwrap();
        assert!(b.lookup.is_none());
        let b: KfClassicPkcs12Request = Lenient::parse(
            br#"{"Request":{"SubjectNameAttributes":"cn","SubjectAltNameElements":[5,{"key":"dns","value":"a.example"}]}}"#,
        )
        .unwrap();
        let r = b.request.unwrap().0;
        assert!(r.subject_name_attributes.is_none());
        let elements = r.subject_alt_name_elements.unwrap();
        assert!(matches!(elements[0], Entry::NotAnObject));
        assert!(matches!(elements[1], Entry::Object(_)));
    }

    #[test]
    fn stores_and_revocations() {
        let b: KfCreateStoreRequest = Lenient::parse(
            br#"{"clientmachine":"web01","Storepath":"/tls","Password":{"SecretValue":"s3cret"},
                 "Properties":{"alias":"web"},"ContainerId":"4"}"#,
        )
        .unwrap();
        assert_eq!(b.password.as_deref(), Some("s3cret"));
        assert!(matches!(b.properties, Some(StoreProperties::Object(_))));
        assert_eq!(b.container_id, Some(4));
        let p = b.properties.unwrap().values().unwrap();
        assert_eq!((p.alias.as_deref(), p.include_keys), (Some("web"), None));
        let p = StoreProperties::Text(r#"{"ALIAS":"web","includekeys":"true"}"#.into()).values().unwrap();
        assert_eq!((p.alias.as_deref(), p.include_keys), (Some("web"), Some(true)));
        assert!(StoreProperties::Text("{x".into()).values().unwrap_err().starts_with("Properties is not JSON: "));
        let r: KfRevokeRequest = Lenient::parse(br#"{"certificateIds":[1,"x",3],"reason":"4"}"#).unwrap();
        assert_eq!((r.certificate_ids.unwrap(), r.reason), (vec![1, 3], Some(4)));
        let r: KfRevokeRequest = Lenient::parse(br#"{"CertificateIds":5}"#).unwrap();
        assert_eq!(r.certificate_ids, None);
        // Not a list: absent, so the handler answers "CertificateStores is required." as before.
        let b: KfStoresAddRequest = Lenient::parse(br#"{"CertificateStores":"x"}"#).unwrap();
        assert!(b.certificate_stores.is_none());
    }

    #[test]
    fn download_takes_either_id_spelling() {
        let d: KfDownloadRequest = Lenient::parse(br#"{"certificateId":"7","IncludeChain":1}"#).unwrap();
        assert_eq!((d.cert_id, d.certificate_id, d.include_chain), (None, Some(7), Some(true)));
    }
}
