//! tls-alpn-01 (RFC 8737, RFC 8738 §6): a TLS handshake with the identifier on
//! `acme.validation.tlsalpn01_port`, offering only the `acme-tls/1` protocol; the certificate
//! presented must name exactly the identifier and carry a critical acmeIdentifier extension
//! holding SHA-256 of the key authorization. No chain check: the certificate is a self-signed
//! proof, not an identity.
//!
//! The handshake runs through tokio-openssl on the tokio socket, so the validation's deadline
//! bounds it like everything else.
use std::net::IpAddr;
use std::pin::Pin;

use foreign_types::ForeignTypeRef;
use openssl::asn1::Asn1Object;
use openssl::error::ErrorStack;
use openssl::ssl::{Ssl, SslContext, SslMethod, SslRef, SslVerifyMode, SslVersion};
use openssl::x509::X509Ref;
use tokio::time::Instant;
use tokio_openssl::SslStream;

use super::targets::{self, Host, Lookup};
use super::{Failure, FailureKind};

/// The ALPN protocol of the challenge (RFC 8737 §6.2), and its wire form (length-prefixed).
const ACME_TLS_1: &[u8] = b"acme-tls/1";
const ACME_TLS_1_WIRE: &[u8] = b"\x0aacme-tls/1";
/// The OID of the acmeIdentifier extension (RFC 8737 §6.1).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

pub(super) async fn validate(
    lookup: &mut Lookup<'_>,
    host: &Host,
    key_authorization: &str,
    deadline: Instant,
) -> Result<(), Failure> {
    let port = lookup.settings().tlsalpn01_port;
    let addresses = lookup.addresses(host).await?;
    let tcp = targets::connect(&host.to_string(), &addresses, port, deadline).await?;
    let target = format!("{}:{port}", host.authority());
    let ssl = client(&server_name(host)).map_err(|e| {
        Failure::new(FailureKind::ServerInternal, format!("preparing the TLS connection to {target}: {e}"))
    })?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| {
        Failure::new(FailureKind::ServerInternal, format!("preparing the TLS connection to {target}: {e}"))
    })?;
    if let Err(e) = Pin::new(&mut stream).connect().await {
        // The error took what it reports off the queue; drop whatever else a failed handshake
        // left there, so no later OpenSSL call on this thread reads it as its own.
        let _ = ErrorStack::get();
        return Err(Failure::new(FailureKind::Tls, format!("TLS handshake with {target} failed: {e}")));
    }
    check(stream.ssl(), host, &target, key_authorization)
}

/// The name sent in SNI: the DNS name, or for an IP address its reverse-DNS name (RFC 8738 §6),
/// since SNI cannot carry an address.
fn server_name(host: &Host) -> String {
    match host {
        Host::Name(name) => name.clone(),
        Host::Ip(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Host::Ip(IpAddr::V6(v6)) => {
            let mut labels: Vec<String> =
                v6.octets().iter().rev().flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)]).collect();
            labels.push("ip6.arpa".into());
            labels.join(".")
        }
    }
}

/// A client connection offering only `acme-tls/1`, verifying nothing (the certificate is checked
/// by [`check`]), TLS 1.2 or later as RFC 8737 §4 requires. A bare context rather than
/// `SslConnector`, which would load the system's trust store from disk for nothing.
fn client(server_name: &str) -> Result<Ssl, ErrorStack> {
    let mut ctx = SslContext::builder(SslMethod::tls_client())?;
    ctx.set_verify(SslVerifyMode::NONE);
    ctx.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    ctx.set_alpn_protos(ACME_TLS_1_WIRE)?;
    let mut ssl = Ssl::new(&ctx.build())?;
    ssl.set_hostname(server_name)?;
    Ok(ssl)
}

