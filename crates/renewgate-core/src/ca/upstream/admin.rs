//! Adding, changing, listing and removing upstream issuers (`renewgate ca add|update|list|remove`).
use super::db::{self, IssuerRow, NewIssuer};
use super::dns01::{Dns01Config, PropagationCheck, TsigKey};
use super::{EAB_PURPOSE, Solver, TSIG_PURPOSE, UpstreamConfig, is_private_directory};
use crate::ca::builtin::BuiltinCa;
use crate::db::{DbConn, write_tx};
use crate::secrets::MasterKey;

/// What `ca add` / `ca update` were given; None: not given (update keeps the current value).
#[derive(Debug, Default, Clone)]
pub struct UpstreamSpec {
    pub directory: Option<String>,
    pub eab_kid: Option<String>,
    /// The EAB MAC key as the CA hands it out (base64url).
    pub eab_hmac_key: Option<String>,
    pub contact: Option<Vec<String>>,
    pub ca_bundle_pem: Option<String>,
    pub solver: Option<Solver>,
    pub http_listen: Option<String>,
    pub public: Option<bool>,
    /// dns-01: the primary server taking RFC 2136 updates (`host:port`).
    pub dns_server: Option<String>,
    /// dns-01: the TSIG key, as `tsig-keygen` writes it.
    pub tsig_key: Option<String>,
    pub zone: Option<String>,
    pub propagation: Option<super::dns01::PropagationCheck>,
}

const LOCK: i64 = 7262010;

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("an issuer name is 1–64 characters: letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

fn decode_hmac(key: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let k = key.trim();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(k.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(k))
        .map_err(|_| "the EAB HMAC key is not base64url".to_string())
        .and_then(|b| if b.is_empty() { Err("the EAB HMAC key is empty".into()) } else { Ok(b) })
}

/// The settings of an issuer: `current` with what `spec` gives applied, checked.
fn settle(
    name: &str,
    current: Option<(&str, &UpstreamConfig)>,
    spec: &UpstreamSpec,
) -> Result<(String, UpstreamConfig), String> {
    let directory = spec
        .directory
        .clone()
        .or_else(|| current.map(|c| c.0.to_string()))
        .ok_or_else(|| format!("issuer {name}: --acme-directory is required"))?;
    let uri: ::http::Uri = directory.parse().map_err(|_| format!("issuer {name}: {directory} is not a URL"))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(format!("issuer {name}: the ACME directory must be an https:// URL"));
    }
    let old = current.map(|c| c.1.clone());
    let solver = spec
        .solver
        .or(old.as_ref().map(|o| o.solver))
        .ok_or_else(|| format!("issuer {name}: --solver is required (http-01 or none)"))?;
    let http_listen = spec.http_listen.clone().or_else(|| old.as_ref().and_then(|o| o.http_listen.clone()));
    if solver == Solver::Http01 {
        let addr = http_listen
            .as_deref()
            .ok_or_else(|| format!("issuer {name}: the http-01 solver needs --http-listen ADDR (e.g. 0.0.0.0:80)"))?;
        addr.parse::<std::net::SocketAddr>()
            .map_err(|_| format!("issuer {name}: --http-listen {addr} is not an address:port"))?;
    }
    let contact = spec.contact.clone().or_else(|| old.as_ref().map(|o| o.contact.clone())).unwrap_or_default();
    for c in &contact {
        if !c.starts_with("mailto:") || c.len() < 10 || c.contains(char::is_whitespace) {
            return Err(format!("issuer {name}: a contact is a mailto: URL ({c})"));
        }
    }
    let ca_bundle_pem = spec.ca_bundle_pem.clone().or_else(|| old.as_ref().and_then(|o| o.ca_bundle_pem.clone()));
    if let Some(pem) = &ca_bundle_pem {
        let n = openssl::x509::X509::stack_from_pem(pem.as_bytes()).map(|v| v.len()).unwrap_or(0);
        if n == 0 {
            return Err(format!("issuer {name}: the CA bundle holds no PEM certificate"));
        }
    }
    let public = spec
        .public
        .or(if spec.directory.is_some() { None } else { old.as_ref().map(|o| o.public) })
        .unwrap_or_else(|| !is_private_directory(&directory));
    let eab_kid = spec.eab_kid.clone().or_else(|| old.as_ref().and_then(|o| o.eab_kid.clone()));
    let old_dns = old.as_ref().and_then(|o| o.dns01.clone());
    let dns01 = if solver == Solver::Dns01 {
        let server = spec
            .dns_server
            .clone()
            .or_else(|| old_dns.as_ref().map(|d| d.server.clone()))
            .ok_or_else(|| format!("issuer {name}: the dns-01 solver needs --dns-server HOST:PORT"))?;
        if !server.contains(':') {
            return Err(format!("issuer {name}: --dns-server {server} is not host:port"));
        }
        let key = match &spec.tsig_key {
            Some(k) => Some(TsigKey::parse(k).map_err(|e| format!("issuer {name}: {e}"))?),
            None => None,
        };
        let (tsig_name, tsig_algorithm) = match (&key, &old_dns) {
            (Some(k), _) => (k.name.clone(), k.algorithm.clone()),
            (None, Some(d)) => (d.tsig_name.clone(), d.tsig_algorithm.clone()),
            (None, None) => return Err(format!("issuer {name}: the dns-01 solver needs --tsig-key-file FILE")),
        };
        Some(Dns01Config {
            server,
            tsig_name,
            tsig_algorithm,
            zone: spec.zone.clone().or_else(|| old_dns.as_ref().and_then(|d| d.zone.clone())),
            propagation: spec.propagation.or(old_dns.as_ref().map(|d| d.propagation)).unwrap_or(PropagationCheck::Ns),
        })
    } else {
        None
    };
    Ok((directory, UpstreamConfig { contact, solver, http_listen, public, ca_bundle_pem, eab_kid, dns01 }))
}

