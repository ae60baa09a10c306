//! Who may act on an inventory object through ACME. An object first issued through ACME belongs
//! to the EAB key of the account that issued it — every account made with that key shares it (a
//! rebuilt machine with a fresh account keeps renewing) — or, for an account made without a
//! key, to that account alone. Beyond its own objects an account may act on the objects an
//! administrator assigned to its key (`renewgate acme assign`), and on any object of its folder
//! when its key was made with `--folder-orders` (DigiCert: any order of the organisation).
//! Always only inside the folder its key binds it to. Anything else answers like an unknown
//! order id.
use super::db::{accounts as account_rows, orders as order_rows};
use super::{Account, AcmeError, AcmeResult};
use crate::db::DbConn;
use crate::db::models::CertObject;
use crate::engine::access;
use crate::engine::inventory::{self, CertRef};
use crate::vocab::Permission;

/// An account's standing for ownership.
pub struct Owner {
    /// `kid:<EAB key id>`, or `acct:<account id>` for an account without a key.
    pub key: String,
    pub kid: Option<String>,
    pub folder_orders: bool,
    /// The folder the account acts in.
    pub folder: String,
}

impl Owner {
    pub fn of(c: &mut DbConn, account: &Account) -> AcmeResult<Owner> {
        let (key, folder_orders) = match &account.eab_kid {
            Some(kid) => (format!("kid:{kid}"), account_rows::eab_folder_orders(c, kid)?.unwrap_or(false)),
            None => (format!("acct:{}", account.id), false),
        };
        Ok(Owner { key, kid: account.eab_kid.clone(), folder_orders, folder: account.policy_dn.clone() })
    }

    /// The folder permissions the account acts with: read and write in its folder, never `key`
    /// (its keys are its own).
    pub fn access(&self) -> crate::auth::FolderAccess {
        access::acme_account(&self.folder)
    }

    /// The objects assigned to this owner's key.
    pub fn assigned(&self, c: &mut DbConn) -> AcmeResult<Vec<i64>> {
        Ok(match &self.kid {
            Some(kid) => account_rows::assigned_objects(c, kid)?,
            None => vec![],
        })
    }

    /// May this owner act on `o`?
    pub fn may_act_on(&self, c: &mut DbConn, o: &CertObject) -> AcmeResult<bool> {
        if !access::object_allowed(&self.access(), o, Permission::Write) {
            return Ok(false);
        }
        if self.folder_orders || order_rows::object_owner(c, o.id)?.as_deref() == Some(self.key.as_str()) {
            return Ok(true);
        }
        Ok(self.assigned(c)?.contains(&o.id))
    }

    /// The object an explicit `orderId` names, if this owner may act on it; otherwise the
    /// answer for an unknown order id.
    pub fn object(&self, c: &mut DbConn, n: i64) -> AcmeResult<CertObject> {
        let o = inventory::find_object(c, &CertRef::ObjectId(n))?.ok_or_else(|| AcmeError::unknown_order(n))?;
        if self.may_act_on(c, &o)? { Ok(o) } else { Err(AcmeError::unknown_order(n)) }
    }
}

/// Lets the accounts of EAB key `kid` act on object `n` (`renewgate acme assign`). The object
/// must lie in the key's folder: an assignment grants an object, not a folder.
pub fn assign(c: &mut DbConn, kid: &str, n: i64) -> Result<bool, String> {
    let key = account_rows::eab_key(c, kid).map_err(|e| e.to_string())?.ok_or_else(|| format!("no EAB key {kid}"))?;
    let o = inventory::find_object(c, &CertRef::ObjectId(n))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no certificate object {n}"))?;
    if !access::object_allowed(&access::acme_account(&key.policy_dn), &o, Permission::Write) {
        return Err(format!("{} is outside {}, the folder of EAB key {kid}", o.dn, key.policy_dn));
    }
    account_rows::assign(c, kid, n).map_err(|e| e.to_string())
}