/// The proof on an established connection: `acme-tls/1` negotiated, one subjectAltName equal to
/// the identifier, a critical acmeIdentifier extension with the key authorization's digest.
/// Details say what is wrong, never what the certificate holds instead (the peer's content).
fn check(ssl: &SslRef, host: &Host, target: &str, key_authorization: &str) -> Result<(), Failure> {
    let incorrect = |detail: String| Err(Failure::new(FailureKind::IncorrectResponse, detail));
    if ssl.selected_alpn_protocol() != Some(ACME_TLS_1) {
        return Err(Failure::new(FailureKind::Tls, format!("{target} did not negotiate the acme-tls/1 protocol")));
    }
    let Some(cert) = ssl.peer_certificate() else {
        return Err(Failure::new(FailureKind::Tls, format!("{target} sent no certificate")));
    };
    let names = subject_alt_names(&cert);
    if names.len() != 1 {
        return incorrect(format!(
            "the tls-alpn-01 certificate of {target} has {} subjectAltName entries; it must have exactly one, {host}",
            names.len()
        ));
    }
    if names[0].as_ref() != Some(host) {
        return incorrect(format!(
            "the tls-alpn-01 certificate of {target} does not name {host} in its subjectAltName"
        ));
    }
    let Some(ext) = acme_identifier(&cert) else {
        return incorrect(format!("the tls-alpn-01 certificate of {target} has no acmeIdentifier extension"));
    };
    if ext.repeated {
        return incorrect(format!(
            "the tls-alpn-01 certificate of {target} has more than one acmeIdentifier extension"
        ));
    }
    if !ext.critical {
        return incorrect(format!("the acmeIdentifier extension of {target}'s certificate is not critical"));
    }
    // The extension's value is the DER of `Authorization ::= OCTET STRING (SIZE (32))`.
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&openssl::sha::sha256(key_authorization.as_bytes()));
    if ext.value != expected {
        return incorrect(format!(
            "the acmeIdentifier extension of {target}'s certificate does not hold the digest of the key authorization"
        ));
    }
    Ok(())
}

