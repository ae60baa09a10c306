//! Where secrets sealed under the master key live ([`SEALED`]), and what is done to all of them at
//! once: the start-up check that an instance holds the database's master key, and the rotation of
//! that key (`renewgate master-key rotate`).
//!
//! The database records the id of its master key (table `master_key`, one row; a [`KeyId`] names a
//! key without revealing it). The first start records the configured key's id — on a database
//! written before key ids, only once that key is seen to open a stored secret of every kind.
//! From then on an instance holding another key refuses to start, naming both ids. A rotation
//! re-seals every registered secret under the new key and records its id, in one transaction.
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary};

use crate::db::schema::master_key;
use crate::db::{DbConn, now, write_tx};
use crate::engine::audit;
use crate::secrets::{KeyId, MasterKey, SecretError};

/// One column of sealed blobs: `table.column` (nullable or not), its rows keyed by the integer
/// column `id`, sealed for `purpose` (the additional data of [`MasterKey::seal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub id: &'static str,
    pub column: &'static str,
    pub purpose: &'static str,
    /// What the blobs are, for people (`renewgate master-key rotate` counts by it).
    pub what: &'static str,
}

const fn sealed(
    table: &'static str,
    id: &'static str,
    column: &'static str,
    purpose: &'static str,
    what: &'static str,
) -> SealedColumn {
    SealedColumn { table, id, column, purpose, what }
}

/// Every column holding blobs sealed under the master key. A table that stores a new kind of
/// secret adds one line here, and rotation and the start-up check cover it (the unit test
/// `every_enc_column_is_registered` fails for a `*_enc` column missing from this list).
pub const SEALED: &[SealedColumn] = &[
    // Includes the empty blobs of imported chain certificates (no key is held for them).
    sealed("cas", "id", "key_enc", crate::ca::builtin::CA_KEY_PURPOSE, "CA keys"),
    sealed("certificates", "id", "key_enc", crate::engine::inventory::KEY_PURPOSE, "certificate private keys"),
    sealed("stores", "id", "password_enc", crate::engine::stores::STORE_PASSWORD_PURPOSE, "store passwords"),
    sealed("acme_eab_keys", "id", "hmac_enc", crate::acme::db::accounts::EAB_PURPOSE, "ACME EAB keys"),
    sealed("issuers", "id", "eab_hmac_enc", crate::ca::upstream::EAB_PURPOSE, "upstream EAB keys"),
    sealed("issuers", "id", "account_key_enc", crate::ca::upstream::ACCOUNT_PURPOSE, "upstream ACME accounts"),
    sealed("issuers", "id", "tsig_secret_enc", crate::ca::upstream::TSIG_PURPOSE, "upstream dns-01 TSIG keys"),
    // The key an upstream job generated, kept until the job ends (a resumed order needs it).
    sealed("jobs", "id", "key_enc", crate::engine::inventory::KEY_PURPOSE, "keys of upstream jobs"),
];

/// Serialises recording the key id and rotating it (PostgreSQL advisory lock; SQLite's writer lock).
const MASTER_KEY_LOCK: i64 = 7262040;
/// Rows re-sealed per read during a rotation (memory stays bounded for large inventories).
const BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    #[error(
        "the database's secrets are sealed under master key {database}; this instance holds master key {configured}: configure the rotated key (RENEWGATE_MASTER_KEY_FILE)"
    )]
    KeyMismatch { database: String, configured: KeyId },
    #[error(
        "the database's secrets are sealed under master key {database}, but the configured (old) master key is {configured}: configure the key the database is under (RENEWGATE_MASTER_KEY_FILE, RENEWGATE_MASTER_KEY or <data dir>/master.key) to rotate from it; nothing was changed"
    )]
    RotateFromWrongKey { database: String, configured: KeyId },
    #[error(
        "cannot open {what} ({table}.{column}, {id_column} {id}) with the configured master key {configured}: {cause}; nothing was changed"
    )]
    CannotOpen {
        what: &'static str,
        table: &'static str,
        column: &'static str,
        id_column: &'static str,
        id: i64,
        configured: KeyId,
        cause: SecretError,
    },
    #[error("the new master key is the configured one (key id {0}): nothing to rotate")]
    SameKey(KeyId),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("{0}")]
    Secret(#[from] SecretError),
}

/// The outcome of [`check_master_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// The database records this key's id.
    Matches,
    /// The database recorded no key id (a new database, or one written before key ids); this
    /// key opens what is stored, and its id is recorded now.
    Recorded,
    /// The database recorded no key id and this key failed to open a stored secret (named here):
    /// nothing recorded. A start then fails where that secret is used (the CA load says which
    /// key to configure).
    Unverified(String),
}

