//! Certificate authorities: key specs, leaf building, the issuer interface, the built-in OpenSSL
//! CAs and their CRLs, upstream ACME CAs.
pub mod builtin;
pub mod cert_parts;
pub mod crl;
pub mod csr;
pub mod issuer;
pub mod upstream;

use std::net::IpAddr;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{GeneralName, X509, X509Builder, X509NameRef, X509Ref, X509ReqRef};
use serde::{Deserialize, Serialize};

pub use builtin::{BuiltinCa, LoadedCa};

/// Key algorithm and size/curve of a private key the gateway generates (or finds in a CSR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySpec {
    Rsa(u32),
    Ec(EcCurve),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EcCurve {
    P256,
    P384,
    P521,
}

impl EcCurve {
    pub fn nid(self) -> Nid {
        match self {
            EcCurve::P256 => Nid::X9_62_PRIME256V1,
            EcCurve::P384 => Nid::SECP384R1,
            EcCurve::P521 => Nid::SECP521R1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            EcCurve::P256 => "P256",
            EcCurve::P384 => "P384",
            EcCurve::P521 => "P521",
        }
    }
    /// Accepts `P256`, `P-256`, `secp256r1`, `prime256v1`, `256`… (case-insensitive).
    pub fn parse(s: &str) -> Option<EcCurve> {
        let n: String = s.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        match n.as_str() {
            "p256" | "secp256r1" | "prime256v1" | "256" | "ecp256" => Some(EcCurve::P256),
            "p384" | "secp384r1" | "384" | "ecp384" => Some(EcCurve::P384),
            "p521" | "secp521r1" | "521" | "ecp521" => Some(EcCurve::P521),
            _ => None,
        }
    }
    pub fn from_nid(nid: Nid) -> Option<EcCurve> {
        match nid {
            Nid::X9_62_PRIME256V1 => Some(EcCurve::P256),
            Nid::SECP384R1 => Some(EcCurve::P384),
            Nid::SECP521R1 => Some(EcCurve::P521),
            _ => None,
        }
    }
}

impl KeySpec {
    pub const DEFAULT: KeySpec = KeySpec::Rsa(2048);

    /// The `ca.key_type` setting: `ec-p256`, `ec-p384`, `ec-p521`, `rsa-2048`, `rsa-3072`, `rsa-4096`.
    pub fn parse_config(s: &str) -> anyhow::Result<KeySpec> {
        let l = s.to_ascii_lowercase();
        if let Some(c) = l.strip_prefix("ec-").and_then(EcCurve::parse) {
            return Ok(KeySpec::Ec(c));
        }
        if let Some(bits) = l.strip_prefix("rsa-").and_then(|b| b.parse::<u32>().ok())
            && [2048, 3072, 4096].contains(&bits)
        {
            return Ok(KeySpec::Rsa(bits));
        }
        anyhow::bail!("unknown key type {s:?} (use ec-p256, ec-p384, ec-p521, rsa-2048, rsa-3072 or rsa-4096)")
    }

    /// Venafi's PkixParameterSet OIDs: RSA `1.3.6.1.4.1.28783.10.1.1.<bits>`, EC `…10.2.1.<bits>`.
    pub fn from_pkix_parameter_set(oid: &str) -> Option<KeySpec> {
        if let Some(bits) = oid.strip_prefix("1.3.6.1.4.1.28783.10.1.1.") {
            return bits.parse().ok().map(KeySpec::Rsa);
        }
        match oid.strip_prefix("1.3.6.1.4.1.28783.10.2.1.")? {
            "256" => Some(KeySpec::Ec(EcCurve::P256)),
            "384" => Some(KeySpec::Ec(EcCurve::P384)),
            "521" => Some(KeySpec::Ec(EcCurve::P521)),
            _ => None,
        }
    }

