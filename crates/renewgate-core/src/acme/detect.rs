//! What an order without an explicit action does (seed 001): auto-detection finds an object
//! the account may act on whose names match, and its coverage decides renew, reissue or a new
//! enrollment. Also the windows: a standard plan renews inside `acme_renewal_window` (32 days
//! before notAfter), a multi-year plan (`acme_coverage`) inside `acme_order_renewal_window` (90
//! days before its coverage ends).
use chrono::NaiveDateTime;

use super::db::orders as rows;
use super::ownership::Owner;
use super::{AcmeResult, OrderAction};
use crate::ca::SanSet;
use crate::db::{DbConn, now};
use crate::engine::inventory::{self, CertRef};
use crate::engine::policy;

/// The names of an object's current certificate (CN and SANs, lower-case) and its notAfter.
pub fn object_names(c: &mut DbConn, object_id: i64) -> AcmeResult<(Vec<String>, Option<NaiveDateTime>)> {
    let Some(obj) = inventory::find_object(c, &CertRef::ObjectId(object_id))? else { return Ok((vec![], None)) };
    let Some(v) = inventory::current_version(c, &obj)? else { return Ok((vec![], None)) };
    let x = openssl::x509::X509::from_der(&v.der).map_err(|e| super::AcmeError::server(e.to_string()))?;
    let s = SanSet::of_cert(&x);
    let mut names: Vec<String> = s.dns.iter().chain(s.ip.iter()).map(|n| n.to_lowercase()).collect();
    let cn = crate::ca::common_name(x.subject_name()).to_lowercase();
    if !cn.is_empty() && !names.contains(&cn) {
        names.insert(0, cn);
    }
    Ok((names, Some(v.not_after)))
}

/// Seed 001's match rule: non-wildcard objects need exactly the same names; a wildcard object
/// `*.d` matches requests whose names are `*.d`, `d`'s subdomains or `d` itself.
pub fn names_match(object: &[String], requested: &[String]) -> bool {
    if object.is_empty() {
        return false;
    }
    let wild: Vec<&str> = object.iter().filter_map(|n| n.strip_prefix("*.")).collect();
    if wild.is_empty() {
        let mut a = object.to_vec();
        let mut b = requested.to_vec();
        a.sort();
        b.sort();
        return a == b;
    }
    // A wildcard order: the requested CN (the first name) is the wildcard, its base name or a
    // subdomain it covers; the other names may be added or removed.
    requested.first().is_some_and(|r| {
        let base = r.strip_prefix("*.").unwrap_or(r);
        wild.iter().any(|w| base == *w || base.ends_with(&format!(".{w}"))) || object.contains(r)
    })
}

/// The `match_name`s of the objects a request may match (seed 001): its first name, and the
/// wildcards that cover it (`*.b.c` and `*.c` for `a.b.c`; `*.a.b.c` for its base name).
pub fn match_keys(requested: &[String]) -> Vec<String> {
    let Some(first) = requested.first() else { return vec![] };
    let base = first.trim_start_matches("*.");
    let mut keys = vec![first.clone(), format!("*.{base}")];
    let mut rest = base;
    while let Some((_, r)) = rest.split_once('.') {
        keys.push(format!("*.{r}"));
        rest = r;
    }
    keys
}

/// A duration policy key in seconds (`acme_renewal_window`, `acme_coverage`, …).
pub fn policy_secs(p: &policy::EffectivePolicy, key: &str) -> Option<i64> {
    p.string(key).and_then(|(d, _)| crate::settings::parse_duration(&d).ok()).map(|d| d.as_secs() as i64)
}

/// The best match among the objects the owner may act on: the one whose certificate expires last.
pub fn find_match(c: &mut DbConn, owner: &Owner, requested: &[String]) -> AcmeResult<Option<i64>> {
    let assigned = owner.assigned(c)?;
    let owners = if owner.folder_orders { None } else { Some((owner.key.as_str(), assigned.as_slice())) };
    // Newest current version first: the first object whose names match is the one to act on.
    for id in rows::match_candidates(c, &owner.folder, match_keys(requested), owners)? {
        let (names, not_after) = object_names(c, id)?;
        if not_after.is_some() && names_match(&names, requested) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The default action on a matched object (seed 001): a standard plan renews inside the
/// renewal window and otherwise enrolls anew; a multi-year plan renews inside the order renewal
/// window and otherwise reissues.
pub fn default_action(c: &mut DbConn, id: i64) -> AcmeResult<(OrderAction, Option<i64>)> {
    let (_, not_after) = object_names(c, id)?;
    let folder = rows::object_folder(c, id)?;
    let p = policy::effective(c, &folder)?;
    let coverage_end = rows::coverage_end(c, id)?;
    let t = now();
    Ok(match coverage_end {
        Some(end) => {
            let window = policy_secs(&p, "acme_order_renewal_window").unwrap_or(90 * 86400);
            let a =
                if t >= end - chrono::Duration::seconds(window) { OrderAction::Renew } else { OrderAction::Reissue };
            (a, Some(id))
        }
        None => match not_after {
            Some(na)
                if t >= na
                    - chrono::Duration::seconds(policy_secs(&p, "acme_renewal_window").unwrap_or(32 * 86400)) =>
            {
                (OrderAction::Renew, Some(id))
            }
            _ => (OrderAction::Enroll, None),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_keys_cover_the_name_and_its_wildcards() {
        let k = match_keys(&["a.b.c".to_string(), "x.y".to_string()]);
        assert_eq!(k, ["a.b.c", "*.a.b.c", "*.b.c", "*.c"]);
        assert_eq!(match_keys(&["*.b.c".to_string()]), ["*.b.c", "*.b.c", "*.c"]);
        assert!(match_keys(&[]).is_empty());
    }

    #[test]
    fn wildcard_objects_match_by_their_first_name() {
        let obj = vec!["*.example.com".to_string()];
        assert!(names_match(&obj, &["www.example.com".into(), "other.org".into()]));
        assert!(names_match(&obj, &["example.com".into()]));
        assert!(!names_match(&obj, &["example.org".into()]));
        let plain = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        assert!(names_match(&plain, &["b.example.com".into(), "a.example.com".into()]));
        assert!(!names_match(&plain, &["a.example.com".into()]));
    }
}
