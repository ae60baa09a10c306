//! PKCS#10 as the dialects accept it: `engine::csr::parse_pkcs10` (PEM with or without armour
//! and line breaks, CRLF, literal `\n` escapes, bare base64, Keyfactor classic's CRLF base64)
//! inside each dialect's request body (Venafi `PKCS10`, Keyfactor classic `Request.Pkcs10Request`,
//! Keyfactor `CSR`), and ACME finalize's DER, read by `acme::finalize::check_csr` and the core's
//! subjectAltName reader (`ca::SanSet::of_csr`, which walks the otherName DER itself).
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::asn1::Asn1Object;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509Req, X509ReqBuilder};
use proptest::prelude::*;
use proptest::sample::Index;
use renewgate::api::body::LenientBody;
use renewgate::api::keyfactor::classic::crlf_base64;
use renewgate_core::acme::finalize::check_csr;
use renewgate_core::acme::model::Identifier;
use renewgate_core::ca::{EcCurve, KeySpec, SanSet};
use renewgate_core::engine::csr::{Csr, parse_pkcs10};

use crate::support::{bytes, config, mutate, mutations, parser_text, text, within_deadline};

/// One RSA key for every case: generating 2048-bit keys per case would dominate the run time.
fn rsa_key() -> PKey<Private> {
    static KEY: OnceLock<PKey<Private>> = OnceLock::new();
    KEY.get_or_init(|| {
        PKey::from_rsa(Rsa::generate(2048).expect("generating an RSA-2048 key")).expect("wrapping an RSA key")
    })
    .clone()
}

const UTF8_STRING: u8 = 0x0c;

/// A DER TLV with a short or long-form length.
fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut der = vec![tag];
    match value.len() {
        n @ 0..=127 => der.push(n as u8),
        n @ 128..=255 => der.extend([0x81, n as u8]),
        n => der.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    der.extend_from_slice(value);
    der
}

/// What a generated request asks for.
#[derive(Debug, Clone)]
struct CsrSpec {
    rsa: bool,
    common_name: String,
    sans: SanSet,
    /// UPN otherNames whose value is some other string type, or not UTF-8: (tag, bytes).
    odd_upns: Vec<(u8, Vec<u8>)>,
}

fn csr_spec() -> impl Strategy<Value = CsrSpec> {
    let names = |re: &'static str| prop::collection::vec(re, 0..3);
    (
        any::<bool>(),
        "[a-z0-9]{1,20}\\.example\\.com",
        names("[a-z0-9]{1,12}\\.example\\.(com|org)"),
        prop::collection::vec(any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()), 0..2),
        names("[a-z]{1,8}@example\\.com"),
        names("https://[a-z]{1,8}\\.example\\.com/[a-z]{0,8}"),
        // UPNs up to 300 bytes: long enough for the two-byte DER length form.
        prop::collection::vec("[a-zA-Z0-9.é]{1,150}@[a-z]{1,140}\\.corp", 0..3),
        prop::collection::vec(
            // UTF8String (possibly invalid UTF-8), OCTET STRING, PrintableString, IA5String (OpenSSL
            // checks the contents of none of them here).
            (prop::sample::select(vec![UTF8_STRING, 0x04, 0x13, 0x16]), prop::collection::vec(any::<u8>(), 0..300)),
            0..2,
        ),
    )
        .prop_map(|(rsa, common_name, dns, ip, email, uri, upn, odd_upns)| CsrSpec {
            rsa,
            common_name,
            sans: SanSet { dns, ip, email, uri, upn },
            odd_upns,
        })
}

