//! ACME's JWS (`api::acme::jws`): the flattened JSON serialization, its protected header, the
//! account key from `jwk`, signature and EAB MAC verification. Any bytes give an error or a
//! JWS; a JWS signed here with an EC P-256 or an RSA key verifies and carries its payload back;
//! a mutated one is refused or says exactly what was signed.
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use proptest::prelude::*;
use renewgate::api::acme::jws::{Jws, canonical_jwk, key_from_jwk, thumbprint, verify_eab_mac};
use renewgate_core::ca::{EcCurve, KeySpec};
use serde_json::{Value, json};

use crate::support::{bytes, config, mutate, mutations, within_deadline};

/// The RSA account key (one for all cases: generating it is the slow part).
fn rsa_key() -> &'static PKey<Private> {
    static KEY: OnceLock<PKey<Private>> = OnceLock::new();
    KEY.get_or_init(|| {
        PKey::from_rsa(Rsa::generate(2048).expect("generating an RSA-2048 key")).expect("wrapping an RSA key")
    })
}

/// The EC P-256 account key.
fn ec_key() -> &'static PKey<Private> {
    static KEY: OnceLock<PKey<Private>> = OnceLock::new();
    KEY.get_or_init(|| KeySpec::Ec(EcCurve::P256).generate().expect("generating a P-256 key"))
}

fn public(key: &PKey<Private>) -> PKey<Public> {
    PKey::public_key_from_der(&key.public_key_to_der().expect("public key DER")).expect("public key")
}

/// The JWK of a key, as ACME clients send it (RFC 7518 §6).
fn jwk_of(key: &PKey<Private>) -> Value {
    if key.id() == Id::RSA {
        let r = key.rsa().expect("an RSA key");
        return json!({"kty": "RSA", "n": B64U.encode(r.n().to_vec()), "e": B64U.encode(r.e().to_vec())});
    }
    let ec = key.ec_key().expect("an EC key");
    let mut ctx = BigNumContext::new().expect("bignum context");
    let (mut x, mut y) = (BigNum::new().expect("bignum"), BigNum::new().expect("bignum"));
    ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).expect("coordinates");
    json!({"kty": "EC", "crv": "P-256",
        "x": B64U.encode(x.to_vec_padded(32).expect("x")), "y": B64U.encode(y.to_vec_padded(32).expect("y"))})
}

/// RS256, or ES256 as JWS wants it: fixed-size r||s, not DER.
fn sign(key: &PKey<Private>, input: &[u8]) -> Vec<u8> {
    if key.id() == Id::RSA {
        let mut s = Signer::new(MessageDigest::sha256(), key).expect("signer");
        s.update(input).expect("update");
        return s.sign_to_vec().expect("RS256 signature");
    }
    let digest = hash(MessageDigest::sha256(), input).expect("SHA-256");
    let sig = EcdsaSig::sign(&digest, &key.ec_key().expect("an EC key")).expect("ES256 signature");
    let mut out = sig.r().to_vec_padded(32).expect("r");
    out.extend(sig.s().to_vec_padded(32).expect("s"));
    out
}

/// A flattened JWS over `payload` with the key's JWK (new-account style) or a `kid`.
fn signed_jws(key: &PKey<Private>, with_jwk: bool, payload: &[u8], nonce: &str, url: &str) -> Vec<u8> {
    let alg = if key.id() == Id::RSA { "RS256" } else { "ES256" };
    let mut header = json!({"alg": alg, "nonce": nonce, "url": url});
    if with_jwk {
        header["jwk"] = jwk_of(key);
    } else {
        header["kid"] = json!("https://localhost/acme/acct/1");
    }
    let protected = B64U.encode(header.to_string());
    let payload = B64U.encode(payload);
    let signature = B64U.encode(sign(key, format!("{protected}.{payload}").as_bytes()));
    json!({"protected": protected, "payload": payload, "signature": signature}).to_string().into_bytes()
}

/// Everything a handler does with a parsed JWS, against both account keys: never panics.
fn use_everything(jws: &Jws) {
    let _ = (jws.alg(), jws.nonce(), jws.url(), jws.kid());
    if let Some(jwk) = jws.jwk() {
        let _ = thumbprint(jwk);
        let _ = canonical_jwk(jwk);
        if let Ok(key) = key_from_jwk(jwk) {
            let _ = jws.verify(&key);
        }
    }
    let _ = jws.verify(&public(ec_key()));
    let _ = jws.verify(&public(rsa_key()));
    let _ = verify_eab_mac(jws, b"0123456789abcdef0123456789abcdef");
}

/// Payloads up to 64 KiB, mostly small (ACME payloads are small JSON objects).
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..=256),
        1 => bytes(),
    ]
}

