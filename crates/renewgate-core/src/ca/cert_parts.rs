//! What a renewal reads from a stored certificate (subject, subjectAltNames, public key), without
//! OpenSSL 3's per-certificate key decoder: `d2i_X509` builds an `OSSL_DECODER` context for the
//! public key of every certificate it decodes, which costs more than signing the new one. A
//! certificate with an EC or RSA key is split with the `der` crate and its parts decoded by
//! OpenSSL's legacy routines (`d2i_X509_NAME`, `d2i_EC_PUBKEY` / `d2i_RSA_PUBKEY`,
//! `d2i_GENERAL_NAMES`); anything else, or anything the split does not accept, is decoded by
//! `X509::from_der` as before.
use ::der::{Decode, Tagged};
use foreign_types::ForeignType;
use openssl::ec::EcKey;
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::{GeneralName, X509, X509Name};

use super::SanSet;
use super::csr::fast::{any, reader};

unsafe extern "C" {
    // Declared by OpenSSL's x509v3.h (DECLARE_ASN1_FUNCTIONS(GENERAL_NAMES)); openssl-sys does
    // not bind it.
    fn d2i_GENERAL_NAMES(
        a: *mut *mut openssl_sys::stack_st_GENERAL_NAME,
        pp: *mut *const libc::c_uchar,
        length: libc::c_long,
    ) -> *mut openssl_sys::stack_st_GENERAL_NAME;
}

/// id-ecPublicKey, 1.2.840.10045.2.1, and rsaEncryption, 1.2.840.113549.1.1.1 (contents octets).
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const fn context(n: u32) -> ::der::Tag {
    ::der::Tag::ContextSpecific { constructed: true, number: ::der::TagNumber(n) }
}

/// A certificate's subject, subjectAltNames and public key.
pub struct CertParts {
    pub subject: X509Name,
    pub sans: SanSet,
    pub public_key: PKey<Public>,
}

/// The parts of DER certificate `der`, as `X509::from_der` would give them.
pub fn cert_parts(der: &[u8]) -> Result<CertParts, ErrorStack> {
    if let Some(p) = split(der) {
        return Ok(p);
    }
    let _ = ErrorStack::get();
    let cert = X509::from_der(der)?;
    Ok(CertParts {
        subject: cert.subject_name().to_owned()?,
        sans: SanSet::of_cert(&cert),
        public_key: cert.public_key()?,
    })
}

fn split(der: &[u8]) -> Option<CertParts> {
    let outer = ::der::AnyRef::from_der(der).ok()?;
    if outer.tag() != ::der::Tag::Sequence {
        return None;
    }
    let mut r = reader(outer.value())?;
    let tbs = any(&mut r)?;
    if tbs.tag() != ::der::Tag::Sequence {
        return None;
    }
    let mut t = reader(tbs.value())?;
    // version [0] EXPLICIT: v3 only (what every issuer writes today), so extensions may follow.
    let version = any(&mut t)?;
    if version.tag() != context(0) || version.value() != [0x02, 0x01, 0x02] {
        return None;
    }
    let _serial = any(&mut t)?;
    let _signature = any(&mut t)?;
    let _issuer = any(&mut t)?;
    let _validity = any(&mut t)?;
    let subject = ::der::Reader::tlv_bytes(&mut t).ok()?;
    let spki = ::der::Reader::tlv_bytes(&mut t).ok()?;
    let mut extensions = None;
    while !::der::Reader::is_finished(&t) {
        let field = any(&mut t)?;
        if field.tag() == context(3) {
            extensions = Some(field.value());
        }
    }
    let public_key = public_key(spki)?;
    let subject = X509Name::from_der(subject).ok()?;
    let mut sans = SanSet::default();
    if let Some(exts) = extensions {
        let seq = ::der::AnyRef::from_der(exts).ok()?;
        let mut e = reader(seq.value())?;
        let mut seen = false;
        while !::der::Reader::is_finished(&e) {
            let ext = any(&mut e)?;
            let mut x = reader(ext.value())?;
            let oid = any(&mut x)?;
            if oid.tag() != ::der::Tag::ObjectIdentifier || oid.value() != SUBJECT_ALT_NAME {
                continue;
            }
            if seen {
                // Two subjectAltName extensions: OpenSSL reads none; let it decide.
                return None;
            }
            seen = true;
            let mut value = any(&mut x)?;
            if value.tag() == ::der::Tag::Boolean {
                value = any(&mut x)?;
            }
            if value.tag() != ::der::Tag::OctetString {
                return None;
            }
            sans = general_names(value.value())?;
        }
    }
    Some(CertParts { subject, sans, public_key })
}