fn build_csr(spec: &CsrSpec) -> X509Req {
    let key = if spec.rsa { rsa_key() } else { KeySpec::Ec(EcCurve::P256).generate().expect("generating a P-256 key") };
    let mut name = X509NameBuilder::new().expect("name builder");
    name.append_entry_by_text("CN", &spec.common_name).expect("CN");
    let mut b = X509ReqBuilder::new().expect("request builder");
    b.set_subject_name(&name.build()).expect("subject");
    b.set_pubkey(&key).expect("public key");
    if !spec.sans.is_empty() || !spec.odd_upns.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for d in &spec.sans.dns {
            san.dns(d);
        }
        for i in &spec.sans.ip {
            san.ip(i);
        }
        for e in &spec.sans.email {
            san.email(e);
        }
        for u in &spec.sans.uri {
            san.uri(u);
        }
        // otherName UPN (1.3.6.1.4.1.311.20.2.3) as a UTF8String, as Windows clients send it,
        // then the odd values some clients put under the same OID.
        let upns = spec.sans.upn.iter().map(|u| (UTF8_STRING, u.as_bytes().to_vec()));
        for (tag, value) in upns.chain(spec.odd_upns.iter().cloned()) {
            let oid = Asn1Object::from_str("1.3.6.1.4.1.311.20.2.3").expect("UPN OID");
            san.other_name2(oid, &der_tlv(tag, &value));
        }
        let ext = san.build(&b.x509v3_context(None)).expect("subjectAltName");
        let mut exts = Stack::new().expect("extension stack");
        exts.push(ext).expect("push");
        b.add_extensions(&exts).expect("extensions");
    }
    b.sign(&key, MessageDigest::sha256()).expect("signing the request");
    b.build()
}

/// The text encodings clients send.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Pem,
    PemCrlf,
    PemOneLine,
    PemEscapedLf,
    PemEscapedCrlf,
    /// The armour of `openssl req` run by some older tools.
    PemNewRequest,
    BareBase64Lines,
    BareBase64OneLine,
    /// Keyfactor classic: base64 DER with CRLF every 64 characters, no armour.
    KeyfactorClassic,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    use Encoding::*;
    prop::sample::select(vec![
        Pem,
        PemCrlf,
        PemOneLine,
        PemEscapedLf,
        PemEscapedCrlf,
        PemNewRequest,
        BareBase64Lines,
        BareBase64OneLine,
        KeyfactorClassic,
    ])
}

fn encode(der: &[u8], how: Encoding) -> String {
    let b64 = B64.encode(der);
    let lines = b64.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>();
    let pem =
        |label: &str, nl: &str| format!("-----BEGIN {label}-----{nl}{}{nl}-----END {label}-----{nl}", lines.join(nl));
    match how {
        Encoding::Pem => pem("CERTIFICATE REQUEST", "\n"),
        Encoding::PemCrlf => pem("CERTIFICATE REQUEST", "\r\n"),
        Encoding::PemOneLine => pem("CERTIFICATE REQUEST", ""),
        Encoding::PemEscapedLf => pem("CERTIFICATE REQUEST", "\\n"),
        Encoding::PemEscapedCrlf => pem("CERTIFICATE REQUEST", "\\r\\n"),
        Encoding::PemNewRequest => pem("NEW CERTIFICATE REQUEST", "\n"),
        Encoding::BareBase64Lines => lines.join("\n"),
        Encoding::BareBase64OneLine => b64,
        Encoding::KeyfactorClassic => crlf_base64(der),
    }
}

/// Whitespace a client or a copy-paste adds between the armour lines (spaces, tabs, line
/// breaks), never inside a literal `\\n` escape.
fn sprinkle_whitespace(text: &str, at: &[(Index, char)]) -> String {
    let start = match text.find("-----BEGIN") {
        Some(i) => text[i + 10..].find("-----").map_or(text.len(), |j| i + 10 + j + 5),
        None => 0,
    };
    let end = text.find("-----END").unwrap_or(text.len()).max(start);
    let mut body: Vec<char> = text[start..end].chars().collect();
    for (i, ws) in at {
        let i = i.index(body.len() + 1);
        if i == 0 || body[i - 1] != '\\' {
            body.insert(i, *ws);
        }
    }
    format!("{}{}{}", &text[..start], body.into_iter().collect::<String>(), &text[end..])
}

/// The request bodies that carry a CSR, and how each dialect reaches the text.
#[derive(Debug, Clone, Copy)]
enum Wrapper {
    /// The text as `parse_pkcs10` receives it.
    Bare,
    /// Venafi `POST /vedsdk/Certificates/Request`: `PKCS10`.
    Venafi,
    /// Keyfactor classic `POST /CMSApi/CertEnroll/3/Pkcs10`: `Request.Pkcs10Request`.
    KeyfactorClassic,
    /// Keyfactor `POST /KeyfactorAPI/Enrollment/CSR`: `CSR`.
    KeyfactorCsr,
}

