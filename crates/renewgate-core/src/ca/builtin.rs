//! The built-in CA: a root and an issuing CA kept in the database, keys sealed under the master key.
//!
//! The first instance on an empty database creates `root` and `issuing` under a database lock;
//! later instances (and later starts) load them. A master key that cannot open the stored CA key
//! stops the start with a clear message.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use diesel::prelude::*;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509, X509Builder, X509NameBuilder};

use super::{KeySpec, random_serial};
use crate::db::models::{CaRow, NewCa};
use crate::db::schema::cas;
use crate::db::{DbConn, now, write_tx};
use crate::secrets::MasterKey;

pub const ROOT_CA: &str = "root";
pub const ISSUING_CA: &str = "issuing";
/// The RSA issuing CA beside `issuing` (whose algorithm `ca.key_type` sets): RSA keys are signed
/// with RSA, because real TPP CAs do and some clients (vcert-python) fail on anything else.
pub const ISSUING_RSA_CA: &str = "issuing-rsa";

/// The built-in issuing CA for a key of `spec` when its folder names none.
pub fn default_issuer(spec: Option<KeySpec>) -> &'static str {
    match spec {
        Some(KeySpec::Rsa(_)) => ISSUING_RSA_CA,
        _ => ISSUING_CA,
    }
}
/// The sealing purpose of CA keys (see [`MasterKey::seal`]).
pub const CA_KEY_PURPOSE: &str = "ca-key";
const CA_INIT_LOCK: i64 = 7262002;

/// One usable CA: certificate, private key and its chain up to (and including) the root.
pub struct LoadedCa {
    pub id: i64,
    pub name: String,
    pub cert: X509,
    pub key: PKey<Private>,
    /// Issuer chain above `cert`, nearest first; the root last. Empty for the root itself.
    pub parents: Vec<X509>,
    pub disabled: bool,
}

impl LoadedCa {
    /// This CA's certificate followed by its parents: the chain an issued leaf carries.
    pub fn chain(&self) -> Vec<X509> {
        let mut v = vec![self.cert.clone()];
        v.extend(self.parents.iter().cloned());
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA {0} does not exist")]
    NotFound(String),
    #[error("CA {0} is disabled")]
    Disabled(String),
    #[error("CA {0} already exists")]
    Exists(String),
    #[error("CA {0} holds no key (a chain certificate of an imported CA)")]
    NoKey(String),
    #[error(
        "the master key cannot decrypt the stored key of CA {0}: start with the master key this database was created with (RENEWGATE_MASTER_KEY_FILE or RENEWGATE_MASTER_KEY)"
    )]
    WrongMasterKey(String),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("crypto: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("{0}")]
    Other(String),
}

/// Loads CAs from the database on demand and keeps the decrypted ones in memory.
pub struct BuiltinCa {
    master: MasterKey,
    cache: RwLock<HashMap<i64, Arc<LoadedCa>>>,
}

impl BuiltinCa {
    pub fn new(master: MasterKey) -> Self {
        BuiltinCa { master, cache: RwLock::new(HashMap::new()) }
    }