    pub fn of_key<T: openssl::pkey::HasPublic>(key: &PKeyRef<T>) -> Option<KeySpec> {
        match key.id() {
            Id::RSA => Some(KeySpec::Rsa(key.bits())),
            Id::EC => {
                let ec = key.ec_key().ok()?;
                EcCurve::from_nid(ec.group().curve_name()?).map(KeySpec::Ec)
            }
            _ => None,
        }
    }

    pub fn algorithm_name(self) -> &'static str {
        match self {
            KeySpec::Rsa(_) => "RSA",
            KeySpec::Ec(_) => "ECC",
        }
    }

    pub fn generate(self) -> Result<PKey<Private>, openssl::error::ErrorStack> {
        match self {
            KeySpec::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits)?),
            KeySpec::Ec(curve) => {
                let group = EcGroup::from_curve_name(curve.nid())?;
                PKey::from_ec_key(EcKey::generate(&group)?)
            }
        }
    }

    /// The signature digest a CA with this key uses.
    pub fn digest(self) -> MessageDigest {
        match self {
            KeySpec::Ec(EcCurve::P384) => MessageDigest::sha384(),
            KeySpec::Ec(EcCurve::P521) => MessageDigest::sha512(),
            _ => MessageDigest::sha256(),
        }
    }
}

/// Subject alternative names of a certificate or CSR, by type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanSet {
    pub dns: Vec<String>,
    pub ip: Vec<String>,
    pub email: Vec<String>,
    pub uri: Vec<String>,
    pub upn: Vec<String>,
}

impl SanSet {
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty() && self.email.is_empty() && self.uri.is_empty() && self.upn.is_empty()
    }

    fn from_general_names(names: &openssl::stack::StackRef<GeneralName>) -> SanSet {
        let mut s = SanSet::default();
        for n in names {
            if let Some(d) = n.dnsname() {
                s.dns.push(d.to_string());
            } else if let Some(ip) = n.ipaddress() {
                let addr = if let Ok(v4) = <[u8; 4]>::try_from(ip) {
                    IpAddr::from(v4).to_string()
                } else if let Ok(v6) = <[u8; 16]>::try_from(ip) {
                    IpAddr::from(v6).to_string()
                } else {
                    continue;
                };
                s.ip.push(addr);
            } else if let Some(e) = n.email() {
                s.email.push(e.to_string());
            } else if let Some(u) = n.uri() {
                s.uri.push(u.to_string());
            }
        }
        s
    }

    pub fn of_cert(cert: &X509Ref) -> SanSet {
        let mut s = cert.subject_alt_names().map(|n| SanSet::from_general_names(&n)).unwrap_or_default();
        // SAFETY: the extension pointer belongs to `cert` and is only read here.
        unsafe {
            let idx = openssl_sys::X509_get_ext_by_NID(cert.as_ptr(), Nid::SUBJECT_ALT_NAME.as_raw(), -1);
            if idx >= 0 {
                let ext = openssl_sys::X509_get_ext(cert.as_ptr(), idx);
                if !ext.is_null() {
                    s.upn = upns_from_san_der(extension_value(ext));
                }
            }
        }
        s
    }

    pub fn of_csr(req: &X509ReqRef) -> SanSet {
        let Ok(exts) = req.extensions() else {
            return SanSet::default();
        };
        for ext in &exts {
            // SAFETY: `ext` is a valid X509_EXTENSION owned by `exts`; X509V3_EXT_d2i returns a
            // newly allocated GENERAL_NAMES (or NULL) that we take ownership of.
            unsafe {
                let obj = openssl_sys::X509_EXTENSION_get_object(ext.as_ptr());
                if openssl_sys::OBJ_obj2nid(obj) != Nid::SUBJECT_ALT_NAME.as_raw() {
                    continue;
                }
                let p = openssl_sys::X509V3_EXT_d2i(ext.as_ptr()) as *mut openssl_sys::stack_st_GENERAL_NAME;
                if p.is_null() {
                    continue;
                }
                let names: Stack<GeneralName> = Stack::from_ptr(p);
                let mut s = SanSet::from_general_names(&names);
                s.upn = upns_from_san_der(extension_value(ext.as_ptr()));
                return s;
            }
        }
        SanSet::default()
    }

    /// How many names of any type (dNSName, iPAddress, rfc822Name, URI, otherName, directoryName,
    /// …) a CSR's subjectAltName holds: more than [`SanSet::of_csr`] reads means names of a type
    /// it does not keep.
    pub fn general_names_in_csr(req: &X509ReqRef) -> usize {
        let Ok(exts) = req.extensions() else {
            return 0;
        };
        let mut n = 0;
        for ext in &exts {
            // SAFETY: as in `of_csr`: `ext` is owned by `exts`, the GENERAL_NAMES returned is ours.
            unsafe {
                let obj = openssl_sys::X509_EXTENSION_get_object(ext.as_ptr());
                if openssl_sys::OBJ_obj2nid(obj) != Nid::SUBJECT_ALT_NAME.as_raw() {
                    continue;
                }
                let p = openssl_sys::X509V3_EXT_d2i(ext.as_ptr()) as *mut openssl_sys::stack_st_GENERAL_NAME;
                if p.is_null() {
                    continue;
                }
                let names: Stack<GeneralName> = Stack::from_ptr(p);
                n += names.len();
            }
        }
        n
    }

    /// The SAN extension (added last in every issued certificate: vcert-python's renew drops SANs otherwise).
    fn extension(
        &self,
        ctx: &openssl::x509::X509v3Context<'_>,
    ) -> Result<Option<openssl::x509::X509Extension>, openssl::error::ErrorStack> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut b = SubjectAlternativeName::new();
        for d in &self.dns {
            b.dns(d);
        }
        for i in &self.ip {
            b.ip(i);
        }
        for e in &self.email {
            b.email(e);
        }
        for u in &self.uri {
            b.uri(u);
        }
        for u in &self.upn {
            // otherName UPN (1.3.6.1.4.1.311.20.2.3) as a UTF8String.
            let oid = openssl::asn1::Asn1Object::from_str("1.3.6.1.4.1.311.20.2.3")?;
            let mut der = vec![0x0c];
            push_der_len(&mut der, u.len());
            der.extend_from_slice(u.as_bytes());
            b.other_name2(oid, &der);
        }
        b.build(ctx).map(Some)
    }
}

