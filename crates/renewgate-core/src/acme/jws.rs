//! JWS as ACME uses it (RFC 8555 §6.2): flattened JSON serialization, `alg` in RS256, ES256,
//! ES384, EdDSA, the key from `jwk` (new accounts, revocation by certificate key) or `kid`.
//! JWK thumbprints per RFC 7638; external account binding MACs (HS256/384/512).
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use serde_json::{Map, Value};

use crate::acme::wire::FlattenedJws;

pub const ALGORITHMS: &[&str] = &["RS256", "ES256", "ES384", "EdDSA"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwsError {
    /// Not a flattened JWS, bad base64url, bad JSON, both or neither of jwk/kid, bad signature.
    Malformed(String),
    BadAlgorithm(String),
    BadPublicKey(String),
}

/// A parsed flattened JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    /// The members as received (the signing input is made of their exact strings).
    pub flattened: FlattenedJws,
    pub signature: Vec<u8>,
    pub header: Map<String, Value>,
    /// Empty for POST-as-GET.
    pub payload: Vec<u8>,
}

pub fn b64u_decode(s: &str) -> Result<Vec<u8>, JwsError> {
    // Strict: RFC 7515 base64url without padding.
    B64U.decode(s.as_bytes()).map_err(|_| JwsError::Malformed(format!("invalid base64url: {:.40}", s)))
}

impl Jws {
    pub fn parse(body: &[u8]) -> Result<Jws, JwsError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| JwsError::Malformed(format!("the body is not JSON: {e}")))?;
        let Value::Object(m) = v else {
            return Err(JwsError::Malformed("the body must be a flattened JWS object".into()));
        };
        if m.contains_key("signatures") || m.contains_key("header") {
            return Err(JwsError::Malformed(
                "only the flattened JWS serialization with a protected header is accepted".into(),
            ));
        }
        let get = |k: &str| -> Result<String, JwsError> {
            m.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| JwsError::Malformed(format!("the JWS has no '{k}'")))
        };
        let flattened =
            FlattenedJws { protected: get("protected")?, payload: get("payload")?, signature: get("signature")? };
        let signature = b64u_decode(&flattened.signature)?;
        let header: Value = serde_json::from_slice(&b64u_decode(&flattened.protected)?)
            .map_err(|e| JwsError::Malformed(format!("the protected header is not JSON: {e}")))?;
        let Value::Object(header) = header else {
            return Err(JwsError::Malformed("the protected header must be an object".into()));
        };
        let payload = b64u_decode(&flattened.payload)?;
        Ok(Jws { flattened, signature, header, payload })
    }

    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(|v| v.as_str())
    }
    pub fn nonce(&self) -> Option<&str> {
        self.header.get("nonce").and_then(|v| v.as_str())
    }
    pub fn url(&self) -> Option<&str> {
        self.header.get("url").and_then(|v| v.as_str())
    }
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(|v| v.as_str())
    }
    pub fn jwk(&self) -> Option<&Map<String, Value>> {
        self.header.get("jwk").and_then(|v| v.as_object())
    }

    /// The signed input: the received `protected.payload` strings.
    pub fn signing_input(&self) -> Vec<u8> {
        format!("{}.{}", self.flattened.protected, self.flattened.payload).into_bytes()
    }

    /// Verifies the signature with `key`; the algorithm must fit the key.
    pub fn verify(&self, key: &PKey<Public>) -> Result<(), JwsError> {
        let alg = self.alg().ok_or_else(|| JwsError::Malformed("the protected header has no 'alg'".into()))?;
        if !ALGORITHMS.contains(&alg) {
            return Err(JwsError::BadAlgorithm(alg.to_string()));
        }
        check_key_fits(alg, key)?;
        let ok = verify_signature(alg, key, &self.signing_input(), &self.signature).unwrap_or(false);
        // A failed verification may leave entries on this thread's OpenSSL error queue.
        let _ = openssl::error::ErrorStack::get();
        if ok { Ok(()) } else { Err(JwsError::Malformed("the JWS signature does not verify".into())) }
    }
}

