//! Policy folders (`\VED\Policy\…`): a tree whose nearest folder with a setting wins.
//! This module holds the tree itself; settings and validation build on it.
use diesel::prelude::*;

use crate::db::models::{NewPolicyFolder, PolicyFolder};
use crate::db::schema::policy_folders;
use crate::db::{DbConn, new_guid, now};
use crate::vocab::Permission;

pub const ROOT_DN: &str = "\\VED\\Policy";

/// Normalises a policy DN the way vcert does client-side: `\VED\Policy…` kept, `VED\Policy…`
/// gets a leading `\`, `\x` and `x` become `\VED\Policy\x`; a trailing `\` is dropped.
pub fn normalize_dn(dn: &str) -> String {
    let t = dn.trim().trim_end_matches('\\');
    let lower = t.to_ascii_lowercase();
    let full = if lower == "\\ved\\policy" || lower.starts_with("\\ved\\policy\\") {
        t.to_string()
    } else if lower == "ved\\policy" || lower.starts_with("ved\\policy\\") {
        format!("\\{t}")
    } else if let Some(rest) = t.strip_prefix('\\') {
        format!("{ROOT_DN}\\{rest}")
    } else if t.is_empty() {
        ROOT_DN.to_string()
    } else {
        format!("{ROOT_DN}\\{t}")
    };
    // Canonical spelling of the root part, whatever case the caller used.
    format!("{ROOT_DN}{}", &full[ROOT_DN.len()..])
}

/// The DN and its ancestors up to `\VED\Policy`, nearest first.
pub fn ancestry(dn: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = dn.to_string();
    loop {
        out.push(cur.clone());
        if cur.eq_ignore_ascii_case(ROOT_DN) {
            break;
        }
        match cur.rfind('\\') {
            Some(i) if i >= ROOT_DN.len() => cur.truncate(i),
            _ => break,
        }
    }
    out
}

pub fn find_folder(conn: &mut DbConn, dn: &str) -> QueryResult<Option<PolicyFolder>> {
    policy_folders::table
        .filter(policy_folders::dn_lower.eq(normalize_dn(dn).to_lowercase()))
        .select(PolicyFolder::as_select())
        .first(conn)
        .optional()
}

/// The one rule for folder administration: `perm` on the folder itself. A folder outside the
/// caller's grants answers exactly as a missing one (callers render their not-found answer).
pub fn may(access: &crate::auth::FolderAccess, dn: &str, perm: Permission) -> bool {
    access.allows(&normalize_dn(dn), perm)
}

/// A folder the caller may read (`None` for a missing or hidden one).
pub fn find_folder_for(
    conn: &mut DbConn,
    access: &crate::auth::FolderAccess,
    dn: &str,
) -> QueryResult<Option<PolicyFolder>> {
    if !may(access, dn, Permission::Read) {
        return Ok(None);
    }
    find_folder(conn, dn)
}

/// A folder by its numeric id (Keyfactor's ContainerId).
pub fn find_folder_by_id(conn: &mut DbConn, id: i64) -> QueryResult<Option<PolicyFolder>> {
    policy_folders::table.find(id).select(PolicyFolder::as_select()).first(conn).optional()
}

