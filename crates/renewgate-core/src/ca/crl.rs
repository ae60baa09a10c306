//! CRLs of the built-in CAs (RFC 5280 §5, version 2).
//!
//! Every CA row that holds a key — root, issuing, added and imported issuing CAs; not the
//! key-less chain rows of an import — publishes one CRL: the certificates it issued that are
//! revoked (the root's lists revoked issuing-CA certificates, so it is normally empty), with the
//! extensions RFC 5280 requires (authority key identifier, CRL number), thisUpdate and
//! nextUpdate, signed with the CA's key and its digest.
//!
//! - **Stored, not cached.** The current CRL of each CA is a row of `crls`: every instance on one
//!   database serves the same bytes and the same number.
//! - **When a new one is made.** A CRL is valid for [`VALIDITY_SECS`] (7 days). A fetch makes a new
//!   one when the stored one is stale — a revocation of one of the CA's certificates marks it so,
//!   in the revocation's own transaction ([`mark_stale`]) — or has less than half its validity
//!   left. A served CRL is therefore never expired and at most 3.5 days old, and a revocation is
//!   listed from the next fetch on; no background task is needed.
//! - **The number only grows.** A new CRL is made in a write transaction that holds [`CRL_LOCK`]
//!   (a PostgreSQL advisory lock; SQLite's writer lock), re-reads the row and takes its number plus
//!   one. Revocations take the same lock, so a revocation either commits before a CRL is made (and
//!   is listed) or after (and marks the new row stale).
//! - **Built with the openssl crate** (`X509CrlBuilder`, `X509RevokedBuilder`, `CrlNumber`,
//!   0.10.81+): no further dependency. The one thing it lacks, an extension on a CRL entry (the
//!   reasonCode), is a single `X509_REVOKED_add_ext` call.
use chrono::NaiveDateTime;
use diesel::prelude::*;
use foreign_types::ForeignType;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::extension::CrlNumber;
use openssl::x509::{X509, X509CrlBuilder, X509Ref, X509RevokedBuilder};

use super::builtin::{BuiltinCa, CaError};
use super::{KeySpec, der, raw_extension};
use crate::db::schema::{cas, certificates, crls, revocations};
use crate::db::{DbConn, now, write_tx};

/// Held by the transaction that makes a new CRL and by every revocation (`Engine::revoke`).
pub const CRL_LOCK: i64 = 7262010;
/// nextUpdate − thisUpdate of every CRL; a new one is made once less than half of it remains.
pub const VALIDITY_SECS: i64 = 7 * 86400;
/// thisUpdate lies this far in the past: absorbs small clock differences with relying parties.
const BACKDATE_SECS: i64 = 60;
/// A revoked certificate stays listed until this long after it expired (RFC 5280 §3.3: at least
/// one regularly scheduled CRL beyond its validity).
const LISTED_AFTER_EXPIRY_SECS: i64 = VALIDITY_SECS;

/// One revoked certificate as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial as stored (`serial_hex`: upper-case hex).
    pub serial_hex: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// RFC 5280 CRLReason (the dialects' reason codes are the same numbers).
    pub reason: i32,
}

/// A signed CRL and what it says.
#[derive(Debug, Clone)]
pub struct Crl {
    pub number: i64,
    pub der: Vec<u8>,
    pub this_update: NaiveDateTime,
    pub next_update: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = crls)]
struct CrlRow {
    crl_number: i64,
    der: Vec<u8>,
    this_update: NaiveDateTime,
    next_update: NaiveDateTime,
    stale: bool,
}

impl From<CrlRow> for Crl {
    fn from(r: CrlRow) -> Crl {
        Crl { number: r.crl_number, der: r.der, this_update: r.this_update, next_update: r.next_update }
    }
}

impl CrlRow {
    fn needs_new(&self, at: NaiveDateTime) -> bool {
        self.stale || (self.next_update - at).num_seconds() < VALIDITY_SECS / 2
    }
}

/// The CRLReason extension value for a stored reason; None for `unspecified` (RFC 5280 §5.3.1:
/// absent rather than 0) and for codes a full CRL does not carry (7 is unused, 8 `removeFromCRL`
/// belongs to delta CRLs).
fn reason_code(reason: i32) -> Option<u8> {
    match reason {
        1..=6 | 9 | 10 => Some(reason as u8),
        _ => None,
    }
}

