//! Certificate templates (Keyfactor's): a name bound to a policy folder, with a validity and
//! extended key usages. A fresh gateway has `WebServer` on `\VED\Policy`.
use diesel::prelude::*;

use super::RenewError;
use crate::db::models::Template;
use crate::db::schema::templates;
use crate::db::{DbConn, now};

pub const DEFAULT_TEMPLATE: &str = "WebServer";
pub const EKUS: &[&str] = &["serverAuth", "clientAuth", "codeSigning", "emailProtection"];

pub fn add(
    conn: &mut DbConn,
    name: &str,
    policy_dn: &str,
    validity: Option<&str>,
    ekus: &[String],
) -> Result<(), RenewError> {
    if name.trim().is_empty() {
        return Err(RenewError::BadParameter("name".into(), "a template needs a name".into()));
    }
    if let Some(v) = validity {
        crate::settings::parse_duration(v).map_err(|e| RenewError::BadParameter("validity".into(), e.to_string()))?;
    }
    for e in ekus {
        if !EKUS.iter().any(|k| k.eq_ignore_ascii_case(e)) {
            return Err(RenewError::BadParameter("eku".into(), format!("unknown EKU {e} (use {})", EKUS.join(", "))));
        }
    }
    let exists: i64 =
        templates::table.filter(templates::name_lower.eq(name.to_lowercase())).count().get_result(conn)?;
    if exists > 0 {
        return Err(RenewError::BadParameter("name".into(), format!("template {name} already exists")));
    }
    diesel::insert_into(templates::table)
        .values((
            templates::name.eq(name),
            templates::name_lower.eq(name.to_lowercase()),
            templates::policy_dn.eq(super::policy::normalize_dn(policy_dn)),
            templates::validity.eq(validity),
            templates::ekus.eq(ekus.join(",")),
            templates::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn ensure_default(conn: &mut DbConn) -> Result<(), RenewError> {
    let n: i64 = templates::table.count().get_result(conn)?;
    if n == 0 {
        add(conn, DEFAULT_TEMPLATE, super::policy::ROOT_DN, None, &["serverAuth".into(), "clientAuth".into()])?;
    }
    Ok(())
}

pub fn find(conn: &mut DbConn, name: &str) -> Result<Option<Template>, RenewError> {
    Ok(templates::table
        .filter(templates::name_lower.eq(name.trim().to_lowercase()))
        .select(Template::as_select())
        .first(conn)
        .optional()?)
}

pub fn list(conn: &mut DbConn) -> Result<Vec<Template>, RenewError> {
    Ok(templates::table.order(templates::id.asc()).select(Template::as_select()).load(conn)?)
}

pub fn ekus_of(t: &Template) -> Vec<String> {
    t.ekus.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}
