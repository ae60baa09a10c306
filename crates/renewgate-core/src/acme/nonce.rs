//! Stateless nonces (RFC 8555 §6.5): 16 bytes, sent as 22 base64url characters — a 4-byte issue
//! time, a 4-byte counter and 8 bytes of HMAC-SHA256 over both, under a key every instance
//! derives from the shared master key. Handing one out writes nothing (an anonymous client
//! cannot grow the database); a verified request consumes one by inserting it into
//! `acme_nonces` (unique), so a replay fails on every instance sharing the database. Consumed
//! nonces are purged once they could no longer verify anyway.
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;

use super::db::accounts as rows;
use crate::db::DbConn;

/// How long a nonce is accepted.
pub const LIFETIME_SECS: i64 = 3600;
const PURPOSE: &str = "acme-nonce-v1";

pub struct NonceSource {
    key: [u8; 32],
    /// Starts at a random value per process, so two instances rarely draw the same (time, counter).
    counter: AtomicU32,
}

impl NonceSource {
    pub fn new(master: &crate::secrets::MasterKey) -> Result<NonceSource, crate::secrets::SecretError> {
        let mut seed = [0u8; 4];
        openssl::rand::rand_bytes(&mut seed)?;
        Ok(NonceSource { key: master.derive(PURPOSE)?, counter: AtomicU32::new(u32::from_be_bytes(seed)) })
    }

    fn mac(&self, body: &[u8]) -> Result<[u8; 8], openssl::error::ErrorStack> {
        let k = openssl::pkey::PKey::hmac(&self.key)?;
        let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &k)?;
        s.update(body)?;
        let mut out = [0u8; 8];
        out.copy_from_slice(&s.sign_to_vec()?[..8]);
        Ok(out)
    }

    /// A fresh nonce.
    pub fn issue(&self) -> Result<String, super::AcmeError> {
        self.issue_at(chrono::Utc::now().timestamp())
    }

    fn issue_at(&self, now: i64) -> Result<String, super::AcmeError> {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&(now as u32).to_be_bytes());
        raw[4..8].copy_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let mac = self.mac(&raw[..8]).map_err(|e| super::AcmeError::server(format!("nonce: {e}")))?;
        raw[8..].copy_from_slice(&mac);
        Ok(B64U.encode(raw))
    }

    /// When a nonce this source made expires (unix seconds), or None when it is not one of
    /// ours, is malformed or has expired.
    pub fn check(&self, nonce: &str, now: i64) -> Option<i64> {
        let raw = B64U.decode(nonce).ok()?;
        if raw.len() != 16 || !openssl::memcmp::eq(&self.mac(&raw[..8]).ok()?, &raw[8..]) {
            return None;
        }
        let issued = u32::from_be_bytes(raw[..4].try_into().ok()?) as i64;
        // The time is kept modulo 2^32 (good until 2106); a nonce from the future (clock skew
        // between instances) is accepted within a minute.
        let issued = issued + ((now - issued) >> 32 << 32);
        let expires = issued + LIFETIME_SECS;
        (issued <= now + 60 && now < expires).then_some(expires)
    }

    /// Consumes a nonce: true when it verifies, has not expired and no request used it before.
    pub fn consume(&self, c: &mut DbConn, nonce: &str) -> Result<bool, super::AcmeError> {
        let now = chrono::Utc::now().timestamp();
        let Some(expires) = self.check(nonce, now) else { return Ok(false) };
        let expires = chrono::DateTime::from_timestamp(expires, 0).map(|t| t.naive_utc()).unwrap_or_default();
        // Now and then (one request in 256: the first MAC byte is uniform), drop consumed
        // nonces that could no longer verify.
        let purge = B64U.decode(nonce).ok().and_then(|raw| raw.get(8).copied()) == Some(0);
        crate::db::autocommit_write(c, |c| {
            let fresh = rows::record_used_nonce(c, nonce, expires)?;
            if purge {
                rows::purge_nonces(c)?;
            }
            Ok(fresh)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_22_characters_verify_and_expire() {
        let src = NonceSource::new(&crate::secrets::MasterKey::generate().unwrap()).unwrap();
        let now = 1_800_000_000;
        let n = src.issue_at(now).unwrap();
        assert_eq!(n.len(), 22);
        assert!(src.check(&n, now + 10).is_some());
        assert!(src.check(&n, now + LIFETIME_SECS).is_none(), "expired after an hour");
        assert_ne!(src.issue_at(now).unwrap(), n, "the counter makes each one different");
        let mut forged = B64U.decode(&n).unwrap();
        forged[0] ^= 1;
        assert!(src.check(&B64U.encode(forged), now).is_none(), "the time is covered by the MAC");
        let other = NonceSource::new(&crate::secrets::MasterKey::generate().unwrap()).unwrap();
        assert!(other.check(&n, now).is_none(), "another master key's nonce");
        assert!(src.check("not-a-nonce", now).is_none());
    }
}
