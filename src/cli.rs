//! The command line: `serve` and the administration commands. Each command prints what a script
//! needs on stdout and nothing else there; messages go to stderr.
use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::{self, Scopes};
use crate::engine::policy;
use crate::settings::{Settings, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "renewgate",
    version,
    about = "Certificate-renewal gateway (Venafi TPP, Keyfactor Command and ACME dialects)"
)]
pub struct Cli {
    /// TOML configuration file (environment variables RENEWGATE_* override it).
    #[arg(long, global = true, env = "RENEWGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (HTTPS).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Access tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The certificate inventory.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Certificate authorities.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Policy folders.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Print the OpenAPI 3.1 document.
    Openapi,
    /// Certificate stores (push targets served by agents).
    #[command(subcommand)]
    Store(StoreCmd),
    /// Certificate templates (Keyfactor dialect).
    #[command(subcommand)]
    Template(TemplateCmd),
    /// The store agent.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// ACME administration.
    #[command(subcommand)]
    Acme(AcmeCmd),
    /// Print the audit trail (renewals, revocations, key downloads, policy changes) as JSON lines, oldest first.
    Audit(AuditArgs),
    /// The master key sealing the secrets at rest (CA keys, private keys, store passwords, EAB keys).
    #[command(subcommand)]
    MasterKey(crate::master_key::MasterKeyCmd),
    /// Load benchmark: starts (or targets) a gateway and measures renewals per second.
    Bench(crate::bench::BenchArgs),
    /// Write a consistent copy of the SQLite database to FILE (mode 0600) while the gateway runs;
    /// prints `backup FILE: N bytes, M certificate objects, master key ID`. PostgreSQL: use pg_dump (exit 2).
    Backup { file: PathBuf },
    /// Replace the SQLite database with the backup FILE: the gateway stopped, the master key the
    /// backup was taken under configured. PostgreSQL: use pg_restore or psql (exit 2).
    Restore { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this action: renew, revoke, key_download or policy_change.
    #[arg(long)]
    pub action: Option<String>,
    /// Only records with a larger id.
    #[arg(long)]
    pub after_id: Option<i64>,
    /// The newest N records.
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum AcmeCmd {
    /// External account binding keys.
    #[command(subcommand)]
    Eab(AcmeEabCmd),
    /// Let the accounts of an EAB key act on one more certificate object (renew, reissue,
    /// duplicate, auto-detection): an object another key issued, or one made outside ACME.
    Assign {
        #[arg(long)]
        eab_kid: String,
        /// The object's id (the DigiCert-style orderId).
        #[arg(long)]
        object: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AcmeEabCmd {
    /// Create an EAB key bound to a policy folder; prints `EAB_KID=…` and `EAB_HMAC_KEY=…`.
    Create {
        #[arg(long)]
        policy: String,
        /// Names the folder's whitelisted domains cover are treated as already validated.
        #[arg(long)]
        prevalidated: bool,
        /// The key's accounts may act on any object of its folder (DigiCert: any order of the
        /// organisation), not only on the objects its own accounts issued.
        #[arg(long)]
        folder_orders: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Create a store; prints only its GUID.
    Add {
        #[arg(long)]
        client_machine: String,
        #[arg(long)]
        store_path: String,
        /// pem-dir, pkcs12 or jks.
        #[arg(long = "type")]
        store_type: String,
        #[arg(long)]
        alias: Option<String>,
        /// Read the store password (PKCS#12/JKS) from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The policy folder the store belongs to (default: the root). Pushing to it needs
        /// write on this folder; a store receiving keys also needs key on the certificate's.
        #[arg(long = "folder")]
        folder: Option<String>,
        /// Deliver private keys to this store (PEM directory: `<alias>.key`, mode 0600).
        #[arg(long)]
        include_keys: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Add a template bound to a policy folder.
    Add {
        name: String,
        #[arg(long)]
        policy: String,
        #[arg(long)]
        validity: Option<String>,
        /// Comma-separated: serverAuth, clientAuth, codeSigning, emailProtection.
        #[arg(long, value_delimiter = ',')]
        eku: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Agent tokens.
    #[command(subcommand)]
    Token(AgentTokenCmd),
    /// Run the store agent.
    Run(AgentRunArgs),
}

#[derive(Debug, Subcommand)]
pub enum AgentTokenCmd {
    /// Create a token with the `agent` scope for one client machine; prints only the token.
    Create {
        #[arg(long)]
        client_machine: String,
        /// Token lifetime (a duration such as 90d or 12h). The agent renews its own token when a
        /// third of the lifetime remains.
        #[arg(long, default_value = "90d")]
        lifetime: String,
    },
}

#[derive(Debug, Args)]
pub struct AgentRunArgs {
    #[arg(long, env = "RENEWGATE_AGENT__GATEWAY")]
    pub gateway: String,
    #[arg(long, env = "RENEWGATE_AGENT__TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[arg(long, env = "RENEWGATE_AGENT__TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, env = "RENEWGATE_AGENT__CA_BUNDLE")]
    pub ca_bundle: PathBuf,
    #[arg(long, env = "RENEWGATE_AGENT__CLIENT_MACHINE")]
    pub client_machine: String,
    #[arg(long, env = "RENEWGATE_AGENT__STORE_ROOT")]
    pub store_root: PathBuf,
    #[arg(long, env = "RENEWGATE_AGENT__RELOAD_COMMAND")]
    pub reload_command: Option<String>,
    /// Seconds between polls when there is nothing to do.
    #[arg(long, env = "RENEWGATE_AGENT__POLL_INTERVAL", default_value = "2")]
    pub poll_interval: u64,
    /// Process what is due once and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user. SCOPE is the most a token of this user may get (TPP scope string).
    Add {
        name: String,
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, default_value = auth::scopes::DEFAULT_USER)]
        scope: String,
        /// Limit the user to a policy subtree: 'DN:PERMS' with PERMS a comma list of read, write,
        /// key (Private Key Read); default read,write. Repeatable. Without it: every folder.
        #[arg(long = "folder")]
        folders: Vec<String>,
    },
    /// Disable a user: no sign-in, and every token of the user is revoked.
    Disable { name: String },
    /// Enable a disabled user again (tokens revoked at disable stay revoked).
    Enable { name: String },
    /// Set a user's password (the strength rule applies); revokes the user's tokens.
    Passwd {
        name: String,
        /// Read the new password from standard input (first line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an access token; prints only the token.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        scope: String,
        /// Token lifetime (default: auth.token_lifetime).
        #[arg(long)]
        lifetime: Option<String>,
    },
    /// Revoke an access token.
    Revoke { token: String },
}

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Import certificates (PEM) into a policy folder; prints `<object id>\t<certificate id>\t<CertificateDN>` per object.
    Import(ImportArgs),
    /// Disable a certificate object (a renewal then needs Reenable).
    Disable { dn: String },
    /// List certificate objects with an issued certificate, soonest expiry first:
    /// `<object id>\t<not after, RFC 3339>\t<CertificateDN>` per line.
    List {
        /// Only those expiring within this duration (e.g. 30d; expired ones included).
        #[arg(long)]
        expiring: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub policy: String,
    pub file: PathBuf,
    #[arg(long)]
    pub key: Option<PathBuf>,
    #[arg(long, default_value = "Enrollment")]
    pub management_type: String,
}

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Print the CA bundle (PEM).
    Show,
    /// Issue from an existing enterprise CA: its certificate (optionally followed by its chain) and key.
    Import {
        name: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Create another issuing CA under the built-in root (key type from ca.key_type), or, with
    /// --acme-directory, add an upstream CA reached over ACME (a folder with `ca=NAME` issues there).
    Add {
        name: String,
        #[command(flatten)]
        upstream: UpstreamArgs,
    },
    /// Change an upstream CA (the options of `ca add`; those not given keep their value). A
    /// running gateway uses the new settings for its next job.
    Update {
        name: String,
        #[command(flatten)]
        upstream: UpstreamArgs,
    },
    /// One line per issuer: `<name>\t<kind>\t<status>\t<directory URL or ->`.
    List,
    /// Remove an upstream CA (refused while unexpired certificates or open jobs reference it; its
    /// account is kept for later revocations).
    Remove { name: String },
    /// Stop issuing from a CA (issuance from it fails and puts certificates in the error state).
    Disable { name: String },
    /// Issue from a disabled CA again.
    Enable { name: String },
}

fn public_text(public: bool) -> &'static str {
    if public { "public" } else { "private" }
}

/// The options of an upstream ACME CA. Secrets come from stdin or a file, never the command line.
#[derive(Debug, Args, Default)]
pub struct UpstreamArgs {
    /// The CA's ACME directory URL (https).
    #[arg(long)]
    pub acme_directory: Option<String>,
    /// External account binding key id.
    #[arg(long)]
    pub eab_kid: Option<String>,
    /// Read the EAB HMAC key (base64url) from stdin.
    #[arg(long)]
    pub eab_hmac_key_stdin: bool,
    /// Read the EAB HMAC key (base64url) from a file.
    #[arg(long)]
    pub eab_hmac_key_file: Option<PathBuf>,
    /// Account contact (mailto:…). Repeatable.
    #[arg(long)]
    pub contact: Vec<String>,
    /// PEM certificates trusted for the directory's TLS (a private CA, a self-signed server).
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// How challenges are answered: http-01 (from --http-listen), dns-01 (RFC 2136 updates signed
    /// with TSIG: --dns-server, --tsig-key-file) or none (pre-validated account).
    #[arg(long)]
    pub solver: Option<String>,
    /// The plain-HTTP address the http-01 solver listens on (port 80 of the names forwards here).
    #[arg(long)]
    pub http_listen: Option<String>,
    /// The CA is public (certificates in CT logs; folders need a domains policy). Default: a
    /// directory not on loopback or a private address.
    #[arg(long, conflicts_with = "private")]
    pub public: bool,
    /// The CA is private (on-premises), whatever its address.
    #[arg(long)]
    pub private: bool,
    /// dns-01: the primary DNS server taking RFC 2136 updates (HOST:PORT).
    #[arg(long)]
    pub dns_server: Option<String>,
    /// dns-01: the TSIG key file, as tsig-keygen writes it (the secret is sealed, never printed).
    #[arg(long)]
    pub tsig_key_file: Option<PathBuf>,
    /// dns-01: the zone to update (default: the zone whose SOA answers for the challenge name).
    #[arg(long)]
    pub zone: Option<String>,
    /// dns-01: where a published value must be seen before the challenge is answered: ns (every
    /// server of the zone's NS records, on --dns-server's port) or server (--dns-server alone).
    #[arg(long)]
    pub propagation_check: Option<String>,
}

impl UpstreamArgs {
    fn given(&self) -> bool {
        self.acme_directory.is_some()
            || self.eab_kid.is_some()
            || self.eab_hmac_key_stdin
            || self.eab_hmac_key_file.is_some()
            || !self.contact.is_empty()
            || self.ca_bundle.is_some()
            || self.solver.is_some()
            || self.http_listen.is_some()
            || self.public
            || self.private
            || self.dns_server.is_some()
            || self.tsig_key_file.is_some()
            || self.zone.is_some()
            || self.propagation_check.is_some()
    }

    fn spec(&self) -> anyhow::Result<crate::ca::upstream::admin::UpstreamSpec> {
        let eab_hmac_key = if self.eab_hmac_key_stdin {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            Some(s.trim().to_string())
        } else if let Some(f) = &self.eab_hmac_key_file {
            Some(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?.trim().to_string())
        } else {
            None
        };
        let solver = match &self.solver {
            Some(s) => Some(
                crate::ca::upstream::Solver::parse(s)
                    .ok_or_else(|| anyhow::anyhow!("unknown solver {s:?} (use http-01, dns-01 or none)"))?,
            ),
            None => None,
        };
        let ca_bundle_pem = match &self.ca_bundle {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?),
            None => None,
        };
        let tsig_key = match &self.tsig_key_file {
            Some(f) => Some(std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?),
            None => None,
        };
        let propagation = match &self.propagation_check {
            Some(p) => Some(
                crate::ca::upstream::dns01::PropagationCheck::parse(p)
                    .ok_or_else(|| anyhow::anyhow!("unknown propagation check {p:?} (use ns or server)"))?,
            ),
            None => None,
        };
        Ok(crate::ca::upstream::admin::UpstreamSpec {
            dns_server: self.dns_server.clone(),
            tsig_key,
            zone: self.zone.clone(),
            propagation,
            directory: self.acme_directory.clone(),
            eab_kid: self.eab_kid.clone(),
            eab_hmac_key,
            contact: if self.contact.is_empty() { None } else { Some(self.contact.clone()) },
            ca_bundle_pem,
            solver,
            http_listen: self.http_listen.clone(),
            public: if self.public {
                Some(true)
            } else if self.private {
                Some(false)
            } else {
                None
            },
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create a policy folder (and its parents) and set values: `key=value` (lists comma-separated).
    Set {
        dn: String,
        /// key=value settings (domains, wildcards, organization, org_units, city, state, country,
        /// key_algorithm, rsa_key_sizes, ec_curves, san_types, key_reuse, csr_origin,
        /// management_type, validity, ca, auto_renew, auto_renew_before).
        settings: Vec<String>,
        /// Lock a key (its value then overrides requests). Repeatable.
        #[arg(long = "lock")]
        lock: Vec<String>,
        /// Unlock a key. Repeatable.
        #[arg(long = "unlock")]
        unlock: Vec<String>,
        /// Remove a key's value from this folder. Repeatable.
        #[arg(long = "unset")]
        unset: Vec<String>,
    },
    /// Print the effective settings of a folder, one `key = value` line each with the folder it comes from.
    Show { dn: String },
}

pub fn init_tracing(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.level));
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(EscapingStderr { ansi }).with_ansi(ansi);
    if settings.log.format.eq_ignore_ascii_case("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Log lines on standard error with every control character inside a line escaped: values that
/// come from users (DNs, names, paths) can never start a forged line. The formatter hands over one
/// whole event per write; its final newline is kept, and ESC only when colours are on.
#[derive(Clone, Copy)]
struct EscapingStderr {
    ansi: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapingStderr {
    type Writer = EscapingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

impl std::io::Write for EscapingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (text.as_ref(), ""),
        };
        let mut out = String::with_capacity(body.len() + 1);
        for c in body.chars() {
            if crate::names::is_control_like(c) && !(self.ansi && c == '\x1b') {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out.push_str(end);
        std::io::stderr().lock().write_all(out.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// An audit entry for an administration command (actor `cli:<OS user>`).
pub(crate) fn cli_audit(action: &str, target: &str, detail: &str) -> crate::engine::audit::Entry {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    crate::engine::audit::Entry {
        actor: if user.is_empty() { "cli".into() } else { format!("cli:{user}") },
        action: action.into(),
        target: target.into(),
        certificate_id: None,
        outcome: "success".into(),
        detail: detail.into(),
        source: "cli".into(),
        request_id: None,
    }
}

/// `user disable|enable NAME`: the change, its audit row, one line on stderr.
fn user_disabled(conn: &mut crate::db::DbConn, name: &str, disable: bool) -> anyhow::Result<i32> {
    let user = auth::set_user_disabled(conn, name, disable).map_err(|e| anyhow::anyhow!("{e}"))?;
    let what = if disable { "disabled, tokens revoked" } else { "enabled" };
    crate::engine::audit::record(conn, &cli_audit(crate::engine::audit::action::USER_CHANGE, &user.name, what))?;
    eprintln!("user {} {what}", user.name);
    Ok(0)
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load(cli.config.as_deref())?;
    init_tracing(&settings);
    match cli.command {
        Command::Serve => {
            actix_web::rt::System::new().block_on(crate::app::serve(settings))?;
            Ok(0)
        }
        Command::Openapi => {
            println!("{}", crate::openapi::json()?);
            Ok(0)
        }
        Command::Bench(args) => crate::bench::run(args),
        Command::Agent(AgentCmd::Run(a)) => {
            let token = match (&a.token, &a.token_file) {
                (Some(t), _) => t.clone(),
                (None, Some(f)) => {
                    std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?.trim().to_string()
                }
                (None, None) => anyhow::bail!("give --token-file F or --token T (or RENEWGATE_AGENT__TOKEN_FILE)"),
            };
            let agent = crate::agent::Agent::new(crate::agent::AgentConfig {
                gateway: a.gateway,
                token,
                token_file: if a.token.is_none() { a.token_file.clone() } else { None },
                ca_bundle: a.ca_bundle,
                client_machine: a.client_machine,
                store_root: a.store_root,
                reload_command: a.reload_command,
                poll_interval: std::time::Duration::from_secs(a.poll_interval.max(1)),
                once: a.once,
            })?;
            agent.run()?;
            Ok(0)
        }
        // Not through `bootstrap`: it would refuse a key the database is not under (show) and
        // create what a first start creates (rotate needs only the database and the keys).
        Command::MasterKey(cmd) => crate::master_key::run(&settings, cmd),
        // Not through `bootstrap` either: a backup runs beside the gateway and needs only the file;
        // a restore must not migrate or create anything in the database it replaces.
        Command::Backup { file } => crate::backup::backup(&settings, &file),
        Command::Restore { file } => crate::backup::restore(&settings, &file),
        Command::Migrate => {
            let url = settings.database_url();
            crate::secrets::secure_data_dir(&settings.data_dir)?;
            let mut conn = crate::db::establish(&url)?;
            let n = crate::db::run_migrations(&mut conn)?;
            eprintln!("{n} migration(s) applied");
            Ok(0)
        }
        other => admin_command(settings, other),
    }
}

fn admin_command(mut settings: Settings, cmd: Command) -> anyhow::Result<i32> {
    settings.db.pool_size = 2;
    settings.queue.workers = 0;
    let (engine, password) = crate::app::bootstrap(settings.clone())?;
    if password.is_some() {
        eprintln!(
            "first use of this database: user 'admin' created; password in {}",
            settings.initial_password_path().display()
        );
    }
    let mut conn = engine.pool.get()?;
    match cmd {
        Command::User(UserCmd::Add { name, password, password_stdin, scope, folders }) => {
            let pw = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s.lines().next().unwrap_or_default().to_string()
                }
                (None, false) => anyhow::bail!("give --password PASSWORD or --password-stdin"),
            };
            anyhow::ensure!(!pw.is_empty(), "the password is empty");
            let scopes = Scopes::parse(&scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let grants = folders
                .iter()
                .map(|f| auth::parse_folder_grant(f).map_err(|e| anyhow::anyhow!("--folder {f}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let user = auth::add_user(&mut conn, &name, &pw, &scopes, &grants).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(
                    crate::engine::audit::action::USER_CHANGE,
                    &user.name,
                    &format!("added, scope {}", user.max_scope),
                ),
            )?;
            eprintln!("user {} added with scope {}", user.name, user.max_scope);
            Ok(0)
        }
        Command::User(UserCmd::Disable { name }) => user_disabled(&mut conn, &name, true),
        Command::User(UserCmd::Enable { name }) => user_disabled(&mut conn, &name, false),
        Command::User(UserCmd::Passwd { name, password_stdin: _ }) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            let pw = s.lines().next().unwrap_or_default().to_string();
            anyhow::ensure!(!pw.is_empty(), "the password is empty");
            let user = auth::set_password(&mut conn, &name, &pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::USER_CHANGE, &user.name, "password changed, tokens revoked"),
            )?;
            eprintln!("password of user {} changed; its tokens are revoked", user.name);
            Ok(0)
        }
        Command::Token(TokenCmd::Create { user, scope, lifetime }) => {
            let u = auth::find_user(&mut conn, &user)?.ok_or_else(|| anyhow::anyhow!("user {user} does not exist"))?;
            let scopes = Scopes::parse(&scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let life = parse_duration(lifetime.as_deref().unwrap_or(&settings.auth.token_lifetime))?;
            let t = auth::issue_token(&mut conn, &u, &scopes, "renewgate-cli", "cli", life, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(
                    crate::engine::audit::action::TOKEN_CHANGE,
                    &u.name,
                    &format!("token created, scope {}, expires {}", t.scope, t.expires_at),
                ),
            )?;
            println!("{}", t.access_token);
            Ok(0)
        }
        Command::Token(TokenCmd::Revoke { token }) => {
            if auth::revoke_token(&mut conn, &token)? {
                crate::engine::audit::record(
                    &mut conn,
                    &cli_audit(crate::engine::audit::action::TOKEN_CHANGE, "token", "token revoked"),
                )?;
                eprintln!("token revoked");
                Ok(0)
            } else {
                eprintln!("no such token");
                Ok(1)
            }
        }
        Command::Cert(CertCmd::Import(a)) => {
            let pem = std::fs::read(&a.file).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
            let key = a.key.as_ref().map(std::fs::read).transpose()?;
            let rows = engine
                .import(&mut conn, &a.policy, &pem, key.as_deref(), &a.management_type)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (obj, cert, dn) in rows {
                println!("{obj}\t{cert}\t{dn}");
            }
            Ok(0)
        }
        Command::Ca(CaCmd::Show) => {
            print!("{}", crate::ca::BuiltinCa::bundle_pem(&mut conn)?);
            Ok(0)
        }
        Command::Ca(CaCmd::Add { name, upstream }) if upstream.given() => {
            let cfg = crate::ca::upstream::admin::add(&mut conn, &engine.master, &name, &upstream.spec()?)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::CA_CHANGE, &name, "upstream ACME issuer added"),
            )?;
            eprintln!("upstream issuer {name} added (solver {}, {})", cfg.solver.as_str(), public_text(cfg.public));
            if cfg.public {
                eprintln!(
                    "  its certificates appear in Certificate Transparency logs: folders using it need a domains policy"
                );
            }
            Ok(0)
        }
        Command::Ca(CaCmd::Add { name, .. }) => {
            let spec = crate::ca::KeySpec::parse_config(&settings.ca.key_type)?;
            engine
                .ca
                .add_issuing(&mut conn, &name, spec, &settings.ca.organization, &format!("{name} CA"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(settings.ca_bundle_path(), crate::ca::BuiltinCa::bundle_pem(&mut conn)?)?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::CA_CHANGE, &name, "issuing CA created"),
            )?;
            eprintln!("issuing CA {name} created under root; CA bundle updated");
            Ok(0)
        }
        Command::Ca(CaCmd::Update { name, upstream }) => {
            let cfg = crate::ca::upstream::admin::update(&mut conn, &engine.master, &name, &upstream.spec()?)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::CA_CHANGE, &name, "upstream ACME issuer changed"),
            )?;
            eprintln!("upstream issuer {name} updated (solver {}, {})", cfg.solver.as_str(), public_text(cfg.public));
            Ok(0)
        }
        Command::Ca(CaCmd::List) => {
            for l in crate::ca::upstream::admin::list(&mut conn).map_err(|e| anyhow::anyhow!("{e}"))? {
                println!("{}\t{}\t{}\t{}", l.name, l.kind, l.status, l.directory.as_deref().unwrap_or("-"));
            }
            Ok(0)
        }
        Command::Ca(CaCmd::Remove { name }) => {
            crate::ca::upstream::admin::remove(&mut conn, &name).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::CA_CHANGE, &name, "upstream ACME issuer removed"),
            )?;
            eprintln!("upstream issuer {name} removed (its account is kept for revocations)");
            Ok(0)
        }
        Command::Ca(CaCmd::Disable { name }) => {
            crate::ca::BuiltinCa::set_disabled(&mut conn, &name, true).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::CA_CHANGE, &name, "disabled"),
            )?;
            eprintln!("CA {name} disabled");
            Ok(0)
        }
        Command::Ca(CaCmd::Enable { name }) => {
            crate::ca::BuiltinCa::set_disabled(&mut conn, &name, false).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::CA_CHANGE, &name, "enabled"),
            )?;
            eprintln!("CA {name} enabled");
            Ok(0)
        }
        Command::Cert(CertCmd::List { expiring }) => {
            let until = match expiring {
                Some(d) => Some(
                    crate::db::now()
                        + chrono::Duration::from_std(
                            parse_duration(&d).map_err(|e| anyhow::anyhow!("--expiring: {e}"))?,
                        )?,
                ),
                None => None,
            };
            for (id, not_after, dn) in crate::engine::scheduler::list_expiring(&mut conn, until)? {
                println!("{id}\t{}\t{dn}", not_after.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            Ok(0)
        }
        Command::Audit(a) => {
            let f = crate::engine::audit::Filter {
                action: a.action,
                after_id: a.after_id,
                limit: a.limit.max(1),
                folders: None,
            };
            for r in crate::engine::audit::list(&mut conn, &f)? {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(0)
        }
        Command::Cert(CertCmd::Disable { dn }) => {
            let n = engine.set_disabled(&mut conn, &dn, true).map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("{n} disabled");
            Ok(0)
        }
        Command::Policy(PolicyCmd::Set { dn, settings: kv, lock, unlock, unset }) => {
            let norm = policy::normalize_dn(&dn);
            let mut set = std::collections::BTreeMap::new();
            for item in &kv {
                let (k, v) = item.split_once('=').ok_or_else(|| anyhow::anyhow!("expected key=value, got {item:?}"))?;
                set.insert(k.trim().to_string(), serde_json::Value::String(v.trim().to_string()));
            }
            for k in &unset {
                set.insert(k.trim().to_string(), serde_json::Value::Null);
            }
            crate::db::write_tx(&mut conn, None, |c| {
                policy::merge_folder(c, &norm, &set, &lock, &unlock).map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut changed: Vec<String> = set.keys().cloned().collect();
                changed.extend(lock.iter().map(|k| format!("lock {k}")));
                changed.extend(unlock.iter().map(|k| format!("unlock {k}")));
                crate::engine::audit::record(
                    c,
                    &cli_audit(crate::engine::audit::action::POLICY_CHANGE, &norm, &changed.join(", ")),
                )?;
                Ok::<_, anyhow::Error>(())
            })?;
            eprintln!("policy folder {norm} updated");
            Ok(0)
        }
        Command::Policy(PolicyCmd::Show { dn }) => {
            let norm = policy::normalize_dn(&dn);
            if policy::find_folder(&mut conn, &norm)?.is_none() {
                anyhow::bail!("PolicyDN: {norm} does not exist.");
            }
            let eff = policy::effective(&mut conn, &norm)?;
            println!("# effective policy of {norm}");
            for line in eff.to_toml_lines() {
                println!("{line}");
            }
            Ok(0)
        }
        Command::Store(StoreCmd::Add {
            client_machine,
            store_path,
            store_type,
            alias,
            password_stdin,
            include_keys,
            folder,
        }) => {
            let password = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                Some(s.lines().next().unwrap_or_default().to_string())
            } else {
                None
            };
            let s = crate::engine::stores::create_store(
                &mut conn,
                &engine.master,
                &auth::FolderAccess::default(),
                &crate::engine::stores::NewStore {
                    client_machine: &client_machine,
                    store_path: &store_path,
                    store_type: &store_type,
                    alias: alias.as_deref(),
                    password: password.as_deref(),
                    include_keys,
                    folder_dn: folder.as_deref(),
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(
                    crate::engine::audit::action::STORE_CHANGE,
                    &s.guid,
                    &format!("store {} {} ({}) added in {}", s.client_machine, s.store_path, s.store_type, s.folder()),
                ),
            )?;
            println!("{}", s.guid);
            Ok(0)
        }
        Command::Template(TemplateCmd::Add { name, policy, validity, eku }) => {
            let ekus = if eku.is_empty() { vec!["serverAuth".to_string(), "clientAuth".to_string()] } else { eku };
            crate::db::write_tx(&mut conn, None, |c| {
                policy::ensure_folder(c, &policy)?;
                crate::engine::templates::add(c, &name, &policy, validity.as_deref(), &ekus)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })?;
            eprintln!("template {name} added on {}", policy::normalize_dn(&policy));
            Ok(0)
        }
        Command::Ca(CaCmd::Import { name, cert, key }) => {
            let c = std::fs::read(&cert).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            let k = std::fs::read(&key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            engine.ca.import(&mut conn, &name, &c, &k).map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(settings.ca_bundle_path(), crate::ca::BuiltinCa::bundle_pem(&mut conn)?)?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(crate::engine::audit::action::CA_CHANGE, &name, "imported"),
            )?;
            eprintln!("CA {name} imported; CA bundle updated");
            Ok(0)
        }
        Command::Agent(AgentCmd::Token(AgentTokenCmd::Create { client_machine, lifetime })) => {
            let life = parse_duration(&lifetime).map_err(|e| anyhow::anyhow!("--lifetime: {e}"))?;
            anyhow::ensure!(life.as_secs() >= 10, "--lifetime: at least 10s");
            let user_name = format!("agent-{}", client_machine.to_lowercase());
            let agent_scope = Scopes::parse("agent").map_err(|e| anyhow::anyhow!("{e}"))?;
            let user = match auth::find_user(&mut conn, &user_name)? {
                Some(u) => u,
                // Nobody signs in with this password: random, with the classes the strength rule asks for.
                None => auth::add_user(
                    &mut conn,
                    &user_name,
                    &format!("Ag1!{}", crate::secrets::random_b64(24)),
                    &agent_scope,
                    &[],
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            };
            let t = auth::issue_token(&mut conn, &user, &agent_scope, "renewgate-agent", "agent", life, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(
                    crate::engine::audit::action::TOKEN_CHANGE,
                    &user.name,
                    &format!("agent token created for {client_machine}, expires {}", t.expires_at),
                ),
            )?;
            auth::bind_client_machine(&mut conn, &t.access_token, &client_machine)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", t.access_token);
            Ok(0)
        }
        Command::Acme(AcmeCmd::Eab(AcmeEabCmd::Create { policy, prevalidated, folder_orders })) => {
            let (kid, key) =
                crate::acme::db::accounts::create_eab(&mut conn, &engine.master, &policy, prevalidated, folder_orders)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(
                    crate::engine::audit::action::EAB_CHANGE,
                    &kid,
                    &format!(
                        "EAB key created for {policy}{}{}",
                        if prevalidated { " (pre-validated)" } else { "" },
                        if folder_orders { " (folder orders)" } else { "" }
                    ),
                ),
            )?;
            println!("EAB_KID={kid}");
            println!("EAB_HMAC_KEY={key}");
            Ok(0)
        }
        Command::Acme(AcmeCmd::Assign { eab_kid, object }) => {
            let added =
                crate::acme::ownership::assign(&mut conn, &eab_kid, object).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::engine::audit::record(
                &mut conn,
                &cli_audit(
                    crate::engine::audit::action::EAB_CHANGE,
                    &eab_kid,
                    &format!("object {object} assigned to EAB key {eab_kid}"),
                ),
            )?;
            println!("{}", if added { "assigned" } else { "already assigned" });
            Ok(0)
        }
        Command::Serve
        | Command::Migrate
        | Command::Openapi
        | Command::Bench(_)
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Agent(AgentCmd::Run(_))
        | Command::MasterKey(_) => {
            unreachable!()
        }
    }
}