/// Adds an upstream issuer. Its secrets are sealed; nothing is contacted until it first issues.
pub fn add(c: &mut DbConn, master: &MasterKey, name: &str, spec: &UpstreamSpec) -> anyhow::Result<UpstreamConfig> {
    check_name(name).map_err(anyhow::Error::msg)?;
    let (directory, config) = settle(name, None, spec).map_err(anyhow::Error::msg)?;
    if config.eab_kid.is_some() != spec.eab_hmac_key.is_some() {
        anyhow::bail!("issuer {name}: --eab-kid and the EAB HMAC key go together");
    }
    let hmac = spec.eab_hmac_key.as_deref().map(decode_hmac).transpose().map_err(anyhow::Error::msg)?;
    let sealed = hmac.map(|k| master.seal(EAB_PURPOSE, &k)).transpose()?;
    let tsig = sealed_tsig(master, spec)?;
    let json = serde_json::to_string(&config)?;
    write_tx(c, Some(LOCK), |tx| -> anyhow::Result<()> {
        if db::builtin_exists(tx, name)? || db::find(tx, name)?.is_some() {
            anyhow::bail!("an issuer named {name} already exists");
        }
        db::insert(
            tx,
            &NewIssuer {
                name,
                directory_url: &directory,
                config: &json,
                eab_hmac_enc: sealed.as_deref(),
                tsig_secret_enc: tsig.as_deref(),
            },
        )
        .map_err(anyhow::Error::from)
    })?;
    Ok(config)
}

/// The TSIG secret of `spec`'s key file, sealed.
fn sealed_tsig(master: &MasterKey, spec: &UpstreamSpec) -> anyhow::Result<Option<Vec<u8>>> {
    match &spec.tsig_key {
        Some(k) => {
            let key = TsigKey::parse(k).map_err(anyhow::Error::msg)?;
            Ok(Some(master.seal(TSIG_PURPOSE, &key.secret)?))
        }
        None => Ok(None),
    }
}

