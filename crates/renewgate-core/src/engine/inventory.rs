//! The certificate inventory: objects (a DN, a state, versions) and their issued versions.
use diesel::prelude::*;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::error::RenewError;
use crate::db::DbConn;
use crate::db::models::{CertObject, CertVersion, Job};
use crate::db::schema::{cert_objects, certificates, jobs};
use crate::secrets::MasterKey;

pub const KEY_PURPOSE: &str = "certificate-key";

/// How a caller names a certificate object.
#[derive(Debug, Clone)]
pub enum CertRef {
    Dn(String),
    Guid(String),
    /// Any version's SHA-1 thumbprint (hex; case, spaces and colons ignored).
    Thumbprint(String),
    /// The database id of one issued certificate (a version).
    CertificateId(i64),
    ObjectId(i64),
}

pub fn normalize_thumbprint(t: &str) -> String {
    t.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_ascii_uppercase()
}

pub fn normalize_guid(g: &str) -> String {
    g.trim().trim_start_matches('{').trim_end_matches('}').to_ascii_lowercase()
}

pub fn find_object(conn: &mut DbConn, r: &CertRef) -> Result<Option<CertObject>, RenewError> {
    let q = cert_objects::table.select(CertObject::as_select());
    // The lookups by DN, GUID and id start every renewal: on the concrete connection (`on_backend`).
    let obj = match r {
        CertRef::Dn(dn) => {
            let dn_lower = dn.trim().to_lowercase();
            crate::on_backend!(conn, |c| cert_objects::table
                .select(CertObject::as_select())
                .filter(cert_objects::dn_lower.eq(&dn_lower))
                .first(c)
                .optional())?
        }
        CertRef::Guid(g) => {
            let guid = normalize_guid(g);
            crate::on_backend!(conn, |c| cert_objects::table
                .select(CertObject::as_select())
                .filter(cert_objects::guid.eq(&guid))
                .first(c)
                .optional())?
        }
        CertRef::ObjectId(id) => crate::on_backend!(conn, |c| cert_objects::table
            .select(CertObject::as_select())
            .filter(cert_objects::id.eq(id))
            .first(c)
            .optional())?,
        CertRef::Thumbprint(t) => {
            let oid: Option<i64> = certificates::table
                .filter(certificates::thumbprint.eq(normalize_thumbprint(t)))
                .order(certificates::id.desc())
                .select(certificates::object_id)
                .first(conn)
                .optional()?;
            match oid {
                Some(id) => q.filter(cert_objects::id.eq(id)).first(conn).optional()?,
                None => None,
            }
        }
        CertRef::CertificateId(cid) => {
            let oid: Option<i64> =
                certificates::table.find(cid).select(certificates::object_id).first(conn).optional()?;
            match oid {
                Some(id) => q.filter(cert_objects::id.eq(id)).first(conn).optional()?,
                None => None,
            }
        }
    };
    Ok(obj)
}

/// Objects any of whose versions has this thumbprint (deduplicated, newest first).
pub fn objects_by_thumbprint(
    conn: &mut DbConn,
    thumbprint: &str,
) -> Result<Vec<(CertObject, CertVersion)>, RenewError> {
    let rows: Vec<(CertVersion, CertObject)> = certificates::table
        .inner_join(cert_objects::table)
        .filter(certificates::thumbprint.eq(normalize_thumbprint(thumbprint)))
        .order(certificates::id.desc())
        .select((CertVersion::as_select(), CertObject::as_select()))
        .load(conn)?;
    let mut out: Vec<(CertObject, CertVersion)> = vec![];
    for (v, o) in rows {
        if !out.iter().any(|(x, _)| x.id == o.id) {
            out.push((o, v));
        }
    }
    Ok(out)
}

pub fn current_version(conn: &mut DbConn, obj: &CertObject) -> Result<Option<CertVersion>, RenewError> {
    match obj.current_cert_id {
        Some(id) => Ok(certificates::table.find(id).select(CertVersion::as_select()).first(conn).optional()?),
        None => Ok(None),
    }
}

