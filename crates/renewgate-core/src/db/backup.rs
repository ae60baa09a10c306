//! Backup and restore of the SQLite database (`renewgate backup FILE`, `renewgate restore FILE`),
//! and the data-directory lock that tells a restore a gateway is running.
//!
//! A backup is taken with SQLite's online backup API while the gateway runs: pages are copied in
//! chunks, each chunk under a short read transaction (in WAL mode readers never block the
//! gateway's writers), into a temporary file beside the target that is checked, made
//! self-contained, synced and renamed into place (mode 0600: it holds sealed secrets). A restore
//! copies a backup the same way into a temporary file beside the live database, checks it, and
//! renames it over the live file once the stale `-wal`/`-shm` files are gone. PostgreSQL has its
//! own tools (pg_dump, pg_restore); this module is SQLite's only.
use std::ffi::{CStr, CString, c_int};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;

use crate::db::schema::{cas, cert_objects};
use crate::db::{Backend, DbConn, sealed};
use crate::secrets::sealed_key_id;

/// The lock file a running gateway holds (exclusively) in its data directory.
pub const LOCK_FILE: &str = "renewgate.lock";
/// Pages copied per step of the online backup (4 MiB with SQLite's default 4 KiB pages).
const PAGES_PER_STEP: c_int = 1024;
/// A source written to between steps makes SQLite start the copy again; after this many
/// restarts the rest is copied in one step (one read transaction, which in WAL mode still lets
/// the gateway write).
const MAX_RESTARTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no SQLite database at {0}")]
    NoDatabase(PathBuf),
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("{path}: {message}")]
    Sqlite { path: PathBuf, message: String },
    #[error("{path} is not a sound SQLite database: PRAGMA integrity_check says: {report}")]
    Integrity { path: PathBuf, report: String },
    #[error(
        "{path} names no master key (no recorded key id and no sealed CA key): it is not a Renewgate database, or an empty one"
    )]
    NoKeyId { path: PathBuf },
    #[error(
        "the backup {path} is sealed under master key {backup}, but the configured master key is {configured}: configure the key the backup was taken under (RENEWGATE_MASTER_KEY_FILE or RENEWGATE_MASTER_KEY); nothing was changed"
    )]
    KeyMismatch { path: PathBuf, backup: String, configured: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |cause| BackupError::Io { path: path.to_path_buf(), cause }
}

/// The SQLite file a database URL names, or `None` for PostgreSQL (as [`crate::db::establish`]
/// reads it: an optional `sqlite://` prefix, then a path).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    match Backend::from_url(url) {
        Backend::Postgres => None,
        Backend::Sqlite => Some(PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url))),
    }
}

/// What a backup (or a restored database) holds.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: PathBuf,
    pub bytes: u64,
    /// Certificate objects (`cert_objects` rows).
    pub objects: i64,
    /// The master key the secrets are sealed under.
    pub key_id: String,
}

