//! Typed settings: defaults < `renewgate.toml` (`--config`) < `RENEWGATE_*` environment.
//!
//! Every key has an environment name: `RENEWGATE_` + the key path upper-cased with `__` between
//! levels (`queue.lease_secs` → `RENEWGATE_QUEUE__LEASE_SECS`).
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Data directory: SQLite file, master key, CA bundle, TLS files, initial admin password.
    pub data_dir: PathBuf,
    /// Listen address of the HTTPS server.
    pub bind: String,
    /// `postgres://…` selects PostgreSQL; anything else is a SQLite path. Default: `<data_dir>/renewgate.db`.
    pub database_url: Option<String>,
    /// Base64 of 32 bytes; used when `master_key_file` is unset.
    pub master_key: Option<String>,
    /// File holding base64 of 32 random bytes.
    pub master_key_file: Option<PathBuf>,
    /// URL printed in the banner and examples (default `https://<bind>`).
    pub public_url: Option<String>,
    pub tls: TlsSettings,
    pub ca: CaSettings,
    pub auth: AuthSettings,
    pub venafi: VenafiSettings,
    pub queue: QueueSettings,
    pub issuance: IssuanceSettings,
    pub db: DbSettings,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub formats: FormatSettings,
    pub keyfactor: KeyfactorSettings,
    pub acme: AcmeSettings,
    pub metrics: MetricsSettings,
    pub scheduler: SchedulerSettings,
    pub crl: CrlSettings,
    /// The TOML file these settings were read from (its `[policy.'DN']` tables are applied at start).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct MetricsSettings {
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Where the built-in CAs' CRLs and certificates are published (`/crl/<CA>.crl`, `/ca/<CA>.crt`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct CrlSettings {
    /// When set (`127.0.0.1:8080`), a plain-HTTP listener on this address serves only the CRL and
    /// CA-certificate paths (relying parties fetch CRLs over plain HTTP: RFC 5280 §4.2.1.13).
    pub http_bind: Option<String>,
    /// Base of the CRL distribution point and CA-issuers URLs in issued certificates; default
    /// `http://<crl.http_bind>` when that is set, else the public URL.
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SchedulerSettings {
    /// Renew service-generated certificates in their window (policy `auto_renew_before`) without a client call.
    pub enabled: bool,
    /// How often the scheduler looks for certificates due for renewal (duration, e.g. `1m`).
    pub interval: String,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings { enabled: true, interval: "1m".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FormatSettings {
    /// PKCS#12 encryption when a request names none: `modern` (AES-256, SHA-256 MAC) or `legacy` (3DES, SHA-1 MAC).
    pub pkcs12_profile: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AcmeSettings {
    /// New accounts need an external account binding (`renewgate acme eab create`).
    pub eab_required: bool,
    pub validation: AcmeValidationSettings,
    /// Base URL of the ACME directory's links behind a reverse proxy (default: the request's scheme and Host + `/acme`).
    pub public_base_url: Option<String>,
    /// The folder accounts made without an external account binding belong to (`eab_required =
    /// false`); created when absent. Never the root: such accounts are anonymous.
    pub default_policy: String,
    /// New accounts without an external account binding allowed per source address and hour.
    pub accounts_per_hour: u32,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            eab_required: true,
            validation: AcmeValidationSettings::default(),
            public_base_url: None,
            default_policy: "\\VED\\Policy\\ACME".into(),
            accounts_per_hour: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AcmeValidationSettings {
    /// Port http-01 validation connects to (80 in production; a high port in tests).
    pub http01_port: u16,
    /// Static name → IP entries checked before DNS: `name=IP` or `*.suffix=IP` (comma-separated in the environment).
    pub hosts: Vec<String>,
    /// Seconds the whole validation of one challenge may take (resolution, connections,
    /// redirects, reads), whatever the peer does.
    pub timeout_s: u64,
    /// Port tls-alpn-01 validation connects to (443 in production).
    pub tlsalpn01_port: u16,
    /// DNS server (`host:port`, UDP and TCP) asked for dns-01 TXT records; unset: the system resolver.
    pub dns_server: Option<String>,
    /// Validations running at once in this instance (network only: none holds a database connection).
    pub concurrency: usize,
    /// Further address ranges validation never connects to (CIDRs), beside the built-in ones
    /// (loopback, link-local, unspecified, multicast, cloud metadata).
    pub deny_cidrs: Vec<String>,
    /// Allow loopback targets (labs and tests; `RENEWGATE_ACME__VALIDATION__ALLOW_LOOPBACK`).
    pub allow_loopback: bool,
}

impl Default for AcmeValidationSettings {
    fn default() -> Self {
        AcmeValidationSettings {
            http01_port: 80,
            hosts: vec![],
            timeout_s: 10,
            tlsalpn01_port: 443,
            dns_server: None,
            concurrency: 16,
            deny_cidrs: vec![],
            allow_loopback: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KeyfactorSettings {
    /// How long `CertEnroll/3/Renew` waits for issuance before answering `Pending`.
    pub classic_wait: String,
    /// A store job claimed by an agent that does not report within this many seconds is handed out again.
    pub agent_lease_secs: i64,
}

impl Default for KeyfactorSettings {
    fn default() -> Self {
        KeyfactorSettings { classic_wait: "30s".into(), agent_lease_secs: 300 }
    }
}

impl Default for FormatSettings {
    fn default() -> Self {
        FormatSettings { pkcs12_profile: "modern".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
#[derive(Default)]
pub struct TlsSettings {
    /// Extra names (DNS or IP) for the gateway's own server certificate, beside localhost and 127.0.0.1.
    pub names: Vec<String>,
    /// A configured certificate (PEM, leaf then chain) and key replace the generated one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CaSettings {
    /// Key type of the built-in root and issuing CA created on first start: `ec-p256`, `ec-p384`, `rsa-2048`, `rsa-3072`, `rsa-4096`.
    pub key_type: String,
    /// Subject organisation of the built-in CAs.
    pub organization: String,
    /// Host part of Keyfactor-style CA configuration names (`<host>\<name>`); default: the machine's host name.
    pub host: Option<String>,
    /// The dns-01 solver of upstream issuers.
    pub dns01: Dns01Settings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Dns01Settings {
    /// How long a published `_acme-challenge` value may take to reach the zone's authoritative
    /// servers (a duration such as `120s`).
    pub propagation_timeout: String,
}

impl Default for Dns01Settings {
    fn default() -> Self {
        Dns01Settings { propagation_timeout: "120s".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// Lifetime of access tokens from `/vedauth/authorize/oauth` (duration such as `90d`, `12h`).
    pub token_lifetime: String,
    /// How long a refresh token may be used.
    pub refresh_lifetime: String,
    /// Login throttling, counted from failed password checks (`auth.throttle.*`).
    pub throttle: ThrottleSettings,
    /// Password hashes (argon2) checked at once; beyond it a login answers 503. 0: the number of cores.
    pub max_concurrent_hashes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ThrottleSettings {
    /// Failures of one user from one source (IPv6 per /64) per 60 s that close that pair; 0 disables.
    pub per_user_source: u32,
    /// Failures from one source per 60 s that close the source; 0 disables.
    pub per_source: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings { per_user_source: 10, per_source: 100 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VenafiSettings {
    /// WorkToDoTimeout used when a request carries none (0–120 s).
    pub work_to_do_timeout: u64,
    /// Version reported by `/vedsdk/systemstatus/version` (vcert picks key fields from it).
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct QueueSettings {
    /// Issuance workers in this instance; 0 makes an API-only instance that only accepts jobs.
    pub workers: usize,
    /// A claimed job not finished within this many seconds is claimed again (its worker died).
    pub lease_secs: u64,
    /// How often idle workers look at the jobs table (for jobs enqueued by other instances).
    pub poll_ms: u64,
    /// Attempts before a failing job puts its certificate in the error state.
    pub max_attempts: i32,
    /// A request that waits for its certificate (WorkToDoTimeout, ACME finalize) runs its own
    /// job at once, enqueued already leased to it, while fewer than this many run so here
    /// (built-in CAs only; an instance without workers never does). 0: every job goes through
    /// the workers.
    pub inline: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IssuanceSettings {
    /// Validity of issued certificates (a policy folder's `validity` overrides it).
    pub validity: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DbSettings {
    pub pool_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// `text` (default) or `json`.
    pub format: String,
    /// tracing filter, e.g. `info` or `renewgate=debug`.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads (default: number of CPUs).
    pub workers: usize,
    /// Reverse proxies (addresses or CIDRs) whose `X-Forwarded-For` is believed: behind them the
    /// client is the last hop that is not one of them. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./data"),
            bind: "127.0.0.1:8443".into(),
            database_url: None,
            master_key: None,
            master_key_file: None,
            public_url: None,
            tls: TlsSettings::default(),
            ca: CaSettings::default(),
            auth: AuthSettings::default(),
            venafi: VenafiSettings::default(),
            queue: QueueSettings::default(),
            issuance: IssuanceSettings::default(),
            db: DbSettings::default(),
            log: LogSettings::default(),
            http: HttpSettings::default(),
            formats: FormatSettings::default(),
            keyfactor: KeyfactorSettings::default(),
            acme: AcmeSettings::default(),
            metrics: MetricsSettings::default(),
            scheduler: SchedulerSettings::default(),
            crl: CrlSettings::default(),
            config_file: None,
        }
    }
}

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            key_type: "ec-p256".into(),
            organization: "Renewgate".into(),
            host: None,
            dns01: Dns01Settings::default(),
        }
    }
}
impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_lifetime: "90d".into(),
            refresh_lifetime: "365d".into(),
            throttle: ThrottleSettings::default(),
            max_concurrent_hashes: 0,
        }
    }
}
impl Default for VenafiSettings {
    fn default() -> Self {
        VenafiSettings { work_to_do_timeout: 0, version: "25.1.0.2100".into() }
    }
}
impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { workers: 2, lease_secs: 60, poll_ms: 500, max_attempts: 3, inline: 64 }
    }
}
impl Default for IssuanceSettings {
    fn default() -> Self {
        IssuanceSettings { validity: "90d".into() }
    }
}
impl Default for DbSettings {
    fn default() -> Self {
        DbSettings { pool_size: 16 }
    }
}
impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: "text".into(), level: "info".into() }
    }
}
impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings { max_body_bytes: 1024 * 1024, workers: 0, trusted_proxies: vec![] }
    }
}

impl Settings {
    /// `http.trusted_proxies` parsed: a bare address is a /32 or /128.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.http
            .trusted_proxies
            .iter()
            .map(|p| {
                let p = p.trim();
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| anyhow::anyhow!("http.trusted_proxies: {p:?} is not an address or CIDR"))
            })
            .collect()
    }

    /// Loads defaults, then the TOML file (if given), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut b = config::Config::builder();
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).format(config::FileFormat::Toml).required(true));
        }
        b = b.add_source(
            config::Environment::with_prefix("RENEWGATE")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("tls.names")
                .with_list_parse_key("acme.validation.hosts")
                .with_list_parse_key("acme.validation.deny_cidrs")
                .with_list_parse_key("http.trusted_proxies")
                .try_parsing(true),
        );
        let mut s: Settings = b.build()?.try_deserialize()?;
        s.config_file = file.map(Path::to_path_buf);
        // The documented short form of `log.format` (`RENEWGATE_LOG__FORMAT` works too).
        if let Ok(f) = std::env::var("RENEWGATE_LOG_FORMAT")
            && !f.trim().is_empty()
        {
            s.log.format = f.trim().to_ascii_lowercase();
        }
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> anyhow::Result<()> {
        parse_duration(&self.auth.token_lifetime)?;
        parse_duration(&self.auth.refresh_lifetime)?;
        parse_duration(&self.issuance.validity)?;
        parse_duration(&self.keyfactor.classic_wait)?;
        if parse_duration(&self.scheduler.interval)?.is_zero() {
            anyhow::bail!("scheduler.interval must be at least 1s");
        }
        if !["text", "json"].contains(&self.log.format.to_ascii_lowercase().as_str()) {
            anyhow::bail!("log.format must be text or json");
        }
        if self.venafi.work_to_do_timeout > 120 {
            anyhow::bail!("venafi.work_to_do_timeout must be between 0 and 120 seconds");
        }
        crate::ca::KeySpec::parse_config(&self.ca.key_type)?;
        self.trusted_proxies()?;
        for c in &self.acme.validation.deny_cidrs {
            c.trim()
                .parse::<ipnet::IpNet>()
                .or_else(|_| c.trim().parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| anyhow::anyhow!("acme.validation.deny_cidrs: {c:?} is not an address or CIDR"))?;
        }
        if self.acme.validation.concurrency == 0 {
            anyhow::bail!("acme.validation.concurrency must be at least 1");
        }
        if crate::engine::policy::normalize_dn(&self.acme.default_policy)
            .eq_ignore_ascii_case(crate::engine::policy::ROOT_DN)
        {
            anyhow::bail!("acme.default_policy must be a folder below \\VED\\Policy, not the root");
        }
        if crate::formats::Pkcs12Profile::parse(&self.formats.pkcs12_profile).is_none() {
            anyhow::bail!("formats.pkcs12_profile must be modern or legacy");
        }
        if let Some(b) = self.crl_http_bind()
            && b.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none()
        {
            anyhow::bail!("crl.http_bind must be host:port, e.g. 127.0.0.1:8080 (got {b:?})");
        }
        let base = self.crl_base_url();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || !base.is_ascii()
            || base.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        {
            anyhow::bail!("crl.base_url must be an http:// or https:// URL in ASCII without spaces (got {base:?})");
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) if !u.is_empty() => u.clone(),
            _ => self.data_dir.join("renewgate.db").to_string_lossy().into_owned(),
        }
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let bind = self.bind.replace("0.0.0.0", "127.0.0.1").replace("[::]", "localhost");
                format!("https://{bind}")
            }
        }
    }

    /// `crl.http_bind`, when set and not blank.
    pub fn crl_http_bind(&self) -> Option<&str> {
        self.crl.http_bind.as_deref().map(str::trim).filter(|b| !b.is_empty())
    }

    /// Base of the CRL and CA-certificate URLs named in issued certificates (no trailing slash):
    /// `crl.base_url`, else `http://<crl.http_bind>`, else the public URL.
    pub fn crl_base_url(&self) -> String {
        if let Some(u) = self.crl.base_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            return u.trim_end_matches('/').to_string();
        }
        match self.crl_http_bind() {
            Some(b) => format!("http://{}", b.replace("0.0.0.0", "127.0.0.1").replace("[::]", "localhost")),
            None => self.public_url(),
        }
    }

    /// Host part of Keyfactor CA configuration strings: `ca.host`, else the machine's host name.
    pub fn ca_host(&self) -> String {
        self.ca.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "localhost".into())
        })
    }

    pub fn ca_bundle_path(&self) -> PathBuf {
        self.data_dir.join("ca-bundle.pem")
    }

    pub fn initial_password_path(&self) -> PathBuf {
        self.data_dir.join("initial-admin-password")
    }
}