fn check_key_fits(alg: &str, key: &PKey<Public>) -> Result<(), JwsError> {
    let ok = match (alg, key.id()) {
        ("RS256", Id::RSA) => key.bits() >= 2048,
        ("ES256", Id::EC) => key.ec_key().ok().and_then(|k| k.group().curve_name()) == Some(Nid::X9_62_PRIME256V1),
        ("ES384", Id::EC) => key.ec_key().ok().and_then(|k| k.group().curve_name()) == Some(Nid::SECP384R1),
        ("EdDSA", Id::ED25519) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(JwsError::BadPublicKey(format!(
            "the key does not fit algorithm {alg} (RSA ≥ 2048 for RS256, P-256 for ES256, P-384 for ES384, Ed25519 for EdDSA)"
        )))
    }
}

fn verify_signature(
    alg: &str,
    key: &PKey<Public>,
    input: &[u8],
    sig: &[u8],
) -> Result<bool, openssl::error::ErrorStack> {
    Ok(match alg {
        "RS256" => {
            let mut v = Verifier::new(MessageDigest::sha256(), key)?;
            v.update(input)?;
            v.verify(sig)?
        }
        "ES256" | "ES384" => {
            // JWS ECDSA signatures are fixed-size r||s, not DER.
            let (md, n) = if alg == "ES256" { (MessageDigest::sha256(), 32) } else { (MessageDigest::sha384(), 48) };
            if sig.len() != 2 * n {
                return Ok(false);
            }
            let rs = EcdsaSig::from_private_components(BigNum::from_slice(&sig[..n])?, BigNum::from_slice(&sig[n..])?)?;
            let ec = key.ec_key()?;
            rs.verify(&hash(md, input)?, &ec)?
        }
        "EdDSA" => Verifier::new_without_digest(key)?.verify_oneshot(sig, input)?,
        _ => false,
    })
}

fn jwk_str<'a>(jwk: &'a Map<String, Value>, k: &str) -> Result<&'a str, JwsError> {
    jwk.get(k).and_then(|v| v.as_str()).ok_or_else(|| JwsError::BadPublicKey(format!("the JWK has no '{k}'")))
}

/// A public key from a JWK (RSA, EC P-256/P-384, OKP Ed25519).
pub fn key_from_jwk(jwk: &Map<String, Value>) -> Result<PKey<Public>, JwsError> {
    let bad = |e: openssl::error::ErrorStack| JwsError::BadPublicKey(format!("invalid JWK: {e}"));
    let kty = jwk_str(jwk, "kty")?;
    let key = match kty {
        "RSA" => {
            let n = BigNum::from_slice(&b64u_decode(jwk_str(jwk, "n")?)?).map_err(bad)?;
            let e = BigNum::from_slice(&b64u_decode(jwk_str(jwk, "e")?)?).map_err(bad)?;
            PKey::from_rsa(Rsa::from_public_components(n, e).map_err(bad)?).map_err(bad)?
        }
        "EC" => {
            let nid = match jwk_str(jwk, "crv")? {
                "P-256" => Nid::X9_62_PRIME256V1,
                "P-384" => Nid::SECP384R1,
                other => return Err(JwsError::BadPublicKey(format!("unsupported curve {other}"))),
            };
            let group = EcGroup::from_curve_name(nid).map_err(bad)?;
            let x = BigNum::from_slice(&b64u_decode(jwk_str(jwk, "x")?)?).map_err(bad)?;
            let y = BigNum::from_slice(&b64u_decode(jwk_str(jwk, "y")?)?).map_err(bad)?;
            let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y).map_err(bad)?;
            ec.check_key().map_err(bad)?;
            PKey::from_ec_key(ec).map_err(bad)?
        }
        "OKP" => {
            if jwk_str(jwk, "crv")? != "Ed25519" {
                return Err(JwsError::BadPublicKey("only the Ed25519 OKP curve is supported".into()));
            }
            PKey::public_key_from_raw_bytes(&b64u_decode(jwk_str(jwk, "x")?)?, Id::ED25519).map_err(bad)?
        }
        other => return Err(JwsError::BadPublicKey(format!("unsupported key type {other}"))),
    };
    let _ = openssl::error::ErrorStack::get();
    Ok(key)
}