/// The DER value of an extension (its OCTET STRING contents).
///
/// # Safety
/// `ext` must be a valid X509_EXTENSION that outlives the returned slice's use.
unsafe fn extension_value<'a>(ext: *mut openssl_sys::X509_EXTENSION) -> &'a [u8] {
    unsafe {
        let data = openssl_sys::X509_EXTENSION_get_data(ext);
        if data.is_null() {
            return &[];
        }
        let p = openssl_sys::ASN1_STRING_get0_data(data as *const _);
        let n = openssl_sys::ASN1_STRING_length(data as *const _);
        if p.is_null() || n <= 0 { &[] } else { std::slice::from_raw_parts(p, n as usize) }
    }
}

/// The DER contents of the UPN otherName's type-id, 1.3.6.1.4.1.311.20.2.3 (compared as bytes:
/// the `der` crate's `oid` feature would add a crate for this one comparison).
const UPN_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03];

/// GeneralName's otherName, `[0] IMPLICIT SEQUENCE`, and the `[0] EXPLICIT` around its value.
const CONTEXT_0: ::der::Tag = ::der::Tag::ContextSpecific { constructed: true, number: ::der::TagNumber(0) };

/// UPNs (otherName 1.3.6.1.4.1.311.20.2.3, UTF8String) in a GeneralNames DER value, read with the
/// `der` crate: the openssl crate exposes no otherName accessor. A malformed name ends the list;
/// an otherName of another type, or whose value is not a UTF8String, is skipped.
fn upns_from_san_der(san: &[u8]) -> Vec<String> {
    use ::der::{Decode, Reader, Tagged};
    // GeneralNames ::= SEQUENCE OF GeneralName
    let Ok(names) = ::der::AnyRef::from_der(san) else { return vec![] };
    if names.tag() != ::der::Tag::Sequence {
        return vec![];
    }
    let Ok(mut reader) = ::der::SliceReader::new(names.value()) else { return vec![] };
    let mut out = vec![];
    while !reader.is_finished() {
        let Ok(name) = reader.decode::<::der::AnyRef<'_>>() else { break };
        if name.tag() == CONTEXT_0
            && let Some(upn) = upn_of_other_name(name.value())
        {
            out.push(upn);
        }
    }
    out
}

