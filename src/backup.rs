//! `renewgate backup FILE` and `renewgate restore FILE`: the files, the lock, the messages. The
//! copying and checking is the core's (`db::backup`). PostgreSQL has its own tools: both commands
//! say which and exit 2.
use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::db::backup::{self, BackupError, DataDirLock, LockError};
use crate::secrets::MasterKey;
use crate::settings::Settings;

/// Exit code of backup/restore on PostgreSQL (not an error of the command: the wrong tool).
pub const EXIT_POSTGRES: i32 = 2;

/// The parts of a PostgreSQL URL an example command line needs; the password is left out.
struct PgTarget {
    user: Option<String>,
    host: String,
    port: Option<String>,
    db: String,
}

fn pg_target(url: &str) -> PgTarget {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let user = userinfo.map(|u| u.split(':').next().unwrap_or_default().to_string()).filter(|u| !u.is_empty());
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p.to_string())),
        _ => (hostport, None),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let db = if db.is_empty() { user.clone().unwrap_or_else(|| "postgres".into()) } else { db.to_string() };
    PgTarget { user, host: host.to_string(), port, db }
}

impl PgTarget {
    /// `-h HOST [-p PORT] [-U USER] -d DB` (no password: libpq reads ~/.pgpass or PGPASSWORD).
    fn args(&self) -> String {
        let mut a = format!("-h {}", shell_word(&self.host));
        if let Some(p) = &self.port {
            a.push_str(&format!(" -p {p}"));
        }
        if let Some(u) = &self.user {
            a.push_str(&format!(" -U {}", shell_word(u)));
        }
        a.push_str(&format!(" -d {}", shell_word(&self.db)));
        a
    }
}

fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Progress on stderr when it is a terminal: `\r  backup: 512/2048 pages (25%)`.
fn progress_printer(what: &'static str) -> impl FnMut(u64, u64) {
    let terminal = std::io::stderr().is_terminal();
    move |done, total| {
        if terminal && total > 0 {
            eprint!("\r  {what}: {done}/{total} pages ({}%)", done * 100 / total);
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }
}

fn summary_line(verb: &str, s: &backup::Summary) -> String {
    format!(
        "{verb} {}: {} bytes, {} certificate objects, master key {}",
        s.path.display(),
        s.bytes,
        s.objects,
        s.key_id
    )
}

pub fn backup(settings: &Settings, file: &Path) -> anyhow::Result<i32> {
    let url = settings.database_url();
    let Some(db) = backup::sqlite_path(&url) else {
        let t = pg_target(&url);
        eprintln!(
            "this gateway's database is PostgreSQL (database {:?}): take its backups with pg_dump, e.g.\n  \
             pg_dump --format=custom {} --file=renewgate-$(date +%F).dump\n\
             and keep the master key ({}) apart from the dumps.",
            t.db,
            t.args(),
            key_hint(settings)
        );
        return Ok(EXIT_POSTGRES);
    };
    let mut progress = progress_printer("backup");
    let s = backup::backup(&db, file, &mut progress).map_err(|e| anyhow::anyhow!("backup failed: {e}"))?;
    println!("{}", summary_line("backup", &s));
    Ok(0)
}

pub fn restore(settings: &Settings, file: &Path) -> anyhow::Result<i32> {
    let url = settings.database_url();
    let Some(db) = backup::sqlite_path(&url) else {
        let t = pg_target(&url);
        eprintln!(
            "this gateway's database is PostgreSQL (database {:?}): restore it with PostgreSQL's tools, every \
             instance stopped: a pg_dump archive with\n  pg_restore --clean --if-exists {} renewgate.dump\n\
             or a plain SQL dump with\n  psql {} -f renewgate.sql",
            t.db,
            t.args(),
            t.args()
        );
        return Ok(EXIT_POSTGRES);
    };
    crate::secrets::secure_data_dir(&settings.data_dir)
        .map_err(|e| anyhow::anyhow!("data directory {}: {e}", settings.data_dir.display()))?;
    // Held until the restore is done: a gateway starting meanwhile waits for nothing, it fails.
    let _lock = DataDirLock::acquire(&settings.data_dir).map_err(|e| match e {
        LockError::Held(path) => anyhow::anyhow!(
            "a gateway is running on the data directory {} (it holds {}): stop it, then restore; nothing was changed",
            settings.data_dir.display(),
            path.display()
        ),
        other => anyhow::anyhow!("{other}"),
    })?;
    let (key, _) = MasterKey::load_existing(settings)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no master key is configured and {} does not exist: configure the key the backup was taken under \
             (RENEWGATE_MASTER_KEY_FILE or RENEWGATE_MASTER_KEY); nothing was changed",
            settings.data_dir.join("master.key").display()
        )
    })?;
    let mut progress = progress_printer("restore");
    let s = backup::restore(file, &db, &key.key_id().to_string(), &mut progress).map_err(|e| match e {
        BackupError::KeyMismatch { .. } | BackupError::Integrity { .. } => anyhow::anyhow!("restore refused: {e}"),
        other => anyhow::anyhow!("restore failed: {other}; nothing was changed"),
    })?;
    println!("{}", summary_line("restored", &s));
    eprintln!("restored from {}; start the gateway (it applies newer migrations at start)", file.display());
    Ok(0)
}

/// Where the configured master key comes from, for the PostgreSQL message (never the key).
fn key_hint(settings: &Settings) -> String {
    match (&settings.master_key_file, &settings.master_key) {
        (Some(p), _) => format!("RENEWGATE_MASTER_KEY_FILE {}", p.display()),
        (None, Some(_)) => "RENEWGATE_MASTER_KEY".into(),
        (None, None) => settings.data_dir.join("master.key").display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_example_leaves_the_password_out() {
        let t = pg_target("postgres://rg:s3cret@db.example:5433/renewgate?sslmode=require");
        assert_eq!(t.args(), "-h db.example -p 5433 -U rg -d renewgate");
        let t = pg_target("postgresql://localhost/inventory");
        assert_eq!(t.args(), "-h localhost -d inventory");
    }
}
