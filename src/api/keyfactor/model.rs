//! Certificate lookups of the Keyfactor dialect and the answers built from stored rows
//! (certificates, stores; the types are in `response`).
use std::collections::BTreeMap;

use openssl::x509::X509;
use serde_json::json;

use super::KeyfactorError;
use super::response::{
    KfCertificate, KfCertificateLocation, KfCertificateStore, KfDetailedKeyUsage, KfExtendedKeyUsage, KfLocationCount,
    KfSubjectAltNameElement,
};
use crate::ca::SanSet;
use crate::db::DbConn;
use crate::db::models::{CertObject, CertVersion, Store};
use crate::engine::lookup;
use crate::engine::stores as store_engine;
use crate::vocab::Permission;

pub fn ts(t: chrono::NaiveDateTime) -> String {
    t.and_utc().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn store_type_code(t: &str) -> i64 {
    match t {
        "pem-dir" => 1,
        "pkcs12" => 2,
        "jks" => 3,
        _ => 0,
    }
}

pub fn store_type_name(code: i64) -> Option<&'static str> {
    match code {
        1 => Some("pem-dir"),
        2 => Some("pkcs12"),
        3 => Some("jks"),
        _ => None,
    }
}

/// The answer for a certificate that does not exist — and, for one caller, for one it may not
/// see: the same status and body, naming only the identifier that was sent.
pub fn missing(id: Option<i64>, thumbprint: Option<&str>, serial: Option<&str>) -> KeyfactorError {
    KeyfactorError::not_found(match (id, thumbprint, serial) {
        (Some(id), _, _) => format!("Certificate with ID {id} does not exist."),
        (None, Some(t), _) => format!("Certificate with thumbprint {t} does not exist."),
        (None, None, Some(s)) => format!("Certificate with serial number {s} does not exist."),
        _ => "The requested certificate does not exist.".into(),
    })
}

/// [`lookup`] for a caller who needs `perm` on the certificate's folder: a hidden certificate
/// gets exactly the not-found answer of a missing one.
#[allow(clippy::too_many_arguments)]
pub fn lookup_for(
    c: &mut DbConn,
    p: &crate::auth::Principal,
    perm: Permission,
    id: Option<i64>,
    thumbprint: Option<&str>,
    serial: Option<&str>,
    issuer: Option<&str>,
) -> Result<CertVersion, KeyfactorError> {
    let v = lookup(c, id, thumbprint, serial, issuer)?;
    if super::guard(c, p, &v, perm).is_err() {
        let tp = thumbprint.map(crate::engine::inventory::normalize_thumbprint);
        let sn = serial.map(norm_serial);
        return Err(missing(id, tp.as_deref(), sn.as_deref()));
    }
    Ok(v)
}

pub fn version(c: &mut DbConn, id: i64) -> Result<CertVersion, KeyfactorError> {
    lookup::find_version(c, id)?.ok_or_else(|| missing(Some(id), None, None))
}

/// `version` of a certificate just issued (by this engine it is not read again).
pub fn issued_version(e: &crate::engine::Engine, c: &mut DbConn, id: i64) -> Result<CertVersion, KeyfactorError> {
    e.recent_versions.find_version(c, id)?.ok_or_else(|| missing(Some(id), None, None))
}

