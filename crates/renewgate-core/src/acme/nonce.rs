//! Stateless nonces (RFC 8555 §6.5): 16 bytes, sent as 22 base64url characters — a 4-byte issue
//! time, a 4-byte counter and 8 bytes of HMAC-SHA256 over both. Handing one out writes nothing
//! (an anonymous client cannot grow the database or the memory). Where a nonce is consumed
//! depends on who else may see it:
//! - `NonceScope::Shared` (PostgreSQL: several instances behind one name): the key is derived
//!   from the shared master key, so every instance accepts every instance's nonces, and a
//!   verified request consumes one by inserting it into `acme_nonces` (unique), so a replay fails
//!   on every instance. Consumed nonces are purged once they could no longer verify anyway.
//! - `NonceScope::Process` (SQLite: one process holds the data directory's lock): the key is
//!   random per process and consumed nonces are kept in memory, one bit per nonce in a window of
//!   the last `WINDOW` handed out. No write per request; a nonce from before a restart fails its
//!   MAC and is answered `badNonce` with a fresh one, which ACME clients retry with.
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;

use super::db::accounts as rows;
use crate::db::DbConn;

/// How long a nonce is accepted.
pub const LIFETIME_SECS: i64 = 3600;
const PURPOSE: &str = "acme-nonce-v1";
/// Process scope: how many of the latest nonces can still be consumed (512 KiB of bits). At a
/// thousand requests a second that is over an hour; an older one is refused like a used one.
const WINDOW: u32 = 1 << 22;

/// Who must refuse a nonce once it was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceScope {
    /// Every instance sharing the database.
    Shared,
    /// This process only (it is the only one serving its database).
    Process,
}

pub struct NonceSource {
    key: ring::hmac::Key,
    /// Starts at a random value per process, so two instances rarely draw the same (time, counter).
    counter: AtomicU32,
    /// `NonceScope::Process`: the consumed nonces among the last `WINDOW`.
    used: Option<UsedWindow>,
}

/// One bit per counter value modulo `WINDOW`: set when that nonce was consumed, cleared when the
/// counter comes round to it again (the nonce it stood for is then out of the window).
struct UsedWindow {
    bits: Box<[AtomicU64]>,
}

impl UsedWindow {
    fn new() -> UsedWindow {
        UsedWindow { bits: (0..WINDOW / 64).map(|_| AtomicU64::new(0)).collect() }
    }

    fn slot(n: u32) -> (usize, u64) {
        let i = n % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn clear(&self, n: u32) {
        let (w, bit) = Self::slot(n);
        self.bits[w].fetch_and(!bit, Ordering::SeqCst);
    }

    /// Marks `n` used; false when it already was.
    fn take(&self, n: u32) -> bool {
        let (w, bit) = Self::slot(n);
        self.bits[w].fetch_or(bit, Ordering::SeqCst) & bit == 0
    }
}

impl NonceSource {
    pub fn new(
        master: &crate::secrets::MasterKey,
        scope: NonceScope,
    ) -> Result<NonceSource, crate::secrets::SecretError> {
        let mut seed = [0u8; 4];
        openssl::rand::rand_bytes(&mut seed)?;
        let key = match scope {
            NonceScope::Shared => master.derive(PURPOSE)?,
            NonceScope::Process => {
                let mut k = [0u8; 32];
                openssl::rand::rand_bytes(&mut k)?;
                k
            }
        };
        Ok(NonceSource {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            counter: AtomicU32::new(u32::from_be_bytes(seed)),
            used: (scope == NonceScope::Process).then(UsedWindow::new),
        })
    }