/// Creates the folder and any missing parents; returns true when the folder itself was new.
pub fn ensure_folder(conn: &mut DbConn, dn: &str) -> QueryResult<bool> {
    // The last guard: callers check the DN first to answer 400; no path may store a DN that would
    // split the log lines and audit rows it is written into.
    crate::names::check_folder_dn(dn).map_err(|e| diesel::result::Error::QueryBuilderError(Box::new(e)))?;
    let dn = normalize_dn(dn);
    let mut created = false;
    for (i, d) in ancestry(&dn).iter().rev().enumerate() {
        let _ = i;
        let lower = d.to_lowercase();
        let exists: i64 = policy_folders::table.filter(policy_folders::dn_lower.eq(&lower)).count().get_result(conn)?;
        if exists == 0 {
            diesel::insert_into(policy_folders::table)
                .values(NewPolicyFolder {
                    guid: &new_guid(),
                    dn: d,
                    dn_lower: &lower,
                    settings: "{}",
                    locked: "[]",
                    created_at: now(),
                })
                .execute(conn)?;
            created = d == &dn;
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_normalisation_matches_vcert() {
        assert_eq!(normalize_dn("\\VED\\Policy\\Web"), "\\VED\\Policy\\Web");
        assert_eq!(normalize_dn("VED\\Policy\\Web"), "\\VED\\Policy\\Web");
        assert_eq!(normalize_dn("\\Web\\Team A"), "\\VED\\Policy\\Web\\Team A");
        assert_eq!(normalize_dn("Web"), "\\VED\\Policy\\Web");
        assert_eq!(normalize_dn("\\ved\\policy\\Web\\"), "\\VED\\Policy\\Web");
        assert_eq!(normalize_dn(""), "\\VED\\Policy");
    }

    #[test]
    fn ancestry_nearest_first() {
        assert_eq!(ancestry("\\VED\\Policy\\A\\B"), vec!["\\VED\\Policy\\A\\B", "\\VED\\Policy\\A", "\\VED\\Policy"]);
        assert_eq!(ancestry("\\VED\\Policy"), vec!["\\VED\\Policy"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Settings: one key each, the same keys in the TOML file, the CLI and the HTTP API.

use std::collections::BTreeMap;

use serde_json::Value;

/// `auto_renew_before` when no folder sets it: 30 days.
pub const DEFAULT_AUTO_RENEW_BEFORE_SECS: u64 = 30 * 86400;

/// Every policy key, in display order.
pub const KEYS: &[&str] = &[
    "domains",
    "wildcards",
    "organization",
    "org_units",
    "city",
    "state",
    "country",
    "key_algorithm",
    "rsa_key_sizes",
    "ec_curves",
    "san_types",
    "key_reuse",
    "csr_origin",
    "management_type",
    "validity",
    "ca",
    "acme_allow_duplicates",
    "acme_coverage",
    "acme_renewal_window",
    "acme_order_renewal_window",
    "acme_ekus",
    "auto_renew",
    "auto_renew_before",
    "push_on_renew",
];

const LIST_KEYS: &[&str] = &["domains", "org_units", "rsa_key_sizes", "ec_curves", "san_types", "acme_ekus"];
/// The extended key usages a folder may give ACME certificates (`acme_ekus`).
pub const EKUS: &[&str] = &["serverAuth", "clientAuth", "codeSigning", "emailProtection"];
const BOOL_KEYS: &[&str] = &["wildcards", "key_reuse", "acme_allow_duplicates", "auto_renew", "push_on_renew"];
pub const SAN_TYPES: &[&str] = &["dns", "ip", "email", "upn", "uri"];

/// Checks and normalises one setting's value (from JSON, TOML or the CLI).
pub fn normalize_setting(key: &str, v: &Value) -> Result<Value, String> {
    let bad = |what: &str| Err(format!("{key}: {what}"));
    if !KEYS.contains(&key) {
        return Err(format!("unknown policy key '{key}' (known: {})", KEYS.join(", ")));
    }
    if LIST_KEYS.contains(&key) {
        let items: Vec<Value> = match v {
            Value::Array(a) => a.clone(),
            Value::String(s) => {
                s.split(',').map(|x| Value::String(x.trim().to_string())).filter(|x| x.as_str() != Some("")).collect()
            }
            Value::Number(_) => vec![v.clone()],
            _ => return bad("expected a list"),
        };
        let mut out = vec![];
        for it in items {
            let s = match &it {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                _ => return bad("expected strings"),
            };
            let norm = match key {
                "domains" => Value::String(s.trim_start_matches("*.").trim_start_matches('.').to_ascii_lowercase()),
                "rsa_key_sizes" => match s.parse::<u64>() {
                    Ok(n) if [2048, 3072, 4096].contains(&n) => Value::from(n),
                    _ => return bad("RSA key sizes are 2048, 3072 or 4096"),
                },
                "ec_curves" => match crate::ca::EcCurve::parse(&s) {
                    Some(c) => Value::String(c.name().into()),
                    None => return bad("curves are P256, P384 or P521"),
                },
                "san_types" => {
                    let l = s.to_ascii_lowercase();
                    if !SAN_TYPES.contains(&l.as_str()) {
                        return bad("SAN types are dns, ip, email, upn, uri");
                    }
                    Value::String(l)
                }
                "acme_ekus" => match EKUS.iter().find(|e| e.eq_ignore_ascii_case(&s)) {
                    Some(e) => Value::String((*e).to_string()),
                    None => return bad("extended key usages are serverAuth, clientAuth, codeSigning, emailProtection"),
                },
                _ => Value::String(s),
            };
            out.push(norm);
        }
        return Ok(Value::Array(out));
    }
    if BOOL_KEYS.contains(&key) {
        return match v {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => bad("expected true or false"),
            },
            _ => bad("expected true or false"),
        };
    }
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return bad("expected a string"),
    };
    match key {
        "key_algorithm" => match s.to_ascii_uppercase().as_str() {
            "RSA" => Ok(Value::String("RSA".into())),
            "ECC" | "EC" | "ECDSA" => Ok(Value::String("ECC".into())),
            _ => bad("RSA or ECC"),
        },
        "csr_origin" => match s.to_ascii_lowercase().as_str() {
            o @ ("service" | "user" | "any") => Ok(Value::String(o.into())),
            _ => bad("service, user or any"),
        },
        "management_type" => crate::vocab::ManagementType::parse_any_case(&s)
            .map(|m| Value::String(m.as_str().into()))
            .ok_or_else(|| format!("{key}: Enrollment, Provisioning, Monitoring or Unassigned")),
        "validity" | "acme_coverage" | "acme_renewal_window" | "acme_order_renewal_window" | "auto_renew_before" => {
            crate::settings::parse_duration(&s).map(|_| Value::String(s.clone())).map_err(|e| format!("{key}: {e}"))
        }
        "country" if s.len() != 2 => bad("a two-letter country code"),
        _ => Ok(Value::String(s)),
    }
}

/// A folder's own settings and locks, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FolderSettings {
    pub settings: BTreeMap<String, Value>,
    pub locked: Vec<String>,
}

impl FolderSettings {
    pub fn of(f: &PolicyFolder) -> FolderSettings {
        FolderSettings {
            settings: serde_json::from_str(&f.settings).unwrap_or_default(),
            locked: serde_json::from_str(&f.locked).unwrap_or_default(),
        }
    }
}

/// Merges into a folder (creating it and its parents): a key given replaces its value, `null`
/// removes it; `lock`/`unlock` change lock flags.
pub fn merge_folder(
    conn: &mut DbConn,
    dn: &str,
    set: &BTreeMap<String, Value>,
    lock: &[String],
    unlock: &[String],
) -> Result<FolderSettings, String> {
    crate::names::check_folder_dn(dn).map_err(|e| e.to_string())?;
    let dn = normalize_dn(dn);
    ensure_folder(conn, &dn).map_err(|e| e.to_string())?;
    let folder = find_folder(conn, &dn).map_err(|e| e.to_string())?.ok_or("folder vanished")?;
    let mut fs = FolderSettings::of(&folder);
    for (k, v) in set {
        if v.is_null() {
            if !KEYS.contains(&k.as_str()) {
                return Err(format!("unknown policy key '{k}'"));
            }
            fs.settings.remove(k);
            fs.locked.retain(|l| l != k);
        } else {
            fs.settings.insert(k.clone(), normalize_setting(k, v)?);
        }
    }
    for k in lock {
        if !KEYS.contains(&k.as_str()) {
            return Err(format!("unknown policy key '{k}'"));
        }
        if !fs.locked.contains(k) {
            fs.locked.push(k.clone());
        }
    }
    fs.locked.retain(|k| !unlock.contains(k));
    fs.locked.sort();
    diesel::update(policy_folders::table.find(folder.id))
        .set((
            policy_folders::settings.eq(serde_json::to_string(&fs.settings).unwrap_or_default()),
            policy_folders::locked.eq(serde_json::to_string(&fs.locked).unwrap_or_default()),
        ))
        .execute(conn)
        .map_err(|e| e.to_string())?;
    Ok(fs)
}

/// Deletes a folder that holds no certificates and no sub-folders.
pub fn delete_folder(conn: &mut DbConn, dn: &str) -> Result<bool, String> {
    use crate::db::schema::cert_objects;
    let dn = normalize_dn(dn);
    if dn.eq_ignore_ascii_case(ROOT_DN) {
        return Err("the root folder cannot be deleted".into());
    }
    let lower = dn.to_lowercase();
    // Prefix test in Rust: DNs are full of backslashes, LIKE's escape character on PostgreSQL.
    let prefix = format!("{lower}\\");
    let children = policy_folders::table
        .select(policy_folders::dn_lower)
        .load::<String>(conn)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|d| d.starts_with(&prefix))
        .count();
    let certs: i64 = cert_objects::table
        .filter(cert_objects::policy_dn.eq(&dn))
        .count()
        .get_result(conn)
        .map_err(|e| e.to_string())?;
    if children > 0 || certs > 0 {
        return Err(format!("{dn} is not empty ({children} sub-folders, {certs} certificates)"));
    }
    let n = diesel::delete(policy_folders::table.filter(policy_folders::dn_lower.eq(&lower)))
        .execute(conn)
        .map_err(|e| e.to_string())?;
    Ok(n > 0)
}

/// One effective setting: its value, the folder it comes from, and whether it is locked there.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveSetting {
    pub value: Value,
    pub folder: String,
    pub locked: bool,
}

/// The settings in force for a folder: for each key, the nearest folder that sets it.
#[derive(Debug, Clone, Default)]
pub struct EffectivePolicy {
    pub dn: String,
    pub values: BTreeMap<String, EffectiveSetting>,
}

pub fn effective(conn: &mut DbConn, dn: &str) -> QueryResult<EffectivePolicy> {
    let dn = normalize_dn(dn);
    let chain = ancestry(&dn);
    let lowers: Vec<String> = chain.iter().map(|d| d.to_lowercase()).collect();
    // Kept prepared: the IN list's length is the folder's depth, so its text repeats.
    // On the concrete connection (`on_backend`): every renewal reads its folder's policy.
    let folders: Vec<PolicyFolder> = crate::on_backend!(conn, |c| crate::db::Prepared(
        policy_folders::table.filter(policy_folders::dn_lower.eq_any(&lowers)).select(PolicyFolder::as_select()),
    )
    .load(c))?;
    let mut values = BTreeMap::new();
    for lower in &lowers {
        let Some(f) = folders.iter().find(|f| &f.dn_lower == lower) else { continue };
        let fs = FolderSettings::of(f);
        for (k, v) in fs.settings {
            values.entry(k.clone()).or_insert(EffectiveSetting {
                value: v,
                folder: f.dn.clone(),
                locked: fs.locked.contains(&k),
            });
        }
    }
    Ok(EffectivePolicy { dn, values })
}

impl EffectivePolicy {
    pub fn get(&self, key: &str) -> Option<&EffectiveSetting> {
        self.values.get(key)
    }
    pub fn string(&self, key: &str) -> Option<(String, bool)> {
        self.get(key).and_then(|s| s.value.as_str().map(|v| (v.to_string(), s.locked)))
    }
    pub fn list(&self, key: &str) -> Option<(Vec<String>, bool)> {
        self.get(key).and_then(|s| {
            s.value.as_array().map(|a| {
                (a.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect(), s.locked)
            })
        })
    }
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.get(key).and_then(|s| s.value.as_bool()).unwrap_or(default)
    }
    pub fn domains(&self) -> Vec<String> {
        self.list("domains").map(|l| l.0).unwrap_or_default()
    }
    pub fn wildcards(&self) -> bool {
        self.flag("wildcards", true)
    }
    /// Whether a renewal CSR may reuse an earlier version's key. Allowed unless a folder says
    /// otherwise (common ACME clients keep their key across renewals); an installation upgraded
    /// from a build that refused it has `key_reuse=false` written on its root folder.
    pub fn key_reuse(&self) -> bool {
        self.flag("key_reuse", true)
    }
    /// The extended key usages of ACME certificates: serverAuth unless the folder lists more.
    pub fn acme_ekus(&self) -> Vec<String> {
        self.list("acme_ekus").map(|l| l.0).filter(|l| !l.is_empty()).unwrap_or_else(|| vec!["serverAuth".into()])
    }
    pub fn rsa_key_sizes(&self) -> Vec<u32> {
        self.list("rsa_key_sizes")
            .map(|l| l.0.iter().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_else(|| vec![2048, 3072, 4096])
    }
    pub fn ec_curves(&self) -> Vec<crate::ca::EcCurve> {
        self.list("ec_curves")
            .map(|l| l.0.iter().filter_map(|s| crate::ca::EcCurve::parse(s)).collect())
            .unwrap_or_else(|| vec![crate::ca::EcCurve::P256, crate::ca::EcCurve::P384, crate::ca::EcCurve::P521])
    }
    pub fn san_types(&self) -> Vec<String> {
        self.list("san_types").map(|l| l.0).unwrap_or_else(|| SAN_TYPES.iter().map(|s| s.to_string()).collect())
    }
    /// The CSR origin the folder requires; `None` when either is allowed (`any`, the default).
    pub fn csr_origin(&self) -> Option<crate::vocab::CsrOrigin> {
        self.string("csr_origin").and_then(|s| s.0.parse().ok())
    }
    /// The folder's management type for new objects (stored normalized; Enrollment by default).
    pub fn management_type(&self) -> crate::vocab::ManagementType {
        self.string("management_type")
            .and_then(|s| crate::vocab::ManagementType::parse_any_case(&s.0))
            .unwrap_or(crate::vocab::ManagementType::Enrollment)
    }
    /// The issuer a folder names; None: the built-in issuing CA of the key's algorithm.
    pub fn ca(&self) -> Option<String> {
        self.string("ca").map(|s| s.0).filter(|s| !s.trim().is_empty())
    }
    /// The issuer of a request for a key of `spec`: the folder's CA, else the built-in issuing CA
    /// of the key's algorithm (RSA keys `issuing-rsa`, EC keys `issuing`).
    pub fn issuer_for(&self, spec: Option<crate::ca::KeySpec>) -> String {
        self.ca().unwrap_or_else(|| crate::ca::builtin::default_issuer(spec).into())
    }
    /// Whether the scheduler renews this folder's service-generated certificates (default true).
    pub fn auto_renew(&self) -> bool {
        self.flag("auto_renew", true)
    }
    /// Whether a renewal also goes to the stores holding the object's previous certificate
    /// (default true), whatever started it.
    pub fn push_on_renew(&self) -> bool {
        self.flag("push_on_renew", true)
    }
    /// How long before expiry the scheduler renews (default 30 days), before the cap at a third
    /// of a certificate's validity (`scheduler::renewal_window`).
    pub fn auto_renew_before(&self) -> std::time::Duration {
        self.string("auto_renew_before")
            .and_then(|s| crate::settings::parse_duration(&s.0).ok())
            .unwrap_or(std::time::Duration::from_secs(DEFAULT_AUTO_RENEW_BEFORE_SECS))
    }
    pub fn validity(&self, default: std::time::Duration) -> std::time::Duration {
        self.string("validity").and_then(|s| crate::settings::parse_duration(&s.0).ok()).unwrap_or(default)
    }
    /// The key a service-generated CSR gets when the request names none (or names one a locked
    /// algorithm overrides).
    pub fn default_key_spec(&self, requested: Option<crate::ca::KeySpec>) -> crate::ca::KeySpec {
        use crate::ca::KeySpec;
        let alg = self.string("key_algorithm");
        let rsa = KeySpec::Rsa(self.rsa_key_sizes().first().copied().unwrap_or(2048));
        let ec = KeySpec::Ec(self.ec_curves().first().copied().unwrap_or(crate::ca::EcCurve::P256));
        match (requested, alg) {
            (Some(r), Some((a, true))) if r.algorithm_name() != a => {
                if a == "RSA" {
                    rsa
                } else {
                    ec
                }
            }
            (Some(r), _) => r,
            (None, Some((a, _))) => {
                if a == "ECC" {
                    ec
                } else {
                    rsa
                }
            }
            (None, None) => rsa,
        }
    }

    /// TOML lines for `renewgate policy show`: every key, its value, and where it comes from.
    pub fn to_toml_lines(&self) -> Vec<String> {
        let mut out = vec![];
        for key in KEYS {
            match self.values.get(*key) {
                Some(s) => out.push(format!(
                    "{key} = {}  # from {}{}",
                    toml_value(&s.value),
                    s.folder,
                    if s.locked { ", locked" } else { "" }
                )),
                None => out.push(format!("# {key}: not set (default {})", default_text(key))),
            }
        }
        out
    }
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", s).replace("\\\\", "\\\\"),
        Value::Array(a) => format!("[{}]", a.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

fn default_text(key: &str) -> &'static str {
    match key {
        "domains" => "any domain",
        "wildcards" => "true",
        "rsa_key_sizes" => "2048, 3072, 4096",
        "ec_curves" => "P256, P384, P521",
        "san_types" => "all",
        "key_reuse" => "true",
        "acme_ekus" => "serverAuth",
        "csr_origin" => "any",
        "management_type" => "Enrollment",
        "validity" => "issuance.validity",
        "ca" => "issuing (EC keys) / issuing-rsa (RSA keys)",
        "key_algorithm" => "either",
        "auto_renew" => "true",
        "push_on_renew" => "true",
        "auto_renew_before" => "30d, at most a third of the validity",
        _ => "unset",
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalises_cli_and_json_values() {
        assert_eq!(
            normalize_setting("domains", &json!("Example.com, *.example.org")).unwrap(),
            json!(["example.com", "example.org"])
        );
        assert_eq!(normalize_setting("wildcards", &json!("false")).unwrap(), json!(false));
        assert_eq!(normalize_setting("rsa_key_sizes", &json!("2048,4096")).unwrap(), json!([2048, 4096]));
        assert_eq!(normalize_setting("ec_curves", &json!(["p-256"])).unwrap(), json!(["P256"]));
        assert_eq!(normalize_setting("key_algorithm", &json!("ec")).unwrap(), json!("ECC"));
        assert_eq!(normalize_setting("management_type", &json!("monitoring")).unwrap(), json!("Monitoring"));
        assert!(normalize_setting("validity", &json!("ten days")).is_err());
        assert_eq!(normalize_setting("auto_renew", &json!("false")).unwrap(), json!(false));
        assert_eq!(normalize_setting("auto_renew_before", &json!("10d")).unwrap(), json!("10d"));
        assert!(normalize_setting("auto_renew_before", &json!("soon")).is_err());
        assert!(normalize_setting("rsa_key_sizes", &json!("1024")).is_err());
        assert!(normalize_setting("nonsense", &json!("x")).is_err());
        assert!(normalize_setting("country", &json!("USA")).is_err());
    }
}