/// The UPN in an otherName's contents: `type-id OBJECT IDENTIFIER, value [0] EXPLICIT ANY`.
fn upn_of_other_name(contents: &[u8]) -> Option<String> {
    use ::der::{Decode, Reader, Tagged};
    let mut reader = ::der::SliceReader::new(contents).ok()?;
    let type_id = reader.decode::<::der::AnyRef<'_>>().ok()?;
    if type_id.tag() != ::der::Tag::ObjectIdentifier || type_id.value() != UPN_OID {
        return None;
    }
    let value = reader.decode::<::der::AnyRef<'_>>().ok()?;
    if value.tag() != CONTEXT_0 {
        return None;
    }
    ::der::asn1::Utf8StringRef::from_der(value.value()).ok().map(|upn| upn.as_str().to_string())
}

fn push_der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// What a leaf certificate is built from: the subject, SANs and public key (from a CSR, an
/// earlier version or a generated key) and the validity.
pub struct LeafTemplate<'a> {
    pub subject: &'a X509NameRef,
    pub sans: &'a SanSet,
    pub public_key: &'a PKeyRef<Public>,
    pub validity_secs: u64,
    /// Extended key usages by name; empty: serverAuth and clientAuth.
    pub ekus: &'a [String],
    /// Latest notAfter allowed (unix seconds): a reissue keeps its order's end date.
    pub not_after_max: Option<i64>,
    /// Where the issuer publishes its CRL and certificate (a built-in CA): named in the leaf's
    /// CRL distribution point and authority information access. None: neither extension.
    pub urls: Option<&'a IssuerUrls>,
}

/// The URLs a built-in CA's certificates name: its CRL (`<base>/crl/<CA>.crl`, the CRL
/// distribution point) and its certificate (`<base>/ca/<CA>.crt`, AIA caIssuers). Both are served
/// by `GET` without authentication (and over plain HTTP when `crl.http_bind` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerUrls {
    pub crl: String,
    pub ca_issuers: String,
}

impl IssuerUrls {
    /// The URLs of CA `ca_name` under `base` (`Settings::crl_base_url`); the name is percent-encoded.
    pub fn new(base: &str, ca_name: &str) -> IssuerUrls {
        let base = base.trim_end_matches('/');
        let name = url_path_segment(ca_name);
        IssuerUrls { crl: format!("{base}/crl/{name}.crl"), ca_issuers: format!("{base}/ca/{name}.crt") }
    }

    /// cRLDistributionPoints (RFC 5280 §4.2.1.13): one DistributionPoint whose fullName is the
    /// CRL's URI. The DER is written here: the openssl crate has no builder for it.
    fn crl_distribution_points(&self) -> Result<openssl::x509::X509Extension, openssl::error::ErrorStack> {
        // SEQUENCE OF DistributionPoint { distributionPoint [0] { fullName [0] { URI [6] } } }
        let uri = der(0x86, self.crl.as_bytes());
        let value = der(0x30, &der(0x30, &der(0xa0, &der(0xa0, &uri))));
        raw_extension("2.5.29.31", &value)
    }

    /// authorityInfoAccess (RFC 5280 §4.2.2.1) with one caIssuers access description.
    fn authority_info_access(&self) -> Result<openssl::x509::X509Extension, openssl::error::ErrorStack> {
        // id-ad-caIssuers 1.3.6.1.5.5.7.48.2
        const CA_ISSUERS: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
        let mut desc = CA_ISSUERS.to_vec();
        desc.extend(der(0x86, self.ca_issuers.as_bytes()));
        raw_extension("1.3.6.1.5.5.7.1.1", &der(0x30, &der(0x30, &desc)))
    }
}