/// Normalised serial: upper-case hex without separators or leading zeros.
fn norm_serial(s: &str) -> String {
    let h: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_uppercase();
    let t = h.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

/// An issuer DN compared by its components, whatever their order, spacing or case.
fn dn_key(s: &str) -> Vec<String> {
    let mut v: Vec<String> =
        s.split([',', '/']).map(|p| p.trim().replace(' ', "").to_ascii_lowercase()).filter(|p| !p.is_empty()).collect();
    v.sort();
    v
}

/// How a Keyfactor request names one issued certificate: id, thumbprint, serial, issuer DN.
pub type LookupFields = (Option<i64>, Option<String>, Option<String>, Option<String>);

/// Finds one issued certificate by id, thumbprint, or serial (+ issuer DN).
pub fn lookup(
    c: &mut DbConn,
    id: Option<i64>,
    thumbprint: Option<&str>,
    serial: Option<&str>,
    issuer: Option<&str>,
) -> Result<CertVersion, KeyfactorError> {
    if let Some(id) = id {
        return version(c, id);
    }
    if let Some(tp) = thumbprint {
        let t = crate::engine::inventory::normalize_thumbprint(tp);
        return lookup::latest_version_by_thumbprint(c, &t)?.ok_or_else(|| missing(None, Some(&t), None));
    }
    if let Some(sn) = serial {
        let want = norm_serial(sn);
        // Stored serials keep a leading zero nibble when the hex has an odd length: try both.
        let found: Vec<CertVersion> = lookup::versions_by_serials(c, &[want.clone(), format!("0{want}")])?;
        let hit = found.into_iter().find(|v| issuer.is_none_or(|i| dn_key(i) == dn_key(&v.issuer_dn)));
        return hit.ok_or_else(|| missing(None, None, Some(&want)));
    }
    Err(KeyfactorError::bad_request("A certificate id, thumbprint or serial number is required."))
}

/// CertificateRetrievalResponse.
pub fn certificate(c: &mut DbConn, v: &CertVersion) -> Result<KfCertificate, KeyfactorError> {
    let obj: CertObject = lookup::object(c, v.object_id)?;
    let info: Option<(Option<String>, Option<String>, String)> = lookup::certificate_info(c, v.id)?;
    let revoked: Option<(i32, String, chrono::NaiveDateTime)> = lookup::revocation(c, v.id)?;
    let x = X509::from_der(&v.der).map_err(|e| KeyfactorError::unavailable(e.to_string()))?;
    let pk = x.public_key().map_err(|e| KeyfactorError::unavailable(e.to_string()))?;
    let (key_type, key_type_str, curve) = match pk.id() {
        openssl::pkey::Id::RSA => (1, "RSA", String::new()),
        openssl::pkey::Id::EC => (
            3,
            "ECC",
            crate::ca::KeySpec::of_key(&pk)
                .map(|k| if let crate::ca::KeySpec::Ec(c) = k { c.name().to_string() } else { String::new() })
                .unwrap_or_default(),
        ),
        _ => (0, "Unknown", String::new()),
    };
    let sans = SanSet::of_cert(&x);
    let mut san_elems = vec![];
    for (t, vals) in [(2, &sans.dns), (7, &sans.ip), (1, &sans.email), (6, &sans.uri), (100, &sans.upn)] {
        for val in vals {
            san_elems.push(KfSubjectAltNameElement {
                id: san_elems.len() as i64 + 1,
                value: val.clone(),
                r#type: t,
                value_hash: crate::secrets::sha256_hex(val.as_bytes()),
            });
        }
    }
    let (template, ca_name, metadata) = info.unwrap_or((None, None, "{}".into()));
    // Metadata is stored as a JSON object; values other than strings are answered as their text.
    let mut metadata: BTreeMap<String, String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&metadata)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
    // The object's DN (the Venafi name of the same certificate) rides along as metadata.
    metadata.entry("CertificateDN".into()).or_insert(obj.dn);
    let locations = locations(c, v.id)?;
    let subject = crate::ca::name_to_string(x.subject_name());
    let ou = x
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::ORGANIZATIONALUNITNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default();
    let sig = x.signature_algorithm().object().nid().long_name().unwrap_or("").to_string();
    Ok(KfCertificate {
        id: v.id,
        thumbprint: v.thumbprint.clone(),
        serial_number: v.serial.clone(),
        issued_dn: subject,
        issued_cn: v.common_name.clone(),
        import_date: ts(v.created_at),
        not_before: ts(v.not_before),
        not_after: ts(v.not_after),
        issuer_dn: v.issuer_dn.clone(),
        principal_id: 0,
        template_id: 0,
        cert_state: if revoked.is_some() { 2 } else { 1 },
        key_size_in_bits: i64::from(pk.bits()),
        key_type,
        requester_id: 0,
        issued_ou: ou,
        issued_email: sans.email.first().cloned().unwrap_or_default(),
        key_usage: if key_type == 1 { 160 } else { 128 },
        signing_algorithm: sig,
        cert_state_string: if revoked.is_some() { "Revoked" } else { "Active" }.into(),
        key_type_string: key_type_str.into(),
        curve,
        certificate_authority_id: 0,
        certificate_authority_name: ca_name.unwrap_or_default(),
        ca_record_id: String::new(),
        cert_request_id: v.job_id.unwrap_or(0),
        certificate_key_id: 0,
        ca_row_index: 0,
        template_name: template.unwrap_or_default(),
        principal_name: String::new(),
        requester_name: String::new(),
        archived_key: false,
        has_private_key: v.key_enc.is_some(),
        key_recoverable: v.key_enc.is_some(),
        revocation_comment: revoked.as_ref().map(|r| r.1.clone()).unwrap_or_default(),
        revocation_eff_date: revoked.as_ref().map(|r| ts(r.2)),
        revocation_reason: revoked.as_ref().map(|r| r.0),
        content_bytes: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &v.der),
        extended_key_usages: extended_key_usages(&x),
        subject_alt_name_elements: san_elems,
        crl_distribution_points: vec![],
        locations_count: vec![KfLocationCount { r#type: "Management".into(), count: locations.len() as i64 }],
        ssl_locations: vec![],
        locations,
        metadata: Some(metadata),
        detailed_key_usage: KfDetailedKeyUsage {
            crl_sign: false,
            data_encipherment: false,
            decipher_only: false,
            digital_signature: true,
            encipher_only: false,
            key_agreement: false,
            key_cert_sign: false,
            key_encipherment: key_type == 1,
            non_repudiation: false,
            hex_code: if key_type == 1 { "a0" } else { "80" }.into(),
        },
    })
}

fn locations(c: &mut DbConn, cert_id: i64) -> Result<Vec<KfCertificateLocation>, KeyfactorError> {
    Ok(store_engine::locations_of(c, cert_id)?
        .into_iter()
        .map(|(s, alias)| KfCertificateLocation {
            store_machine: s.client_machine,
            store_path: s.store_path,
            store_type: store_type_code(&s.store_type),
            alias,
            chain_level: 0,
            cert_store_id: s.guid,
        })
        .collect())
}

/// The certificate's EKUs as Keyfactor lists them.
fn extended_key_usages(x: &X509) -> Vec<KfExtendedKeyUsage> {
    use foreign_types::ForeignType;
    // SAFETY: read-only query of a valid X509; the flags are computed from its extensions.
    let flags = unsafe { openssl_sys::X509_get_extended_key_usage(x.as_ptr()) };
    let known = [
        (openssl_sys::XKU_SSL_SERVER, "1.3.6.1.5.5.7.3.1", "Server Authentication"),
        (openssl_sys::XKU_SSL_CLIENT, "1.3.6.1.5.5.7.3.2", "Client Authentication"),
        (openssl_sys::XKU_CODE_SIGN, "1.3.6.1.5.5.7.3.3", "Code Signing"),
        (openssl_sys::XKU_SMIME, "1.3.6.1.5.5.7.3.4", "Secure Email"),
    ];
    if flags == u32::MAX {
        return vec![];
    }
    known
        .iter()
        .filter(|(f, _, _)| flags & f != 0)
        .zip(1..)
        .map(|((_, oid, name), id)| KfExtendedKeyUsage { id, oid: (*oid).into(), display_name: (*name).into() })
        .collect()
}

/// CertificateStore.
pub fn store(s: &Store, container_id: i64) -> KfCertificateStore {
    let props = json!({"type": s.store_type, "alias": s.alias, "includeKeys": s.include_keys});
    KfCertificateStore {
        id: s.guid.clone(),
        container_id,
        display_name: format!("{} ({})", s.store_path, s.store_type),
        client_machine: s.client_machine.clone(),
        storepath: s.store_path.clone(),
        cert_store_type: store_type_code(&s.store_type),
        approved: true,
        create_if_missing: true,
        properties: props.to_string(),
        agent_assigned: true,
        container_name: s.folder().to_string(),
        set_new_password_allowed: false,
    }
}
