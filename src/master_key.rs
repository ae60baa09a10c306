//! `renewgate master-key rotate|show`: the key files and the output. Re-sealing every stored secret
//! and recording the key id is the core's (`db::sealed`), in one transaction.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::db::{self, sealed};
use crate::secrets::{KeySource, MasterKey, write_private_file};
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum MasterKeyCmd {
    /// Re-seal every stored secret under a new master key, in one transaction, and record its id.
    /// Stop every instance first. The current key stays configured for this command
    /// (RENEWGATE_MASTER_KEY_FILE, RENEWGATE_MASTER_KEY or <data dir>/master.key); when it is the
    /// default <data dir>/master.key, that file is replaced by the new key (the old one kept in
    /// master.key.old).
    Rotate {
        /// The new key: base64 of 32 random bytes (e.g. `openssl rand -base64 32`), mode 0600.
        #[arg(long)]
        new_key_file: PathBuf,
    },
    /// Print the id of the configured master key and the id the database records (never a key).
    Show,
}

pub fn run(settings: &Settings, cmd: MasterKeyCmd) -> anyhow::Result<i32> {
    match cmd {
        MasterKeyCmd::Rotate { new_key_file } => rotate(settings, &new_key_file),
        MasterKeyCmd::Show => show(settings),
    }
}

fn describe(source: &KeySource) -> String {
    match source {
        KeySource::File(p) => format!("RENEWGATE_MASTER_KEY_FILE {}", p.display()),
        KeySource::Env => "RENEWGATE_MASTER_KEY".into(),
        KeySource::DefaultFile(p) => p.display().to_string(),
    }
}

fn configured(settings: &Settings) -> anyhow::Result<(MasterKey, KeySource)> {
    MasterKey::load_existing(settings)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no master key is configured and {} does not exist: configure the key the database is under \
             (RENEWGATE_MASTER_KEY_FILE or RENEWGATE_MASTER_KEY)",
            settings.data_dir.join("master.key").display()
        )
    })
}

fn open_database(settings: &Settings) -> anyhow::Result<db::DbConn> {
    let url = settings.database_url();
    let backend = db::Backend::from_url(&url);
    let mut conn =
        db::establish(&url).map_err(|e| anyhow::anyhow!("cannot open the {} database: {e}", backend.name()))?;
    db::run_migrations(&mut conn)?;
    Ok(conn)
}

fn show(settings: &Settings) -> anyhow::Result<i32> {
    let (key, source) = configured(settings)?;
    let mut conn = open_database(settings)?;
    let recorded = sealed::recorded_key_id(&mut conn)?;
    println!("configured\t{}\t{}", key.key_id(), describe(&source));
    println!("database\t{}", recorded.as_deref().unwrap_or("-"));
    Ok(0)
}

/// Warns (stderr) when a key file can be read by others than its owner.
fn warn_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode() & 0o777;
        if mode != 0o600 {
            eprintln!(
                "warning: {} has mode {mode:04o}; a master key file should be readable by its owner only (chmod 600 {})",
                path.display(),
                path.display()
            );
        }
    }
}

fn rotate(settings: &Settings, new_key_file: &Path) -> anyhow::Result<i32> {
    let new = MasterKey::from_file(new_key_file)?;
    warn_mode(new_key_file);
    let (old, source) = configured(settings)?;
    let mut conn = open_database(settings)?;
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |col: &sealed::SealedColumn, done: u64, total: u64| {
        if terminal && total > 0 {
            eprint!("\r  re-sealing {}: {done}/{total}", col.what);
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    };
    let audit = crate::cli::cli_audit(crate::engine::audit::action::MASTER_KEY_CHANGE, "master key", "");
    let report =
        sealed::rotate(&mut conn, &old, &new, Some(audit), &mut progress).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("master key rotated: {} -> {}", report.old, report.new);
    for (col, n) in &report.resealed {
        println!("  re-sealed {n} {} ({}.{})", col.what, col.table, col.column);
    }
    if report.legacy > 0 {
        println!("  ({} of {} were in the format without key id)", report.legacy, report.total());
    }
    println!("the database records master key {}", report.new);
    let _ = std::io::stdout().flush();
    // Committed: from here on the database is under the new key, whatever happens to the files.
    let mut steps = vec![];
    match &source {
        KeySource::DefaultFile(path) => match replace_default_key(path, &old, &new) {
            Ok(backup) => steps.push(format!(
                "{} now holds the new key; the old one is in {} (0600): keep it with the backups taken before now",
                path.display(),
                backup.display()
            )),
            Err(e) => {
                eprintln!(
                    "error: the database is under the new key, but {} could not be replaced ({e}): copy {} there",
                    path.display(),
                    new_key_file.display()
                );
                return Ok(1);
            }
        },
        other => steps.push(format!(
            "point RENEWGATE_MASTER_KEY_FILE at {} on every instance (it was {}), and keep the old key with the backups taken before now",
            new_key_file.display(),
            describe(other)
        )),
    }
    steps.push(format!(
        "restart every instance sharing this database with the new key {}: one still holding the old key {} refuses to start",
        report.new, report.old
    ));
    steps.push("ACME nonces handed out under the old key are refused once (clients retry with a fresh one)".into());
    eprintln!("next:");
    for s in steps {
        eprintln!("  - {s}");
    }
    Ok(0)
}

/// Replaces the default key file with the new key (atomically: a 0600 temporary file renamed over
/// it), the old key first copied to `master.key.old` (an earlier `master.key.old` holding another
/// key is kept as `master.key.old.<its key id>`). Returns the backup's path.
fn replace_default_key(path: &Path, old: &MasterKey, new: &MasterKey) -> std::io::Result<PathBuf> {
    let backup = path.with_file_name("master.key.old");
    if let Ok(earlier) = MasterKey::from_file(&backup)
        && earlier.key_id() != old.key_id()
    {
        std::fs::rename(&backup, path.with_file_name(format!("master.key.old.{}", earlier.key_id())))?;
    }
    write_private_file(&backup, old.to_file_contents().as_bytes())?;
    write_private_file(path, new.to_file_contents().as_bytes())?;
    Ok(backup)
}
