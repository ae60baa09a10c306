//! PKCS#10 input as clients really send it: PEM with or without line breaks, with literal
//! `\n` / `\r\n` escapes, or bare base64 DER.
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

pub use crate::ca::csr::Csr;

use super::error::RenewError;

pub fn parse_pkcs10(text: &str) -> Result<Csr, RenewError> {
    let unescaped = text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\r", "\n");
    let mut body = String::with_capacity(unescaped.len());
    let mut in_block = !unescaped.contains("-----BEGIN");
    // Collect the base64 between the BEGIN and END markers (or everything if there are none),
    // tolerating markers and data on one line.
    let mut rest = unescaped.as_str();
    if !in_block && let Some(i) = rest.find("-----BEGIN") {
        rest = &rest[i + 10..];
        if let Some(j) = rest.find("-----") {
            rest = &rest[j + 5..];
            in_block = true;
        }
    }
    if !in_block {
        return Err(RenewError::CsrNotBase64("no CERTIFICATE REQUEST block found".into()));
    }
    let end = rest.find("-----END").unwrap_or(rest.len());
    for c in rest[..end].chars() {
        if !c.is_whitespace() {
            body.push(c);
        }
    }
    if body.is_empty() {
        return Err(RenewError::CsrNotBase64("the PKCS#10 data is empty".into()));
    }
    let der = B64
        .decode(body.as_bytes())
        .map_err(|e| RenewError::CsrNotBase64(format!("The input is not a valid Base-64 string. {e}")))?;
    let csr = Csr::from_der(&der)
        .map_err(|_| RenewError::CsrNotBase64("The data is not a valid PKCS#10 certificate signing request.".into()))?;
    if csr.signature_verifies() { Ok(csr) } else { Err(RenewError::CsrInvalidSignature) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::x509::{X509NameBuilder, X509Req, X509ReqBuilder};

    fn sample_csr_pem() -> String {
        let key = crate::ca::KeySpec::Ec(crate::ca::EcCurve::P256).generate().unwrap();
        let mut nb = X509NameBuilder::new().unwrap();
        nb.append_entry_by_text("CN", "a.example.com").unwrap();
        let mut b = X509ReqBuilder::new().unwrap();
        b.set_subject_name(&nb.build()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    }

    #[test]
    fn accepts_every_shape_clients_send() {
        let pem = sample_csr_pem();
        assert!(parse_pkcs10(&pem).is_ok());
        assert!(parse_pkcs10(&pem.replace('\n', "")).is_ok());
        assert!(parse_pkcs10(&pem.replace('\n', "\\n")).is_ok());
        assert!(parse_pkcs10(&pem.replace('\n', "\\r\\n")).is_ok());
        assert!(parse_pkcs10(&pem.replace('\n', "\r\n")).is_ok());
        let bare: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(parse_pkcs10(&bare).is_ok());
    }

    #[test]
    fn rejects_garbage_and_bad_signatures() {
        assert!(matches!(parse_pkcs10("not base64 !!!"), Err(RenewError::CsrNotBase64(_))));
        assert!(matches!(parse_pkcs10("aGVsbG8="), Err(RenewError::CsrNotBase64(_))));
        // Flip a byte inside the signature: still parses, no longer verifies.
        let pem = sample_csr_pem();
        let req = X509Req::from_pem(pem.as_bytes()).unwrap();
        let mut der = req.to_der().unwrap();
        let n = der.len();
        der[n - 3] ^= 0x01;
        let b64 = B64.encode(&der);
        assert!(matches!(parse_pkcs10(&b64), Err(RenewError::CsrInvalidSignature) | Err(RenewError::CsrNotBase64(_))));
    }
}