/// A CA name as one URL path segment: unreserved characters kept, everything else percent-encoded.
fn url_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    push_der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A non-critical extension from its OID and DER value.
fn raw_extension(oid: &str, value: &[u8]) -> Result<openssl::x509::X509Extension, openssl::error::ErrorStack> {
    let oid = openssl::asn1::Asn1Object::from_str(oid)?;
    let value = openssl::asn1::Asn1OctetString::new_from_bytes(value)?;
    openssl::x509::X509Extension::new_from_der(&oid, false, &value)
}

/// A random positive 127-bit serial from the OpenSSL CSPRNG.
pub fn random_serial() -> Result<Asn1Integer, openssl::error::ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

/// Builds and signs an end-entity certificate. Extension order: BasicConstraints, KeyUsage,
/// ExtendedKeyUsage, SKI, AKI, CRL distribution point and AIA (when `urls`), then SAN last.
pub fn build_leaf(
    issuer_cert: &X509Ref,
    issuer_key: &PKeyRef<Private>,
    t: &LeafTemplate<'_>,
) -> Result<X509, openssl::error::ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = random_serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(t.subject)?;
    b.set_issuer_name(issuer_cert.subject_name())?;
    let legacy = legacy_form(t.public_key);
    b.set_pubkey(legacy.as_deref().unwrap_or(t.public_key))?;
    let now = chrono::Utc::now().timestamp();
    // One minute of back-dating absorbs small clock differences between gateway and clients.
    let not_before = Asn1Time::from_unix(now - 60)?;
    let mut not_after_ts = now + t.validity_secs as i64;
    if let Some(max) = t.not_after_max {
        not_after_ts = not_after_ts.min(max);
    }
    // Never outlive the issuer.
    if let Ok(issuer_end) = asn1_to_unix(issuer_cert.not_after()) {
        not_after_ts = not_after_ts.min(issuer_end);
    }
    let not_after = Asn1Time::from_unix(not_after_ts)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    let mut ku = KeyUsage::new();
    ku.critical().digital_signature();
    if t.public_key.id() == Id::RSA {
        ku.key_encipherment();
    }
    b.append_extension(ku.build()?)?;
    let mut eku = ExtendedKeyUsage::new();
    if t.ekus.is_empty() {
        eku.server_auth().client_auth();
    }
    for e in t.ekus {
        match e.to_ascii_lowercase().as_str() {
            "serverauth" => eku.server_auth(),
            "clientauth" => eku.client_auth(),
            "codesigning" => eku.code_signing(),
            "emailprotection" => eku.email_protection(),
            _ => &mut eku,
        };
    }
    b.append_extension(eku.build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(issuer_cert), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new().keyid(false).build(&b.x509v3_context(Some(issuer_cert), None))?;
    b.append_extension(aki)?;
    if let Some(urls) = t.urls {
        b.append_extension(urls.crl_distribution_points()?)?;
        b.append_extension(urls.authority_info_access()?)?;
    }
    if let Some(san) = t.sans.extension(&b.x509v3_context(Some(issuer_cert), None))? {
        b.append_extension(san)?;
    }
    let digest = KeySpec::of_key(issuer_key).map(|k| k.digest()).unwrap_or(MessageDigest::sha256());
    b.sign(issuer_key, digest)?;
    Ok(b.build())
}

pub fn asn1_to_unix(t: &openssl::asn1::Asn1TimeRef) -> Result<i64, openssl::error::ErrorStack> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(d.days as i64 * 86400 + d.secs as i64)
}

pub fn asn1_to_naive(t: &openssl::asn1::Asn1TimeRef) -> chrono::NaiveDateTime {
    let secs = asn1_to_unix(t).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc()).unwrap_or_default()
}

/// SHA-1 thumbprint, upper-case hex, as Venafi and Keyfactor print it.
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(openssl::sha::sha1(der))
}

