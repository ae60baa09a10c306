//! Request validation against the effective policy: every violation the Venafi seed documents,
//! in domain terms (the dialect renders the text). Locked subject values override the request;
//! unlocked ones fill gaps.
use openssl::nid::Nid;
use openssl::x509::X509NameRef;

use super::policy::EffectivePolicy;
use super::renew::SubjectSpec;
use crate::ca::{KeySpec, SanSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    City(String),
    CommonNameWhitelist(String),
    CommonNameWildcard,
    Country(String),
    DnsSanWildcard(String),
    DnsSan,
    EllipticCurve,
    EmailSan,
    IpSan,
    KeyAlgorithm,
    KeySize,
    Organization(String),
    OrgUnitMissing(String),
    OrgUnitViolating(String),
    State(String),
    UpnSan,
    UriSan,
    /// The SAN set as a whole: the offending names.
    Sans(Vec<String>),
    KeyReuse,
    /// The CSR's key belongs to a certificate revoked for key compromise (reason 1): refused
    /// everywhere, whatever the folder allows.
    CompromisedKey,
    /// The folder requires a user-provided CSR and none was given (the folder's DN).
    CsrRequired(String),
    /// The folder requires a service-generated key and a CSR was given.
    ServiceCsrRequired(String),
    /// A name that no certificate may carry (control characters, bad DNS syntax, a wildcard
    /// over a public suffix...): checked before any policy rule, in every dialect.
    BadName(crate::names::NameError),
    /// A request a public upstream CA must not see (the message says why).
    PublicIssuer(String),
}

impl PolicyViolation {
    /// The policy and CSR messages of the seed (Venafi's Certificates/Renew, HTTP 400),
    /// placeholders filled; every dialect shows them.
    pub fn message(&self) -> String {
        match self {
            PolicyViolation::City(l) => format!("City error. City value {l} violates policy city settings."),
            PolicyViolation::CommonNameWhitelist(cn) => {
                format!("Common name error. Certificate common name {cn} violates whitelist domain policy settings.")
            }
            PolicyViolation::CommonNameWildcard => {
                "Common name error. Certificate common name contains a wildcard symbol that violates policy settings."
                    .into()
            }
            PolicyViolation::Country(c) => {
                format!("Country error. Country value {c} violates policy country settings.")
            }
            PolicyViolation::DnsSanWildcard(d) => {
                format!(
                    "DNS SAN error. Subject alternative name DNS {d} contains a wildcard symbol that violates policy settings."
                )
            }
            PolicyViolation::DnsSan => "DNS SAN error. Subject alternative name DNS violates policy settings.".into(),
            PolicyViolation::EllipticCurve => {
                "Elliptic curve error. Elliptic curve value violates policy settings.".into()
            }
            PolicyViolation::EmailSan => {
                "Email SAN error. Subject alternative name Email violates policy settings.".into()
            }
            PolicyViolation::IpSan => {
                "IP Address SAN error. Subject alternative name IP violates policy settings.".into()
            }
            PolicyViolation::KeyAlgorithm => "Key algorithm error. Key algorithm violates policy settings.".into(),
            PolicyViolation::KeySize => "Key size error. Key size violates policy settings.".into(),
            PolicyViolation::Organization(o) => {
                format!("Organization error. Organization value {o} violates policy organization settings.")
            }
            PolicyViolation::OrgUnitMissing(ou) => {
                format!(
                    "Organization unit error. Organization unit value {ou} is missing from the organization unit list."
                )
            }
            PolicyViolation::OrgUnitViolating(ou) => {
                format!(
                    "Organization unit error. Organization unit value {ou} violates policy organization unit settings."
                )
            }
            PolicyViolation::State(st) => format!("State error. State value {st} violates policy state settings."),
            PolicyViolation::UpnSan => "UPN SAN error. Subject alternative name UPN violates policy settings.".into(),
            PolicyViolation::UriSan => "URI SAN error. Subject alternative name URI violates policy settings.".into(),
            PolicyViolation::Sans(names) => {
                format!("SANs error. Subject alternative names {} violate policy settings.", names.join(", "))
            }
            PolicyViolation::BadName(e) => e.to_string(),
            PolicyViolation::PublicIssuer(m) => m.clone(),
            PolicyViolation::KeyReuse => {
                "This CSR appears to reuse a private key. Private key reuse has not been allowed.".into()
            }
            PolicyViolation::CompromisedKey => {
                "This CSR's public key belongs to a certificate revoked for key compromise.".into()
            }
            PolicyViolation::CsrRequired(dn) => {
                format!("PKCS#10 data required. Policy {dn}\\ is locked to a User Provided CSR.")
            }
            PolicyViolation::ServiceCsrRequired(dn) => {
                format!("PKCS#10 data not allowed. Policy {dn}\\ is locked to a Service Generated CSR.")
            }
        }
    }
}

/// The subject fields of an X.509 name.
pub fn subject_of(name: &X509NameRef) -> SubjectSpec {
    let get =
        |nid: Nid| -> Vec<String> { name.entries_by_nid(nid).filter_map(|e| e.data().to_string().ok()).collect() };
    SubjectSpec {
        common_name: get(Nid::COMMONNAME).into_iter().next(),
        organization: get(Nid::ORGANIZATIONNAME).into_iter().next(),
        org_units: get(Nid::ORGANIZATIONALUNITNAME),
        city: get(Nid::LOCALITYNAME).into_iter().next(),
        state: get(Nid::STATEORPROVINCENAME).into_iter().next(),
        country: get(Nid::COUNTRYNAME).into_iter().next(),
    }
}

