//! Keyfactor response models, built PascalCase (camelCase is derived per request). Fields the
//! SDK models cannot take as `null` (datetimes, enums, maps) are always present or omitted.
use openssl::x509::X509;
use serde_json::{Value, json};

use super::KeyfactorError;
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
pub fn certificate(c: &mut DbConn, v: &CertVersion) -> Result<Value, KeyfactorError> {
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
    let mut n = 0;
    for (t, vals) in [(2, &sans.dns), (7, &sans.ip), (1, &sans.email), (6, &sans.uri), (100, &sans.upn)] {
        for val in vals {
            n += 1;
            san_elems.push(
                json!({"Id": n, "Value": val, "Type": t, "ValueHash": crate::secrets::sha256_hex(val.as_bytes())}),
            );
        }
    }
    let (template, ca_name, metadata) = info.unwrap_or((None, None, "{}".into()));
    let metadata: Value = serde_json::from_str(&metadata).unwrap_or(json!({}));
    let locations = locations(c, v.id)?;
    let subject = crate::ca::name_to_string(x.subject_name());
    let ou = x
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::ORGANIZATIONALUNITNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default();
    let sig = x.signature_algorithm().object().nid().long_name().unwrap_or("").to_string();
    let mut m = json!({
        "Id": v.id,
        "Thumbprint": v.thumbprint,
        "SerialNumber": v.serial,
        "IssuedDN": subject,
        "IssuedCN": v.common_name,
        "ImportDate": ts(v.created_at),
        "NotBefore": ts(v.not_before),
        "NotAfter": ts(v.not_after),
        "IssuerDN": v.issuer_dn,
        "PrincipalId": 0,
        "TemplateId": 0,
        "CertState": if revoked.is_some() { 2 } else { 1 },
        "KeySizeInBits": pk.bits(),
        "KeyType": key_type,
        "RequesterId": 0,
        "IssuedOU": ou,
        "IssuedEmail": sans.email.first().cloned().unwrap_or_default(),
        "KeyUsage": if key_type == 1 { 160 } else { 128 },
        "SigningAlgorithm": sig,
        "CertStateString": if revoked.is_some() { "Revoked" } else { "Active" },
        "KeyTypeString": key_type_str,
        "Curve": curve,
        "CertificateAuthorityId": 0,
        "CertificateAuthorityName": ca_name.unwrap_or_default(),
        "CARecordId": "",
        "CertRequestId": v.job_id.unwrap_or(0),
        "CertificateKeyId": 0,
        "CARowIndex": 0,
        "TemplateName": template.unwrap_or_default(),
        "PrincipalName": "",
        "RequesterName": "",
        "ArchivedKey": false,
        "HasPrivateKey": v.key_enc.is_some(),
        "KeyRecoverable": v.key_enc.is_some(),
        "RevocationComment": revoked.as_ref().map(|r| r.1.clone()).unwrap_or_default(),
        "ContentBytes": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &v.der),
        "ExtendedKeyUsages": extended_key_usages(&x),
        "SubjectAltNameElements": san_elems,
        "CRLDistributionPoints": [],
        "LocationsCount": [{"Type": "Management", "Count": locations.len()}],
        "SSLLocations": [],
        "Locations": locations,
        "Metadata": metadata,
        "DetailedKeyUsage": {
            "CrlSign": false, "DataEncipherment": false, "DecipherOnly": false, "DigitalSignature": true,
            "EncipherOnly": false, "KeyAgreement": false, "KeyCertSign": false, "KeyEncipherment": key_type == 1,
            "NonRepudiation": false, "HexCode": if key_type == 1 { "a0" } else { "80" },
        },
    });
    if let Some((reason, _, at)) = revoked {
        m["RevocationEffDate"] = json!(ts(at));
        m["RevocationReason"] = json!(reason);
    }
    // The object's DN (the Venafi name of the same certificate) rides along as metadata.
    if let Some(mm) = m["Metadata"].as_object_mut() {
        mm.entry("CertificateDN").or_insert(json!(obj.dn));
    }
    Ok(m)
}

fn locations(c: &mut DbConn, cert_id: i64) -> Result<Vec<Value>, KeyfactorError> {
    Ok(store_engine::locations_of(c, cert_id)?
        .into_iter()
        .map(|(s, alias)| {
            json!({
                "StoreMachine": s.client_machine,
                "StorePath": s.store_path,
                "StoreType": store_type_code(&s.store_type),
                "Alias": alias,
                "ChainLevel": 0,
                "CertStoreId": s.guid,
            })
        })
        .collect())
}

/// The certificate's EKUs as Keyfactor lists them.
fn extended_key_usages(x: &X509) -> Vec<Value> {
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
        .enumerate()
        .map(|(i, (_, oid, name))| json!({"Id": i + 1, "Oid": oid, "DisplayName": name}))
        .collect()
}

/// CertificateStore.
pub fn store(s: &Store, container_id: i64) -> Value {
    let props = json!({"type": s.store_type, "alias": s.alias, "includeKeys": s.include_keys});
    json!({
        "Id": s.guid,
        "ContainerId": container_id,
        "DisplayName": format!("{} ({})", s.store_path, s.store_type),
        "ClientMachine": s.client_machine,
        "Storepath": s.store_path,
        "CertStoreType": store_type_code(&s.store_type),
        "Approved": true,
        "CreateIfMissing": true,
        "Properties": props.to_string(),
        "AgentAssigned": true,
        "ContainerName": s.folder(),
        "SetNewPasswordAllowed": false,
    })
}
