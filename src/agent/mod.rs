//! The store agent: polls the gateway for its push jobs over HTTPS, installs certificates into
//! PEM-directory, PKCS#12 and JKS stores under a store root (write a temp file, fsync, rename,
//! keep the previous file as `.bak`), runs a reload command, and reports each result. A job in
//! progress when the agent dies is claimed again once its lease expires.
//!
//! Every file operation goes through [`safe_fs`]: paths are resolved beneath the store root
//! without following symbolic links (a link there, as a directory or as the file, fails the job
//! with "refusing to …"), temporary files get random names and are created exclusively with their
//! final mode, backups are hard links (never copies), and a remove takes the backup and leftover
//! temporary files with it.
mod safe_fs;

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use openssl::pkey::PKey;
use openssl::x509::X509;

use crate::api::admin::agent::{AgentJob, AgentResult};
use safe_fs::{StoreRoot, WriteOptions};

pub struct AgentConfig {
    pub gateway: String,
    pub token: String,
    /// Where the token came from: a renewed token is written back there (0600, atomically).
    pub token_file: Option<PathBuf>,
    pub ca_bundle: PathBuf,
    pub client_machine: String,
    pub store_root: PathBuf,
    pub reload_command: Option<String>,
    pub poll_interval: Duration,
    pub once: bool,
}

pub struct Agent {
    cfg: AgentConfig,
    http: ureq::Agent,
    /// The token in force: replaced when the gateway renews it.
    token: std::sync::RwLock<String>,
}

/// Writes a renewed token next to the old file (random temp name, 0600, no links followed), then
/// renames it over the file.
fn write_token_file(dir: &Path, f: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut rnd = [0u8; 8];
    openssl::rand::rand_bytes(&mut rnd).map_err(std::io::Error::other)?;
    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("token");
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(rnd)));
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&tmp)?;
    let written =
        file.write_all(format!("{token}\n").as_bytes()).and_then(|_| file.sync_all()).and_then(|_| fs::rename(&tmp, f));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// How often a running agent asks the gateway whether its token is due for renewal (the gateway
/// renews it once a third of its lifetime or less remains).
const TOKEN_CHECK_EVERY: Duration = Duration::from_secs(600);

