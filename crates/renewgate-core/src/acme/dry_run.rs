//! Dry-run orders (reference §4.6): `…/directory?dryRun=1` and `/acme/dry-run/directory` hand out
//! newOrder URLs under `/acme/dry-run/`. Such orders go through the same decisions, the same
//! real validation and the same finalize checks, but their certificate is signed by an
//! ephemeral, in-memory test issuer that nothing trusts: no object version, no store-push job,
//! nothing in the inventory changes. The certificates are kept for a day so the client can
//! download them, then purged.
use std::sync::OnceLock;

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509ReqRef};

use super::{Account, AcmeError, AcmeResult};
use crate::ca::LeafTemplate;
use crate::db::DbConn;
use crate::engine::renew::{IssueAs, SubjectSpec};

struct TestIssuer {
    cert: X509,
    key: PKey<Private>,
}

/// Made on first use and never stored: a restart makes a new one, which is the point.
fn issuer() -> Result<&'static TestIssuer, openssl::error::ErrorStack> {
    static ISSUER: OnceLock<TestIssuer> = OnceLock::new();
    if let Some(i) = ISSUER.get() {
        return Ok(i);
    }
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "Renewgate dry-run test issuer (untrusted)")?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = crate::ca::random_serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let now = chrono::Utc::now().timestamp();
    let (from, until) = (Asn1Time::from_unix(now - 60)?, Asn1Time::from_unix(now + 5 * 365 * 86400)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    let made = TestIssuer { cert: b.build(), key };
    Ok(ISSUER.get_or_init(|| made))
}

/// Signs the CSR's key for the order's names (`subject` as the policy check settled it) for
/// `validity_secs` and stores the chain (leaf, test issuer) on the order, which becomes `valid`.
pub fn issue(
    c: &mut DbConn,
    order_id: i64,
    csr: &X509ReqRef,
    subject: &SubjectSpec,
    issue: &IssueAs,
    validity_secs: u64,
) -> AcmeResult<()> {
    let crypto = |e: openssl::error::ErrorStack| AcmeError::server(format!("dry-run signing: {e}"));
    let i = issuer().map_err(crypto)?;
    let pk = csr.public_key().map_err(crypto)?;
    let name = subject.to_name()?;
    let leaf = crate::ca::build_leaf(
        &i.cert,
        &i.key,
        &LeafTemplate {
            subject: &name,
            sans: &issue.sans,
            public_key: &pk,
            validity_secs,
            ekus: &issue.ekus,
            not_after_max: None,
            // The test issuer publishes nothing.
            urls: None,
        },
    )
    .map_err(crypto)?;
    let mut pem = String::from_utf8_lossy(&leaf.to_pem().map_err(crypto)?).into_owned();
    pem.push_str(&String::from_utf8_lossy(&i.cert.to_pem().map_err(crypto)?));
    super::db::dry_run::store_certificate(c, order_id, &pem)?;
    Ok(())
}

/// The stored chain of one of the account's dry-run orders.
pub fn certificate(c: &mut DbConn, account: &Account, order_id: i64) -> AcmeResult<String> {
    let missing = || AcmeError::unauthorized("no such certificate for this account");
    let o = super::orders::get(c, account, order_id).map_err(|_| missing())?;
    if !o.dry_run {
        return Err(missing());
    }
    super::db::dry_run::certificate(c, o.id)?.ok_or_else(missing)
}