/// Changes an upstream issuer; a running gateway uses the new settings for its next job.
pub fn update(c: &mut DbConn, master: &MasterKey, name: &str, spec: &UpstreamSpec) -> anyhow::Result<UpstreamConfig> {
    write_tx(c, Some(LOCK), |tx| -> anyhow::Result<UpstreamConfig> {
        let row = db::find(tx, name)?.ok_or_else(|| {
            if db::builtin_exists(tx, name).unwrap_or(false) {
                anyhow::anyhow!("{name} is a built-in CA: only upstream issuers are updated")
            } else {
                anyhow::anyhow!("no issuer named {name}")
            }
        })?;
        let old: UpstreamConfig = serde_json::from_str(&row.config)?;
        let (directory, config) = settle(name, Some((&row.directory_url, &old)), spec).map_err(anyhow::Error::msg)?;
        let eab_hmac_enc = match &spec.eab_hmac_key {
            Some(k) => Some(master.seal(EAB_PURPOSE, &decode_hmac(k).map_err(anyhow::Error::msg)?)?),
            None => row.eab_hmac_enc.clone(),
        };
        if config.eab_kid.is_some() != eab_hmac_enc.is_some() {
            anyhow::bail!("issuer {name}: --eab-kid and the EAB HMAC key go together");
        }
        let tsig_secret_enc = match sealed_tsig(master, spec)? {
            Some(t) => Some(t),
            None if config.dns01.is_some() => row.tsig_secret_enc.clone(),
            None => None,
        };
        let drop_account =
            directory != row.directory_url || config.eab_kid != old.eab_kid || spec.eab_hmac_key.is_some();
        let json = serde_json::to_string(&config)?;
        db::update(
            tx,
            row.id,
            &NewIssuer {
                name,
                directory_url: &directory,
                config: &json,
                eab_hmac_enc: eab_hmac_enc.as_deref(),
                tsig_secret_enc: tsig_secret_enc.as_deref(),
            },
            drop_account,
        )?;
        Ok(config)
    })
}

/// Removes an upstream issuer, unless unexpired certificates or open jobs still reference it.
/// Its row and account stay (marked removed) so its certificates can still be revoked.
pub fn remove(c: &mut DbConn, name: &str) -> anyhow::Result<()> {
    write_tx(c, Some(LOCK), |tx| -> anyhow::Result<()> {
        let row = db::find(tx, name)?.ok_or_else(|| {
            if db::builtin_exists(tx, name).unwrap_or(false) {
                anyhow::anyhow!("{name} is a built-in CA: disable it instead (renewgate ca disable {name})")
            } else {
                anyhow::anyhow!("no issuer named {name}")
            }
        })?;
        let (certs, jobs) = db::references(tx, &row.name)?;
        if certs > 0 || jobs > 0 {
            anyhow::bail!(
                "issuer {} is still in use: {certs} unexpired certificate(s) and {jobs} open job(s) reference it",
                row.name
            );
        }
        db::mark_removed(tx, row.id).map_err(anyhow::Error::from)
    })
}

/// One line of `ca list`.
pub struct IssuerLine {
    pub name: String,
    pub kind: &'static str,
    pub status: String,
    pub directory: Option<String>,
}

/// Every issuer: the built-in issuing CAs, then the upstream ones.
pub fn list(c: &mut DbConn) -> anyhow::Result<Vec<IssuerLine>> {
    let mut out: Vec<IssuerLine> = BuiltinCa::list_issuing(c)?
        .into_iter()
        .map(|r| IssuerLine {
            name: r.name,
            kind: "builtin",
            status: if r.disabled { "disabled".into() } else { "enabled".into() },
            directory: None,
        })
        .collect();
    for r in db::list(c)? {
        out.push(IssuerLine { status: status_of(&r), name: r.name, kind: "acme", directory: Some(r.directory_url) });
    }
    Ok(out)
}

fn status_of(r: &IssuerRow) -> String {
    match (&r.last_error, &r.account_url) {
        (Some(e), _) => format!("failing: {}", e.replace(['\t', '\n'], " ")),
        (None, Some(_)) => "registered".into(),
        (None, None) => "not-registered".into(),
    }
}

/// The plain-HTTP addresses the http-01 solver of some issuer listens on.
pub fn http_listen_addresses(c: &mut DbConn) -> anyhow::Result<Vec<String>> {
    let mut out = vec![];
    for r in db::list(c)? {
        if let Ok(cfg) = serde_json::from_str::<UpstreamConfig>(&r.config)
            && cfg.solver == Solver::Http01
            && let Some(a) = cfg.http_listen
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    Ok(out)
}

/// The key authorization for an http-01 token, when an order of this gateway waits on it.
pub fn http01_answer(c: &mut DbConn, token: &str) -> anyhow::Result<Option<String>> {
    if token.is_empty()
        || token.len() > 128
        || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Ok(None);
    }
    db::answer(c, token).map_err(anyhow::Error::from)
}