    fn mac(&self, body: &[u8]) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&ring::hmac::sign(&self.key, body).as_ref()[..8]);
        out
    }

    /// A fresh nonce.
    pub fn issue(&self) -> Result<String, super::AcmeError> {
        Ok(self.issue_at(chrono::Utc::now().timestamp()))
    }

    fn issue_at(&self, now: i64) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        if let Some(used) = &self.used {
            // The nonce this slot stood for is now out of the window (`in_window`).
            used.clear(n);
        }
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&(now as u32).to_be_bytes());
        raw[4..8].copy_from_slice(&n.to_be_bytes());
        let mac = self.mac(&raw[..8]);
        raw[8..].copy_from_slice(&mac);
        B64U.encode(raw)
    }

    /// When a nonce this source made expires (unix seconds) and its counter, or None when it is
    /// not one of ours, is malformed or has expired.
    fn check(&self, nonce: &str, now: i64) -> Option<(i64, u32)> {
        let raw = B64U.decode(nonce).ok()?;
        if raw.len() != 16 || !openssl::memcmp::eq(&self.mac(&raw[..8]), &raw[8..]) {
            return None;
        }
        let issued = u32::from_be_bytes(raw[..4].try_into().ok()?) as i64;
        let counter = u32::from_be_bytes(raw[4..8].try_into().ok()?);
        // The time is kept modulo 2^32 (good until 2106); a nonce from the future (clock skew
        // between instances) is accepted within a minute.
        let issued = issued + ((now - issued) >> 32 << 32);
        let expires = issued + LIFETIME_SECS;
        (issued <= now + 60 && now < expires).then_some((expires, counter))
    }

    /// Was counter `n` (one this process handed out: its MAC says so) among the last `WINDOW`?
    fn in_window(&self, n: u32) -> bool {
        let next = self.counter.load(Ordering::SeqCst);
        (1..=WINDOW).contains(&next.wrapping_sub(n))
    }

    /// Consumes a nonce: true when it verifies, has not expired and no request used it before.
    pub fn consume(&self, c: &mut DbConn, nonce: &str) -> Result<bool, super::AcmeError> {
        let now = chrono::Utc::now().timestamp();
        let Some((expires, n)) = self.check(nonce, now) else { return Ok(false) };
        if let Some(used) = &self.used {
            // Checked again after taking the bit: had the counter come round to this slot in
            // between, its bit was cleared for a newer nonce and says nothing about this one.
            return Ok(self.in_window(n) && used.take(n) && self.in_window(n));
        }
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

    fn source(scope: NonceScope) -> NonceSource {
        NonceSource::new(&crate::secrets::MasterKey::generate().unwrap(), scope).unwrap()
    }

    #[test]
    fn nonces_are_22_characters_verify_and_expire() {
        let src = source(NonceScope::Shared);
        let now = 1_800_000_000;
        let n = src.issue_at(now);
        assert_eq!(n.len(), 22);
        assert!(src.check(&n, now + 10).is_some());
        assert!(src.check(&n, now + LIFETIME_SECS).is_none(), "expired after an hour");
        assert_ne!(src.issue_at(now), n, "the counter makes each one different");
        let mut forged = B64U.decode(&n).unwrap();
        forged[0] ^= 1;
        assert!(src.check(&B64U.encode(forged), now).is_none(), "the time is covered by the MAC");
        let other = source(NonceScope::Shared);
        assert!(other.check(&n, now).is_none(), "another master key's nonce");
        assert!(src.check("not-a-nonce", now).is_none());
    }

    #[test]
    fn shared_nonces_verify_at_every_instance_of_the_master_key_process_nonces_only_here() {
        let master = crate::secrets::MasterKey::generate().unwrap();
        let now = chrono::Utc::now().timestamp();
        let a = NonceSource::new(&master, NonceScope::Shared).unwrap();
        let b = NonceSource::new(&master, NonceScope::Shared).unwrap();
        assert!(b.check(&a.issue_at(now), now).is_some());
        // A restarted process (same master key) does not take the last one's nonces.
        let p = NonceSource::new(&master, NonceScope::Process).unwrap();
        let restarted = NonceSource::new(&master, NonceScope::Process).unwrap();
        assert!(p.check(&p.issue_at(now), now).is_some());
        assert!(restarted.check(&p.issue_at(now), now).is_none());
    }

    #[test]
    fn a_process_nonce_is_consumed_once_in_memory() {
        use diesel::prelude::*;
        let src = source(NonceScope::Process);
        let mut c = crate::db::establish(":memory:").unwrap();
        crate::db::run_migrations(&mut c).unwrap();
        let nonces: Vec<String> = (0..100).map(|_| src.issue().unwrap()).collect();
        for n in nonces.iter().rev() {
            assert!(src.consume(&mut c, n).unwrap(), "first use");
            assert!(!src.consume(&mut c, n).unwrap(), "a replay");
        }
        assert!(!src.consume(&mut c, "AAAAAAAAAAAAAAAAAAAAAA").unwrap(), "not one of ours");
        let rows: i64 =
            crate::db::schema::acme_nonces::table.count().get_result(&mut c).expect("count consumed nonces");
        assert_eq!(rows, 0, "nothing written");
    }

    #[test]
    fn a_process_nonce_older_than_the_window_is_refused() {
        let src = source(NonceScope::Process);
        let mut c = crate::db::establish(":memory:").unwrap();
        let old = src.issue().unwrap();
        let kept = src.issue().unwrap();
        // WINDOW nonces later (the counter moved on without a request consuming any of them).
        src.counter.fetch_add(WINDOW - 1, Ordering::SeqCst);
        assert!(!src.consume(&mut c, &old).unwrap(), "out of the window");
        assert!(src.consume(&mut c, &kept).unwrap(), "the last one still in it");
        // The next nonce takes the slot of `kept` (WINDOW after it) and starts unused.
        let next = src.issue().unwrap();
        assert!(src.consume(&mut c, &next).unwrap());
        assert!(!src.consume(&mut c, &next).unwrap());
    }
}