pub fn versions(conn: &mut DbConn, object_id: i64) -> Result<Vec<CertVersion>, RenewError> {
    Ok(certificates::table
        .filter(certificates::object_id.eq(object_id))
        .order(certificates::id.asc())
        .select(CertVersion::as_select())
        .load(conn)?)
}

pub fn job(conn: &mut DbConn, id: i64) -> Result<Option<Job>, RenewError> {
    Ok(jobs::table.find(id).select(Job::as_select()).first(conn).optional()?)
}

/// A version's certificate, chain and (if the gateway holds it) private key, decrypted.
pub struct CertBundle {
    pub leaf: X509,
    /// Issuer chain, nearest first, root last.
    pub chain: Vec<X509>,
    pub key: Option<PKey<Private>>,
}

impl CertBundle {
    pub fn load(v: &CertVersion, master: &MasterKey, with_key: bool) -> Result<CertBundle, RenewError> {
        let leaf = match just_issued(v.id, &v.der) {
            Some(leaf) => leaf,
            None => X509::from_der(&v.der)?,
        };
        let chain = if v.chain_pem.trim().is_empty() { vec![] } else { parsed_chain(&v.chain_pem)? };
        let key = match (&v.key_enc, with_key) {
            (Some(sealed), true) => {
                let der =
                    master.open(KEY_PURPOSE, sealed).map_err(|e| RenewError::Internal(format!("private key: {e}")))?;
                Some(PKey::private_key_from_der(&der)?)
            }
            _ => None,
        };
        Ok(CertBundle { leaf, chain, key })
    }
}

/// Certificates this process issued last, parsed: the request that waited for one renders it
/// at once, and decoding it again from the row it was just stored in is the slowest step of
/// that answer under OpenSSL 3.
static ISSUED: std::sync::Mutex<std::collections::VecDeque<(i64, X509)>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());
const ISSUED_KEPT: usize = 256;

/// Keeps a certificate just stored as version `id`.
pub fn remember_issued(id: i64, leaf: &X509) {
    let mut q = ISSUED.lock().unwrap_or_else(|e| e.into_inner());
    if q.len() >= ISSUED_KEPT {
        q.pop_front();
    }
    q.push_back((id, leaf.clone()));
}

/// The parsed form of version `id`, when it was issued here lately and is `der` byte for byte.
fn just_issued(id: i64, der: &[u8]) -> Option<X509> {
    let leaf = ISSUED.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().find(|(i, _)| *i == id)?.1.clone();
    (leaf.to_der().ok()?.as_slice() == der).then_some(leaf)
}

/// A stored chain, parsed: every version a CA issued carries the same few chains, and OpenSSL 3
/// decodes a certificate slowly, so the parsed forms are kept (certificates are immutable and
/// shared by reference count).
fn parsed_chain(pem: &str) -> Result<Vec<X509>, openssl::error::ErrorStack> {
    use std::sync::{LazyLock, RwLock};
    static CHAINS: LazyLock<RwLock<std::collections::HashMap<String, Vec<X509>>>> = LazyLock::new(Default::default);
    // Bounded: imported certificates bring chains of their own.
    const KEPT: usize = 256;
    if let Some(c) = CHAINS.read().unwrap_or_else(|e| e.into_inner()).get(pem) {
        return Ok(c.clone());
    }
    let chain = X509::stack_from_pem(pem.as_bytes())?;
    let mut w = CHAINS.write().unwrap_or_else(|e| e.into_inner());
    if w.len() >= KEPT {
        w.clear();
    }
    w.insert(pem.to_string(), chain.clone());
    Ok(chain)
}

/// The names a certificate carries, lower-case and deduplicated: its CN, then its DNS, IP,
/// e-mail and URI SANs (the console searches them by prefix).
pub fn names_of(der: &[u8]) -> Vec<String> {
    match X509::from_der(der) {
        Ok(x) => names_of_cert(&x),
        Err(_) => vec![],
    }
}

