//! TPP scope strings (`certificate:manage,revoke;configuration:manage`): the one scope table
//! every dialect follows. A restriction implies its bare scope (`certificate:manage` includes
//! `certificate`, which is read/search).
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The scopes this gateway knows, with the restrictions each accepts.
pub const KNOWN: &[(&str, &[&str])] = &[
    ("certificate", &["manage", "revoke", "discover", "approve", "delete"]),
    ("configuration", &["manage"]),
    ("security", &["manage"]),
    ("agent", &[]),
];

/// Everything: what the first `admin` user gets.
pub const ALL: &str = "agent;certificate:approve,delete,discover,manage,revoke;configuration:manage;security:manage";
/// What a user gets without `--scope`.
pub const DEFAULT_USER: &str = "certificate:manage";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeMap<String, BTreeSet<String>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Scopes {
    /// Parses a TPP scope string. Unknown scope names or restrictions are an error.
    pub fn parse(s: &str) -> Result<Scopes, ScopeError> {
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, restr) = match part.split_once(':') {
                Some((n, r)) => (n.trim().to_ascii_lowercase(), Some(r)),
                None => (part.to_ascii_lowercase(), None),
            };
            let Some((_, allowed)) = KNOWN.iter().find(|(n, _)| *n == name) else {
                return Err(ScopeError(format!("unknown scope '{name}'")));
            };
            let entry = map.entry(name.clone()).or_default();
            if let Some(r) = restr {
                for r in r.split(',').map(|x| x.trim().to_ascii_lowercase()).filter(|x| !x.is_empty()) {
                    if !allowed.contains(&r.as_str()) {
                        return Err(ScopeError(format!("unknown restriction '{name}:{r}'")));
                    }
                    entry.insert(r);
                }
            }
        }
        if map.is_empty() {
            return Err(ScopeError("empty scope".into()));
        }
        Ok(Scopes(map))
    }

    /// True when this scope set grants `scope` (optionally with `restriction`).
    pub fn allows(&self, scope: &str, restriction: Option<&str>) -> bool {
        match self.0.get(scope) {
            None => false,
            Some(set) => restriction.is_none_or(|r| set.contains(r)),
        }
    }

    /// True when every scope and restriction of `other` is in `self`.
    pub fn covers(&self, other: &Scopes) -> bool {
        other.0.iter().all(|(name, restr)| match self.0.get(name) {
            None => false,
            Some(mine) => restr.is_subset(mine),
        })
    }

    /// The first part of `other` that `self` lacks, in TPP notation (for error messages).
    pub fn first_missing(&self, other: &Scopes) -> Option<String> {
        for (name, restr) in &other.0 {
            match self.0.get(name) {
                None => return Some(name.clone()),
                Some(mine) => {
                    if let Some(r) = restr.iter().find(|r| !mine.contains(*r)) {
                        return Some(format!("{name}:{r}"));
                    }
                }
            }
        }
        None
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(n, r)| {
                if r.is_empty() {
                    n.clone()
                } else {
                    format!("{n}:{}", r.iter().cloned().collect::<Vec<_>>().join(","))
                }
            })
            .collect();
        f.write_str(&parts.join(";"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_cover() {
        let max = Scopes::parse("certificate:manage,revoke;configuration:manage").unwrap();
        assert!(max.allows("certificate", None));
        assert!(max.allows("certificate", Some("manage")));
        assert!(max.allows("configuration", Some("manage")));
        assert!(!max.allows("security", Some("manage")));
        assert!(max.covers(&Scopes::parse("certificate:manage").unwrap()));
        assert!(max.covers(&Scopes::parse("certificate").unwrap()));
        assert!(!max.covers(&Scopes::parse("certificate:delete").unwrap()));
        assert_eq!(
            max.first_missing(&Scopes::parse("certificate:manage,delete").unwrap()).as_deref(),
            Some("certificate:delete")
        );
        assert_eq!(max.to_string(), "certificate:manage,revoke;configuration:manage");
    }

    #[test]
    fn admin_has_everything() {
        let all = Scopes::parse(ALL).unwrap();
        for (name, restr) in KNOWN {
            assert!(all.allows(name, None));
            for r in *restr {
                assert!(all.allows(name, Some(r)));
            }
        }
    }

    #[test]
    fn rejects_unknown() {
        assert!(Scopes::parse("certificat:manage").is_err());
        assert!(Scopes::parse("certificate:fly").is_err());
        assert!(Scopes::parse("").is_err());
        assert!(Scopes::parse("Certificate:Manage").unwrap().allows("certificate", Some("manage")));
    }
}