/// Serial as upper-case hex without leading zeros (as TPP's X509.Serial shows it).
pub fn serial_hex(cert: &X509Ref) -> String {
    cert.serial_number().to_bn().and_then(|b| b.to_hex_str().map(|s| s.to_string())).unwrap_or_default().to_uppercase()
}

/// SHA-256 of the SubjectPublicKeyInfo: the key-reuse fingerprint. The key info is encoded from
/// the legacy form, so an EC key's point is always uncompressed: the same key sent compressed
/// and uncompressed is one key for the key-reuse and compromised-key rules.
pub fn public_key_fingerprint<T: openssl::pkey::HasPublic>(key: &PKeyRef<T>) -> String {
    let legacy = legacy_form(key);
    let der = legacy.as_deref().unwrap_or(key).public_key_to_der().unwrap_or_default();
    crate::secrets::sha256_hex(&der)
}

/// The same RSA or EC key held in OpenSSL's legacy form. OpenSSL 3 encodes a SubjectPublicKeyInfo
/// (`public_key_to_der`, `X509Builder::set_pubkey`) of a legacy key directly, but one of a
/// provider key (what its decoders return for a parsed CSR or certificate) by looking up an
/// encoder and, for a certificate's key, decoding the result again: a quarter of the gateway's
/// CPU per renewal. Both forms encode to the same bytes, except that the legacy form writes an EC
/// point uncompressed (RFC 5480's required form) where a provider key keeps a compressed one:
/// a leaf issued for a compressed-point CSR carries the same key, uncompressed. None for other
/// key types.
pub fn legacy_form<T>(key: &PKeyRef<T>) -> Option<PKey<T>> {
    match key.id() {
        Id::EC => key.ec_key().and_then(PKey::from_ec_key).ok(),
        Id::RSA => key.rsa().and_then(PKey::from_rsa).ok(),
        _ => None,
    }
}

/// The first CN of a name, or "".
pub fn common_name(name: &X509NameRef) -> String {
    name.entries_by_nid(Nid::COMMONNAME).next().and_then(|e| e.data().to_string().ok()).unwrap_or_default()
}