impl Agent {
    pub fn new(cfg: AgentConfig) -> anyhow::Result<Agent> {
        let pem = fs::read(&cfg.ca_bundle).map_err(|e| anyhow::anyhow!("{}: {e}", cfg.ca_bundle.display()))?;
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        anyhow::ensure!(!certs.is_empty(), "{}: no certificates", cfg.ca_bundle.display());
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build();
        let http = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let token = std::sync::RwLock::new(cfg.token.clone());
        Ok(Agent { cfg, http, token })
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Asks the gateway to renew the token if it is due; a renewed token replaces the one in
    /// memory and, with `--token-file`, the file (written to a temp file and renamed, 0600).
    pub fn renew_token_if_due(&self) -> anyhow::Result<bool> {
        // A token given on the command line or in the environment cannot be rewritten: renewing
        // it would leave the next start with a revoked token. Only a --token-file is renewed.
        let Some(f) = self.cfg.token_file.clone() else {
            return Ok(false);
        };
        // Renew only where the new token can be kept: a directory we cannot write to would lose it.
        let dir = f.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
        // SAFETY: access(2) reads the NUL-terminated path only.
        if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK) } != 0 {
            tracing::warn!(dir = %dir.display(), "the token file's directory is not writable: the agent token is not renewed");
            return Ok(false);
        }
        let mut resp =
            self.http.post(&self.url("/api/v1/agent/token")).header("Authorization", &self.bearer()).send_empty()?;
        anyhow::ensure!(resp.status().as_u16() == 200, "token renewal: HTTP {}", resp.status().as_u16());
        let r: crate::api::admin::agent::AgentTokenRenewal = resp.body_mut().read_json()?;
        let Some(new) = r.token.filter(|_| r.renewed) else {
            return Ok(false);
        };
        // The old token is revoked now: the new one goes into memory before anything can fail.
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        tracing::info!(expires_at = %r.expires_at, "agent token renewed");
        if let Err(e) = write_token_file(&dir, &f, &new) {
            tracing::error!(file = %f.display(), error = %e, "the renewed agent token could not be written; it is used from memory");
        }
        Ok(true)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.gateway.trim_end_matches('/'))
    }

    pub fn run(&self) -> anyhow::Result<()> {
        tracing::info!(gateway = %self.cfg.gateway, machine = %self.cfg.client_machine, root = %self.cfg.store_root.display(), "store agent started");
        let mut last_token_check: Option<std::time::Instant> = None;
        loop {
            if last_token_check.is_none_or(|t| t.elapsed() >= TOKEN_CHECK_EVERY) {
                if let Err(e) = self.renew_token_if_due() {
                    tracing::warn!(error = %e, "checking the agent token's renewal failed; retrying later");
                }
                last_token_check = Some(std::time::Instant::now());
            }
            match self.poll_once() {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "polling the gateway failed; retrying"),
            }
            if self.cfg.once {
                return Ok(());
            }
            std::thread::sleep(self.cfg.poll_interval);
        }
    }

    /// Claims and processes one batch; returns how many jobs it handled.
    pub fn poll_once(&self) -> anyhow::Result<usize> {
        let mut resp =
            self.http.get(&self.url("/api/v1/agent/jobs?limit=10")).header("Authorization", &self.bearer()).call()?;
        let status = resp.status().as_u16();
        if status != 200 {
            anyhow::bail!("the gateway answered {status}: {}", resp.body_mut().read_to_string().unwrap_or_default());
        }
        let jobs: Vec<AgentJob> = resp.body_mut().read_json()?;
        let n = jobs.len();
        for job in jobs {
            let (outcome, message) = match self.process(&job) {
                Ok(None) => ("success", format!("{} {} in {}", job.operation, alias_of(&job), job.store_path)),
                Ok(Some(warn)) => ("warning", warn),
                Err(e) => ("failure", e.to_string()),
            };
            tracing::info!(job = %job.job_id, outcome, message = %message, "store job done");
            let r = self
                .http
                .post(&self.url(&format!("/api/v1/agent/jobs/{}/result", job.job_id)))
                .header("Authorization", &self.bearer())
                .send_json(&AgentResult { outcome: outcome.into(), message, audit_id: Some(job.audit_id) })?;
            if r.status().as_u16() != 200 {
                tracing::warn!(job = %job.job_id, status = r.status().as_u16(), "the gateway did not take the result");
            }
        }
        Ok(n)
    }

    /// Installs or removes; `Ok(Some(text))` is a warning (installed, but the reload failed).
    fn process(&self, job: &AgentJob) -> anyhow::Result<Option<String>> {
        let rel = resolve_store_path(&job.store_path)?;
        let target = self.cfg.store_root.join(&rel);
        let alias = alias_of(job);
        match job.operation.as_str() {
            "add" => install(job, &StoreRoot::open_or_create(&self.cfg.store_root)?, &rel, &alias)?,
            "remove" => match StoreRoot::open(&self.cfg.store_root) {
                Ok(store) => remove(job, &store, &rel, &alias)?,
                // No store root, nothing to remove.
                Err(e) if e.kind() == safe_fs::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            },
            other => anyhow::bail!("unknown operation {other}"),
        }
        if let Some(cmd) = &self.cfg.reload_command {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("RENEWGATE_STORE_PATH", &target)
                .env("RENEWGATE_STORE_TYPE", &job.store_type)
                .env("RENEWGATE_ALIAS", &alias)
                .env("RENEWGATE_JOB_ID", &job.job_id)
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => return Ok(Some(format!("installed, but the reload command exited with {s}"))),
                Err(e) => return Ok(Some(format!("installed, but the reload command could not run: {e}"))),
            }
        }
        Ok(None)
    }
}

/// The alias a job installs under: the job's, the store's, else the certificate's CN.
fn alias_of(job: &AgentJob) -> String {
    job.alias
        .clone()
        .or(job.common_name.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "certificate".into())
        .replace(['/', '\\'], "_")
}

/// A StorePath as a path relative to the store root: absolute paths are taken relative to the
/// root; a path that would escape it (`..`) is refused. What lies beneath is reached through
/// [`safe_fs`], which follows no symbolic link there.
pub fn resolve_store_path(store_path: &str) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(store_path).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir => anyhow::bail!("store path {store_path} escapes the store root"),
        }
    }
    anyhow::ensure!(!out.as_os_str().is_empty(), "store path {store_path} names the store root itself");
    Ok(out)
}

/// The longest certificate file read back to compare with the job's.
const MAX_CERTIFICATE_LEN: u64 = 1 << 20;