    /// Creates root, `issuing` and `issuing-rsa` on an empty database (under a lock) and adds
    /// `issuing-rsa` under the existing root of a database from before it existed, then checks
    /// that the master key opens them. Returns whether anything was created.
    pub fn initialise(&self, conn: &mut DbConn, spec: KeySpec, organization: &str) -> Result<bool, CaError> {
        let created = write_tx(conn, Some(CA_INIT_LOCK), |c| -> Result<bool, CaError> {
            let existing: i64 = cas::table.filter(cas::name_lower.eq(ROOT_CA)).count().get_result(c)?;
            if existing > 0 {
                return Ok(false);
            }
            let (root_cert, root_key) =
                make_ca_cert(spec, &format!("{organization} Root CA"), organization, None, 20 * 365)?;
            let root_id = self.insert_ca(c, ROOT_CA, &root_cert, &root_key, None, true)?;
            let (iss_cert, iss_key) = make_ca_cert(
                spec,
                &format!("{organization} Issuing CA"),
                organization,
                Some((&root_cert, &root_key)),
                10 * 365,
            )?;
            self.insert_ca(c, ISSUING_CA, &iss_cert, &iss_key, Some(root_id), false)?;
            Ok(true)
        })?;
        let has_rsa: i64 = cas::table.filter(cas::name_lower.eq(ISSUING_RSA_CA)).count().get_result(conn)?;
        let added_rsa = if has_rsa == 0 {
            match self.add_issuing(conn, ISSUING_RSA_CA, KeySpec::Rsa(2048), organization, "Issuing CA RSA") {
                Ok(()) => true,
                // Another instance starting on the same database added it first.
                Err(CaError::Exists(_)) => false,
                Err(e) => return Err(e),
            }
        } else {
            false
        };
        // Fail the start now if the key does not open what is stored.
        self.load_by_name(conn, ISSUING_CA)?;
        self.load_by_name(conn, ISSUING_RSA_CA)?;
        Ok(created || added_rsa)
    }

    /// Creates another issuing CA, signed by the built-in root.
    pub fn add_issuing(
        &self,
        conn: &mut DbConn,
        name: &str,
        spec: KeySpec,
        organization: &str,
        cn_suffix: &str,
    ) -> Result<(), CaError> {
        if name.trim().is_empty() || name.contains('\\') {
            return Err(CaError::Other("a CA name must be non-empty and contain no '\\'".into()));
        }
        let root = self.load_by_name(conn, ROOT_CA)?;
        let root_id = root.id;
        write_tx(conn, Some(CA_INIT_LOCK), |c| -> Result<(), CaError> {
            let exists: i64 = cas::table.filter(cas::name_lower.eq(name.to_ascii_lowercase())).count().get_result(c)?;
            // An upstream issuer of the name would be shadowed (built-in CAs are looked up first).
            if exists > 0 || super::upstream::db::find(c, name)?.is_some() {
                return Err(CaError::Exists(name.to_string()));
            }
            let (cert, key) = make_ca_cert(
                spec,
                &format!("{organization} {cn_suffix}"),
                organization,
                Some((&root.cert, &root.key)),
                10 * 365,
            )?;
            self.insert_ca(c, name, &cert, &key, Some(root_id), false)?;
            Ok(())
        })
    }

    /// An issuer by name (`host\\NAME` or `NAME`, case-insensitive): a built-in issuing CA or
    /// an upstream one. Its canonical name.
    pub fn find_row(conn: &mut DbConn, name: &str) -> Result<Option<String>, diesel::result::Error> {
        let bare = name.rsplit('\\').next().unwrap_or(name).trim().to_ascii_lowercase();
        let builtin = cas::table
            .filter(cas::name_lower.eq(&bare))
            .filter(cas::is_root.eq(false))
            .select(cas::name)
            .first(conn)
            .optional()?;
        match builtin {
            Some(n) => Ok(Some(n)),
            None => Ok(super::upstream::db::find(conn, &bare)?.map(|r| r.name)),
        }
    }

    pub fn list_issuing(conn: &mut DbConn) -> Result<Vec<CaRow>, diesel::result::Error> {
        cas::table.filter(cas::is_root.eq(false)).order(cas::id.asc()).select(CaRow::as_select()).load(conn)
    }

