//! PKCS#10 requests as the engine and the issuers hold them.
use std::ops::Deref;

use foreign_types::ForeignType;
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::stack::Stack;
use openssl::x509::{X509Extension, X509Name, X509Req, X509ReqBuilder, X509ReqRef};

/// A decoded PKCS#10 request, its DER as received, and whether its signature verifies.
///
/// It reads as the `X509ReqRef` it wraps (subject, extensions, public key). Why a type of its
/// own: OpenSSL 3.0 decodes the public key inside `d2i_X509_REQ` through a decoder context built
/// afresh for every request, which cost more than the signature check and the leaf together. An
/// EC request (the common case) is therefore split with the `der` crate, its parts decoded by
/// OpenSSL's legacy routines (subject, `d2i_EC_PUBKEY`, extensions) and its ECDSA signature
/// checked on that key; the request is then rebuilt from those parts. Anything else, or anything
/// that path does not accept, takes `X509Req::from_der`, which stays the authority: a request the
/// fast path rejects is always decided again by OpenSSL.
pub struct Csr {
    req: X509Req,
    der: Vec<u8>,
    signature_ok: bool,
}

impl Csr {
    /// Decodes a DER PKCS#10 request. Fails only if OpenSSL cannot decode it; a request whose
    /// signature does not verify (or whose key is unusable) decodes with
    /// [`Csr::signature_verifies`] false.
    pub fn from_der(der: &[u8]) -> Result<Csr, ErrorStack> {
        if let Some(req) = fast::ec_request(der) {
            return Ok(Csr { req, der: der.to_vec(), signature_ok: true });
        }
        let req = X509Req::from_der(der)?;
        let signature_ok = match req.public_key() {
            Ok(key) => req.verify(&key).unwrap_or(false),
            Err(_) => false,
        };
        // A failed verification leaves errors on this thread's OpenSSL error queue; left there,
        // they would be picked up by the next TLS read on the same worker thread and kill its
        // connection.
        let _ = ErrorStack::get();
        Ok(Csr { req, der: der.to_vec(), signature_ok })
    }

    /// Whether the request is signed by the key it carries.
    pub fn signature_verifies(&self) -> bool {
        self.signature_ok
    }

    /// The request's DER exactly as the client sent it (stored with the job, and what a job run
    /// later decodes again).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// As `X509ReqRef::to_der`, but the bytes received: the rebuilt request carries no signature.
    pub fn to_der(&self) -> Result<Vec<u8>, ErrorStack> {
        Ok(self.der.clone())
    }
}

impl Deref for Csr {
    type Target = X509ReqRef;
    fn deref(&self) -> &X509ReqRef {
        &self.req
    }
}

impl std::fmt::Debug for Csr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csr").field("der_len", &self.der.len()).field("signature_ok", &self.signature_ok).finish()
    }
}

pub(super) mod fast {
    use super::*;
    use ::der::{Decode, Reader, Tagged};
    use openssl::bn::BigNumContext;
    use openssl::ec::{EcGroup, EcPoint};
    use openssl::nid::Nid;
    use std::sync::OnceLock;

    unsafe extern "C" {
        // Declared by OpenSSL's x509.h (DECLARE_ASN1_ENCODE_FUNCTIONS_only(X509_EXTENSIONS, ...));
        // openssl-sys does not bind it.
        fn d2i_X509_EXTENSIONS(
            a: *mut *mut openssl_sys::stack_st_X509_EXTENSION,
            pp: *mut *const libc::c_uchar,
            length: libc::c_long,
        ) -> *mut openssl_sys::stack_st_X509_EXTENSION;
    }

    /// pkcs-9-at-extensionRequest, 1.2.840.113549.1.9.14 (contents octets).
    const EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
    /// ecdsa-with-SHA256 / SHA384 / SHA512, 1.2.840.10045.4.3.{2,3,4}.
    const ECDSA_WITH: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    /// id-ecPublicKey, 1.2.840.10045.2.1.
    const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const ATTRIBUTES: ::der::Tag = ::der::Tag::ContextSpecific { constructed: true, number: ::der::TagNumber(0) };

