//! Storage: one diesel code base over SQLite (embedded default) and PostgreSQL (production).
//!
//! `DbConn` is a `MultiConnection`; the pool's manager picks the backend from the URL scheme itself,
//! because diesel's own `establish` tries each backend in turn and throws the real error away.
pub mod backup;
pub mod bench_support;
pub mod models;
pub mod prepared;
pub mod schema;
pub mod sealed;

pub use prepared::Prepared;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection inside a [`DbConn`].
///
/// diesel's `MultiConnection` renders a statement's SQL every time it runs, twice (once to ask
/// whether the statement may be cached, once to run it), even when the statement is already
/// prepared. On the concrete connection a cached statement is found by its Rust type and
/// nothing is rendered. The hot-path statements (those every renewal runs, several under the
/// SQLite writer lock) go this way; it is the same connection, statement cache and transaction.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Postgresql($c) => $body,
        }
    };
}

pub type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConn = r2d2::PooledConnection<ConnectionManager>;

/// A pooled connection: the connection, when it was last handed back to the pool, and (on
/// PostgreSQL) whether a statement found it closed.
///
/// Derefs to [`DbConn`], so a checked-out connection is used as one.
pub struct PoolConn {
    conn: DbConn,
    returned: Option<std::time::Instant>,
    lost: Option<LostConnection>,
}

/// Set when a statement on the PostgreSQL connection it watches fails because the connection is
/// closed (a server restart, an administrator's `pg_terminate_backend`). The pool then drops the
/// connection as it comes back, instead of handing it out again within `ALIVE_BYPASS`.
#[derive(Clone, Default)]
struct LostConnection(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl diesel::connection::Instrumentation for LostConnection {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::result::{DatabaseErrorKind, Error};
        if let diesel::connection::InstrumentationEvent::FinishQuery {
            error:
                Some(Error::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _)),
            ..
        } = event
        {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl std::ops::Deref for PoolConn {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        &self.conn
    }
}

impl std::ops::DerefMut for PoolConn {
    fn deref_mut(&mut self) -> &mut DbConn {
        &mut self.conn
    }
}

/// A PostgreSQL connection handed back less than this long ago is handed out again without a
/// `SELECT 1` first (HikariCP's `aliveBypassWindowMs`, same value): it has just worked, and a
/// busy gateway would otherwise pay a round trip per checkout, about one per request.
const ALIVE_BYPASS: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Connection(#[from] diesel::ConnectionError),
    #[error("{0}")]
    Query(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("migrations: {0}")]
    Migration(String),
}

/// r2d2 manager that reports the real connection error and applies SQLite's pragmas.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: String,
    backend: Backend,
}

impl ConnectionManager {
    pub fn new(url: &str) -> Self {
        ConnectionManager { url: url.to_string(), backend: Backend::from_url(url) }
    }
}