    /// Imports an existing enterprise CA (certificate, optionally followed by its chain, and key):
    /// it issues like any other CA; its chain certificates are kept (disabled) for the bundle.
    pub fn import(&self, conn: &mut DbConn, name: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), CaError> {
        let certs = X509::stack_from_pem(cert_pem)?;
        let ca = certs.first().ok_or_else(|| CaError::Other("no certificate in the CA file".into()))?;
        let key = PKey::private_key_from_pem(key_pem)
            .map_err(|_| CaError::Other("the key file holds no PEM private key".into()))?;
        let ca_public = ca.public_key()?;
        if !key.public_eq(&ca_public) {
            return Err(CaError::Other("the key does not belong to the CA certificate".into()));
        }
        write_tx(conn, Some(CA_INIT_LOCK), |c| -> Result<(), CaError> {
            let exists: i64 = cas::table.filter(cas::name_lower.eq(name.to_ascii_lowercase())).count().get_result(c)?;
            if exists > 0 || super::upstream::db::find(c, name)?.is_some() {
                return Err(CaError::Other(format!("CA {name} already exists")));
            }
            // Parents first (root last in the file), so each row can point at its issuer.
            let mut parent_id = None;
            for (i, p) in certs.iter().enumerate().skip(1).rev() {
                let self_signed = p.issued(p) == openssl::x509::X509VerifyResult::OK;
                let pem = String::from_utf8(p.to_pem()?).map_err(|e| CaError::Other(e.to_string()))?;
                let pname = format!("{name}-chain-{i}");
                // No key is held for chain certificates: store an empty sealed blob and keep them disabled.
                let sealed = self.master.seal(CA_KEY_PURPOSE, b"").map_err(|e| CaError::Other(e.to_string()))?;
                diesel::insert_into(cas::table)
                    .values(NewCa {
                        name: &pname,
                        name_lower: &pname.to_ascii_lowercase(),
                        cert_pem: &pem,
                        key_enc: &sealed,
                        parent_id,
                        is_root: self_signed,
                        disabled: true,
                        created_at: now(),
                    })
                    .execute(c)?;
                parent_id =
                    Some(cas::table.filter(cas::name_lower.eq(pname.to_ascii_lowercase())).select(cas::id).first(c)?);
            }
            self.insert_ca(c, name, ca, &key, parent_id, false)?;
            Ok(())
        })
    }

    pub fn set_disabled(conn: &mut DbConn, name: &str, disabled: bool) -> Result<(), CaError> {
        let n = diesel::update(cas::table.filter(cas::name_lower.eq(name.to_ascii_lowercase())))
            .set(cas::disabled.eq(disabled))
            .execute(conn)?;
        if n == 0 {
            return Err(CaError::NotFound(name.to_string()));
        }
        Ok(())
    }

    fn insert_ca(
        &self,
        c: &mut DbConn,
        name: &str,
        cert: &X509,
        key: &PKey<Private>,
        parent_id: Option<i64>,
        is_root: bool,
    ) -> Result<i64, CaError> {
        let pem = String::from_utf8(cert.to_pem()?).map_err(|e| CaError::Other(e.to_string()))?;
        let key_der = key.private_key_to_pkcs8()?;
        let sealed = self.master.seal(CA_KEY_PURPOSE, &key_der).map_err(|e| CaError::Other(e.to_string()))?;
        let lower = name.to_ascii_lowercase();
        diesel::insert_into(cas::table)
            .values(NewCa {
                name,
                name_lower: &lower,
                cert_pem: &pem,
                key_enc: &sealed,
                parent_id,
                is_root,
                disabled: false,
                created_at: now(),
            })
            .execute(c)?;
        Ok(cas::table.filter(cas::name_lower.eq(&lower)).select(cas::id).first(c)?)
    }