/// `names_of` a certificate already parsed.
pub fn names_of_cert(x: &X509) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in x.subject_name().entries_by_nid(openssl::nid::Nid::COMMONNAME) {
        if let Ok(s) = e.data().to_string() {
            let s = s.trim().trim_end_matches('.').to_lowercase();
            if !s.is_empty() && s.len() <= 1024 && !out.contains(&s) {
                out.push(s);
            }
        }
    }
    for s in sans_of(x) {
        let s = s.to_lowercase();
        if s.len() <= 1024 && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// A certificate's SANs as text (DNS names, IPs, e-mail addresses, URIs), in their order.
pub fn sans_of(x: &X509) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        let s = s.trim().trim_end_matches('.').to_string();
        if !s.is_empty() {
            out.push(s);
        }
    };
    if let Some(sans) = x.subject_alt_names() {
        for g in sans.iter() {
            if let Some(d) = g.dnsname() {
                push(d.to_string());
            } else if let Some(ip) = g.ipaddress() {
                match ip.len() {
                    4 => push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(ip);
                        push(std::net::Ipv6Addr::from(b).to_string())
                    }
                    _ => {}
                }
            } else if let Some(m) = g.email() {
                push(m.to_string());
            } else if let Some(u) = g.uri() {
                push(u.to_string());
            }
        }
    }
    out
}

/// Records the names of a stored certificate (in the transaction that stores it).
pub fn record_names(conn: &mut DbConn, certificate_id: i64, object_id: i64, der: &[u8]) -> QueryResult<()> {
    record_names_list(conn, certificate_id, object_id, names_of(der))
}

/// `record_names` for the names already read (`names_of_cert`).
pub fn record_names_list(
    conn: &mut DbConn,
    certificate_id: i64,
    object_id: i64,
    names: Vec<String>,
) -> QueryResult<()> {
    use crate::db::schema::certificate_names;
    // One row at a time: a multi-row insert is not portable across the two backends here.
    for n in names {
        // On the concrete connection (`on_backend`): a completion runs this under the writer lock.
        crate::on_backend!(conn, |c| crate::db::Prepared(
            diesel::insert_into(certificate_names::table)
                .values((
                    certificate_names::certificate_id.eq(certificate_id),
                    certificate_names::object_id.eq(object_id),
                    certificate_names::name.eq(n),
                ))
                .returning(certificate_names::certificate_id)
        )
        .write(c))?;
    }
    Ok(())
}

/// Fills `certificate_names` for certificates stored before it existed, in batches (once, at
/// start; a no-op afterwards). Returns how many certificates were indexed.
pub fn backfill_names(conn: &mut DbConn) -> QueryResult<usize> {
    use crate::db::schema::{certificate_names, meta};
    const KEY: &str = "certificate_names_backfilled";
    let done: Option<String> = meta::table.find(KEY).select(meta::value).first(conn).optional()?;
    if done.is_some() {
        return Ok(0);
    }
    let mut after = 0i64;
    let mut n = 0usize;
    loop {
        let batch: Vec<(i64, i64, Vec<u8>)> = certificates::table
            .filter(certificates::id.gt(after))
            .order(certificates::id)
            .select((certificates::id, certificates::object_id, certificates::der))
            .limit(1000)
            .load(conn)?;
        let Some(last) = batch.last().map(|b| b.0) else { break };
        crate::db::write_tx(conn, None, |c| -> QueryResult<()> {
            for (id, obj, der) in &batch {
                let has: i64 =
                    certificate_names::table.filter(certificate_names::certificate_id.eq(id)).count().get_result(c)?;
                if has == 0 {
                    record_names(c, *id, *obj, der)?;
                }
            }
            Ok(())
        })?;
        n += batch.len();
        after = last;
    }
    // Two instances starting together may both get here: the second insert is a no-op.
    let _ = diesel::insert_into(meta::table)
        .values((meta::key.eq(KEY), meta::value.eq(crate::db::now().to_string())))
        .execute(conn);
    Ok(n)
}