/// One policy folder from the TOML file: `[policy.'\VED\Policy\Team A']` with setting keys and
/// an optional `locked = ["key", …]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePolicy {
    pub dn: String,
    pub settings: std::collections::BTreeMap<String, serde_json::Value>,
    pub locked: Vec<String>,
}

/// Reads the `[policy]` tables of the configuration file (read separately from the typed
/// settings because DNs are case-preserving map keys).
pub fn file_policies(path: &Path) -> anyhow::Result<Vec<FilePolicy>> {
    let text = std::fs::read_to_string(path)?;
    let doc: toml::Table = toml::from_str(&text)?;
    let Some(policy) = doc.get("policy") else { return Ok(vec![]) };
    let table = policy.as_table().ok_or_else(|| anyhow::anyhow!("[policy] must be a table of folders"))?;
    let mut out = vec![];
    for (dn, v) in table {
        let t = v.as_table().ok_or_else(|| anyhow::anyhow!("[policy.'{dn}'] must be a table"))?;
        let mut settings = std::collections::BTreeMap::new();
        let mut locked = vec![];
        for (k, val) in t {
            if k == "locked" {
                locked = val
                    .as_array()
                    .ok_or_else(|| anyhow::anyhow!("[policy.'{dn}'] locked must be a list of keys"))?
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect();
            } else {
                settings.insert(k.clone(), serde_json::to_value(val)?);
            }
        }
        out.push(FilePolicy { dn: dn.clone(), settings, locked });
    }
    Ok(out)
}