    pub fn load_by_name(&self, conn: &mut DbConn, name: &str) -> Result<Arc<LoadedCa>, CaError> {
        // Every job asks for its CA: a cached one needs only its id and whether it is still
        // enabled, not its certificate and sealed key read again.
        let name_lower = name.to_ascii_lowercase();
        let head: Option<(i64, bool)> = crate::on_backend!(conn, |c| cas::table
            .filter(cas::name_lower.eq(&name_lower))
            .select((cas::id, cas::disabled))
            .first(c)
            .optional())?;
        let (id, disabled) = head.ok_or_else(|| CaError::NotFound(name.to_string()))?;
        if let Some(ca) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&id)
            && ca.disabled == disabled
        {
            return Ok(ca.clone());
        }
        let row: Option<CaRow> = cas::table.find(id).select(CaRow::as_select()).first(conn).optional()?;
        let row = row.ok_or_else(|| CaError::NotFound(name.to_string()))?;
        self.load_row(conn, row)
    }

    fn load_row(&self, conn: &mut DbConn, row: CaRow) -> Result<Arc<LoadedCa>, CaError> {
        if let Some(ca) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&row.id)
            && ca.disabled == row.disabled
        {
            return Ok(ca.clone());
        }
        let cert = X509::from_pem(row.cert_pem.as_bytes())?;
        let der =
            self.master.open(CA_KEY_PURPOSE, &row.key_enc).map_err(|_| CaError::WrongMasterKey(row.name.clone()))?;
        if der.is_empty() {
            return Err(CaError::NoKey(row.name));
        }
        let key = PKey::private_key_from_der(&der)?;
        let mut parents = vec![];
        let mut parent = row.parent_id;
        while let Some(pid) = parent {
            let p: CaRow = cas::table.find(pid).select(CaRow::as_select()).first(conn)?;
            parents.push(X509::from_pem(p.cert_pem.as_bytes())?);
            parent = p.parent_id;
            if parents.len() > 8 {
                break;
            }
        }
        let ca = Arc::new(LoadedCa { id: row.id, name: row.name, cert, key, parents, disabled: row.disabled });
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(row.id, ca.clone());
        Ok(ca)
    }

    /// The CA to issue from: must exist and be enabled.
    pub fn issuer(&self, conn: &mut DbConn, name: &str) -> Result<Arc<LoadedCa>, CaError> {
        let ca = self.load_by_name(conn, name)?;
        if ca.disabled {
            return Err(CaError::Disabled(ca.name.clone()));
        }
        Ok(ca)
    }

    /// PEM of every root and issuing CA certificate: what clients trust.
    pub fn bundle_pem(conn: &mut DbConn) -> Result<String, CaError> {
        let rows: Vec<(String, bool)> =
            cas::table.order(cas::id.asc()).select((cas::cert_pem, cas::is_root)).load(conn)?;
        // Roots first, then intermediates: a bundle a human can read top-down.
        let mut out = String::new();
        for (pem, _) in rows.iter().filter(|r| r.1) {
            out.push_str(pem);
        }
        for (pem, _) in rows.iter().filter(|r| !r.1) {
            out.push_str(pem);
        }
        Ok(out)
    }
}

/// Makes a CA certificate: self-signed when `issuer` is None.
pub fn make_ca_cert(
    spec: KeySpec,
    cn: &str,
    org: &str,
    issuer: Option<(&X509, &PKey<Private>)>,
    days: u32,
) -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
    let key = spec.generate()?;
    let mut nb = X509NameBuilder::new()?;
    nb.append_entry_by_text("O", org)?;
    nb.append_entry_by_text("CN", cn)?;
    let name = nb.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial = random_serial()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    match issuer {
        Some((c, _)) => b.set_issuer_name(c.subject_name())?,
        None => b.set_issuer_name(&name)?,
    }
    b.set_pubkey(&key)?;
    let nbf = Asn1Time::days_from_now(0)?;
    let back = Asn1Time::from_unix(chrono::Utc::now().timestamp() - 3600)?;
    let _ = nbf;
    b.set_not_before(&back)?;
    let naf = Asn1Time::days_from_now(days)?;
    b.set_not_after(&naf)?;
    let bc = if issuer.is_some() {
        BasicConstraints::new().critical().ca().pathlen(0).build()?
    } else {
        BasicConstraints::new().critical().ca().build()?
    };
    b.append_extension(bc)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().digital_signature().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer.map(|i| i.0.as_ref()), None))?;
    b.append_extension(ski)?;
    if let Some((ic, _)) = issuer {
        let aki = AuthorityKeyIdentifier::new().keyid(false).build(&b.x509v3_context(Some(ic), None))?;
        b.append_extension(aki)?;
    }
    let (sign_key, digest) = match issuer {
        Some((_, k)) => (k, KeySpec::of_key(k).map(|s| s.digest()).unwrap_or(MessageDigest::sha256())),
        None => (&key, spec.digest()),
    };
    b.sign(sign_key, digest)?;
    Ok((b.build(), key))
}