/// The key id the database records, if any.
pub fn recorded_key_id(c: &mut DbConn) -> QueryResult<Option<String>> {
    master_key::table.find(1i64).select(master_key::key_id).first(c).optional()
}

/// The start-up check: does `master` match the key id the database records? Records it when the
/// database has none (see [`KeyCheck`]). A different recorded id is [`SealedError::KeyMismatch`].
pub fn check_master_key(c: &mut DbConn, master: &MasterKey) -> Result<KeyCheck, SealedError> {
    let mine = master.key_id();
    let compare = |recorded: String| {
        if recorded == mine.to_string() {
            Ok(KeyCheck::Matches)
        } else {
            Err(SealedError::KeyMismatch { database: recorded, configured: mine })
        }
    };
    if let Some(recorded) = recorded_key_id(c)? {
        return compare(recorded);
    }
    // Under the lock: instances starting together, or a rotation, record one id.
    write_tx(c, Some(MASTER_KEY_LOCK), |tx| -> Result<KeyCheck, SealedError> {
        if let Some(recorded) = recorded_key_id(tx)? {
            return compare(recorded);
        }
        for col in SEALED {
            let Some(blob) = load_batch(tx, col, i64::MIN, 1)?.pop() else { continue };
            match master.open(col.purpose, &blob.blob) {
                Ok(_) => {}
                Err(SecretError::WrongKey { sealed, .. }) => {
                    return Err(SealedError::KeyMismatch { database: sealed.to_string(), configured: mine });
                }
                Err(e) => {
                    return Ok(KeyCheck::Unverified(format!(
                        "{} ({}.{}, {} {}): {e}",
                        col.what, col.table, col.column, col.id, blob.id
                    )));
                }
            }
        }
        diesel::insert_into(master_key::table)
            .values((
                master_key::id.eq(1i64),
                master_key::key_id.eq(mine.to_string()),
                master_key::recorded_at.eq(now()),
            ))
            .execute(tx)?;
        Ok(KeyCheck::Recorded)
    })
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub old: KeyId,
    pub new: KeyId,
    /// Blobs re-sealed per registered column, in [`SEALED`]'s order.
    pub resealed: Vec<(SealedColumn, u64)>,
    /// How many of them were in the legacy format (no key id).
    pub legacy: u64,
}

impl Rotation {
    pub fn total(&self) -> u64 {
        self.resealed.iter().map(|(_, n)| n).sum()
    }

    /// One line: the counts per kind (for the audit trail).
    pub fn summary(&self) -> String {
        let counts: Vec<String> = self.resealed.iter().map(|(c, n)| format!("{n} {}", c.what)).collect();
        format!("master key {} replaced by {}: re-sealed {}", self.old, self.new, counts.join(", "))
    }
}

/// Re-seals every blob of every [`SEALED`] column from `old` to `new` and records `new`'s id, in
/// one transaction (writers wait; on PostgreSQL the tables are locked against writes). Fails,
/// changing nothing, when the database records another key than `old`, or when `old` cannot open
/// any one blob. `progress(column, done, total)` is called as the work advances; `audit`, when
/// given, is recorded in the same transaction with the summary as its detail.
pub fn rotate(
    c: &mut DbConn,
    old: &MasterKey,
    new: &MasterKey,
    audit: Option<audit::Entry>,
    progress: &mut dyn FnMut(&SealedColumn, u64, u64),
) -> Result<Rotation, SealedError> {
    if old.key_id() == new.key_id() {
        return Err(SealedError::SameKey(old.key_id()));
    }
    write_tx(c, Some(MASTER_KEY_LOCK), |tx| -> Result<Rotation, SealedError> {
        if let DbConn::Postgresql(_) = tx {
            // Readers go on; a writer that would add a blob under the old key waits for the commit.
            let mut tables: Vec<&str> = SEALED.iter().map(|s| s.table).collect();
            tables.sort_unstable();
            tables.dedup();
            tx.batch_execute(&format!("LOCK TABLE {}, master_key IN EXCLUSIVE MODE", tables.join(", ")))?;
        }
        let recorded = recorded_key_id(tx)?;
        if let Some(r) = &recorded
            && *r != old.key_id().to_string()
        {
            return Err(SealedError::RotateFromWrongKey { database: r.clone(), configured: old.key_id() });
        }
        let mut report = Rotation { old: old.key_id(), new: new.key_id(), resealed: vec![], legacy: 0 };
        for col in SEALED {
            let total = count(tx, col)?;
            let mut done = 0u64;
            progress(col, 0, total);
            let mut after = i64::MIN;
            loop {
                let rows = load_batch(tx, col, after, BATCH)?;
                let Some(last) = rows.last() else { break };
                after = last.id;
                for row in &rows {
                    let plain = old.open(col.purpose, &row.blob).map_err(|cause| SealedError::CannotOpen {
                        what: col.what,
                        table: col.table,
                        column: col.column,
                        id_column: col.id,
                        id: row.id,
                        configured: old.key_id(),
                        cause,
                    })?;
                    if crate::secrets::sealed_key_id(&row.blob).is_none() {
                        report.legacy += 1;
                    }
                    store(tx, col, row.id, &new.seal(col.purpose, &plain)?)?;
                }
                done += rows.len() as u64;
                progress(col, done, total);
            }
            report.resealed.push((*col, done));
        }
        let ts = now();
        if recorded.is_some() {
            diesel::update(master_key::table.find(1i64))
                .set((
                    master_key::key_id.eq(new.key_id().to_string()),
                    master_key::recorded_at.eq(ts),
                    master_key::rotated_at.eq(Some(ts)),
                ))
                .execute(tx)?;
        } else {
            diesel::insert_into(master_key::table)
                .values((
                    master_key::id.eq(1i64),
                    master_key::key_id.eq(new.key_id().to_string()),
                    master_key::recorded_at.eq(ts),
                    master_key::rotated_at.eq(Some(ts)),
                ))
                .execute(tx)?;
        }
        if let Some(mut entry) = audit {
            entry.detail = report.summary();
            audit::record(tx, &entry)?;
        }
        Ok(report)
    })
}