/// RFC 2253-ish one-line form of a name ("CN=x, O=y"), for display.
pub fn name_to_string(name: &X509NameRef) -> String {
    let mut parts = vec![];
    for e in name.entries() {
        let key = e.object().nid().short_name().unwrap_or("?").to_string();
        let val = e.data().to_string().unwrap_or_default();
        parts.push(format!("{key}={val}"));
    }
    parts.reverse();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_name_the_issuer_urls_before_the_san() {
        let spec = KeySpec::Ec(EcCurve::P256);
        let (ca, ca_key) = builtin::make_ca_cert(spec, "Test Issuing", "Test", None, 30).unwrap();
        let key = spec.generate().unwrap();
        let public = PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap();
        let mut nb = openssl::x509::X509NameBuilder::new().unwrap();
        nb.append_entry_by_text("CN", "a.example.com").unwrap();
        let subject = nb.build();
        let sans = SanSet { dns: vec!["a.example.com".into()], ..SanSet::default() };
        let urls = IssuerUrls::new("http://pki.example.com:8080/", "My CA/2");
        assert_eq!(urls.crl, "http://pki.example.com:8080/crl/My%20CA%2F2.crl");
        assert_eq!(urls.ca_issuers, "http://pki.example.com:8080/ca/My%20CA%2F2.crt");
        let t = |urls| LeafTemplate {
            subject: &subject,
            sans: &sans,
            public_key: &public,
            validity_secs: 3600,
            ekus: &[],
            not_after_max: None,
            urls,
        };
        let leaf = build_leaf(&ca, &ca_key, &t(Some(&urls))).unwrap();
        let cdp = leaf.crl_distribution_points().expect("a CRL distribution point");
        let names = cdp.get(0).unwrap().distpoint().unwrap().fullname().unwrap();
        assert_eq!(names.get(0).unwrap().uri(), Some(urls.crl.as_str()));
        let aia = leaf.authority_info().expect("authority information access");
        assert_eq!(aia.len(), 1);
        assert_eq!(aia.get(0).unwrap().method().nid(), Nid::AD_CA_ISSUERS);
        assert_eq!(aia.get(0).unwrap().location().uri(), Some(urls.ca_issuers.as_str()));
        // SAN stays the last extension (vcert-python drops SANs otherwise).
        let text = String::from_utf8(leaf.to_text().unwrap()).unwrap();
        let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} in {text}"));
        assert!(pos("CRL Distribution Points") < pos("Authority Information Access"));
        assert!(pos("Authority Information Access") < pos("Subject Alternative Name"));
        assert!(
            text.find("X509v3").is_some() && text.rfind("X509v3 ").unwrap() == pos("X509v3 Subject Alternative Name")
        );
        // Without URLs: neither extension.
        let plain = build_leaf(&ca, &ca_key, &t(None)).unwrap();
        assert!(plain.crl_distribution_points().is_none() && plain.authority_info().is_none());
    }

    #[test]
    fn legacy_form_encodes_the_same_key_info() {
        // Keys as the gateway meets them: decoded from DER (provider keys), uncompressed and
        // compressed EC points, and RSA.
        let mut keys: Vec<PKey<Public>> = Vec::new();
        for nid in [Nid::X9_62_PRIME256V1, Nid::SECP384R1, Nid::SECP521R1] {
            let k = EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap();
            keys.push(PKey::public_key_from_der(&PKey::from_ec_key(k).unwrap().public_key_to_der().unwrap()).unwrap());
        }
        let rsa = Rsa::generate(2048).unwrap();
        keys.push(PKey::public_key_from_der(&PKey::from_rsa(rsa).unwrap().public_key_to_der().unwrap()).unwrap());
        for key in &keys {
            let legacy = legacy_form(key).expect("EC and RSA keys have a legacy form");
            assert_eq!(legacy.public_key_to_der().unwrap(), key.public_key_to_der().unwrap());
        }
        // A P-256 key info with a compressed point: the same key, encoded uncompressed.
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let k = EcKey::generate(&group).unwrap();
        let uncompressed = PKey::from_ec_key(k.clone()).unwrap().public_key_to_der().unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let point = k.public_key().to_bytes(&group, openssl::ec::PointConversionForm::COMPRESSED, &mut ctx).unwrap();
        let mut spki = hex::decode("3039301306072a8648ce3d020106082a8648ce3d030107032200").unwrap();
        spki.extend_from_slice(&point);
        let compressed = PKey::public_key_from_der(&spki).unwrap();
        assert_eq!(compressed.public_key_to_der().unwrap(), spki);
        assert_eq!(legacy_form(&compressed).unwrap().public_key_to_der().unwrap(), uncompressed);
        assert_eq!(public_key_fingerprint(&compressed), crate::secrets::sha256_hex(&uncompressed));
        // A key type without one is used as it is.
        let ed = PKey::generate_ed25519().unwrap();
        assert!(legacy_form(&ed).is_none());
    }

    #[test]
    fn upn_other_names_are_read_from_san_der() {
        // GeneralNames { otherName UPN "user@example.com", dNSName "a.example.com" }
        let upn = "user@example.com";
        let mut other = vec![0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03];
        let mut val = vec![0x0c, upn.len() as u8];
        val.extend_from_slice(upn.as_bytes());
        other.push(0xa0);
        other.push(val.len() as u8);
        other.extend(val);
        let mut names = vec![0xa0, other.len() as u8];
        names.extend(other);
        names.extend_from_slice(&[0x82, 0x0d]);
        names.extend_from_slice(b"a.example.com");
        let mut der = vec![0x30, names.len() as u8];
        der.extend(names);
        assert_eq!(upns_from_san_der(&der), vec![upn.to_string()]);
        assert!(upns_from_san_der(&[0x30, 0x00]).is_empty());
        assert!(upns_from_san_der(&[0xff]).is_empty());
    }
}