/// Opens one connection for the given URL (also used by the CLI outside the pool).
pub fn establish(url: &str) -> Result<DbConn, DbError> {
    match Backend::from_url(url) {
        Backend::Postgres => Ok(DbConn::Postgresql(PgConnection::establish(url)?)),
        Backend::Sqlite => {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let mut c = SqliteConnection::establish(path)?;
            // WAL lets readers run beside the single writer; busy_timeout turns lock contention
            // into waiting instead of SQLITE_BUSY errors; NORMAL is durable in WAL mode except
            // for the last transactions before a power loss (not a process crash).
            // The WAL is checkpointed by the serving process's checkpointer thread (below); the
            // automatic checkpoint, which runs (and syncs the files) inside the committing
            // writer's turn, is only the backstop. Under steady load that backstop is also what
            // starts the WAL over: SQLite rewinds the WAL only when a writer finds it wholly
            // copied back, which the checkpointer, with commits arriving throughout, does not
            // see. So the WAL grows to the backstop's size, and then a commit checkpoints, syncs
            // twice and rewinds (a third sync), with every other writer waiting. At 10,000 pages
            // (40 MB) that was 5 times a second at 1,900 renewals/s (csr-ec, 16 clients): 16
            // syncs a second in commits, 5.3 ms each, and a p99 of 32-34 ms against a p50 of 7.
            // At 100,000 pages (about 410 MB) it is about once in 1.5 s, and p99 is 17-23 ms.
            // The WAL file is kept at up to 512 MB (`journal_size_limit`) rather than truncated
            // back at each rewind: shrinking a 400 MB file inside that commit took longer than
            // the syncs it saves (p99 170 ms at 64 clients).
            c.batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 15000; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA wal_autocheckpoint = 100000; PRAGMA journal_size_limit = 536870912;",
            )
            .map_err(DbError::Query)?;
            Ok(DbConn::Sqlite(c))
        }
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = PoolConn;
    type Error = DbError;

    fn connect(&self) -> Result<PoolConn, DbError> {
        let mut conn = establish(&self.url)?;
        let lost = match &mut conn {
            DbConn::Postgresql(pg) => {
                let lost = LostConnection::default();
                pg.set_instrumentation(lost.clone());
                Some(lost)
            }
            DbConn::Sqlite(_) => None,
        };
        Ok(PoolConn { conn, returned: None, lost })
    }

    fn is_valid(&self, conn: &mut PoolConn) -> Result<(), DbError> {
        if conn.returned.is_some_and(|at| at.elapsed() < ALIVE_BYPASS) {
            return Ok(());
        }
        conn.conn.batch_execute("SELECT 1").map_err(DbError::Query)
    }

    /// Called as the connection goes back to the pool: notes when, for `is_valid`; a connection a
    /// statement found closed is dropped.
    fn has_broken(&self, conn: &mut PoolConn) -> bool {
        conn.returned = Some(std::time::Instant::now());
        conn.lost.as_ref().is_some_and(|l| l.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

pub fn build_pool(url: &str, size: u32) -> Result<Pool, DbError> {
    let manager = ConnectionManager::new(url);
    // Fail fast with the real error rather than r2d2's generic timeout.
    drop(manager.connect_once()?);
    // A SQLite connection is a file handle: it cannot have dropped while idle, so checking it out
    // needs no `SELECT 1` first. A PostgreSQL one can (a server restart), so it is tested.
    let pool = r2d2::Pool::builder()
        // (Within `ALIVE_BYPASS` of its last use, the test is skipped.)
        .test_on_check_out(manager.backend == Backend::Postgres)
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(20))
        .build(manager)?;
    Ok(pool)
}

impl ConnectionManager {
    fn connect_once(&self) -> Result<DbConn, DbError> {
        establish(&self.url)
    }
}

pub fn run_migrations(conn: &mut DbConn) -> Result<usize, DbError> {
    let applied = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConn::Postgresql(c) => {
            // Several instances may start at once: serialise migrations with an advisory lock.
            c.batch_execute("SELECT pg_advisory_lock(7262001)").map_err(DbError::Query)?;
            let r = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len());
            c.batch_execute("SELECT pg_advisory_unlock(7262001)").map_err(DbError::Query)?;
            r
        }
    };
    applied.map_err(|e| DbError::Migration(e.to_string()))
}

/// Runs `f` in a write transaction that holds the database's writer lock from its start:
/// `BEGIN IMMEDIATE` on SQLite (no lock upgrade deadlocks), and on PostgreSQL an ordinary
/// transaction plus, when `lock_key` is given, a transaction-scoped advisory lock.
pub fn write_tx<T, E, F>(conn: &mut DbConn, lock_key: Option<i64>, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConn::Sqlite(_) => {
            // Writers of this process queue on a mutex before BEGIN IMMEDIATE: SQLite's busy
            // handler would make them sleep and retry (1, 2, 5 … 100 ms), which under load turns
            // a 100 µs transaction into a wait of hundreds of milliseconds.
            let _writer = SqliteWriter::acquire();
            sqlite_immediate_tx(conn, f)
        }
        DbConn::Postgresql(_) => conn.transaction(|c| {
            if let Some(k) = lock_key {
                c.batch_execute(&format!("SELECT pg_advisory_xact_lock({k})")).map_err(E::from)?;
            }
            f(c)
        }),
    }
}

