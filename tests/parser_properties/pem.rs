//! PEM bundles: uploaded chains (`renewgate cert import`, an agent's pushed chain) are read with
//! OpenSSL's `X509::stack_from_pem`, then by the gateway's own readers (subjectAltNames with
//! its otherName DER walk, the ARI certID, thumbprints); `formats::pem::render` writes the
//! bundles clients download. Any bytes give certificates or an error; concatenated certificates
//! (any line endings, blank lines, text between blocks) come back in order; what the renderer
//! writes reads back as the certificates and key it was given.
use std::sync::OnceLock;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use proptest::prelude::*;
use proptest::sample::Index;
use renewgate_core::acme::renewal_info::{cert_id, parse_cert_id};
use renewgate_core::ca::{EcCurve, KeySpec, LeafTemplate, SanSet, build_leaf, common_name, thumbprint};
use renewgate_core::engine::inventory::CertBundle;
use renewgate_core::formats::{OutputFormat, OutputOptions, Pkcs12Profile, ordered_certs, pem};

use crate::support::{bytes, config, mutate, mutations, within_deadline};

/// A root, an intermediate and a leaf (with every SAN type, UPN included), built once.
struct Pki {
    root: X509,
    intermediate: X509,
    leaf: X509,
    leaf_key: PKey<Private>,
}

fn ca_cert(cn: &str, issuer: Option<(&X509, &PKey<Private>)>, key: &PKey<Private>) -> X509 {
    let mut name = X509NameBuilder::new().expect("name builder");
    name.append_entry_by_text("CN", cn).expect("CN");
    let name = name.build();
    let mut b = X509Builder::new().expect("certificate builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bignum");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("serial");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial")).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name())).expect("issuer");
    b.set_pubkey(key).expect("public key");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("notBefore");
    b.set_not_after(&Asn1Time::days_from_now(3650).expect("time")).expect("notAfter");
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc")).expect("bc");
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().expect("ku")).expect("ku");
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None));
    b.append_extension(ski.expect("ski")).expect("ski");
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256()).expect("signing");
    b.build()
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let key = || KeySpec::Ec(EcCurve::P256).generate().expect("generating a P-256 key");
        let (root_key, intermediate_key, leaf_key) = (key(), key(), key());
        let root = ca_cert("Property Root", None, &root_key);
        let intermediate = ca_cert("Property Issuing CA", Some((&root, &root_key)), &intermediate_key);
        let mut name = X509NameBuilder::new().expect("name builder");
        name.append_entry_by_text("CN", "leaf.example.com").expect("CN");
        let sans = SanSet {
            dns: vec!["leaf.example.com".into()],
            ip: vec!["192.0.2.1".into()],
            email: vec!["pki@example.com".into()],
            uri: vec!["https://example.com/leaf".into()],
            upn: vec!["user@corp.example.com".into()],
        };
        let public = PKey::public_key_from_der(&leaf_key.public_key_to_der().expect("DER")).expect("public key");
        let leaf = build_leaf(
            &intermediate,
            &intermediate_key,
            &LeafTemplate {
                subject: &name.build(),
                sans: &sans,
                public_key: &public,
                validity_secs: 86_400,
                ekus: &[],
                not_after_max: None,
                urls: None,
            },
        )
        .expect("issuing the leaf");
        Pki { root, intermediate, leaf, leaf_key }
    })
}

/// What the gateway reads from a certificate it was handed.
fn read_like_the_gateway(cert: &X509) {
    let _ = SanSet::of_cert(cert);
    let _ = common_name(cert.subject_name());
    let _ = cert.to_der().map(|der| thumbprint(&der));
    if let Some(id) = cert_id(cert) {
        let _ = parse_cert_id(&id);
    }
    let _ = cert.to_text();
}

/// How a bundle file may be laid out around its PEM blocks.
#[derive(Debug, Clone)]
struct Layout {
    crlf: bool,
    /// Text before each block: nothing, blank lines, or `openssl x509 -subject -issuer` lines.
    preambles: Vec<Index>,
    trailing: &'static str,
}

const PREAMBLES: &[&str] =
    &["", "\n", "\n\n", "subject=CN = Property\nissuer=CN = Property Root\n", "Bag Attributes\n    friendlyName: x\n"];

fn layout() -> impl Strategy<Value = Layout> {
    (any::<bool>(), prop::collection::vec(any::<Index>(), 6), prop::sample::select(vec!["", "\n", "  \n\n", "\r\n"]))
        .prop_map(|(crlf, preambles, trailing)| Layout { crlf, preambles, trailing })
}

