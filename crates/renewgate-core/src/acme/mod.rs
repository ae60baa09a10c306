//! The ACME domain (RFC 8555, RFC 8737/8738, RFC 9773 and DigiCert-style automation actions),
//! shaped like Boulder: the dialect in the binary (`api::acme`) verifies JWS and renders
//! problem documents; the rules live here — accounts and their EAB binding, orders with their
//! actions, auto-detection and coverage windows, authorizations and challenges as typed state
//! machines, finalize (exactly the order's names), validation as durable queue jobs
//! ([`jobs`], one file per challenge type in [`validate`]), revocation and ARI windows. [`db`]
//! is the only SQL.
pub mod accounts;
pub mod db;
pub mod detect;
pub mod dry_run;
pub mod error;
pub mod finalize;
pub mod jobs;
pub mod jws;
pub mod model;
pub mod nonce;
pub mod orders;
pub mod ownership;
pub mod renewal_info;
pub mod validate;
/// The JSON resources of RFC 8555 as the server writes them (and as the OpenAPI document shows them).
pub mod wire;

pub use db::accounts::{Account, Binding};
pub use error::{AcmeError, ErrorType};
pub use model::{
    AccountStatus, AuthzStatus, ChallengeStatus, Identifier, IdentifierType, OrderAction, OrderStatus, RequestedAction,
};

pub type AcmeResult<T> = Result<T, AcmeError>;

/// At most this many identifiers in one order.
pub const MAX_IDENTIFIERS: usize = 100;
/// At most this many pending authorizations per account (orders that are never answered would
/// otherwise pile up without bound).
pub const MAX_PENDING_AUTHZ: i64 = 300;

#[cfg(test)]
mod tests {
    use super::db::orders::{self, NewAuthz, NewOrder};
    use super::db::{accounts as store, dry_run, validation};
    use crate::db::{DbConn, establish, run_migrations};

    fn conn() -> DbConn {
        let mut c = establish(":memory:").unwrap();
        run_migrations(&mut c).unwrap();
        c
    }

    #[test]
    fn used_nonces_are_recorded_once() {
        let mut c = conn();
        let later = crate::db::now() + chrono::Duration::hours(1);
        assert!(store::record_used_nonce(&mut c, "n1", later).unwrap());
        assert!(!store::record_used_nonce(&mut c, "n1", later).unwrap());
        assert_eq!(store::purge_nonces(&mut c).unwrap(), 0);
        assert_eq!(dry_run::purge(&mut c).unwrap(), 0);
    }

    #[test]
    fn an_order_is_written_with_its_authorizations_and_challenges() {
        let mut c = conn();
        let jwk = serde_json::json!({"kty": "EC"});
        store::insert_account(
            &mut c,
            "thumb",
            &jwk,
            &["mailto:a@example.com".into()],
            None,
            "\\VED\\Policy\\ACME",
            None,
        )
        .unwrap();
        let acct = store::account_by_thumbprint(&mut c, "thumb").unwrap().unwrap();
        assert_eq!((acct.status.as_str(), acct.policy_dn.as_str()), ("valid", "\\VED\\Policy\\ACME"));
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
        assert_eq!(orders::pending_authz_count(&mut c, acct.id).unwrap(), 1);
        let ids = orders::authz_ids(&mut c, oid).unwrap();
        assert_eq!(orders::authz_statuses(&mut c, oid).unwrap(), ["pending", "valid"]);
        let chals = orders::challenges(&mut c, ids[0]).unwrap();
        assert_eq!(chals.len(), 2);
        assert!(chals.iter().all(|ch| ch.token == "tok" && ch.status == "pending"));
        assert!(orders::challenges(&mut c, ids[1]).unwrap().is_empty());

        assert!(orders::start_challenge(&mut c, chals[0].id).unwrap());
        assert!(!orders::start_challenge(&mut c, chals[0].id).unwrap(), "only a pending challenge starts");
        validation::record(&mut c, chals[0].id, ids[0], Some("dns|no record")).unwrap();
        let ch = orders::challenge(&mut c, chals[0].id).unwrap();
        assert_eq!((ch.status.as_str(), ch.error.as_deref()), ("invalid", Some("dns|no record")));
        assert_eq!(orders::authz(&mut c, ids[0]).unwrap().status, "invalid");
        assert_eq!(orders::pending_authz_count(&mut c, acct.id).unwrap(), 0);

        orders::set_order_status(&mut c, oid, "invalid", None, &Some("why".into())).unwrap();
        let o = orders::find_order(&mut c, oid).unwrap().unwrap();
        assert_eq!((o.status.as_str(), o.error.as_deref()), ("invalid", Some("why")));
    }
}