fn wrapper() -> impl Strategy<Value = Wrapper> {
    prop::sample::select(vec![Wrapper::Bare, Wrapper::Venafi, Wrapper::KeyfactorClassic, Wrapper::KeyfactorCsr])
}

/// Builds the body the way a client would (key casing varies: keys are case-insensitive) and
/// reads it back the way the handler does.
fn through_body(csr: &str, how: Wrapper, upper: bool) -> Result<Option<String>, String> {
    let key = |k: &str| if upper { k.to_ascii_uppercase() } else { k.to_string() };
    let (body, read): (serde_json::Value, fn(&LenientBody) -> Option<String>) = match how {
        Wrapper::Bare => return Ok(Some(csr.to_string())),
        Wrapper::Venafi => (serde_json::json!({ key("PKCS10"): csr }), |b| b.nonblank("PKCS10").ok().flatten()),
        Wrapper::KeyfactorClassic => (serde_json::json!({ key("Request"): { key("Pkcs10Request"): csr } }), |b| {
            // As classic.rs's `envelope`: the inner object is read leniently too.
            match b.get("Request") {
                Some(serde_json::Value::Object(m)) => {
                    LenientBody::from_map(m.clone()).nonblank("Pkcs10Request").ok().flatten()
                }
                _ => None,
            }
        }),
        Wrapper::KeyfactorCsr => (serde_json::json!({ key("CSR"): csr }), |b| b.nonblank("CSR").ok().flatten()),
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let parsed = LenientBody::parse(&bytes).map_err(|e| e.to_string())?;
    Ok(read(&parsed))
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text (any Unicode, up to 64 KiB) and text over the PEM/base64 alphabet: an error
    /// or a verified request, never a panic.
    #[test]
    fn arbitrary_text_never_panics(input in prop_oneof![text(), parser_text()]) {
        within_deadline(move || {
            if let Ok(req) = parse_pkcs10(&input) {
                // What it returns has a verified signature.
                // Checked again by OpenSSL's own decoder, on the bytes as received.
                let ossl = X509Req::from_der(req.der()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let key = ossl.public_key().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(ossl.verify(&key).unwrap_or(false));
            }
            Ok(())
        })?;
    }

    /// Arbitrary bytes as ACME finalize's DER (after base64url) and as a PKCS#10 text body.
    #[test]
    fn arbitrary_bytes_never_panic(input in bytes()) {
        within_deadline(move || {
            if let Ok(req) = Csr::from_der(&input) {
                let _ = SanSet::of_csr(&req);
                let _ = check_csr(&req, &[]);
            }
            let _ = parse_pkcs10(&String::from_utf8_lossy(&input));
            Ok(())
        })?;
    }

    /// A valid request in every encoding, inside every dialect's body, with whitespace sprinkled
    /// in the base64, parses back to the same DER and the same subjectAltNames.
    #[test]
    fn valid_requests_round_trip(
        spec in csr_spec(),
        how in encoding(),
        wrap in wrapper(),
        upper in any::<bool>(),
        spaces in prop::collection::vec((any::<Index>(), prop::sample::select(vec![' ', '\t', '\n', '\r'])), 0..8),
    ) {
        within_deadline(move || {
            let req = build_csr(&spec);
            let der = req.to_der().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let text = sprinkle_whitespace(&encode(&der, how), &spaces);
            let text = through_body(&text, wrap, upper).map_err(TestCaseError::fail)?;
            prop_assert!(text.is_some(), "the body lost the CSR");
            let parsed = parse_pkcs10(&text.unwrap_or_default())
                .map_err(|e| TestCaseError::fail(format!("{how:?} in {wrap:?}: {e:?}")))?;
            prop_assert_eq!(parsed.to_der().map_err(|e| TestCaseError::fail(e.to_string()))?, der);
            let sans = SanSet::of_csr(&parsed);
            prop_assert_eq!(&sans.dns, &spec.sans.dns);
            prop_assert_eq!(&sans.ip, &spec.sans.ip);
            prop_assert_eq!(&sans.email, &spec.sans.email);
            prop_assert_eq!(&sans.uri, &spec.sans.uri);
            // The UPNs are the UTF8String values that are UTF-8, in order; other types are skipped.
            let odd_utf8 = spec.odd_upns.iter().filter(|(tag, _)| *tag == UTF8_STRING);
            let expected_upns: Vec<String> = spec
                .sans
                .upn
                .iter()
                .cloned()
                .chain(odd_utf8.filter_map(|(_, v)| String::from_utf8(v.clone()).ok()))
                .collect();
            prop_assert_eq!(&sans.upn, &expected_upns);
            Ok(())
        })?;
    }

    /// A valid encoded request with bytes flipped, inserted, deleted: refused, or the same signed
    /// content (the signature covers the subject and the key).
    #[test]
    fn mutated_text_is_refused_or_unchanged(spec in csr_spec(), how in encoding(), edits in mutations()) {
        within_deadline(move || {
            let req = build_csr(&spec);
            let der = req.to_der().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mutated = mutate(encode(&der, how).as_bytes(), &edits);
            if let Ok(parsed) = parse_pkcs10(&String::from_utf8_lossy(&mutated)) {
                let same_subject = parsed.subject_name().to_der().ok() == req.subject_name().to_der().ok();
                let same_key = match (parsed.public_key(), req.public_key()) {
                    (Ok(a), Ok(b)) => a.public_eq(&b),
                    _ => false,
                };
                prop_assert!(same_subject && same_key, "a mutated CSR verified with other content");
                let _ = SanSet::of_csr(&parsed);
            }
            Ok(())
        })?;
    }

    /// ACME finalize's DER with bytes flipped, inserted, deleted: the parser, the SAN reader
    /// (its own otherName DER walk) and the order check never panic.
    #[test]
    fn mutated_der_never_panics(spec in csr_spec(), edits in mutations()) {
        within_deadline(move || {
            let der = build_csr(&spec).to_der().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mutated = mutate(&der, &edits);
            if let Ok(req) = Csr::from_der(&mutated) {
                let _ = SanSet::of_csr(&req);
                let _ = SanSet::general_names_in_csr(&req);
                let order = Identifier::parse("dns", &spec.common_name).map(|i| vec![i]).unwrap_or_default();
                let _ = check_csr(&req, &order);
            }
            Ok(())
        })?;
    }

    /// `Csr::from_der` (its EC fast path splits the DER itself) against OpenSSL's own decoder,
    /// on valid requests and on mutated ones: the same verdict on the signature, and for a
    /// request that verifies the same DER, subject, key and subjectAltNames.
    #[test]
    fn csr_decoding_agrees_with_openssl(spec in csr_spec(), edits in mutations(), mutate_it in any::<bool>()) {
        within_deadline(move || {
            let der = build_csr(&spec).to_der().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let der = if mutate_it { mutate(&der, &edits) } else { der };
            let ours = Csr::from_der(&der);
            let theirs = X509Req::from_der(&der);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok());
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                let theirs_ok = theirs.public_key().map(|k| theirs.verify(&k).unwrap_or(false)).unwrap_or(false);
                let _ = openssl::error::ErrorStack::get();
                prop_assert_eq!(ours.signature_verifies(), theirs_ok);
                if !mutate_it {
                    prop_assert!(ours.signature_verifies());
                }
                if theirs_ok {
                    prop_assert_eq!(ours.der(), &der[..]);
                    prop_assert_eq!(ours.subject_name().to_der().ok(), theirs.subject_name().to_der().ok());
                    let (a, b) = (ours.public_key(), theirs.public_key());
                    prop_assert!(matches!((a, b), (Ok(a), Ok(b)) if a.public_eq(&b)));
                    let (a, b) = (SanSet::of_csr(&ours), SanSet::of_csr(&theirs));
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(SanSet::general_names_in_csr(&ours), SanSet::general_names_in_csr(&theirs));
                }
            }
            Ok(())
        })?;
    }
}