fn public_key(spki: &[u8]) -> Option<PKey<Public>> {
    let seq = ::der::AnyRef::from_der(spki).ok()?;
    let mut k = reader(seq.value())?;
    let alg = any(&mut k)?;
    let mut a = reader(alg.value())?;
    let oid = any(&mut a)?;
    match oid.value() {
        v if v == EC_PUBLIC_KEY => PKey::from_ec_key(EcKey::public_key_from_der(spki).ok()?).ok(),
        v if v == RSA_ENCRYPTION => PKey::from_rsa(Rsa::public_key_from_der(spki).ok()?).ok(),
        _ => None,
    }
}

fn general_names(der: &[u8]) -> Option<SanSet> {
    let mut p = der.as_ptr();
    let len = libc::c_long::try_from(der.len()).ok()?;
    // SAFETY: `p` points at `len` readable bytes; the returned stack (or NULL) is ours and is
    // owned by `Stack` from here on.
    let names: Stack<GeneralName> = unsafe {
        let raw = d2i_GENERAL_NAMES(std::ptr::null_mut(), &mut p, len);
        if raw.is_null() {
            return None;
        }
        Stack::from_ptr(raw)
    };
    let mut s = SanSet::from_general_names(&names);
    s.upn = super::upns_from_san_der(der);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{EcCurve, KeySpec};

    fn same_as_openssl(der: &[u8]) {
        let ours = split(der).expect("on the fast path");
        let cert = X509::from_der(der).unwrap();
        assert_eq!(ours.subject.to_der().unwrap(), cert.subject_name().to_der().unwrap());
        assert_eq!(ours.sans, SanSet::of_cert(&cert));
        assert!(ours.public_key.public_eq(&cert.public_key().unwrap()));
    }

    fn issue(spec: KeySpec, sans: &SanSet) -> Vec<u8> {
        let ca_key = KeySpec::Ec(EcCurve::P256).generate().unwrap();
        let mut nb = openssl::x509::X509NameBuilder::new().unwrap();
        nb.append_entry_by_text("CN", "Parts CA").unwrap();
        let ca_name = nb.build();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&ca_name).unwrap();
        b.set_issuer_name(&ca_name).unwrap();
        b.set_pubkey(&ca_key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap()).unwrap();
        let ski = openssl::x509::extension::SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ski).unwrap();
        b.sign(&ca_key, openssl::hash::MessageDigest::sha256()).unwrap();
        let ca = b.build();
        let key = spec.generate().unwrap();
        let mut nb = openssl::x509::X509NameBuilder::new().unwrap();
        nb.append_entry_by_text("CN", "parts.example.com").unwrap();
        nb.append_entry_by_text("O", "Example").unwrap();
        let subject = nb.build();
        let leaf = crate::ca::build_leaf(
            &ca,
            &ca_key,
            &crate::ca::LeafTemplate {
                subject: &subject,
                sans,
                public_key: &PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap(),
                validity_secs: 3600,
                ekus: &[],
                not_after_max: None,
                urls: None,
            },
        )
        .unwrap();
        leaf.to_der().unwrap()
    }

    #[test]
    fn issued_certificates_read_as_openssl_reads_them() {
        let sans = SanSet {
            dns: vec!["parts.example.com".into(), "www.parts.example.com".into()],
            ip: vec!["192.0.2.9".into(), "2001:db8::1".into()],
            email: vec!["pki@example.com".into()],
            uri: vec!["https://parts.example.com/x".into()],
            upn: vec!["someone@corp.example".into()],
        };
        for spec in [KeySpec::Ec(EcCurve::P256), KeySpec::Ec(EcCurve::P384), KeySpec::Rsa(2048)] {
            same_as_openssl(&issue(spec, &sans));
            same_as_openssl(&issue(spec, &SanSet::default()));
        }
    }

    #[test]
    fn what_the_split_refuses_openssl_decodes() {
        let der = issue(KeySpec::Ec(EcCurve::P256), &SanSet::default());
        let parts = cert_parts(&der).unwrap();
        assert!(parts.sans.is_empty());
        assert!(cert_parts(b"\x30\x03\x02\x01\x00").is_err());
        let mut bad = der.clone();
        bad.truncate(der.len() - 5);
        assert!(split(&bad).is_none());
    }
}