/// JSON objects shaped like a JWS whose members are arbitrary (base64url or not).
fn jws_shaped() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop::sample::select(vec!["RS256", "ES256", "ES384", "EdDSA", "HS256", "none", ""]),
        prop::option::of(".{0,20}"),
        prop::option::of(prop::sample::select(vec![
            json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
            json!({"kty": "EC", "crv": "P-384", "x": "", "y": ""}),
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
            json!({"kty": "oct", "k": "AAAA"}),
            json!({"kty": 1}),
        ])),
    )
        .prop_map(|(alg, kid, jwk)| json!({"alg": alg, "kid": kid, "jwk": jwk, "nonce": "n", "url": "u"}));
    (header, payload(), prop::collection::vec(any::<u8>(), 0..=600)).prop_map(|(h, p, s)| {
        json!({"protected": B64U.encode(h.to_string()), "payload": B64U.encode(p), "signature": B64U.encode(s)})
            .to_string()
            .into_bytes()
    })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes (up to 64 KiB): an error or a JWS, and nothing a handler does with it panics.
    #[test]
    fn arbitrary_bytes_never_panic(body in bytes()) {
        within_deadline(move || {
            if let Ok(jws) = Jws::parse(&body) {
                use_everything(&jws);
            }
            Ok(())
        })?;
    }

    /// Well-formed JWS objects with arbitrary headers, keys and signatures: they parse, and an
    /// arbitrary signature never verifies.
    #[test]
    fn arbitrary_signatures_never_verify(body in jws_shaped()) {
        within_deadline(move || {
            let jws = Jws::parse(&body).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            use_everything(&jws);
            prop_assert!(jws.verify(&public(ec_key())).is_err());
            prop_assert!(jws.verify(&public(rsa_key())).is_err());
            Ok(())
        })?;
    }

    /// RSA JWKs with arbitrary modulus and exponent (up to 16 384 bits each): an error or a key,
    /// and verifying with it ends within the deadline (a huge exponent is the classic way to make
    /// RSA verification slow).
    #[test]
    fn arbitrary_rsa_jwks_verify_in_time(
        n in prop::collection::vec(any::<u8>(), 0..=2048),
        e in prop::collection::vec(any::<u8>(), 0..=2048),
        signature in prop::collection::vec(any::<u8>(), 0..=2048),
    ) {
        within_deadline(move || {
            let jwk = json!({"kty": "RSA", "n": B64U.encode(&n), "e": B64U.encode(&e)});
            let header = json!({"alg": "RS256", "jwk": jwk, "nonce": "n", "url": "u"});
            let body = json!({"protected": B64U.encode(header.to_string()), "payload": "", "signature": B64U.encode(&signature)});
            let jws = Jws::parse(body.to_string().as_bytes()).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            if let Some(Ok(key)) = jws.jwk().map(key_from_jwk) {
                prop_assert!(jws.verify(&key).is_err());
            }
            Ok(())
        })?;
    }

    /// A JWS signed with an EC P-256 or an RSA key verifies with the key from its own JWK (or the
    /// account's, for `kid`), and gives back its payload, nonce and URL.
    #[test]
    fn signed_jws_round_trips(
        rsa in any::<bool>(),
        with_jwk in any::<bool>(),
        payload in payload(),
        nonce in "[A-Za-z0-9_-]{0,43}",
        url in "https://[a-z]{1,12}/acme/[a-z-]{1,20}",
    ) {
        within_deadline(move || {
            let key = if rsa { rsa_key() } else { ec_key() };
            let jws = Jws::parse(&signed_jws(key, with_jwk, &payload, &nonce, &url))
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let account_key = match jws.jwk() {
                Some(jwk) => {
                    let sent = jwk_of(key);
                    let sent = sent.as_object().ok_or_else(|| TestCaseError::fail("a JWK is a JSON object"))?;
                    prop_assert_eq!(thumbprint(jwk), thumbprint(sent));
                    key_from_jwk(jwk).map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                }
                None => public(key),
            };
            prop_assert!(account_key.public_eq(key));
            prop_assert_eq!(jws.verify(&account_key), Ok(()));
            prop_assert_eq!(&jws.payload, &payload);
            prop_assert_eq!(jws.nonce(), Some(nonce.as_str()));
            prop_assert_eq!(jws.url(), Some(url.as_str()));
            // The other account key does not verify it.
            let other = if rsa { ec_key() } else { rsa_key() };
            prop_assert!(jws.verify(&public(other)).is_err());
            Ok(())
        })?;
    }

    /// A signed JWS with bytes flipped, inserted, deleted: refused, or it verifies over exactly
    /// the header and payload that were signed.
    #[test]
    fn mutated_jws_is_refused_or_unchanged(
        rsa in any::<bool>(),
        with_jwk in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..=256),
        edits in mutations(),
    ) {
        within_deadline(move || {
            let key = if rsa { rsa_key() } else { ec_key() };
            let body = signed_jws(key, with_jwk, &payload, "nonce", "https://localhost/acme/new-order");
            let original = Jws::parse(&body).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let Ok(jws) = Jws::parse(&mutate(&body, &edits)) else { return Ok(()) };
            use_everything(&jws);
            if jws.verify(&public(key)).is_ok() {
                prop_assert_eq!(&jws.flattened.protected, &original.flattened.protected);
                prop_assert_eq!(&jws.flattened.payload, &original.flattened.payload);
                prop_assert_eq!(&jws.payload, &payload);
            }
            Ok(())
        })?;
    }
}