    /// The named curves of the fast path: secp256r1, secp384r1, secp521r1 (contents octets).
    const CURVES: [(&[u8], Nid); 3] = [
        (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], Nid::X9_62_PRIME256V1),
        (&[0x2b, 0x81, 0x04, 0x00, 0x22], Nid::SECP384R1),
        (&[0x2b, 0x81, 0x04, 0x00, 0x23], Nid::SECP521R1),
    ];

    /// The group of a named curve, built once: OpenSSL's decoding of a public key builds its
    /// curve's group afresh, and that was 2 % of the gateway's CPU under load.
    fn group(nid: Nid) -> Option<&'static EcGroup> {
        static GROUPS: [OnceLock<Option<EcGroup>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let i = CURVES.iter().position(|(_, n)| *n == nid)?;
        GROUPS[i].get_or_init(|| EcGroup::from_curve_name(nid).ok()).as_ref()
    }

    /// The parts of a CertificationRequest (RFC 2986) the fast path reads.
    struct Parts<'a> {
        info: &'a [u8],
        subject: &'a [u8],
        /// The key's named curve and its uncompressed point (0x04 ‖ X ‖ Y).
        curve: Nid,
        point: &'a [u8],
        extensions: Option<&'a [u8]>,
        digest: MessageDigest,
        signature: &'a [u8],
    }

    pub(in crate::ca) fn any<'a>(r: &mut ::der::SliceReader<'a>) -> Option<::der::AnyRef<'a>> {
        r.decode::<::der::AnyRef<'a>>().ok()
    }

    pub(in crate::ca) fn reader(bytes: &[u8]) -> Option<::der::SliceReader<'_>> {
        ::der::SliceReader::new(bytes).ok()
    }

    /// Splits a version-1 request with an ECDSA signature, an EC key and no attribute but
    /// extensionRequest; `None` for anything else.
    fn split(der: &[u8]) -> Option<Parts<'_>> {
        let outer = ::der::AnyRef::from_der(der).ok()?;
        if outer.tag() != ::der::Tag::Sequence {
            return None;
        }
        let mut r = reader(outer.value())?;
        let info = r.tlv_bytes().ok()?;
        let sig_alg = any(&mut r)?;
        let sig = any(&mut r)?;
        if !r.is_finished() || sig.tag() != ::der::Tag::BitString {
            return None;
        }
        // AlgorithmIdentifier: the OID alone (RFC 5758: parameters absent).
        let mut a = reader(sig_alg.value())?;
        let oid = any(&mut a)?;
        if sig_alg.tag() != ::der::Tag::Sequence || oid.tag() != ::der::Tag::ObjectIdentifier || !a.is_finished() {
            return None;
        }
        let digest = match oid.value().strip_prefix(ECDSA_WITH)? {
            [2] => MessageDigest::sha256(),
            [3] => MessageDigest::sha384(),
            [4] => MessageDigest::sha512(),
            _ => return None,
        };
        // BIT STRING: no unused bits, then the DER ECDSA-Sig-Value.
        let signature = sig.value().strip_prefix(&[0u8])?;

        let info_any = ::der::AnyRef::from_der(info).ok()?;
        if info_any.tag() != ::der::Tag::Sequence {
            return None;
        }
        let mut i = reader(info_any.value())?;
        let version = any(&mut i)?;
        if version.tag() != ::der::Tag::Integer || version.value() != [0] {
            return None;
        }
        let subject = i.tlv_bytes().ok()?;
        let spki = i.tlv_bytes().ok()?;
        let attributes = any(&mut i)?;
        if !i.is_finished() || attributes.tag() != ATTRIBUTES {
            return None;
        }
        let mut k = reader(::der::AnyRef::from_der(spki).ok()?.value())?;
        let alg = any(&mut k)?;
        let key_bits = any(&mut k)?;
        let mut ka = reader(alg.value())?;
        let key_oid = any(&mut ka)?;
        if key_oid.tag() != ::der::Tag::ObjectIdentifier || key_oid.value() != EC_PUBLIC_KEY {
            return None;
        }
        // A named curve of the three, and an uncompressed point: anything else (explicit
        // parameters, a compressed point, which OpenSSL keeps compressed) goes to OpenSSL.
        let curve_oid = any(&mut ka)?;
        if curve_oid.tag() != ::der::Tag::ObjectIdentifier
            || !ka.is_finished()
            || !k.is_finished()
            || key_bits.tag() != ::der::Tag::BitString
        {
            return None;
        }
        let curve = CURVES.iter().find(|(oid, _)| *oid == curve_oid.value())?.1;
        let point = key_bits.value().strip_prefix(&[0u8])?;
        if point.first() != Some(&0x04) {
            return None;
        }
        let mut extensions = None;
        let mut at = reader(attributes.value())?;
        while !at.is_finished() {
            let attribute = any(&mut at)?;
            let mut ar = reader(attribute.value())?;
            let attr_oid = any(&mut ar)?;
            let values = any(&mut ar)?;
            if attribute.tag() != ::der::Tag::Sequence
                || attr_oid.value() != EXTENSION_REQUEST
                || values.tag() != ::der::Tag::Set
                || !ar.is_finished()
                || extensions.is_some()
            {
                // challengePassword, msExtReq, a second extensionRequest…: OpenSSL decides.
                return None;
            }
            let mut vr = reader(values.value())?;
            let value = vr.tlv_bytes().ok()?;
            if !vr.is_finished() {
                return None;
            }
            extensions = Some(value);
        }
        Some(Parts { info, subject, curve, point, extensions, digest, signature })
    }

    /// An EC request whose ECDSA signature verifies, rebuilt from its parts; `None` sends the
    /// caller to OpenSSL's own decoding.
    pub(super) fn ec_request(der: &[u8]) -> Option<X509Req> {
        let parts = split(der)?;
        let built = (|| -> Result<Option<X509Req>, ErrorStack> {
            let Some(group) = group(parts.curve) else { return Ok(None) };
            // From the point on the cached group (checked to be on the curve), as
            // `EcKey::public_key_from_der` would read it.
            let mut ctx = BigNumContext::new()?;
            let point = EcPoint::from_bytes(group, parts.point, &mut ctx)?;
            let ec = EcKey::from_public_key(group, &point)?;
            let digest = openssl::hash::hash(parts.digest, parts.info)?;
            if !EcdsaSig::from_der(parts.signature)?.verify(&digest, &ec)? {
                return Ok(None);
            }
            let subject = X509Name::from_der(parts.subject)?;
            let key = PKey::from_ec_key(ec)?;
            let mut b = X509ReqBuilder::new()?;
            b.set_version(0)?;
            b.set_subject_name(&subject)?;
            b.set_pubkey(&key)?;
            if let Some(ext_der) = parts.extensions {
                let mut p = ext_der.as_ptr();
                let len = libc::c_long::try_from(ext_der.len()).map_err(|_| ErrorStack::get())?;
                // SAFETY: `p` points at `len` readable bytes; the returned stack (or NULL) is
                // ours and is owned by `Stack` from here on.
                let exts = unsafe {
                    let raw = d2i_X509_EXTENSIONS(std::ptr::null_mut(), &mut p, len);
                    if raw.is_null() {
                        return Err(ErrorStack::get());
                    }
                    Stack::<X509Extension>::from_ptr(raw)
                };
                // An empty extensionRequest is kept as none at all, as OpenSSL reads it back.
                if !exts.is_empty() {
                    b.add_extensions(&exts)?;
                }
            }
            Ok(Some(b.build()))
        })();
        match built {
            Ok(Some(req)) => Some(req),
            _ => {
                let _ = ErrorStack::get();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{EcCurve, KeySpec, SanSet};
    use openssl::nid::Nid;
    use openssl::pkey::Private;
    use openssl::x509::X509NameBuilder;
    use openssl::x509::extension::SubjectAlternativeName;

    fn request(key: &PKey<Private>, md: MessageDigest, sans: bool, password: bool) -> Vec<u8> {
        let mut nb = X509NameBuilder::new().unwrap();
        nb.append_entry_by_text("CN", "fast.example.com").unwrap();
        nb.append_entry_by_text("O", "Example").unwrap();
        let mut b = X509ReqBuilder::new().unwrap();
        b.set_subject_name(&nb.build()).unwrap();
        b.set_pubkey(key).unwrap();
        if sans {
            let ext = SubjectAlternativeName::new()
                .dns("fast.example.com")
                .dns("www.fast.example.com")
                .ip("192.0.2.7")
                .build(&b.x509v3_context(None))
                .unwrap();
            let mut exts = Stack::new().unwrap();
            exts.push(ext).unwrap();
            b.add_extensions(&exts).unwrap();
        }
        let req = b.build();
        // SAFETY: `req` is a valid X509_REQ we own; the attribute value is a plain byte string;
        // the key and digest outlive the call.
        unsafe {
            if password {
                let v = b"secret";
                let added = openssl_sys::X509_REQ_add1_attr_by_NID(
                    req.as_ptr(),
                    Nid::PKCS9_CHALLENGEPASSWORD.as_raw(),
                    openssl_sys::V_ASN1_UTF8STRING,
                    v.as_ptr(),
                    v.len() as libc::c_int,
                );
                assert_eq!(added, 1);
            }
            assert!(openssl_sys::X509_REQ_sign(req.as_ptr(), key.as_ptr(), md.as_ptr()) > 0);
        }
        req.to_der().unwrap()
    }

    fn same_as_openssl(der: &[u8]) {
        let ours = Csr::from_der(der).unwrap();
        let theirs = X509Req::from_der(der).unwrap();
        assert!(ours.signature_verifies());
        assert_eq!(ours.der(), der);
        assert_eq!(ours.to_der().unwrap(), der);
        assert_eq!(ours.subject_name().to_der().unwrap(), theirs.subject_name().to_der().unwrap());
        assert!(ours.public_key().unwrap().public_eq(&theirs.public_key().unwrap()));
        assert_eq!(SanSet::of_csr(&ours), SanSet::of_csr(&theirs));
    }

    #[test]
    fn ec_requests_take_the_fast_path_and_read_as_openssl_reads_them() {
        for (curve, md) in [
            (EcCurve::P256, MessageDigest::sha256()),
            (EcCurve::P384, MessageDigest::sha384()),
            (EcCurve::P521, MessageDigest::sha512()),
        ] {
            let key = KeySpec::Ec(curve).generate().unwrap();
            for sans in [false, true] {
                let der = request(&key, md, sans, false);
                assert!(fast::ec_request(&der).is_some(), "{curve:?} sans={sans}: not on the fast path");
                same_as_openssl(&der);
            }
        }
    }

    #[test]
    fn a_point_off_its_curve_is_not_accepted_by_the_fast_path() {
        let key = KeySpec::Ec(EcCurve::P256).generate().unwrap();
        let ec = key.ec_key().unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let point =
            ec.public_key().to_bytes(ec.group(), openssl::ec::PointConversionForm::UNCOMPRESSED, &mut ctx).unwrap();
        let mut der = request(&key, MessageDigest::sha256(), true, false);
        let at = der.windows(point.len()).position(|w| w == point.as_slice()).expect("the point is in the request");
        // The last byte of Y: the point is no longer on the curve.
        der[at + point.len() - 1] ^= 0x01;
        assert!(fast::ec_request(&der).is_none());
        assert!(X509Req::from_der(&der).map(|r| r.public_key().is_err()).unwrap_or(true), "OpenSSL refuses it too");
    }

    #[test]
    fn other_requests_are_decoded_by_openssl() {
        let ec = KeySpec::Ec(EcCurve::P256).generate().unwrap();
        let with_password = request(&ec, MessageDigest::sha256(), true, true);
        assert!(fast::ec_request(&with_password).is_none());
        same_as_openssl(&with_password);
        let ec_sha1 = request(&ec, MessageDigest::sha1(), true, false);
        assert!(fast::ec_request(&ec_sha1).is_none());
        same_as_openssl(&ec_sha1);
        let rsa = KeySpec::Rsa(2048).generate().unwrap();
        let rsa_der = request(&rsa, MessageDigest::sha256(), true, false);
        assert!(fast::ec_request(&rsa_der).is_none());
        same_as_openssl(&rsa_der);
    }

    #[test]
    fn a_bad_signature_is_reported_not_accepted() {
        let key = KeySpec::Ec(EcCurve::P256).generate().unwrap();
        let mut der = request(&key, MessageDigest::sha256(), true, false);
        // The last byte is inside the signature's S value.
        let n = der.len();
        der[n - 1] ^= 0x01;
        assert!(fast::ec_request(&der).is_none());
        let csr = Csr::from_der(&der).unwrap();
        assert!(!csr.signature_verifies());
        assert!(Csr::from_der(b"\x30\x03\x02\x01\x00").is_err());
    }
}