/// Writes each file atomically beneath the store root (`safe_fs::StoreRoot::write_file`): a
/// temporary file with a random name and the final mode, fsync, the previous file kept as
/// `<name>.bak` (a hard link), rename, fsync the directory; missing directories are created
/// (0700). A symbolic link, directory or other non-regular file at a name fails the job.
fn install(job: &AgentJob, store: &StoreRoot, rel: &Path, alias: &str) -> anyhow::Result<()> {
    let leaf_pem = job.certificate_pem.as_deref().ok_or_else(|| anyhow::anyhow!("the job carries no certificate"))?;
    let chain_pem = job.chain_pem.clone().unwrap_or_default();
    match job.store_type.as_str() {
        "pem-dir" => {
            let crt = rel.join(format!("{alias}.crt"));
            if !job.overwrite
                && let Some(current) = store.read_file(&crt, MAX_CERTIFICATE_LEN)?
                && current != leaf_pem.as_bytes()
            {
                anyhow::bail!("{} exists and the job does not allow overwriting", crt.display());
            }
            // The .crt goes last: a watcher that reloads when it changes finds the chain and key
            // of the same certificate already in place.
            if let Some(k) = &job.private_key_pem {
                store.write_file(&rel.join(format!("{alias}.key")), k.as_bytes(), WriteOptions::new(0o600))?;
            }
            store.write_file(
                &rel.join(format!("{alias}.chain.pem")),
                format!("{leaf_pem}{chain_pem}").as_bytes(),
                WriteOptions::new(0o644),
            )?;
            store.write_file(&crt, leaf_pem.as_bytes(), WriteOptions::new(0o644))?;
        }
        "pkcs12" | "jks" => {
            let pw = job.store_password.clone().ok_or_else(|| anyhow::anyhow!("the store has no password"))?;
            let leaf = X509::from_pem(leaf_pem.as_bytes())?;
            let chain = if chain_pem.is_empty() { vec![] } else { X509::stack_from_pem(chain_pem.as_bytes())? };
            let key = job.private_key_pem.as_deref().map(|k| PKey::private_key_from_pem(k.as_bytes())).transpose()?;
            let bundle = crate::engine::inventory::CertBundle { leaf, chain, key };
            let opts = crate::formats::OutputOptions {
                format: if job.store_type == "jks" {
                    crate::formats::OutputFormat::Jks
                } else {
                    crate::formats::OutputFormat::Pkcs12
                },
                include_chain: true,
                root_first: false,
                include_private_key: bundle.key.is_some(),
                password: Some(pw.clone()),
                keystore_password: Some(pw),
                friendly_name: Some(alias.to_string()),
                pkcs12_profile: crate::formats::Pkcs12Profile::Modern,
            };
            // Store passwords are the store's own: not held to the download strength rule.
            let bytes = render_unchecked(&bundle, &opts)?;
            store.write_file(rel, &bytes, WriteOptions::new(0o600))?;
        }
        other => anyhow::bail!("unknown store type {other}"),
    }
    Ok(())
}

fn render_unchecked(
    bundle: &crate::engine::inventory::CertBundle,
    opts: &crate::formats::OutputOptions,
) -> anyhow::Result<Vec<u8>> {
    let alias = opts.friendly_name.clone().unwrap_or_default();
    let pw = opts.password.clone().unwrap_or_default();
    Ok(match opts.format {
        crate::formats::OutputFormat::Jks => crate::formats::jks::render(bundle, opts, &alias, &pw)?,
        _ => crate::formats::pkcs12::render(bundle, opts, &pw, &alias)?,
    })
}

/// Removes the store's files with their `<name>.bak` and the agent's leftover temporary files
/// (`safe_fs::StoreRoot::remove_file`), so that no key material stays behind; a missing file is
/// fine. A file that is a symbolic link is refused (never followed, not unlinked): the agent
/// did not put it there.
fn remove(job: &AgentJob, store: &StoreRoot, rel: &Path, alias: &str) -> anyhow::Result<()> {
    let files = match job.store_type.as_str() {
        "pem-dir" => [format!("{alias}.crt"), format!("{alias}.chain.pem"), format!("{alias}.key")]
            .into_iter()
            .map(|f| rel.join(f))
            .collect(),
        _ => vec![rel.to_path_buf()],
    };
    for f in files {
        let removed = store.remove_file(&f)?;
        tracing::debug!(
            file = %f.display(),
            removed = removed.file,
            backup = removed.backup,
            temp_files = removed.temp_files,
            "removed from the store"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_stay_under_the_root() {
        assert_eq!(
            resolve_store_path("/home/pi/cherry/cherrystore").unwrap(),
            PathBuf::from("home/pi/cherry/cherrystore")
        );
        assert_eq!(resolve_store_path("web/tls").unwrap(), PathBuf::from("web/tls"));
        assert!(resolve_store_path("../etc").is_err());
        assert!(resolve_store_path("/a/../../etc").is_err());
        assert!(resolve_store_path("/").is_err());
        assert!(resolve_store_path("").is_err());
    }
}