/// The key identifier of a CA: its subjectKeyIdentifier, or (a CA certificate without one, e.g.
/// an imported CA) the SHA-1 of its subjectPublicKey bits (RFC 5280 §4.2.1.2, method 1).
fn key_identifier(cert: &X509Ref) -> Result<Vec<u8>, CaError> {
    if let Some(ski) = cert.subject_key_id() {
        return Ok(ski.as_slice().to_vec());
    }
    let spki = cert.public_key()?.public_key_to_der()?;
    let bits = subject_public_key(&spki).ok_or_else(|| CaError::Other("unreadable CA public key".into()))?;
    Ok(openssl::sha::sha1(bits).to_vec())
}

/// The subjectPublicKey bits of a DER SubjectPublicKeyInfo
/// (`SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`).
fn subject_public_key(spki: &[u8]) -> Option<&[u8]> {
    use ::der::{Decode, Reader, Tagged};
    let info = ::der::AnyRef::from_der(spki).ok().filter(|info| info.tag() == ::der::Tag::Sequence)?;
    let mut reader = ::der::SliceReader::new(info.value()).ok()?;
    reader.decode::<::der::AnyRef<'_>>().ok()?;
    Some(reader.decode::<::der::asn1::BitStringRef<'_>>().ok()?.raw_bytes())
}

/// Builds and signs a v2 CRL of `ca_cert`/`ca_key`: issuer, thisUpdate and nextUpdate (unix
/// seconds), the entries (sorted by serial), authority key identifier and CRL number; signed
/// with the CA key's digest (as its certificates are). Returns the DER.
pub fn build(
    ca_cert: &X509Ref,
    ca_key: &PKeyRef<Private>,
    number: i64,
    this_update: i64,
    next_update: i64,
    entries: &[RevokedEntry],
) -> Result<Vec<u8>, CaError> {
    if number < 0 {
        return Err(CaError::Other("a CRL number is never negative".into()));
    }
    let mut b = X509CrlBuilder::new()?;
    b.set_issuer_name(ca_cert.subject_name())?;
    let (this_update, next_update) = (Asn1Time::from_unix(this_update)?, Asn1Time::from_unix(next_update)?);
    b.set_last_update(&this_update)?;
    b.set_next_update(&next_update)?;
    for e in entries {
        let mut r = X509RevokedBuilder::new()?;
        let serial = BigNum::from_hex_str(&e.serial_hex)?.to_asn1_integer()?;
        r.set_serial_number(&serial)?;
        let revoked_at = Asn1Time::from_unix(e.revoked_at)?;
        r.set_revocation_date(&revoked_at)?;
        let r = r.build();
        if let Some(code) = reason_code(e.reason) {
            // reasonCode ::= ENUMERATED (tag 0x0a)
            let ext = raw_extension("2.5.29.21", &der(0x0a, &[code]))?;
            // SAFETY: `r` and `ext` are valid, owned objects for the duration of the call;
            // X509_REVOKED_add_ext appends a copy of `ext` (it does not take ownership).
            if unsafe { openssl_sys::X509_REVOKED_add_ext(r.as_ptr(), ext.as_ptr(), -1) } <= 0 {
                return Err(ErrorStack::get().into());
            }
        }
        b.add_revoked(r)?;
    }
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
    b.append_extension(raw_extension("2.5.29.35", &der(0x30, &der(0x80, &key_identifier(ca_cert)?)))?)?;
    b.append_extension(CrlNumber::new(BigNum::from_dec_str(&number.to_string())?)?.build()?)?;
    b.sort()?;
    let digest = KeySpec::of_key(ca_key).map(|k| k.digest()).unwrap_or(MessageDigest::sha256());
    b.sign(ca_key, digest)?;
    Ok(b.build()?.to_der()?)
}

fn stored(c: &mut DbConn, ca_id: i64) -> QueryResult<Option<CrlRow>> {
    crls::table.find(ca_id).select(CrlRow::as_select()).first(c).optional()
}

/// The revoked certificates CA `ca_id` issued that a CRL made at `at` lists, oldest revocation first.
fn revoked_entries(c: &mut DbConn, ca_id: i64, at: NaiveDateTime) -> QueryResult<Vec<RevokedEntry>> {
    let listed_until = at - chrono::Duration::seconds(LISTED_AFTER_EXPIRY_SECS);
    let rows: Vec<(String, NaiveDateTime, i32)> = revocations::table
        .inner_join(certificates::table.on(certificates::id.eq(revocations::certificate_id)))
        .filter(certificates::issuer_ca_id.eq(ca_id))
        .filter(certificates::not_after.gt(listed_until))
        .order((revocations::revoked_at.asc(), revocations::certificate_id.asc()))
        .select((certificates::serial, revocations::revoked_at, revocations::reason))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(serial_hex, at, reason)| RevokedEntry { serial_hex, revoked_at: at.and_utc().timestamp(), reason })
        .collect())
}