#[derive(QueryableByName)]
struct BlobRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Binary)]
    blob: Vec<u8>,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

// The SQL below names tables and columns from SEALED (constants of this crate), never input.
// `$1`, `$2` are positional parameters on both backends.

/// Up to `limit` non-NULL blobs of `col` with an id above `after`, by id.
fn load_batch(c: &mut DbConn, col: &SealedColumn, after: i64, limit: i64) -> QueryResult<Vec<BlobRow>> {
    let q = diesel::sql_query(format!(
        "SELECT {id} AS id, {column} AS blob FROM {table} WHERE {column} IS NOT NULL AND {id} > $1 ORDER BY {id} LIMIT $2",
        id = col.id,
        column = col.column,
        table = col.table
    ))
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(limit);
    match c {
        DbConn::Sqlite(c) => q.load(c),
        DbConn::Postgresql(c) => q.load(c),
    }
}

fn count(c: &mut DbConn, col: &SealedColumn) -> QueryResult<u64> {
    let q = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM {table} WHERE {column} IS NOT NULL",
        table = col.table,
        column = col.column
    ));
    let row: CountRow = match c {
        DbConn::Sqlite(c) => q.get_result(c)?,
        DbConn::Postgresql(c) => q.get_result(c)?,
    };
    Ok(row.n.max(0) as u64)
}

