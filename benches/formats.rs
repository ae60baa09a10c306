//! Encode time per certificate for every output format (a plain bench binary; run with
//! `cargo bench --bench formats`). Prints one line per (format, key type) with the mean time and
//! the same-run baseline: the raw PEM encoding of the leaf alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark harness: a failed setup step is the run failing"
)]
use std::time::{Duration, Instant};

use openssl::pkey::PKey;
use openssl::x509::X509NameBuilder;
use renewgate::ca::builtin::make_ca_cert;
use renewgate::ca::{EcCurve, KeySpec, LeafTemplate, SanSet, build_leaf};
use renewgate::engine::inventory::CertBundle;
use renewgate::formats::{OutputFormat, OutputOptions, Pkcs12Profile, render};

fn bundle(spec: KeySpec) -> CertBundle {
    let (root, root_key) = make_ca_cert(KeySpec::Ec(EcCurve::P256), "Bench Root", "Bench", None, 3650).unwrap();
    let (iss, iss_key) =
        make_ca_cert(KeySpec::Ec(EcCurve::P256), "Bench Issuing", "Bench", Some((&root, &root_key)), 3650).unwrap();
    let key = spec.generate().unwrap();
    let public = PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap();
    let mut nb = X509NameBuilder::new().unwrap();
    nb.append_entry_by_text("CN", "bench.example.com").unwrap();
    let name = nb.build();
    let sans = SanSet { dns: vec!["bench.example.com".into()], ..Default::default() };
    // As the built-in CA issues it: with its CRL and CA-certificate URLs.
    let urls = renewgate::ca::IssuerUrls::new("http://127.0.0.1:8080", "issuing");
    let leaf = build_leaf(
        &iss,
        &iss_key,
        &LeafTemplate {
            subject: &name,
            sans: &sans,
            public_key: &public,
            validity_secs: 86400,
            ekus: &[],
            not_after_max: None,
            urls: Some(&urls),
        },
    )
    .unwrap();
    CertBundle { leaf, chain: vec![iss, root], key: Some(key) }
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    // Warm up, then run for at least 0.5 s.
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(500) || n < 10 {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    println!("{:<34} {:>8} {:>14}", "format", "key", "per cert");
    for (kname, spec) in [("P-256", KeySpec::Ec(EcCurve::P256)), ("RSA-2048", KeySpec::Rsa(2048))] {
        let b = bundle(spec);
        let baseline = time(|| {
            std::hint::black_box(b.leaf.to_pem().unwrap());
        });
        println!(
            "{:<34} {:>8} {:>11.1} µs   (baseline: leaf to PEM)",
            "raw X509::to_pem",
            kname,
            baseline.as_secs_f64() * 1e6
        );
        let cases: [(&str, OutputFormat, bool, Pkcs12Profile); 8] = [
            ("Base64 (chain)", OutputFormat::Base64, false, Pkcs12Profile::Modern),
            ("Base64 + encrypted key", OutputFormat::Base64, true, Pkcs12Profile::Modern),
            ("Base64 (PKCS #8) + key", OutputFormat::Base64Pkcs8, true, Pkcs12Profile::Modern),
            ("DER", OutputFormat::Der, false, Pkcs12Profile::Modern),
            ("PKCS #7 (chain)", OutputFormat::Pkcs7, false, Pkcs12Profile::Modern),
            ("PKCS #12 modern (10,000 iter)", OutputFormat::Pkcs12, true, Pkcs12Profile::Modern),
            ("PKCS #12 legacy (2,048 iter)", OutputFormat::Pkcs12, true, Pkcs12Profile::Legacy),
            ("JKS + key", OutputFormat::Jks, true, Pkcs12Profile::Modern),
        ];
        for (label, format, key, profile) in cases {
            let opts = OutputOptions {
                format,
                include_chain: true,
                root_first: false,
                include_private_key: key,
                password: Some("Str0ng!Passw0rd#1".into()),
                keystore_password: Some("St0re!Passw0rd#1".into()),
                friendly_name: Some("bench".into()),
                pkcs12_profile: profile,
            };
            let d = time(|| {
                std::hint::black_box(render(&b, &opts).unwrap());
            });
            println!(
                "{:<34} {:>8} {:>11.1} µs   ({:.0}× baseline)",
                label,
                kname,
                d.as_secs_f64() * 1e6,
                d.as_secs_f64() / baseline.as_secs_f64()
            );
        }
    }
}
