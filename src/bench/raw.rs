//! The raw cost of the crypto one renewal needs, on one thread, measured in the same run as the
//! load: parse and verify a CSR (with the gateway's `Csr::from_der`: the issue asks that a faster
//! decoding path the gateway takes be the one measured here), build a leaf with the openssl crate's `X509Builder` (SAN, SKI,
//! AKI, KU, EKU, BasicConstraints) signed by a P-256 issuing key, and generate keys. This is the
//! baseline the gateway is compared with, so it is written here on purpose and does not call the
//! gateway's own leaf builder. `openssl speed` P-256 figures are printed beside it.
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509Req, X509ReqBuilder};
use renewgate_core::engine::csr::Csr;

/// Rates per second on one thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawRates {
    pub csr_verify: f64,
    pub leaf_sign_ec: f64,
    pub leaf_sign_rsa: f64,
    pub keygen_ec: f64,
    pub keygen_rsa: f64,
}

/// `openssl speed` ECDSA P-256 figures.
#[derive(Debug, Clone, Default)]
pub struct OpensslSpeed {
    pub sign_per_s: Option<f64>,
    pub verify_per_s: Option<f64>,
    pub line: String,
}

pub fn ec_key() -> anyhow::Result<PKey<Private>> {
    let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&g)?)?)
}

/// A PKCS#10 request for `cn` (CN and one DNS SAN), signed by `key`.
pub fn make_csr(key: &PKey<Private>, cn: &str) -> anyhow::Result<X509Req> {
    let mut b = X509ReqBuilder::new()?;
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    b.set_subject_name(&name)?;
    b.set_pubkey(key)?;
    let mut exts = Stack::new()?;
    exts.push(SubjectAlternativeName::new().dns(cn).build(&b.x509v3_context(None))?)?;
    b.add_extensions(&exts)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

pub fn self_signed_ca(key: &PKey<Private>) -> anyhow::Result<X509> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "Bench Raw Issuing CA")?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    let nb = Asn1Time::days_from_now(0)?;
    let na = Asn1Time::days_from_now(365)?;
    b.set_not_before(&nb)?;
    b.set_not_after(&na)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// One leaf the way a CA builds it: subject from the request, random 128-bit serial, SAN, SKI,
/// AKI, KU, EKU, BasicConstraints; signed by the issuing key; DER-encoded.
pub fn build_leaf(
    ca: &X509,
    ca_key: &PKey<Private>,
    subject: &openssl::x509::X509NameRef,
    pubkey: &PKey<Public>,
    dns: &str,
    ip: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut sn = BigNum::new()?;
    sn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = sn.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(subject)?;
    b.set_issuer_name(ca.subject_name())?;
    // As the gateway does (`ca::legacy_form`): OpenSSL 3 encodes a legacy-form key directly.
    let legacy = renewgate_core::ca::legacy_form(pubkey);
    b.set_pubkey(legacy.as_deref().unwrap_or(pubkey))?;
    let nb = Asn1Time::days_from_now(0)?;
    let na = Asn1Time::days_from_now(90)?;
    b.set_not_before(&nb)?;
    b.set_not_after(&na)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    let is_rsa = pubkey.rsa().is_ok();
    let mut ku = KeyUsage::new();
    ku.critical().digital_signature();
    if is_rsa {
        ku.key_encipherment();
    }
    b.append_extension(ku.build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(aki)?;
    let mut san = SubjectAlternativeName::new();
    san.dns(dns);
    if let Some(ip) = ip {
        san.ip(ip);
    }
    let san = san.build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(san)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok(b.build().to_der()?)
}

/// Runs `f` repeatedly for about `budget` (at least `min_iters` times); returns calls per second.
fn rate(budget: Duration, min_iters: u32, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    // Warm-up.
    f()?;
    let start = Instant::now();
    let mut n = 0u32;
    while n < min_iters || start.elapsed() < budget {
        f()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Measures the raw rates on the calling thread. RSA key generation only when `with_rsa`.
pub fn measure(with_rsa: bool) -> anyhow::Result<RawRates> {
    let ca_key = ec_key()?;
    let ca = self_signed_ca(&ca_key)?;
    let leaf_key = ec_key()?;
    let csr_der = make_csr(&leaf_key, "raw.bench.example")?.to_der()?;
    let budget = Duration::from_millis(700);
    let csr_verify = rate(budget, 50, || {
        // The gateway's own decoding (`Csr::from_der`): split, key, signature check.
        let req = Csr::from_der(&csr_der)?;
        anyhow::ensure!(req.signature_verifies(), "CSR signature does not verify");
        req.public_key()?;
        Ok(())
    })?;
    let req = Csr::from_der(&csr_der)?;
    let ec_pub = req.public_key()?;
    let leaf_sign_ec = rate(budget, 50, || {
        build_leaf(&ca, &ca_key, req.subject_name(), &ec_pub, "raw.bench.example", None).map(|_| ())
    })?;
    let rsa_pub = PKey::public_key_from_der(&PKey::from_rsa(Rsa::generate(2048)?)?.public_key_to_der()?)?;
    let leaf_sign_rsa = rate(budget, 50, || {
        build_leaf(&ca, &ca_key, req.subject_name(), &rsa_pub, "raw.bench.example", None).map(|_| ())
    })?;
    let keygen_ec = rate(budget, 50, || ec_key().map(|_| ()))?;
    let keygen_rsa = if with_rsa {
        rate(Duration::from_secs(3), 5, || {
            PKey::from_rsa(Rsa::generate(2048)?)?;
            Ok(())
        })?
    } else {
        0.0
    };
    Ok(RawRates { csr_verify, leaf_sign_ec, leaf_sign_rsa, keygen_ec, keygen_rsa })
}

/// `openssl speed -seconds 1 ecdsap256`: the P-256 sign/s and verify/s columns.
pub fn openssl_speed() -> OpensslSpeed {
    let out = std::process::Command::new("openssl").args(["speed", "-seconds", "1", "ecdsap256"]).output();
    let Ok(out) = out else {
        return OpensslSpeed {
            line: "openssl speed: the openssl command is not available".into(),
            ..Default::default()
        };
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if line.contains("ecdsa") && line.contains("nistp256") {
            let nums: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse::<f64>().ok()).collect();
            // "256 bits ecdsa (nistp256)   0.0000s   0.0001s  41623.0  13359.0"
            if nums.len() >= 3 {
                let n = nums.len();
                return OpensslSpeed {
                    sign_per_s: Some(nums[n - 2]),
                    verify_per_s: Some(nums[n - 1]),
                    line: line.trim().to_string(),
                };
            }
        }
    }
    OpensslSpeed { line: format!("openssl speed: unexpected output: {}", text.trim()), ..Default::default() }
}

/// Combined rate of steps done one after the other: 1 / Σ(1/rate).
pub fn serial_rate(rates: &[f64]) -> f64 {
    let t: f64 = rates.iter().filter(|r| **r > 0.0).map(|r| 1.0 / r).sum();
    if t > 0.0 { 1.0 / t } else { 0.0 }
}