/// `BEGIN IMMEDIATE`, `f`, then `COMMIT` (or `ROLLBACK` when `f` or the commit fails), on a
/// SQLite connection, by the caller holding this process's writer turn.
fn sqlite_immediate_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    // Borrow juggling: immediate_transaction needs the concrete connection, `f` wants DbConn.
    conn.batch_execute("BEGIN IMMEDIATE").map_err(E::from)?;
    match f(conn) {
        Ok(v) => {
            if let Err(e) = conn.batch_execute("COMMIT") {
                let _ = conn.batch_execute("ROLLBACK");
                return Err(E::from(e));
            }
            Ok(v)
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// The connection the serving process's frequent write transactions run on, on a SQLite file
/// database (on PostgreSQL, or an in-memory SQLite whose every connection is a database of its
/// own, there is none and they run on the caller's connection).
///
/// Why one connection: SQLite empties a connection's page cache whenever another connection
/// has written since that connection's last transaction. With the writes spread over the pool,
/// nearly every write transaction began by reading its pages again from the OS, under the
/// writer lock that every other write waits for. The connection that made the last write keeps
/// its cache; so when the renewals' writes all run here, their pages (and their prepared
/// statements) stay at hand. The writer turn is taken first, as by `write_tx`, so this
/// connection is never wanted by two threads at once.
#[derive(Clone, Default)]
pub struct WriterConn(Option<std::sync::Arc<std::sync::Mutex<DbConn>>>);

impl WriterConn {
    pub fn open(url: &str) -> Result<WriterConn, DbError> {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        let in_memory = path == ":memory:" || path.contains("mode=memory") || path.is_empty();
        if Backend::from_url(url) != Backend::Sqlite || in_memory {
            return Ok(WriterConn(None));
        }
        Ok(WriterConn(Some(std::sync::Arc::new(std::sync::Mutex::new(establish(url)?)))))
    }

    /// `write_tx(conn, None, f)`, run on the writer connection when there is one and `conn` is
    /// SQLite. A thread already inside a write transaction (which holds the writer turn, and
    /// may hold this connection) runs `f` on `conn`, as `write_tx` does.
    pub fn write_tx<T, E, F>(&self, conn: &mut DbConn, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConn) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        if let (Some(writer), DbConn::Sqlite(_)) = (&self.0, &*conn) {
            let turn = SqliteWriter::acquire();
            if turn.0.is_some() {
                let mut c = writer.lock().unwrap_or_else(|poisoned| {
                    // A panic inside an earlier transaction may have left it open.
                    writer.clear_poison();
                    let mut c = poisoned.into_inner();
                    let _ = c.batch_execute("ROLLBACK");
                    c
                });
                return sqlite_immediate_tx(&mut c, f);
            }
        }
        write_tx(conn, None, f)
    }
}

/// Runs single-statement writes outside a transaction (each commits on its own) in this process's
/// writer turn on SQLite, like `write_tx`: outside it, a write that meets a running transaction
/// goes to SQLite's busy handler and sleeps. On PostgreSQL, `f` simply runs.
pub fn autocommit_write<T>(conn: &mut DbConn, f: impl FnOnce(&mut DbConn) -> T) -> T {
    let _writer = match conn {
        DbConn::Sqlite(_) => Some(SqliteWriter::acquire()),
        DbConn::Postgresql(_) => None,
    };
    f(conn)
}

/// The process's turn at SQLite's single writer lock. Re-entrant per thread: a thread already
/// holding it (a transaction that opens another connection's transaction) does not wait for
/// itself; that inner transaction falls back on SQLite's busy handler, as before.
struct SqliteWriter(Option<std::sync::MutexGuard<'static, ()>>);

static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    static HOLDS_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl SqliteWriter {
    fn acquire() -> SqliteWriter {
        if HOLDS_WRITER.with(|h| h.get()) {
            return SqliteWriter(None);
        }
        // The guard protects no data: a panic inside another transaction leaves nothing to repair.
        let g = SQLITE_WRITER.lock().unwrap_or_else(|e| e.into_inner());
        HOLDS_WRITER.with(|h| h.set(true));
        SqliteWriter(Some(g))
    }
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        if self.0.is_some() {
            HOLDS_WRITER.with(|h| h.set(false));
        }
    }
}

/// How often the checkpointer copies the WAL back into the database file. Often, so that each
/// checkpoint is small (csr-ec, 16 clients: p99 33-36 ms at 25 ms, 43-44 ms at 100 ms, 65-67 ms
/// at 1 s, p50 about 11 ms in each; measured when the backstop in `establish` was 10,000 pages).
/// What is left for the commit that reaches that backstop to copy, and sync, is then small too.
/// A checkpoint with nothing to copy returns without writing.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(25);

/// On SQLite, starts the thread that checkpoints the WAL (PASSIVE: it never waits for, nor
/// blocks, readers and writers). SQLite's automatic checkpoint runs inside a commit, and its two
/// fsyncs then held up every writer queued behind that commit; here they hold up no one.
pub fn start_checkpointer(pool: &Pool) -> std::io::Result<()> {
    let pool = pool.clone();
    let Ok(conn) = pool.get() else { return Ok(()) };
    if !matches!(**conn, DbConn::Sqlite(_)) {
        return Ok(());
    }
    drop(conn);
    std::thread::Builder::new().name("renewgate-checkpoint".into()).spawn(move || {
        loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            let done = pool
                .get()
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)").map_err(|e| e.to_string()));
            if let Err(e) = done {
                tracing::debug!(error = %e, "WAL checkpoint failed; the next one retries");
            }
        }
    })?;
    Ok(())
}

