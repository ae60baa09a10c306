//! The command line: `serve` and the administration commands. Each command prints what a script
//! needs on stdout and nothing else there; messages go to stderr.
use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::{self, Scopes};
use crate::config::{Settings, parse_duration};
use crate::engine::policy;

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
    /// Create another issuing CA under the built-in root (key type from ca.key_type).
    Add { name: String },
    /// Stop issuing from a CA (issuance from it fails and puts certificates in the error state).
    Disable { name: String },
    /// Issue from a disabled CA again.
    Enable { name: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create a policy folder (and its parents) and set values: `key=value` (lists comma-separated).
    Set {
        dn: String,
        /// key=value settings (domains, wildcards, organization, org_units, city, state, country,
        /// key_algorithm, rsa_key_sizes, ec_curves, san_types, key_reuse, csr_origin,
        /// management_type, validity, ca).
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if settings.log.format.eq_ignore_ascii_case("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
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
            println!("{}", crate::openapi::json());
            Ok(0)
        }
        Command::Migrate => {
            let url = settings.database_url();
            std::fs::create_dir_all(&settings.data_dir)?;
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
            eprintln!("user {} added with scope {}", user.name, user.max_scope);
            Ok(0)
        }
        Command::Token(TokenCmd::Create { user, scope, lifetime }) => {
            let u = auth::find_user(&mut conn, &user)?.ok_or_else(|| anyhow::anyhow!("user {user} does not exist"))?;
            let scopes = Scopes::parse(&scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let life = parse_duration(lifetime.as_deref().unwrap_or(&settings.auth.token_lifetime))?;
            let t = auth::issue_token(&mut conn, &u, &scopes, "renewgate-cli", "cli", life, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", t.access_token);
            Ok(0)
        }
        Command::Token(TokenCmd::Revoke { token }) => {
            if auth::revoke_token(&mut conn, &token)? {
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
        Command::Ca(CaCmd::Add { name }) => {
            let spec = crate::ca::KeySpec::parse_config(&settings.ca.key_type)?;
            engine
                .ca
                .add_issuing(&mut conn, &name, spec, &settings.ca.organization)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(settings.ca_bundle_path(), crate::ca::BuiltinCa::bundle_pem(&mut conn)?)?;
            eprintln!("issuing CA {name} created under root; CA bundle updated");
            Ok(0)
        }
        Command::Ca(CaCmd::Disable { name }) => {
            crate::ca::BuiltinCa::set_disabled(&mut conn, &name, true).map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("CA {name} disabled");
            Ok(0)
        }
        Command::Ca(CaCmd::Enable { name }) => {
            crate::ca::BuiltinCa::set_disabled(&mut conn, &name, false).map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("CA {name} enabled");
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
                policy::merge_folder(c, &norm, &set, &lock, &unlock).map_err(|e| anyhow::anyhow!("{e}"))
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
        Command::Serve | Command::Migrate | Command::Openapi => unreachable!(),
    }
}