fn concatenate(certs: &[X509], layout: &Layout) -> Vec<u8> {
    let mut out = String::new();
    for (i, cert) in certs.iter().enumerate() {
        out.push_str(layout.preambles.get(i).map_or("", |p| PREAMBLES[p.index(PREAMBLES.len())]));
        out.push_str(&String::from_utf8_lossy(&cert.to_pem().expect("PEM")));
    }
    out.push_str(layout.trailing);
    if layout.crlf {
        out = out.replace('\n', "\r\n");
    }
    out.into_bytes()
}

fn ders(certs: &[X509]) -> Result<Vec<Vec<u8>>, TestCaseError> {
    certs.iter().map(|c| c.to_der().map_err(|e| TestCaseError::fail(e.to_string()))).collect()
}

/// Up to six certificates of the PKI, in any order, repeats allowed.
fn cert_sequence() -> impl Strategy<Value = Vec<X509>> {
    prop::collection::vec(0usize..3, 1..=6).prop_map(|picks| {
        let p = pki();
        picks.into_iter().map(|i| [&p.leaf, &p.intermediate, &p.root][i].clone()).collect()
    })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes (up to 64 KiB): certificates or an error, and the gateway's readers answer
    /// on whatever certificates come out.
    #[test]
    fn arbitrary_bytes_never_panic(input in bytes()) {
        within_deadline(move || {
            if let Ok(certs) = X509::stack_from_pem(&input) {
                certs.iter().for_each(read_like_the_gateway);
            }
            if let Ok(cert) = X509::from_der(&input) {
                read_like_the_gateway(&cert);
            }
            Ok(())
        })?;
    }

    /// Concatenated certificates read back in order, whatever the line endings and the text
    /// between blocks.
    #[test]
    fn concatenated_certificates_round_trip(certs in cert_sequence(), layout in layout()) {
        within_deadline(move || {
            let read = X509::stack_from_pem(&concatenate(&certs, &layout))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(ders(&read)?, ders(&certs)?);
            Ok(())
        })?;
    }

    /// A valid bundle (PEM text) and a valid certificate (DER) with bytes flipped, inserted,
    /// deleted: certificates or an error, and the gateway's readers (the otherName DER walk of
    /// the leaf's subjectAltName among them) answer.
    #[test]
    fn mutated_bundles_never_panic(certs in cert_sequence(), layout in layout(), edits in mutations()) {
        within_deadline(move || {
            if let Ok(read) = X509::stack_from_pem(&mutate(&concatenate(&certs, &layout), &edits)) {
                read.iter().for_each(read_like_the_gateway);
            }
            let der = pki().leaf.to_der().map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Ok(cert) = X509::from_der(&mutate(&der, &edits)) {
                read_like_the_gateway(&cert);
            }
            Ok(())
        })?;
    }

    /// What `formats::pem::render` writes reads back as the certificates it was asked for, in
    /// order, and the encrypted key block opens with the password to the leaf's key.
    #[test]
    fn rendered_bundles_round_trip(
        pkcs8 in any::<bool>(),
        include_chain in any::<bool>(),
        root_first in any::<bool>(),
        include_private_key in any::<bool>(),
        password in "[A-Za-z0-9!#%]{8,24}",
    ) {
        within_deadline(move || {
            let p = pki();
            let bundle = CertBundle {
                leaf: p.leaf.clone(),
                chain: vec![p.intermediate.clone(), p.root.clone()],
                key: Some(p.leaf_key.clone()),
            };
            let opts = OutputOptions {
                format: if pkcs8 { OutputFormat::Base64Pkcs8 } else { OutputFormat::Base64 },
                include_chain,
                root_first,
                include_private_key,
                password: Some(password.clone()),
                keystore_password: None,
                friendly_name: None,
                pkcs12_profile: Pkcs12Profile::Modern,
            };
            let (out, _) = pem::render(&bundle, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let read = X509::stack_from_pem(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(ders(&read)?, ders(&ordered_certs(&bundle, &opts))?);
            let key = PKey::private_key_from_pem_passphrase(&out, password.as_bytes());
            if include_private_key {
                let key = key.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(key.public_eq(&p.leaf_key));
            } else {
                prop_assert!(key.is_err(), "a key block was written without being asked for");
            }
            Ok(())
        })?;
    }
}