/// The current CRL of CA `name` (case-insensitive), made anew when the stored one is stale or
/// past half its validity (see the module notes). `Ok(None)`: no CA of that name holds a key.
pub fn current(ca: &BuiltinCa, conn: &mut DbConn, name: &str) -> Result<Option<Crl>, CaError> {
    let loaded = match ca.load_by_name(conn, name) {
        Ok(l) => l,
        Err(CaError::NotFound(_) | CaError::NoKey(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Some(row) = stored(conn, loaded.id)?
        && !row.needs_new(now())
    {
        return Ok(Some(row.into()));
    }
    write_tx(conn, Some(CRL_LOCK), |c| -> Result<Crl, CaError> {
        let at = now();
        // Another instance (or request) may have made it while we waited for the lock.
        let row = stored(c, loaded.id)?;
        if let Some(r) = &row
            && !r.needs_new(at)
        {
            return Ok(r.clone().into());
        }
        let number = row.as_ref().map_or(1, |r| r.crl_number + 1);
        let entries = revoked_entries(c, loaded.id, at)?;
        let now_ts = at.and_utc().timestamp();
        let (this_ts, next_ts) = (now_ts - BACKDATE_SECS, now_ts + VALIDITY_SECS);
        let der = build(&loaded.cert, &loaded.key, number, this_ts, next_ts, &entries)?;
        let ts = |t: i64| chrono::DateTime::from_timestamp(t, 0).map(|d| d.naive_utc()).unwrap_or(at);
        let crl = Crl { number, der, this_update: ts(this_ts), next_update: ts(next_ts) };
        let values = (
            crls::crl_number.eq(crl.number),
            crls::der.eq(&crl.der),
            crls::this_update.eq(crl.this_update),
            crls::next_update.eq(crl.next_update),
            crls::stale.eq(false),
            crls::updated_at.eq(at),
        );
        if row.is_some() {
            diesel::update(crls::table.find(loaded.id)).set(values).execute(c)?;
        } else {
            diesel::insert_into(crls::table).values((crls::ca_id.eq(loaded.id), values)).execute(c)?;
        }
        tracing::info!(ca = %loaded.name, crl_number = crl.number, entries = entries.len(), "new CRL");
        Ok(crl)
    })
    .map(Some)
}

/// Marks stale the CRL of the CA that issued certificate `certificate_id`, so the next fetch
/// makes a new one. Called in the transaction that records the revocation, which holds [`CRL_LOCK`].
pub fn mark_stale(c: &mut DbConn, certificate_id: i64) -> QueryResult<()> {
    let issuer: Option<Option<i64>> =
        certificates::table.find(certificate_id).select(certificates::issuer_ca_id).first(c).optional()?;
    if let Some(Some(ca_id)) = issuer {
        diesel::update(crls::table.find(ca_id)).set(crls::stale.eq(true)).execute(c)?;
    }
    Ok(())
}

/// The DER certificate of CA `name` (case-insensitive; any CA row, chain certificates of an
/// imported CA included): what AIA caIssuers URLs point at. `Ok(None)`: no such CA.
pub fn ca_certificate_der(conn: &mut DbConn, name: &str) -> Result<Option<Vec<u8>>, CaError> {
    let pem: Option<String> = cas::table
        .filter(cas::name_lower.eq(name.trim().to_ascii_lowercase()))
        .select(cas::cert_pem)
        .first(conn)
        .optional()?;
    Ok(pem.map(|p| X509::from_pem(p.as_bytes()).and_then(|c| c.to_der())).transpose()?)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use openssl::asn1::Asn1Integer;
    use openssl::x509::{CrlStatus, X509Crl};

    use super::*;
    use crate::ca::builtin::{ISSUING_CA, ROOT_CA, make_ca_cert};
    use crate::ca::{EcCurve, KeySpec};

    fn serial(hex: &str) -> Asn1Integer {
        BigNum::from_hex_str(hex).unwrap().to_asn1_integer().unwrap()
    }

    fn number_of(crl: &X509Crl) -> String {
        let (critical, n) = crl.extension::<CrlNumber>().unwrap().expect("a CRL number");
        assert!(!critical);
        n.to_bn().unwrap().to_dec_str().unwrap().to_string()
    }

    #[test]
    fn built_crl_parses_and_verifies() {
        for spec in [KeySpec::Ec(EcCurve::P256), KeySpec::Ec(EcCurve::P384), KeySpec::Rsa(2048)] {
            let (root, root_key) = make_ca_cert(spec, "Test Root", "Test", None, 30).unwrap();
            let (ca, ca_key) = make_ca_cert(spec, "Test Issuing", "Test", Some((&root, &root_key)), 30).unwrap();
            let now = chrono::Utc::now().timestamp();
            let entries = vec![
                RevokedEntry { serial_hex: "7F01".into(), revoked_at: now - 100, reason: 1 },
                RevokedEntry { serial_hex: "0A".into(), revoked_at: now - 50, reason: 0 },
            ];
            let der = build(&ca, &ca_key, 42, now - 60, now + VALIDITY_SECS, &entries).unwrap();
            let crl = X509Crl::from_der(&der).unwrap();
            assert!(crl.verify(&ca.public_key().unwrap()).unwrap(), "signed by the CA key");
            assert!(!crl.verify(&root.public_key().unwrap()).unwrap());
            assert_eq!(number_of(&crl), "42");
            assert_eq!(crl.issuer_name().to_der().unwrap(), ca.subject_name().to_der().unwrap());
            let revoked = crl.get_revoked().expect("entries");
            assert_eq!(revoked.len(), 2);
            assert!(matches!(crl.get_by_serial(&serial("7F01")), CrlStatus::Revoked(_)));
            assert!(matches!(crl.get_by_serial(&serial("0A")), CrlStatus::Revoked(_)));
            assert!(matches!(crl.get_by_serial(&serial("0B")), CrlStatus::NotRevoked));
            assert_eq!(
                crl.next_update().unwrap().compare(&Asn1Time::from_unix(now + VALIDITY_SECS).unwrap()).unwrap(),
                std::cmp::Ordering::Equal
            );
            // AKI = the CA's SKI; one keyCompromise reasonCode, none for "unspecified".
            let mut aki = vec![0x06, 0x03, 0x55, 0x1d, 0x23, 0x04];
            let ski = ca.subject_key_id().unwrap().as_slice();
            aki.extend([ski.len() as u8 + 4, 0x30, ski.len() as u8 + 2, 0x80, ski.len() as u8]);
            aki.extend_from_slice(ski);
            assert!(der.windows(aki.len()).any(|w| w == aki.as_slice()), "AKI with the CA's key id");
            let reason = [0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x01];
            assert_eq!(der.windows(reason.len()).filter(|w| *w == reason).count(), 1);
            // Version 2: the TBSCertList starts with INTEGER 1.
            use ::der::{Decode, Reader};
            let list = ::der::AnyRef::from_der(&der).unwrap();
            let tbs = ::der::SliceReader::new(list.value()).unwrap().decode::<::der::AnyRef<'_>>().unwrap();
            assert_eq!(&tbs.value()[..3], &[0x02, 0x01, 0x01]);
        }
    }

    #[test]
    fn an_empty_crl_has_no_entries() {
        let spec = KeySpec::Ec(EcCurve::P256);
        let (root, root_key) = make_ca_cert(spec, "Test Root", "Test", None, 30).unwrap();
        let now = chrono::Utc::now().timestamp();
        let crl = X509Crl::from_der(&build(&root, &root_key, 1, now, now + 60, &[]).unwrap()).unwrap();
        assert!(crl.get_revoked().is_none_or(|r| r.is_empty()));
        assert!(crl.verify(&root.public_key().unwrap()).unwrap());
        assert_eq!(number_of(&crl), "1");
    }

    #[test]
    fn key_identifier_without_ski_is_the_sha1_of_the_key() {
        let spec = KeySpec::Ec(EcCurve::P256);
        let (ca, _) = make_ca_cert(spec, "Test Root", "Test", None, 30).unwrap();
        // make_ca_cert's SKI is OpenSSL's default: the SHA-1 of the subjectPublicKey bits.
        let ski = ca.subject_key_id().unwrap().as_slice().to_vec();
        let key = ca.public_key().unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_subject_name(ca.subject_name()).unwrap();
        let bare = b.build();
        assert!(bare.subject_key_id().is_none());
        assert_eq!(key_identifier(&bare).unwrap(), ski);
    }

    #[test]
    fn stored_crl_grows_its_number_on_revocation_only() {
        let mut c = crate::db::establish(":memory:").unwrap();
        crate::db::run_migrations(&mut c).unwrap();
        let ca = BuiltinCa::new(crate::secrets::MasterKey::generate().unwrap());
        ca.initialise(&mut c, KeySpec::Ec(EcCurve::P256), "Test").unwrap();
        let issuing = ca.load_by_name(&mut c, ISSUING_CA).unwrap();

        let first = current(&ca, &mut c, "ISSUING").unwrap().expect("issuing CA CRL");
        assert_eq!(first.number, 1);
        let again = current(&ca, &mut c, ISSUING_CA).unwrap().unwrap();
        assert_eq!((again.number, &again.der), (1, &first.der), "a fresh CRL is served as stored");
        assert_eq!(current(&ca, &mut c, ROOT_CA).unwrap().unwrap().number, 1);
        assert!(current(&ca, &mut c, "nope").unwrap().is_none());

        // A certificate of the issuing CA, revoked: its CRL is stale and the next one lists it.
        c.batch_execute(&format!(
            "INSERT INTO cert_objects (id, guid, dn, dn_lower, policy_dn, name, state, disabled, management_type, \
             csr_origin, key_spec, created_at, updated_at) VALUES (1, 'g', '\\VED\\Policy\\x', '\\ved\\policy\\x', \
             '\\VED\\Policy', 'x', 'active', 0, 'Enrollment', 'user', 'ec-p256', '2026-01-01 00:00:00', \
             '2026-01-01 00:00:00'); \
             INSERT INTO certificates (id, guid, object_id, issuer_ca_id, der, chain_pem, serial, thumbprint, \
             common_name, issuer_dn, not_before, not_after, public_key_sha256, created_at) VALUES (7, 'c', 1, {}, \
             x'00', '', '1234ABCD', 'T', 'x', 'i', '2026-01-01 00:00:00', '2999-01-01 00:00:00', 'k', \
             '2026-01-01 00:00:00'); \
             INSERT INTO revocations (certificate_id, reason, comments, revoked_at) VALUES (7, 4, '', \
             '2026-06-01 00:00:00');",
            issuing.id
        ))
        .unwrap();
        mark_stale(&mut c, 7).unwrap();
        let second = current(&ca, &mut c, ISSUING_CA).unwrap().unwrap();
        assert_eq!(second.number, 2);
        let crl = X509Crl::from_der(&second.der).unwrap();
        assert_eq!(number_of(&crl), "2");
        assert!(crl.verify(&issuing.cert.public_key().unwrap()).unwrap());
        assert!(matches!(crl.get_by_serial(&serial("1234ABCD")), CrlStatus::Revoked(_)));
        // The root's CRL was not touched by a revocation under the issuing CA.
        assert_eq!(current(&ca, &mut c, ROOT_CA).unwrap().unwrap().number, 1);
        // Past half its validity, a CRL is made anew even without a revocation.
        c.batch_execute("UPDATE crls SET next_update = '2000-01-01 00:00:00'").unwrap();
        assert_eq!(current(&ca, &mut c, ISSUING_CA).unwrap().unwrap().number, 3);
        assert_eq!(current(&ca, &mut c, ISSUING_CA).unwrap().unwrap().number, 3);

        assert_eq!(
            ca_certificate_der(&mut c, "Root").unwrap().unwrap(),
            ca.load_by_name(&mut c, ROOT_CA).unwrap().cert.to_der().unwrap()
        );
        assert!(ca_certificate_der(&mut c, "nope").unwrap().is_none());
    }
}