/// Progress of a copy: (pages copied, pages in all).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Writes a consistent copy of the live SQLite database `db` to `dest` (see the module comment).
pub fn backup(db: &Path, dest: &Path, progress: Progress<'_>) -> Result<Summary, BackupError> {
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    let tmp = temp_beside(dest);
    let result = (|| {
        create_private(&tmp)?;
        online_copy(db, &tmp, PAGES_PER_STEP, progress)?;
        // The copy carries the source's WAL flag; in rollback mode it is one self-contained file.
        let summary = check_and_inspect(&tmp, true)?;
        install(&tmp, dest)?;
        Ok(Summary { path: dest.to_path_buf(), ..summary })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Replaces the SQLite database `db` with the backup `file` once it passes `PRAGMA
/// integrity_check` and is sealed under `configured_key_id`. The caller holds the data
/// directory's [`DataDirLock`] (no gateway runs).
pub fn restore(
    file: &Path,
    db: &Path,
    configured_key_id: &str,
    progress: Progress<'_>,
) -> Result<Summary, BackupError> {
    if !file.is_file() {
        return Err(BackupError::NoDatabase(file.to_path_buf()));
    }
    let tmp = temp_beside(db);
    let result = (|| {
        create_private(&tmp)?;
        // Through the backup API, not a file copy: a backup opened (in WAL mode) since it was
        // taken may keep part of its content in its own -wal file.
        online_copy(file, &tmp, PAGES_PER_STEP, progress).map_err(|e| match e {
            BackupError::Sqlite { message, .. } => BackupError::Sqlite { path: file.to_path_buf(), message },
            other => other,
        })?;
        let summary = check_and_inspect(&tmp, false).map_err(|e| match e {
            BackupError::Integrity { report, .. } => BackupError::Integrity { path: file.to_path_buf(), report },
            BackupError::NoKeyId { .. } => BackupError::NoKeyId { path: file.to_path_buf() },
            BackupError::Sqlite { message, .. } => BackupError::Sqlite { path: file.to_path_buf(), message },
            other => other,
        })?;
        if summary.key_id != configured_key_id {
            return Err(BackupError::KeyMismatch {
                path: file.to_path_buf(),
                backup: summary.key_id,
                configured: configured_key_id.to_string(),
            });
        }
        // Stale journals of the replaced database would be replayed onto the restored one.
        for suffix in ["-wal", "-shm", "-journal"] {
            let side = PathBuf::from(format!("{}{suffix}", db.display()));
            match std::fs::remove_file(&side) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BackupError::Io { path: side, cause: e }),
            }
        }
        install(&tmp, db)?;
        Ok(Summary { path: db.to_path_buf(), ..summary })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.NAME.tmp-PID` in the target's directory (a rename within one file system is atomic).
fn temp_beside(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "renewgate.db".into());
    target.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// An empty file readable by its owner only (SQLite then writes into it, keeping the mode).
fn create_private(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_err(path))?;
    Ok(())
}

/// Syncs `tmp`, makes it 0600, renames it to `target` and syncs the directory.
fn install(tmp: &Path, target: &Path) -> Result<(), BackupError> {
    let f = File::open(tmp).map_err(io_err(tmp))?;
    f.sync_all().map_err(io_err(tmp))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_err(tmp))?;
    drop(f);
    std::fs::rename(tmp, target).map_err(io_err(target))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    Ok(())
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = integrity_check)]
    text: String,
}

/// `PRAGMA integrity_check` on a copy, optionally switching it to rollback-journal mode (one
/// self-contained file), then what it holds: certificate objects and its master key id.
fn check_and_inspect(path: &Path, rollback_mode: bool) -> Result<Summary, BackupError> {
    let sqlite_err =
        |e: &dyn std::fmt::Display| BackupError::Sqlite { path: path.to_path_buf(), message: e.to_string() };
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| sqlite_err(&e))?;
    if rollback_mode {
        conn.batch_execute("PRAGMA journal_mode = DELETE").map_err(|e| sqlite_err(&e))?;
    }
    // A page too damaged to read fails the pragma itself: that is its report.
    let lines: Vec<Line> = diesel::sql_query("PRAGMA integrity_check")
        .load(&mut conn)
        .map_err(|e| BackupError::Integrity { path: path.to_path_buf(), report: e.to_string() })?;
    let report: Vec<String> = lines.into_iter().map(|l| l.text).collect();
    if report != ["ok"] {
        return Err(BackupError::Integrity { path: path.to_path_buf(), report: report.join("; ") });
    }
    let mut conn = DbConn::Sqlite(conn);
    let objects: i64 = cert_objects::table.count().get_result(&mut conn).map_err(|e| sqlite_err(&e))?;
    // The recorded id; a database from before key ids: the id the root CA key's blob names.
    let recorded = sealed::recorded_key_id(&mut conn).map_err(|e| sqlite_err(&e))?;
    let key_id = match recorded {
        Some(id) => id,
        None => {
            let blob: Option<Vec<u8>> = cas::table
                .order(cas::id)
                .select(cas::key_enc)
                .first(&mut conn)
                .optional()
                .map_err(|e| sqlite_err(&e))?;
            blob.as_deref()
                .and_then(sealed_key_id)
                .map(|k| k.to_string())
                .ok_or_else(|| BackupError::NoKeyId { path: path.to_path_buf() })?
        }
    };
    drop(conn);
    let bytes = std::fs::metadata(path).map_err(io_err(path))?.len();
    Ok(Summary { path: path.to_path_buf(), bytes, objects, key_id })
}

/// Copies the database `src` into the (empty) file `dest` with SQLite's online backup API.
///
/// The only unsafe code here, and why it exists: diesel exposes neither the backup API nor a raw
/// connection handle, and the backup API is the one way to copy a live WAL database consistently
/// while another process writes to it (a file copy can tear; `VACUUM INTO` reads everything in one
/// transaction and writes a reorganised file). Both handles are private to this function and
/// closed on every path.
#[allow(unsafe_code)]
fn online_copy(src: &Path, dest: &Path, pages_per_step: c_int, progress: Progress<'_>) -> Result<(), BackupError> {
    use libsqlite3_sys as ffi;
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| BackupError::Sqlite { path: p.to_path_buf(), message: "path contains a NUL byte".into() })
    };
    let (src_c, dest_c) = (c_path(src)?, c_path(dest)?);
    // SAFETY: every pointer passed is either a valid NUL-terminated string that outlives the call
    // or a handle returned by SQLite and not yet closed; sqlite3_errmsg's string is copied before
    // the next call on its handle; sqlite3_close is called once per opened handle.
    unsafe {
        let errmsg = |db: *mut ffi::sqlite3| CStr::from_ptr(ffi::sqlite3_errmsg(db)).to_string_lossy().into_owned();
        let mut s: *mut ffi::sqlite3 = std::ptr::null_mut();
        let mut d: *mut ffi::sqlite3 = std::ptr::null_mut();
        let rc = ffi::sqlite3_open_v2(src_c.as_ptr(), &mut s, ffi::SQLITE_OPEN_READONLY, std::ptr::null());
        if rc != ffi::SQLITE_OK {
            let message = if s.is_null() { "out of memory".into() } else { errmsg(s) };
            ffi::sqlite3_close(s);
            return Err(BackupError::Sqlite { path: src.to_path_buf(), message });
        }
        let rc = ffi::sqlite3_open_v2(
            dest_c.as_ptr(),
            &mut d,
            ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
            std::ptr::null(),
        );
        if rc != ffi::SQLITE_OK {
            let message = if d.is_null() { "out of memory".into() } else { errmsg(d) };
            ffi::sqlite3_close(d);
            ffi::sqlite3_close(s);
            return Err(BackupError::Sqlite { path: dest.to_path_buf(), message });
        }
        // The gateway's writers hold the lock briefly; wait for them as the gateway itself does.
        ffi::sqlite3_busy_timeout(s, 15000);
        let main = c"main";
        let b = ffi::sqlite3_backup_init(d, main.as_ptr(), s, main.as_ptr());
        if b.is_null() {
            let message = errmsg(d);
            ffi::sqlite3_close(d);
            ffi::sqlite3_close(s);
            return Err(BackupError::Sqlite { path: dest.to_path_buf(), message });
        }
        let (mut restarts, mut last_done) = (0u32, 0u64);
        let mut step_rc;
        loop {
            let pages = if restarts >= MAX_RESTARTS { -1 } else { pages_per_step };
            step_rc = ffi::sqlite3_backup_step(b, pages);
            let total = ffi::sqlite3_backup_pagecount(b).max(0) as u64;
            let done = total.saturating_sub(ffi::sqlite3_backup_remaining(b).max(0) as u64);
            match step_rc {
                ffi::SQLITE_DONE => {
                    progress(total, total);
                    break;
                }
                ffi::SQLITE_OK => {
                    // No headway: SQLite started over because the source changed.
                    if done <= last_done {
                        restarts += 1;
                    }
                    last_done = done;
                    progress(done, total);
                    // Between chunks the gateway has the database to itself for a moment.
                    std::thread::sleep(Duration::from_millis(2));
                }
                ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => std::thread::sleep(Duration::from_millis(50)),
                _ => break,
            }
        }
        // sqlite3_backup_finish reports the backup's error, if any, on the destination handle.
        let finish_rc = ffi::sqlite3_backup_finish(b);
        let result = if step_rc == ffi::SQLITE_DONE && finish_rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            let message = match (errmsg(d), errmsg(s)) {
                (dm, sm) if sm != "not an error" && dm == "not an error" => sm,
                (dm, _) => dm,
            };
            Err(BackupError::Sqlite { path: src.to_path_buf(), message })
        };
        ffi::sqlite3_close(d);
        ffi::sqlite3_close(s);
        result
    }
}

/// The data directory's lock: held exclusively by a running gateway (SQLite), tried by
/// `renewgate restore`. Released when dropped or when the process ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{0} is locked by a running gateway")]
    Held(PathBuf),
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

impl DataDirLock {
    /// Takes `<data_dir>/renewgate.lock` exclusively without waiting (creating the directory and
    /// the file when missing).
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |cause| LockError::Io { path: path.clone(), cause };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path);
        let file = file.map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(path)),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{establish, run_migrations};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rg-backup-{name}-{}-{}", std::process::id(), crate::db::new_guid()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn backup_then_restore_round_trip() {
        let dir = scratch("roundtrip");
        let live = dir.join("renewgate.db");
        let mut c = establish(&live.to_string_lossy()).expect("open");
        run_migrations(&mut c).expect("migrations");
        c.batch_execute(
            "INSERT INTO master_key (id, key_id, recorded_at) VALUES (1, '0123456789abcdef', '2026-01-01 00:00:00')",
        )
        .expect("key id");
        let copy = dir.join("copy.db");
        let mut seen = vec![];
        let s = backup(&live, &copy, &mut |done, total| seen.push((done, total))).expect("backup");
        assert_eq!((s.objects, s.key_id.as_str()), (0, "0123456789abcdef"));
        assert!(seen.last().is_some_and(|(d, t)| d == t && *t > 0), "{seen:?}");
        assert_eq!(std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777, 0o600);
        assert!(!temp_beside(&copy).exists(), "the temporary file is renamed");

        let err = restore(&copy, &dir.join("other.db"), "fedcba9876543210", &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("0123456789abcdef") && err.to_string().contains("fedcba9876543210"), "{err}");
        assert!(!dir.join("other.db").exists());
        let restored = dir.join("restored.db");
        std::fs::write(format!("{}-wal", restored.display()), b"stale").expect("stale wal");
        restore(&copy, &restored, "0123456789abcdef", &mut |_, _| {}).expect("restore");
        assert!(!PathBuf::from(format!("{}-wal", restored.display())).exists());

        let junk = dir.join("junk.db");
        std::fs::write(&junk, vec![7u8; 8192]).expect("junk");
        let err = restore(&junk, &restored, "0123456789abcdef", &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, BackupError::Sqlite { .. }), "{err}");
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Small steps while another connection writes: the copy restarts, then finishes in one step,
    /// and holds a consistent snapshot (every row of a transaction or none).
    #[test]
    fn copy_in_small_steps_beside_a_writer() {
        let dir = scratch("writer");
        let live = dir.join("live.db");
        let url = live.to_string_lossy().into_owned();
        let mut c = establish(&url).expect("open");
        c.batch_execute("CREATE TABLE filler (batch INTEGER, x BLOB)").expect("table");
        for b in 0..200 {
            c.batch_execute(&format!("INSERT INTO filler VALUES ({b}, randomblob(2000)), ({b}, randomblob(2000))"))
                .expect("fill");
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (stop, url) = (stop.clone(), url.clone());
            std::thread::spawn(move || {
                let mut w = establish(&url).expect("writer");
                let mut b = 1000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    w.batch_execute(&format!(
                        "BEGIN IMMEDIATE; INSERT INTO filler VALUES ({b}, randomblob(2000)); \
                         INSERT INTO filler VALUES ({b}, randomblob(2000)); COMMIT;"
                    ))
                    .expect("write");
                    b += 1;
                }
                b - 1000
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let copy = dir.join("copy.db");
        create_private(&copy).expect("dest");
        let mut steps = 0u32;
        online_copy(&live, &copy, 8, &mut |_, _| steps += 1).expect("copy beside a writer");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.join().expect("writer thread");
        assert!(written > 0 && steps > 1, "written {written}, steps {steps}");
        let mut k = establish(&copy.to_string_lossy()).expect("copy");
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let odd: Vec<N> = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM (SELECT batch FROM filler GROUP BY batch HAVING COUNT(*) <> 2)",
        )
        .load(&mut k)
        .expect("count");
        assert_eq!(odd[0].n, 0, "a transaction half in the copy");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = scratch("lock");
        let held = DataDirLock::acquire(&dir).expect("first");
        assert!(matches!(DataDirLock::acquire(&dir), Err(LockError::Held(_))));
        drop(held);
        DataDirLock::acquire(&dir).expect("free again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn postgres_urls_have_no_file() {
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
        assert_eq!(sqlite_path("sqlite:///x/y.db"), Some(PathBuf::from("/x/y.db")));
        assert_eq!(sqlite_path("data/renewgate.db"), Some(PathBuf::from("data/renewgate.db")));
    }
}