fn in_domains(name: &str, domains: &[String]) -> bool {
    if domains.is_empty() {
        return true;
    }
    let n = name.trim_start_matches("*.").trim_end_matches('.').to_ascii_lowercase();
    domains.iter().any(|d| n == *d || n.ends_with(&format!(".{d}")))
}

/// Checks one subject field against the policy: a locked value must match (or is filled in);
/// an unlocked value fills a gap.
fn subject_field(
    p: &EffectivePolicy,
    key: &str,
    value: &mut Option<String>,
    err: fn(String) -> PolicyViolation,
) -> Result<(), PolicyViolation> {
    if let Some((pv, locked)) = p.string(key) {
        match value {
            Some(v) if locked && !v.eq_ignore_ascii_case(&pv) => return Err(err(v.clone())),
            Some(_) => {}
            None => *value = Some(pv),
        }
    }
    Ok(())
}

/// Validates a request's subject, SANs and key; returns the subject to issue (locked values
/// and defaults applied).
pub fn check(
    p: &EffectivePolicy,
    subject: &SubjectSpec,
    sans: &SanSet,
    key: Option<KeySpec>,
) -> Result<SubjectSpec, PolicyViolation> {
    let sans = &crate::names::normalize_sans(sans).map_err(PolicyViolation::BadName)?;
    crate::names::check_subject(subject).map_err(PolicyViolation::BadName)?;
    let mut s = subject.clone();
    let domains = p.domains();
    if let Some(cn) = &s.common_name {
        if cn.contains('*') && !p.wildcards() {
            return Err(PolicyViolation::CommonNameWildcard);
        }
        if !in_domains(cn, &domains) {
            return Err(PolicyViolation::CommonNameWhitelist(cn.clone()));
        }
    }
    subject_field(p, "organization", &mut s.organization, PolicyViolation::Organization)?;
    if let Some((ous, locked)) = p.list("org_units") {
        if s.org_units.is_empty() {
            s.org_units = ous.clone();
        } else if locked {
            if let Some(bad) = s.org_units.iter().find(|o| !ous.iter().any(|x| x.eq_ignore_ascii_case(o))) {
                return Err(PolicyViolation::OrgUnitViolating(bad.clone()));
            }
            if let Some(missing) = ous.iter().find(|o| !s.org_units.iter().any(|x| x.eq_ignore_ascii_case(o))) {
                return Err(PolicyViolation::OrgUnitMissing(missing.clone()));
            }
        }
    }
    subject_field(p, "city", &mut s.city, PolicyViolation::City)?;
    subject_field(p, "state", &mut s.state, PolicyViolation::State)?;
    subject_field(p, "country", &mut s.country, PolicyViolation::Country)?;

    // SAN types the folder does not allow.
    let allowed = p.san_types();
    let typed: [(&str, &Vec<String>, PolicyViolation); 5] = [
        ("dns", &sans.dns, PolicyViolation::DnsSan),
        ("ip", &sans.ip, PolicyViolation::IpSan),
        ("email", &sans.email, PolicyViolation::EmailSan),
        ("upn", &sans.upn, PolicyViolation::UpnSan),
        ("uri", &sans.uri, PolicyViolation::UriSan),
    ];
    let offending: Vec<(&str, &Vec<String>, &PolicyViolation)> = typed
        .iter()
        .filter(|(t, v, _)| !v.is_empty() && !allowed.iter().any(|a| a == t))
        .map(|(t, v, e)| (*t, *v, e))
        .collect();
    match offending.len() {
        0 => {}
        1 => return Err(offending[0].2.clone()),
        _ => return Err(PolicyViolation::Sans(offending.iter().flat_map(|(_, v, _)| v.iter().cloned()).collect())),
    }
    for d in &sans.dns {
        if d.contains('*') && !p.wildcards() {
            return Err(PolicyViolation::DnsSanWildcard(d.clone()));
        }
        if !in_domains(d, &domains) {
            return Err(PolicyViolation::DnsSan);
        }
    }
    let domain_of = |s: &str| s.rsplit_once('@').map(|x| x.1.to_string()).unwrap_or_default();
    if sans.email.iter().any(|e| !in_domains(&domain_of(e), &domains)) {
        return Err(PolicyViolation::EmailSan);
    }
    if sans.upn.iter().any(|u| !in_domains(&domain_of(u), &domains)) {
        return Err(PolicyViolation::UpnSan);
    }
    let host_of = |u: &str| -> String {
        let rest = u.split_once("://").map(|x| x.1).unwrap_or(u);
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map(|x| x.1).unwrap_or(host);
        host.split(':').next().unwrap_or("").to_string()
    };
    if sans.uri.iter().any(|u| !in_domains(&host_of(u), &domains)) {
        return Err(PolicyViolation::UriSan);
    }

    if let Some(k) = key {
        if let Some((alg, true)) = p.string("key_algorithm")
            && k.algorithm_name() != alg
        {
            return Err(PolicyViolation::KeyAlgorithm);
        }
        match k {
            KeySpec::Rsa(bits) if !p.rsa_key_sizes().contains(&bits) => return Err(PolicyViolation::KeySize),
            KeySpec::Ec(c) if !p.ec_curves().contains(&c) => return Err(PolicyViolation::EllipticCurve),
            _ => {}
        }
    }
    Ok(s)
}