fn store(c: &mut DbConn, col: &SealedColumn, id: i64, blob: &[u8]) -> QueryResult<()> {
    let q = diesel::sql_query(format!(
        "UPDATE {table} SET {column} = $1 WHERE {id} = $2",
        table = col.table,
        column = col.column,
        id = col.id
    ))
    .bind::<Binary, _>(blob)
    .bind::<BigInt, _>(id);
    let n = match c {
        DbConn::Sqlite(c) => q.execute(c)?,
        DbConn::Postgresql(c) => q.execute(c)?,
    };
    debug_assert_eq!(n, 1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{establish, run_migrations};

    fn memory_db() -> DbConn {
        let mut c = establish(":memory:").expect("in-memory SQLite");
        run_migrations(&mut c).expect("migrations");
        c
    }

    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }

    /// A `*_enc` column anywhere in the schema holds a sealed secret: it must be in SEALED, so
    /// rotation re-seals it (an unregistered one would be unreadable after a rotation).
    #[test]
    fn every_enc_column_is_registered() {
        let DbConn::Sqlite(mut c) = memory_db() else { unreachable!() };
        let tables: Vec<Name> =
            diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table'").load(&mut c).unwrap();
        let mut found = vec![];
        for t in tables {
            let cols: Vec<Name> =
                diesel::sql_query(format!("SELECT name FROM pragma_table_info('{}')", t.name)).load(&mut c).unwrap();
            for col in cols.into_iter().filter(|c| c.name.ends_with("_enc")) {
                found.push((t.name.clone(), col.name));
            }
        }
        assert!(!found.is_empty());
        for (t, col) in &found {
            assert!(
                SEALED.iter().any(|s| s.table == t && s.column == col),
                "{t}.{col} holds sealed secrets but is not in db::sealed::SEALED"
            );
        }
        for s in SEALED {
            assert!(
                found.iter().any(|(t, c)| t == s.table && c == s.column),
                "{}.{} does not exist",
                s.table,
                s.column
            );
        }
    }

    fn insert_store(c: &mut DbConn, n: i64, password: Option<&[u8]>) {
        let q = diesel::sql_query(
            "INSERT INTO stores (guid, client_machine, client_machine_lower, store_path, store_type, password_enc, include_keys, created_at) \
             VALUES ($1, 'm', 'm', $1, 'pkcs12', $2, 0, '2026-01-01 00:00:00')",
        )
        .bind::<diesel::sql_types::Text, _>(format!("store-{n}"))
        .bind::<diesel::sql_types::Nullable<Binary>, _>(password);
        let DbConn::Sqlite(s) = c else { unreachable!() };
        q.execute(s).unwrap();
    }

    fn passwords(c: &mut DbConn) -> Vec<Vec<u8>> {
        let col = SEALED.iter().find(|s| s.table == "stores").unwrap();
        load_batch(c, col, i64::MIN, 10_000).unwrap().into_iter().map(|r| r.blob).collect()
    }

    #[test]
    fn check_records_then_refuses_another_key() {
        let mut c = memory_db();
        let k = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        assert_eq!(check_master_key(&mut c, &k).unwrap(), KeyCheck::Recorded);
        assert_eq!(check_master_key(&mut c, &k).unwrap(), KeyCheck::Matches);
        let e = check_master_key(&mut c, &other).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&k.key_id().to_string()) && text.contains(&other.key_id().to_string()), "{text}");
        assert!(text.contains("RENEWGATE_MASTER_KEY_FILE"), "{text}");
    }

    #[test]
    fn check_on_a_database_without_key_id_opens_before_recording() {
        let mut c = memory_db();
        let k = MasterKey::generate().unwrap();
        insert_store(&mut c, 1, Some(&k.seal(crate::engine::stores::STORE_PASSWORD_PURPOSE, b"pw").unwrap()));
        let other = MasterKey::generate().unwrap();
        // A current-format blob names its key: refused with both ids, nothing recorded.
        assert!(matches!(check_master_key(&mut c, &other), Err(SealedError::KeyMismatch { .. })));
        assert_eq!(recorded_key_id(&mut c).unwrap(), None);
        assert_eq!(check_master_key(&mut c, &k).unwrap(), KeyCheck::Recorded);
        assert_eq!(recorded_key_id(&mut c).unwrap(), Some(k.key_id().to_string()));
    }

    #[test]
    fn rotation_reseals_everything_or_nothing() {
        let mut c = memory_db();
        let old = MasterKey::generate().unwrap();
        let new = MasterKey::generate().unwrap();
        let purpose = crate::engine::stores::STORE_PASSWORD_PURPOSE;
        for n in 0..(BATCH + 3) {
            insert_store(&mut c, n, Some(&old.seal(purpose, format!("pw{n}").as_bytes()).unwrap()));
        }
        insert_store(&mut c, -1, None);
        check_master_key(&mut c, &old).unwrap();
        let mut calls = 0;
        let r = rotate(&mut c, &old, &new, None, &mut |_, _, _| calls += 1).unwrap();
        assert!(calls >= SEALED.len());
        let stores = r.resealed.iter().find(|(s, _)| s.table == "stores").unwrap().1;
        assert_eq!(stores, (BATCH + 3) as u64);
        assert_eq!(r.total(), stores);
        for (n, blob) in passwords(&mut c).iter().enumerate() {
            assert_eq!(crate::secrets::sealed_key_id(blob), Some(new.key_id()));
            assert_eq!(new.open(purpose, blob).unwrap(), format!("pw{n}").as_bytes());
        }
        assert_eq!(recorded_key_id(&mut c).unwrap(), Some(new.key_id().to_string()));
        assert!(matches!(check_master_key(&mut c, &old), Err(SealedError::KeyMismatch { .. })));
        // Rotating from a key the database is not under: refused, nothing changed.
        let before = passwords(&mut c);
        let third = MasterKey::generate().unwrap();
        assert!(matches!(
            rotate(&mut c, &old, &third, None, &mut |_, _, _| {}),
            Err(SealedError::RotateFromWrongKey { .. })
        ));
        assert!(matches!(rotate(&mut c, &new, &new, None, &mut |_, _, _| {}), Err(SealedError::SameKey(_))));
        // One blob the key cannot open: the whole rotation is rolled back.
        insert_store(&mut c, 9_999, Some(&third.seal(purpose, b"stray").unwrap()));
        let e = rotate(&mut c, &new, &third, None, &mut |_, _, _| {}).unwrap_err();
        assert!(matches!(e, SealedError::CannotOpen { table: "stores", .. }), "{e}");
        let after = passwords(&mut c);
        assert_eq!(&after[..before.len()], &before[..]);
        assert_eq!(recorded_key_id(&mut c).unwrap(), Some(new.key_id().to_string()));
    }
}