pub fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// A random GUID (version 4): for what is named once and looked up by its GUID (objects,
/// folders, users, stores), and for tags cut from its first characters.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A time-ordered GUID (version 7: milliseconds since the epoch, then 74 random bits) for the
/// records the renewal path appends: jobs, certificate versions, store push jobs and audit
/// records. Each of these tables keeps its GUIDs in a unique index, and a random GUID lands on
/// a random page of it: one more page written per record (of about 35 per renewal on SQLite),
/// where time-ordered ones share the index's last page. Their creation time is already in the
/// record itself. Not for tags cut from the first characters: those are the timestamp.
pub fn new_record_guid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// One round trip to the database (`SELECT 1`): the health check.
pub fn ping(conn: &mut DbConn) -> Result<(), DbError> {
    conn.batch_execute("SELECT 1").map_err(DbError::Query)
}

/// `write_tx` for callers whose error type converts from `DbError` (the HTTP layer, which does
/// not name diesel's error): the transaction's own failures (BEGIN, COMMIT) arrive as
/// `DbError::Query`, `f`'s errors unchanged.
pub fn write_tx_as<T, E, F>(conn: &mut DbConn, lock_key: Option<i64>, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<DbError>,
{
    enum TxError<E> {
        Db(diesel::result::Error),
        Caller(E),
    }
    impl<E> From<diesel::result::Error> for TxError<E> {
        fn from(e: diesel::result::Error) -> Self {
            TxError::Db(e)
        }
    }
    write_tx(conn, lock_key, |c| f(c).map_err(TxError::Caller)).map_err(|e| match e {
        TxError::Db(e) => E::from(DbError::Query(e)),
        TxError::Caller(e) => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_db() -> DbConn {
        let mut c = establish(":memory:").expect("in-memory SQLite");
        run_migrations(&mut c).expect("migrations");
        c
    }

    #[derive(Debug, PartialEq)]
    enum CallerError {
        Db(String),
        Refused,
    }
    impl From<DbError> for CallerError {
        fn from(e: DbError) -> Self {
            CallerError::Db(e.to_string())
        }
    }

    fn policy_count(c: &mut DbConn) -> i64 {
        schema::policy_folders::table.count().get_result(c).expect("count")
    }

    #[test]
    fn ping_answers() {
        ping(&mut memory_db()).expect("SELECT 1");
    }

    #[test]
    fn the_compromised_keys_migration_lists_the_keys_revoked_before_it() {
        let mut c = memory_db();
        let DbConn::Sqlite(sqlite) = &mut c else { unreachable!("an in-memory SQLite database") };
        // Back to before that migration (2026-12-04-000001), reverting any newer one first.
        let mut reverted = 0;
        loop {
            let version = sqlite.revert_last_migration(SQLITE_MIGRATIONS).expect("revert a migration").to_string();
            reverted += 1;
            if version.replace('-', "").starts_with("20261204000001") {
                break;
            }
        }
        // Three certificates: two of key K (one revoked for key compromise, one superseded),
        // one of key L (revoked as superseded only).
        c.batch_execute(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO certificates (id, guid, object_id, der, chain_pem, serial, thumbprint, common_name,
                 issuer_dn, not_before, not_after, public_key_sha256, created_at)
             VALUES (1, 'g1', 1, x'00', '', '01', 't1', 'a', 'i', '2026-01-01 00:00:00', '2027-01-01 00:00:00', 'K', '2026-01-01 00:00:00'),
                    (2, 'g2', 1, x'00', '', '02', 't2', 'a', 'i', '2026-01-01 00:00:00', '2027-01-01 00:00:00', 'K', '2026-01-01 00:00:00'),
                    (3, 'g3', 2, x'00', '', '03', 't3', 'b', 'i', '2026-01-01 00:00:00', '2027-01-01 00:00:00', 'L', '2026-01-01 00:00:00');
             INSERT INTO revocations (certificate_id, reason, comments, revoked_at)
             VALUES (2, 1, '', '2026-02-01 00:00:00'), (1, 4, '', '2026-02-02 00:00:00'), (3, 4, '', '2026-02-03 00:00:00');
             PRAGMA foreign_keys = ON;",
        )
        .expect("rows from before the migration");
        assert_eq!(run_migrations(&mut c).expect("the migrations again"), reverted);
        assert!(crate::engine::renew::compromised_key(&mut c, "K").expect("lookup"));
        assert!(!crate::engine::renew::compromised_key(&mut c, "L").expect("lookup"), "superseded is not compromised");
        let listed: Vec<(String, i64)> = schema::compromised_keys::table
            .select((schema::compromised_keys::public_key_sha256, schema::compromised_keys::certificate_id))
            .load(&mut c)
            .expect("compromised keys");
        assert_eq!(listed, vec![("K".to_string(), 2)]);
    }

    #[test]
    fn record_guids_are_distinct_and_sort_in_the_order_they_were_made() {
        // What keeps the unique GUID indexes of jobs, certificates and audit records appending
        // at their last page: each new GUID sorts after the ones before it, as text.
        let made: Vec<String> = (0..2000).map(|_| new_record_guid()).collect();
        let mut sorted = made.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, made);
        assert!(made.iter().all(|g| uuid::Uuid::parse_str(g).is_ok_and(|u| u.get_version_num() == 7)));
    }

    #[test]
    fn write_tx_as_commits_and_rolls_back() {
        let mut c = memory_db();
        let before = policy_count(&mut c);
        let insert = |tx: &mut DbConn, dn: &str| -> Result<(), CallerError> {
            tx.batch_execute(&format!(
                "INSERT INTO policy_folders (guid, dn, dn_lower, settings, locked, created_at) \
                 VALUES ('{dn}', '{dn}', '{dn}', '{{}}', '[]', '2020-01-01 00:00:00')"
            ))
            .map_err(|e| CallerError::from(DbError::Query(e)))
        };
        write_tx_as(&mut c, None, |tx| insert(tx, "\\ved\\policy\\kept")).expect("commit");
        assert_eq!(policy_count(&mut c), before + 1);
        let r = write_tx_as(&mut c, None, |tx| {
            insert(tx, "\\ved\\policy\\dropped")?;
            Err::<(), _>(CallerError::Refused)
        });
        assert_eq!(r, Err(CallerError::Refused));
        assert_eq!(policy_count(&mut c), before + 1);
    }

    #[test]
    fn the_writer_connection_commits_for_the_pool_rolls_back_and_outlives_a_panic() {
        let dir = std::env::temp_dir().join(format!("renewgate-writer-{}-{}", std::process::id(), new_guid()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let url = dir.join("gateway.db").to_string_lossy().into_owned();
        let pool = build_pool(&url, 2).expect("pool");
        let mut c = pool.get().expect("connection");
        run_migrations(&mut c).expect("migrations");
        assert!(WriterConn::open(":memory:").expect("no writer").0.is_none(), "an in-memory database has none");
        let writer = WriterConn::open(&url).expect("writer");
        assert!(writer.0.is_some());
        let insert = |tx: &mut DbConn, dn: &str| -> Result<(), diesel::result::Error> {
            tx.batch_execute(&format!(
                "INSERT INTO policy_folders (guid, dn, dn_lower, settings, locked, created_at) \
                 VALUES ('{dn}', '{dn}', '{dn}', '{{}}', '[]', '2020-01-01 00:00:00')"
            ))
        };
        let before = policy_count(&mut c);
        // Committed on the writer connection, read on the pool's.
        writer.write_tx(&mut c, |tx| insert(tx, "\\ved\\policy\\kept")).expect("commit");
        assert_eq!(policy_count(&mut c), before + 1);
        let refused = writer.write_tx(&mut c, |tx| {
            insert(tx, "\\ved\\policy\\refused")?;
            Err::<(), _>(diesel::result::Error::RollbackTransaction)
        });
        assert!(refused.is_err());
        assert_eq!(policy_count(&mut c), before + 1, "a failed transaction keeps nothing");
        // A panic inside a transaction leaves it open on the writer connection; the next
        // transaction rolls it back and runs.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            writer.write_tx(&mut c, |tx| -> Result<(), diesel::result::Error> {
                insert(tx, "\\ved\\policy\\panicked")?;
                panic!("inside a write transaction")
            })
        }));
        assert!(panicked.is_err());
        writer.write_tx(&mut c, |tx| insert(tx, "\\ved\\policy\\after")).expect("the writer after a panic");
        assert_eq!(policy_count(&mut c), before + 2, "the panicked transaction was rolled back");
        drop((c, pool, writer));
        let _ = std::fs::remove_dir_all(dir);
    }
}
