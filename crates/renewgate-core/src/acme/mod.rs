//! The ACME dialect's storage: nonces, EAB keys, accounts, orders, authorizations, challenges,
//! the ACME side of inventory objects and dry-run certificates. Plain functions on a
//! [`DbConn`](crate::db::DbConn); the HTTP dialect (JWS, problem documents, JSON) lives in the
//! binary and calls them. Errors are [`DbError`](crate::db::DbError).
pub mod ari;
pub mod dry_run;
pub mod orders;
pub mod store;
pub mod validation;

#[cfg(test)]
mod tests {
    use super::orders::{self, NewAuthz, NewOrder};
    use super::{dry_run, store, validation};
    use crate::db::{DbConn, establish, run_migrations};

    fn conn() -> DbConn {
        let mut c = establish(":memory:").unwrap();
        run_migrations(&mut c).unwrap();
        c
    }

    #[test]
    fn nonces_are_consumed_once() {
        let mut c = conn();
        store::insert_nonce(&mut c, "n1").unwrap();
        assert!(store::consume_nonce(&mut c, "n1").unwrap());
        assert!(!store::consume_nonce(&mut c, "n1").unwrap());
        assert_eq!(store::purge_nonces(&mut c).unwrap(), 0);
        assert_eq!(dry_run::purge(&mut c).unwrap(), 0);
    }

    #[test]
    fn an_order_is_written_with_its_authorizations_and_challenges() {
        let mut c = conn();
        let jwk = serde_json::json!({"kty": "EC"});
        store::insert_account(&mut c, "thumb", &jwk, &["mailto:a@example.com".into()], None).unwrap();
        let acct = store::account_by_thumbprint(&mut c, "thumb").unwrap().unwrap();
        assert_eq!((acct.status.as_str(), acct.policy_dn.as_str()), ("valid", crate::engine::policy::ROOT_DN));
        let replaces = None;
        let new = NewOrder {
            account_id: acct.id,
            identifiers: r#"[["dns","a.example.com"],["dns","b.example.com"]]"#.into(),
            action: "enroll",
            target_object_id: None,
            replaces: &replaces,
            dry_run: false,
        };
        let authz = [
            NewAuthz {
                identifier: "a.example.com",
                wildcard: false,
                challenges: Some(("tok", &["http-01", "dns-01"])),
            },
            NewAuthz { identifier: "b.example.com", wildcard: false, challenges: None },
        ];
        let oid = orders::create_order(&mut c, &new, &authz).unwrap();
        assert_eq!(orders::order_ids(&mut c, acct.id).unwrap(), [oid]);
        assert_eq!(orders::order_account(&mut c, oid).unwrap(), acct.id);
        let ids = orders::authz_ids(&mut c, oid).unwrap();
        assert_eq!(orders::authz_statuses(&mut c, oid).unwrap(), ["pending", "valid"]);
        let chals = orders::challenges(&mut c, ids[0]).unwrap();
        assert_eq!(chals.len(), 2);
        assert!(chals.iter().all(|ch| ch.token == "tok" && ch.status == "pending"));
        assert!(orders::challenges(&mut c, ids[1]).unwrap().is_empty());

        orders::start_challenge(&mut c, chals[0].id).unwrap();
        let found = validation::interrupted(&mut c).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0.id, found[0].1.as_str()), (chals[0].id, jwk.to_string().as_str()));
        validation::record(&mut c, chals[0].id, ids[0], Some("dns|no record".into())).unwrap();
        let ch = orders::challenge(&mut c, chals[0].id).unwrap();
        assert_eq!((ch.status.as_str(), ch.error.as_deref()), ("invalid", Some("dns|no record")));
        assert_eq!(orders::authz(&mut c, ids[0]).unwrap().status, "invalid");
        assert!(validation::interrupted(&mut c).unwrap().is_empty());

        orders::set_order_status(&mut c, oid, "invalid", None, &Some("why".into())).unwrap();
        let o = orders::find_order(&mut c, oid).unwrap().unwrap();
        assert_eq!((o.status.as_str(), o.error.as_deref()), ("invalid", Some("why")));
    }
}