/// The members RFC 7638 requires for the JWK's key type, in lexicographic order.
fn required_members(jwk: &Map<String, Value>) -> Result<&'static [&'static str], JwsError> {
    Ok(match jwk_str(jwk, "kty")? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        other => return Err(JwsError::BadPublicKey(format!("unsupported key type {other}"))),
    })
}

/// RFC 7638 thumbprint: base64url(SHA-256 of the required members, sorted, no spaces).
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, JwsError> {
    let members = required_members(jwk)?;
    let mut s = String::from("{");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"{m}\":{}", serde_json::to_string(jwk_str(jwk, m)?).unwrap_or_default()));
    }
    s.push('}');
    Ok(B64U.encode(openssl::sha::sha256(s.as_bytes())))
}

/// The JWK members a thumbprint covers (what we store for an account).
pub fn canonical_jwk(jwk: &Map<String, Value>) -> Result<Value, JwsError> {
    let members = required_members(jwk)?;
    let mut m = Map::new();
    for k in members {
        m.insert(k.to_string(), Value::String(jwk_str(jwk, k)?.to_string()));
    }
    Ok(Value::Object(m))
}

/// Verifies an external account binding JWS (HS256/384/512 over the inner input) with the key.
pub fn verify_eab_mac(inner: &Jws, hmac_key: &[u8]) -> Result<(), JwsError> {
    let md = match inner.alg() {
        Some("HS256") => MessageDigest::sha256(),
        Some("HS384") => MessageDigest::sha384(),
        Some("HS512") => MessageDigest::sha512(),
        other => {
            return Err(JwsError::Malformed(format!(
                "the external account binding must use HS256, HS384 or HS512, not {other:?}"
            )));
        }
    };
    let key = PKey::hmac(hmac_key).map_err(|e| JwsError::Malformed(e.to_string()))?;
    let mut s = Signer::new(md, &key).map_err(|e| JwsError::Malformed(e.to_string()))?;
    s.update(&inner.signing_input()).map_err(|e| JwsError::Malformed(e.to_string()))?;
    let mac = s.sign_to_vec().map_err(|e| JwsError::Malformed(e.to_string()))?;
    if mac.len() == inner.signature.len() && openssl::memcmp::eq(&mac, &inner.signature) {
        Ok(())
    } else {
        Err(JwsError::Malformed("MAC".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkey::Private;

    fn sign(alg: &str, key: &PKey<Private>, input: &[u8]) -> Vec<u8> {
        match alg {
            "RS256" => {
                let mut s = Signer::new(MessageDigest::sha256(), key).unwrap();
                s.update(input).unwrap();
                s.sign_to_vec().unwrap()
            }
            "ES256" | "ES384" => {
                let (md, n) =
                    if alg == "ES256" { (MessageDigest::sha256(), 32) } else { (MessageDigest::sha384(), 48) };
                let sig = EcdsaSig::sign(&hash(md, input).unwrap(), &key.ec_key().unwrap()).unwrap();
                let mut out = sig.r().to_vec_padded(n).unwrap();
                out.extend(sig.s().to_vec_padded(n).unwrap());
                out
            }
            _ => Signer::new_without_digest(key).unwrap().sign_oneshot_to_vec(input).unwrap(),
        }
    }

    fn jwk_of(key: &PKey<Private>) -> Value {
        match key.id() {
            Id::RSA => {
                let r = key.rsa().unwrap();
                serde_json::json!({"kty": "RSA", "n": B64U.encode(r.n().to_vec()), "e": B64U.encode(r.e().to_vec())})
            }
            Id::EC => {
                let ec = key.ec_key().unwrap();
                let mut ctx = openssl::bn::BigNumContext::new().unwrap();
                let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
                ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx).unwrap();
                let (crv, n) =
                    if ec.group().curve_name() == Some(Nid::SECP384R1) { ("P-384", 48) } else { ("P-256", 32) };
                serde_json::json!({"kty": "EC", "crv": crv, "x": B64U.encode(x.to_vec_padded(n).unwrap()), "y": B64U.encode(y.to_vec_padded(n).unwrap())})
            }
            _ => serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": B64U.encode(key.raw_public_key().unwrap())}),
        }
    }

    fn jws(alg: &str, key: &PKey<Private>, payload: &str) -> Vec<u8> {
        let header =
            serde_json::json!({"alg": alg, "jwk": jwk_of(key), "nonce": "n", "url": "https://x/acme/new-account"});
        let p = B64U.encode(header.to_string());
        let pl = B64U.encode(payload);
        let sig = sign(alg, key, format!("{p}.{pl}").as_bytes());
        serde_json::json!({"protected": p, "payload": pl, "signature": B64U.encode(sig)}).to_string().into_bytes()
    }

    #[test]
    fn every_algorithm_verifies_and_tampering_fails() {
        let keys: Vec<(&str, PKey<Private>)> = vec![
            ("RS256", PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()),
            ("ES256", crate::ca::KeySpec::Ec(crate::ca::EcCurve::P256).generate().unwrap()),
            ("ES384", crate::ca::KeySpec::Ec(crate::ca::EcCurve::P384).generate().unwrap()),
            ("EdDSA", PKey::generate_ed25519().unwrap()),
        ];
        for (alg, key) in &keys {
            for payload in ["{\"a\":1}", ""] {
                let j = Jws::parse(&jws(alg, key, payload)).unwrap();
                let pk = key_from_jwk(j.jwk().unwrap()).unwrap();
                assert_eq!(j.verify(&pk), Ok(()), "{alg}");
                let mut bad = j.clone();
                bad.flattened.payload = B64U.encode("{\"a\":2}");
                assert!(matches!(bad.verify(&pk), Err(JwsError::Malformed(_))), "{alg} tampered");
            }
        }
        // An algorithm that does not fit the key, and HS256 / none outside EAB.
        let (_, ec) = &keys[1];
        let mut j = Jws::parse(&jws("ES256", ec, "{}")).unwrap();
        let pk = key_from_jwk(j.jwk().unwrap()).unwrap();
        j.header.insert("alg".into(), "ES384".into());
        assert!(matches!(j.verify(&pk), Err(JwsError::BadPublicKey(_))));
        for alg in ["HS256", "none"] {
            j.header.insert("alg".into(), alg.into());
            assert!(matches!(j.verify(&pk), Err(JwsError::BadAlgorithm(_))));
        }
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let jwk: Value = serde_json::json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(thumbprint(jwk.as_object().unwrap()).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn eab_mac() {
        let key = b"0123456789abcdef0123456789abcdef";
        let header = B64U.encode("{\"alg\":\"HS256\",\"kid\":\"k1\",\"url\":\"https://x/acme/new-account\"}");
        let payload = B64U.encode("{\"kty\":\"EC\"}");
        let pk = PKey::hmac(key).unwrap();
        let mut s = Signer::new(MessageDigest::sha256(), &pk).unwrap();
        s.update(format!("{header}.{payload}").as_bytes()).unwrap();
        let mac = B64U.encode(s.sign_to_vec().unwrap());
        let body = serde_json::json!({"protected": header, "payload": payload, "signature": mac}).to_string();
        let inner = Jws::parse(body.as_bytes()).unwrap();
        assert!(verify_eab_mac(&inner, key).is_ok());
        assert!(verify_eab_mac(&inner, b"another key of thirty-two bytes!").is_err());
    }
}