/// Parses `90d`, `12h`, `10m`, `30s`, `3y`, `2w` (a bare number is seconds).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| anyhow::anyhow!("invalid duration {s:?} (use e.g. 90d, 12h, 10m, 30s)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        "w" => n * 7 * 86400,
        "y" => n * 365 * 86400,
        _ => anyhow::bail!("invalid duration {s:?} (use e.g. 90d, 12h, 10m, 30s)"),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap().as_secs(), 90 * 86400);
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43200);
        assert_eq!(parse_duration("45").unwrap().as_secs(), 45);
        assert!(parse_duration("ten days").is_err());
        assert!(parse_duration("5q").is_err());
    }

    #[test]
    fn environment_names_follow_key_paths() {
        // Runs in its own process-wide env; keys unique to this test.
        unsafe {
            std::env::set_var("RENEWGATE_QUEUE__LEASE_SECS", "7");
            std::env::set_var("RENEWGATE_VENAFI__WORK_TO_DO_TIMEOUT", "11");
            std::env::set_var("RENEWGATE_TLS__NAMES", "gw.example.com,10.0.0.5");
            std::env::set_var("RENEWGATE_CRL__HTTP_BIND", "127.0.0.1:8089");
        }
        let s = Settings::load(None).unwrap();
        assert_eq!(s.queue.lease_secs, 7);
        assert_eq!(s.venafi.work_to_do_timeout, 11);
        assert_eq!(s.tls.names, vec!["gw.example.com".to_string(), "10.0.0.5".to_string()]);
        assert_eq!(s.crl.http_bind.as_deref(), Some("127.0.0.1:8089"));
        assert_eq!(s.crl_base_url(), "http://127.0.0.1:8089");
        unsafe {
            std::env::remove_var("RENEWGATE_QUEUE__LEASE_SECS");
            std::env::remove_var("RENEWGATE_VENAFI__WORK_TO_DO_TIMEOUT");
            std::env::remove_var("RENEWGATE_TLS__NAMES");
            std::env::remove_var("RENEWGATE_CRL__HTTP_BIND");
        }
    }

    #[test]
    fn crl_base_url_defaults() {
        let mut s = Settings::default();
        assert_eq!(s.crl_base_url(), "https://127.0.0.1:8443");
        s.crl.http_bind = Some("0.0.0.0:8080".into());
        assert_eq!(s.crl_base_url(), "http://127.0.0.1:8080");
        s.crl.base_url = Some("http://pki.example.com/renewgate/".into());
        assert_eq!(s.crl_base_url(), "http://pki.example.com/renewgate");
        assert!(s.validate().is_ok());
        s.crl.base_url = Some("ldap://x".into());
        assert!(s.validate().is_err());
        s.crl.base_url = None;
        s.crl.http_bind = Some("localhost".into());
        assert!(s.validate().is_err());
    }
}