/// The certificate's subjectAltName entries as hosts; `None` for an entry that is neither a
/// well-formed DNS name nor an IP address (it still counts: the proof must name one thing only).
fn subject_alt_names(cert: &X509Ref) -> Vec<Option<Host>> {
    let Some(names) = cert.subject_alt_names() else {
        // Absent or malformed; decoding a malformed one leaves errors queued.
        let _ = ErrorStack::get();
        return Vec::new();
    };
    names
        .iter()
        .map(|g| match (g.dnsname(), g.ipaddress()) {
            (Some(d), _) => Host::from_text(d).filter(|h| matches!(h, Host::Name(_))),
            (_, Some(b)) => match b.len() {
                4 => <[u8; 4]>::try_from(b).ok().map(|a| Host::Ip(IpAddr::from(a))),
                16 => <[u8; 16]>::try_from(b).ok().map(|a| Host::Ip(IpAddr::from(a))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// What [`acme_identifier`] found of the extension.
struct AcmeIdentifier {
    critical: bool,
    /// The DER inside the extension's OCTET STRING.
    value: Vec<u8>,
    /// A second acmeIdentifier extension follows: an ambiguous proof.
    repeated: bool,
}

/// The acmeIdentifier extension's criticality and DER value. The openssl crate has no getter
/// for an arbitrary certificate extension, so this reads it through openssl-sys.
fn acme_identifier(cert: &X509Ref) -> Option<AcmeIdentifier> {
    // Parsing a constant OID does not fail; if it did, the error stack was taken off the queue.
    let oid = Asn1Object::from_str(ACME_IDENTIFIER_OID).ok()?;
    // SAFETY: `cert` and `oid` are live for the whole block; the extension and its data are
    // borrowed from `cert` and copied out before it ends.
    let found = unsafe {
        let idx = openssl_sys::X509_get_ext_by_OBJ(cert.as_ptr(), oid.as_ptr(), -1);
        if idx < 0 {
            None
        } else {
            let repeated = openssl_sys::X509_get_ext_by_OBJ(cert.as_ptr(), oid.as_ptr(), idx) >= 0;
            let ext = openssl_sys::X509_get_ext(cert.as_ptr(), idx);
            if ext.is_null() {
                None
            } else {
                let critical = openssl_sys::X509_EXTENSION_get_critical(ext) == 1;
                let data = openssl_sys::X509_EXTENSION_get_data(ext);
                if data.is_null() {
                    None
                } else {
                    let p = openssl_sys::ASN1_STRING_get0_data(data as *const _);
                    let n = openssl_sys::ASN1_STRING_length(data as *const _);
                    let value = if p.is_null() {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(p, n.max(0) as usize).to_vec()
                    };
                    Some(AcmeIdentifier { critical, value, repeated })
                }
            }
        }
    };
    if found.is_none() {
        // A lookup that found nothing may have queued an error; it is not one here.
        let _ = ErrorStack::get();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::validate::{ChallengeKind, Target, validate as validate_challenge};
    use crate::settings::AcmeValidationSettings;
    use openssl::asn1::{Asn1OctetString, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::{AlpnError, SslAcceptor};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509Extension, X509NameBuilder};
    use tokio::net::TcpListener;

    const KA: &str = "tok-en.thumbprint";

    struct Proof {
        sans: Vec<&'static str>,
        digest_of: &'static str,
        critical: bool,
    }

    fn certificate(proof: &Proof) -> (PKey<Private>, X509) {
        let key =
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
                .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "acme tls alpn challenge").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        if !proof.sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for s in &proof.sans {
                if s.parse::<IpAddr>().is_ok() {
                    san.ip(s);
                } else {
                    san.dns(s);
                }
            }
            let ext = san.build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&openssl::sha::sha256(proof.digest_of.as_bytes()));
        let oid = Asn1Object::from_str(ACME_IDENTIFIER_OID).unwrap();
        let value = Asn1OctetString::new_from_bytes(&der).unwrap();
        b.append_extension(X509Extension::new_from_der(&oid, proof.critical, &value).unwrap()).unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
        (key, b.build())
    }

    /// A tls-alpn-01 responder on 127.0.0.1 presenting `proof`'s certificate; returns its port
    /// and a receiver of the SNI names it saw.
    async fn responder(proof: Proof) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
        let (key, cert) = certificate(&proof);
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        acceptor.set_private_key(&key).unwrap();
        acceptor.set_certificate(&cert).unwrap();
        acceptor.set_alpn_select_callback(|_, client| {
            openssl::ssl::select_next_proto(ACME_TLS_1_WIRE, client).ok_or(AlpnError::ALERT_FATAL)
        });
        let acceptor = acceptor.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1 must work");
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let ssl = Ssl::new(acceptor.context()).unwrap();
                let mut s = SslStream::new(ssl, tcp).unwrap();
                if Pin::new(&mut s).accept().await.is_ok() {
                    let _ = tx.send(s.ssl().servername(openssl::ssl::NameType::HOST_NAME).map(str::to_string));
                }
            }
        });
        (port, rx)
    }

    fn settings(port: u16) -> AcmeValidationSettings {
        AcmeValidationSettings {
            tlsalpn01_port: port,
            hosts: vec!["site.test=127.0.0.1".into()],
            timeout_s: 5,
            allow_loopback: true,
            ..Default::default()
        }
    }

    async fn run(port: u16, identifier: &str) -> Result<(), Failure> {
        let t = Target { kind: ChallengeKind::TlsAlpn01, identifier, token: "tok-en", key_authorization: KA };
        validate_challenge(&settings(port), &t).await
    }

    #[tokio::test]
    async fn the_right_certificate_validates_a_name_and_an_address() {
        let (port, mut sni) = responder(Proof { sans: vec!["site.test"], digest_of: KA, critical: true }).await;
        assert_eq!(run(port, "site.test").await, Ok(()));
        assert_eq!(sni.recv().await.unwrap().as_deref(), Some("site.test"));

        let (port, mut sni) = responder(Proof { sans: vec!["127.0.0.1"], digest_of: KA, critical: true }).await;
        assert_eq!(run(port, "127.0.0.1").await, Ok(()));
        assert_eq!(sni.recv().await.unwrap().as_deref(), Some("1.0.0.127.in-addr.arpa"));
    }

    #[tokio::test]
    async fn a_wrong_proof_is_an_incorrect_response() {
        for (proof, expected) in [
            (Proof { sans: vec!["site.test"], digest_of: "other", critical: true }, "does not hold the digest"),
            (Proof { sans: vec!["site.test"], digest_of: KA, critical: false }, "not critical"),
            (Proof { sans: vec!["site.test", "more.test"], digest_of: KA, critical: true }, "2 subjectAltName"),
            (Proof { sans: vec!["else.test"], digest_of: KA, critical: true }, "does not name site.test"),
            (Proof { sans: vec![], digest_of: KA, critical: true }, "0 subjectAltName"),
        ] {
            let (port, _) = responder(proof).await;
            let f = run(port, "site.test").await.unwrap_err();
            assert_eq!(f.kind, FailureKind::IncorrectResponse, "{expected}");
            assert!(f.detail.contains(expected), "{expected}: {}", f.detail);
        }
    }

    #[tokio::test]
    async fn a_plain_tcp_peer_fails_the_handshake_and_leaves_no_openssl_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1 must work");
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let f = run(port, "site.test").await.unwrap_err();
        assert_eq!(f.kind, FailureKind::Tls, "{}", f.detail);
        assert!(ErrorStack::get().errors().is_empty());
    }

    #[test]
    fn ip_addresses_are_sent_as_reverse_names() {
        assert_eq!(server_name(&Host::parse("192.0.2.1").unwrap()), "1.2.0.192.in-addr.arpa");
        let v6 = server_name(&Host::parse("2001:db8::1").unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
        assert_eq!(v6.split('.').count(), 34);
    }
}
