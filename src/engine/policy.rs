//! Policy folders (`\VED\Policy\…`): a tree whose nearest folder with a setting wins.
//! This module holds the tree itself; settings and validation build on it.
use diesel::prelude::*;

use crate::db::models::{NewPolicyFolder, PolicyFolder};
use crate::db::schema::policy_folders;
use crate::db::{DbConn, new_guid, now};

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

/// Creates the folder and any missing parents; returns true when the folder itself was new.
pub fn ensure_folder(conn: &mut DbConn, dn: &str) -> QueryResult<bool> {
    let dn = normalize_dn(dn);
    let mut created = false;
    for (i, d) in ancestry(&dn).iter().rev().enumerate() {
        let _ = i;
        let lower = d.to_lowercase();
        let exists: i64 = policy_folders::table
            .filter(policy_folders::dn_lower.eq(&lower))
            .count()
            .get_result(conn)?;
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
        assert_eq!(
            ancestry("\\VED\\Policy\\A\\B"),
            vec!["\\VED\\Policy\\A\\B", "\\VED\\Policy\\A", "\\VED\\Policy"]
        );
        assert_eq!(ancestry("\\VED\\Policy"), vec!["\\VED\\Policy"]);
    }
}
