//! Credentials: users (argon2id password hashes) and tokens (random, stored as SHA-256).
//!
//! Argon2 runs only where a human password is presented (token grant, legacy login); every API
//! request is authenticated by one indexed lookup of the token's SHA-256.
pub mod login;
pub mod scopes;
pub mod sessions;
pub mod throttle;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{Duration as ChronoDuration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::models::{NewToken, NewUser, Token, User};
use crate::db::schema::{tokens, users};
use crate::db::{DbConn, new_guid, now, write_tx};
use crate::secrets::{random_b64, sha256_hex};
use crate::vocab::Permission;
pub use scopes::Scopes;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid credentials")]
    BadCredentials,
    #[error("invalid or expired token")]
    BadToken,
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} does not exist")]
    NoSuchUser(String),
    #[error("{0}")]
    Scope(String),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("{0}")]
    WeakPassword(String),
}

/// Disables or enables a user; either way the user's tokens are revoked (a disabled user must
/// lose access at once, and an enabled one starts from a fresh sign-in).
pub fn set_user_disabled(conn: &mut DbConn, name: &str, disabled: bool) -> Result<User, AuthError> {
    let user = find_user(conn, name)?.ok_or_else(|| AuthError::NoSuchUser(name.to_string()))?;
    write_tx(conn, None, |c| -> Result<(), AuthError> {
        diesel::update(users::table.find(user.id)).set(users::disabled.eq(disabled)).execute(c)?;
        revoke_user_tokens(c, user.id)?;
        Ok(())
    })?;
    find_user(conn, name)?.ok_or_else(|| AuthError::NoSuchUser(name.to_string()))
}

/// Sets a new password (the strength rule applies) and revokes the user's tokens.
pub fn set_password(conn: &mut DbConn, name: &str, password: &str) -> Result<User, AuthError> {
    check_password_strength(password)?;
    let user = find_user(conn, name)?.ok_or_else(|| AuthError::NoSuchUser(name.to_string()))?;
    let hash = hash_password(password)?;
    write_tx(conn, None, |c| -> Result<(), AuthError> {
        diesel::update(users::table.find(user.id)).set(users::password_hash.eq(&hash)).execute(c)?;
        revoke_user_tokens(c, user.id)?;
        Ok(())
    })?;
    find_user(conn, name)?.ok_or_else(|| AuthError::NoSuchUser(name.to_string()))
}

/// Revokes every token of a user (OAuth, legacy API keys, agent tokens).
pub fn revoke_user_tokens(c: &mut DbConn, user_id: i64) -> Result<usize, AuthError> {
    Ok(diesel::update(tokens::table.filter(tokens::user_id.eq(user_id)).filter(tokens::revoked.eq(false)))
        .set(tokens::revoked.eq(true))
        .execute(c)?)
}

/// A grant of permissions on a policy subtree (`renewgate user add --folder 'DN:read,write,key'`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FolderGrant {
    pub dn: String,
    /// Stored in `users.folders` as JSON: `read`, `write`, `key` (Private Key Read).
    pub perms: Vec<Permission>,
}

/// Parses `DN:PERMS` (PERMS after the last `:`, default `read,write`).
pub fn parse_folder_grant(s: &str) -> Result<FolderGrant, String> {
    let listed = |p: &str| p.split(',').map(|x| x.trim().to_ascii_lowercase().parse()).collect::<Result<Vec<_>, _>>();
    let (dn, perms) = match s.rsplit_once(':') {
        Some((dn, p)) if let Ok(perms) = listed(p) => (dn, perms),
        Some((_, p)) if !p.contains('\\') => return Err(format!("unknown permission in '{p}' (use read, write, key)")),
        _ => (s, vec![Permission::Read, Permission::Write]),
    };
    Ok(FolderGrant { dn: crate::engine::policy::normalize_dn(dn), perms })
}

/// What a user may do where: `None` means every folder with every permission.
#[derive(Debug, Clone, Default)]
pub struct FolderAccess(pub Option<Vec<FolderGrant>>);

impl FolderAccess {
    pub fn of_user(u: &User) -> FolderAccess {
        if u.folders.trim().is_empty() {
            FolderAccess(None)
        } else {
            FolderAccess(Some(serde_json::from_str(&u.folders).unwrap_or_default()))
        }
    }
    pub fn is_restricted(&self) -> bool {
        self.0.is_some()
    }
    /// The folders granting `perm` (each covers its subtree); `None` for an unrestricted caller.
    pub fn roots(&self, perm: Permission) -> Option<Vec<String>> {
        self.0.as_ref().map(|g| g.iter().filter(|g| g.perms.contains(&perm)).map(|g| g.dn.clone()).collect())
    }
    /// True when `perm` is granted on `folder_dn` (the grant's folder or any folder under it).
    pub fn allows(&self, folder_dn: &str, perm: Permission) -> bool {
        match &self.0 {
            None => true,
            Some(grants) => {
                let f = folder_dn.to_lowercase();
                grants.iter().any(|g| {
                    let gd = g.dn.to_lowercase();
                    (f == gd || f.starts_with(&format!("{gd}\\"))) && g.perms.contains(&perm)
                })
            }
        }
    }
}

/// Who is calling, and with which scopes: the result of authenticating one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub user_name: String,
    pub user_guid: String,
    pub scopes: Scopes,
    pub token_id: Option<i64>,
    pub client_id: String,
    pub token_issued_at: Option<NaiveDateTime>,
    pub token_expires_at: Option<NaiveDateTime>,
    pub access: FolderAccess,
    /// For agent tokens: the client machine whose store jobs this token may take.
    pub client_machine: Option<String>,
}

pub fn hash_password(pw: &str) -> Result<String, AuthError> {
    let mut raw = [0u8; 16];
    openssl::rand::rand_bytes(&mut raw).map_err(|e| AuthError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&raw).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub fn verify_password(pw: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// The rule for every password a person chooses (the one the key-carrying formats use): at
/// least 12 characters with three of lower case, upper case, digits and other characters.
pub fn check_password_strength(password: &str) -> Result<(), AuthError> {
    crate::formats::password::check_strength("Password", password).map_err(|e| AuthError::WeakPassword(e.to_string()))
}

pub fn add_user(
    conn: &mut DbConn,
    name: &str,
    password: &str,
    max_scope: &Scopes,
    folders: &[FolderGrant],
) -> Result<User, AuthError> {
    check_password_strength(password)?;
    let hash = hash_password(password)?;
    let folders_json =
        if folders.is_empty() { String::new() } else { serde_json::to_string(folders).unwrap_or_default() };
    write_tx(conn, None, |c| -> Result<(), AuthError> {
        insert_user(c, name, &hash, max_scope)?;
        // The folder limits go in with the user: never a moment with every folder.
        diesel::update(users::table.filter(users::name_lower.eq(name.to_ascii_lowercase())))
            .set(users::folders.eq(&folders_json))
            .execute(c)?;
        Ok(())
    })?;
    find_user(conn, name)?.ok_or_else(|| AuthError::NoSuchUser(name.to_string()))
}

/// Inserts a user with an already computed hash (inside the caller's transaction).
pub fn insert_user(c: &mut DbConn, name: &str, hash: &str, max_scope: &Scopes) -> Result<(), AuthError> {
    let lower = name.to_ascii_lowercase();
    let exists: i64 = users::table.filter(users::name_lower.eq(&lower)).count().get_result(c)?;
    if exists > 0 {
        return Err(AuthError::UserExists(name.to_string()));
    }
    diesel::insert_into(users::table)
        .values(NewUser {
            guid: &new_guid(),
            name,
            name_lower: &lower,
            password_hash: hash,
            max_scope: &max_scope.to_string(),
            folders: "",
            created_at: now(),
        })
        .execute(c)?;
    Ok(())
}

/// On an empty user table, creates `admin` with every scope and returns its random password.
/// Runs under a database lock so that two instances starting together create one admin.
pub fn create_first_admin(conn: &mut DbConn) -> Result<Option<String>, AuthError> {
    if user_count(conn)? > 0 {
        return Ok(None);
    }
    let password = random_b64(18).replace(['+', '/'], "x");
    let hash = hash_password(&password)?;
    let all = Scopes::parse(scopes::ALL).map_err(|e| AuthError::Scope(e.0))?;
    write_tx(conn, Some(7262003), |c| -> Result<Option<String>, AuthError> {
        if user_count(c)? > 0 {
            return Ok(None);
        }
        insert_user(c, "admin", &hash, &all)?;
        Ok(Some(password.clone()))
    })
}

pub fn find_user(conn: &mut DbConn, name: &str) -> Result<Option<User>, AuthError> {
    Ok(users::table
        .filter(users::name_lower.eq(name.to_ascii_lowercase()))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

pub fn user_count(conn: &mut DbConn) -> Result<i64, AuthError> {
    Ok(users::table.count().get_result(conn)?)
}

/// Checks a user name and password (argon2id); the caller decides what the user may get.
pub fn check_password(conn: &mut DbConn, name: &str, password: &str) -> Result<User, AuthError> {
    let user = find_user(conn, name)?;
    match user {
        // A disabled user's password is still checked: the answer must not tell which users exist.
        Some(u) if verify_password(password, &u.password_hash) && !u.disabled => Ok(u),
        Some(_) => Err(AuthError::BadCredentials),
        None => {
            // Same cost for unknown users, so timing does not reveal which names exist.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| hash_password("renewgate-timing-equaliser").unwrap_or_default());
            let _ = verify_password(password, dummy);
            Err(AuthError::BadCredentials)
        }
    }
}

/// The principal of a user signed in with a password (Keyfactor Basic): the user's whole scope
/// and folder grants.
pub fn password_principal(u: &User) -> Result<Principal, AuthError> {
    let scopes = Scopes::parse(&u.max_scope).map_err(|e| AuthError::Scope(e.0))?;
    Ok(Principal {
        access: FolderAccess::of_user(u),
        user_id: u.id,
        user_name: u.name.clone(),
        user_guid: u.guid.clone(),
        scopes,
        token_id: None,
        client_id: "basic".into(),
        token_issued_at: None,
        token_expires_at: None,
        client_machine: None,
    })
}

/// A cached password sign-in is still good while the user is enabled and its password hash is
/// the one the cache saw: returns the fresh principal (current scope and folders) then.
pub fn recheck_password_principal(
    conn: &mut DbConn,
    user_id: i64,
    password_hash: &str,
) -> Result<Option<Principal>, AuthError> {
    let u: Option<User> = users::table.find(user_id).select(User::as_select()).first(conn).optional()?;
    match u {
        Some(u) if !u.disabled && u.password_hash == password_hash => Ok(Some(password_principal(&u)?)),
        _ => Ok(None),
    }
}

/// A newly issued token pair; the secrets exist only here and in the caller's answer.
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub refresh_until: Option<NaiveDateTime>,
    pub scope: Scopes,
}

/// Issues a token for `user` with `requested` scopes, which must be within the user's maximum.
pub fn issue_token(
    conn: &mut DbConn,
    user: &User,
    requested: &Scopes,
    client_id: &str,
    kind: &str,
    lifetime: std::time::Duration,
    refresh_lifetime: Option<std::time::Duration>,
) -> Result<IssuedToken, AuthError> {
    let max = Scopes::parse(&user.max_scope).map_err(|e| AuthError::Scope(e.0))?;
    if let Some(missing) = max.first_missing(requested) {
        return Err(AuthError::Scope(missing));
    }
    let access = random_b64(16);
    let refresh = refresh_lifetime.map(|_| random_b64(16));
    let issued_at = now();
    let expires_at = issued_at + ChronoDuration::seconds(lifetime.as_secs() as i64);
    let refresh_until = refresh_lifetime.map(|d| issued_at + ChronoDuration::seconds(d.as_secs() as i64));
    let access_hash = sha256_hex(access.as_bytes());
    let refresh_hash = refresh.as_ref().map(|r| sha256_hex(r.as_bytes()));
    diesel::insert_into(tokens::table)
        .values(NewToken {
            user_id: user.id,
            access_hash: &access_hash,
            refresh_hash: refresh_hash.as_deref(),
            scope: &requested.to_string(),
            client_id,
            kind,
            issued_at,
            expires_at,
            refresh_until,
            revoked: false,
        })
        .execute(conn)?;
    Ok(IssuedToken {
        access_token: access,
        refresh_token: refresh,
        issued_at,
        expires_at,
        refresh_until,
        scope: requested.clone(),
    })
}

/// Exchanges a refresh token for a new pair; the old pair is revoked. `client_id` must match.
pub fn refresh_token(
    conn: &mut DbConn,
    refresh: &str,
    client_id: &str,
    lifetime: std::time::Duration,
    refresh_lifetime: std::time::Duration,
) -> Result<IssuedToken, AuthError> {
    let hash = sha256_hex(refresh.as_bytes());
    let row: Option<(Token, User)> = tokens::table
        .inner_join(users::table)
        .filter(tokens::refresh_hash.eq(&hash))
        .select((Token::as_select(), User::as_select()))
        .first(conn)
        .optional()?;
    let Some((tok, user)) = row else {
        return Err(AuthError::BadToken);
    };
    if tok.revoked || tok.refresh_until.is_none_or(|u| u < now()) {
        return Err(AuthError::BadToken);
    }
    if !tok.client_id.eq_ignore_ascii_case(client_id) {
        return Err(AuthError::Scope(
            "The client_id value being requested with the refresh token does not match the client_id of the access token making the call".into(),
        ));
    }
    let scope = Scopes::parse(&tok.scope).map_err(|e| AuthError::Scope(e.0))?;
    // Single use, even under concurrent refreshes: only the call that flips the flag goes on.
    let n = diesel::update(tokens::table.find(tok.id).filter(tokens::revoked.eq(false)))
        .set(tokens::revoked.eq(true))
        .execute(conn)?;
    if n != 1 {
        return Err(AuthError::BadToken);
    }
    issue_token(conn, &user, &scope, &tok.client_id, &tok.kind, lifetime, Some(refresh_lifetime))
}

/// The per-request check: one indexed lookup by SHA-256, no argon2.
pub fn authenticate_token(conn: &mut DbConn, token: &str) -> Result<Principal, AuthError> {
    let hash = sha256_hex(token.trim().as_bytes());
    // Every request with a bearer token runs this: on the concrete connection (`on_backend`).
    let row: Option<(Token, User)> = crate::on_backend!(conn, |c| tokens::table
        .inner_join(users::table)
        .filter(tokens::access_hash.eq(&hash))
        .select((Token::as_select(), User::as_select()))
        .first(c)
        .optional())?;
    let Some((tok, user)) = row else {
        return Err(AuthError::BadToken);
    };
    if tok.revoked || tok.expires_at < now() || user.disabled {
        return Err(AuthError::BadToken);
    }
    let scopes = Scopes::parse(&tok.scope).map_err(|_| AuthError::BadToken)?;
    let access = FolderAccess::of_user(&user);
    Ok(Principal {
        access,
        client_machine: tok.client_machine.clone(),
        user_id: user.id,
        user_name: user.name,
        user_guid: user.guid,
        scopes,
        token_id: Some(tok.id),
        client_id: tok.client_id,
        token_issued_at: Some(tok.issued_at),
        token_expires_at: Some(tok.expires_at),
    })
}

/// Revokes a token by its secret value. Returns false when no such token exists.
pub fn revoke_token(conn: &mut DbConn, token: &str) -> Result<bool, AuthError> {
    let hash = sha256_hex(token.trim().as_bytes());
    let n = diesel::update(tokens::table.filter(tokens::access_hash.eq(&hash)))
        .set(tokens::revoked.eq(true))
        .execute(conn)?;
    Ok(n > 0)
}

pub fn revoke_token_id(conn: &mut DbConn, id: i64) -> Result<(), AuthError> {
    diesel::update(tokens::table.find(id)).set(tokens::revoked.eq(true)).execute(conn)?;
    Ok(())
}

/// Binds an issued token to a store agent's client machine (`renewgate agent token create`).
/// An agent's token renewing itself: when a third of its lifetime (or less) remains, a new token
/// with the same lifetime, scope and client machine replaces it (the old one is revoked in the
/// same transaction, and the change audited). `None` while the token is young enough.
pub fn renew_agent_token(conn: &mut DbConn, p: &Principal) -> Result<Option<IssuedToken>, AuthError> {
    let (Some(token_id), Some(issued), Some(expires), Some(machine)) =
        (p.token_id, p.token_issued_at, p.token_expires_at, p.client_machine.as_deref())
    else {
        return Err(AuthError::BadToken);
    };
    let lifetime = (expires - issued).num_seconds().max(1);
    if (expires - now()).num_seconds() * 3 > lifetime {
        return Ok(None);
    }
    let user = users::table.find(p.user_id).select(User::as_select()).first(conn)?;
    write_tx(conn, None, |c| -> Result<Option<IssuedToken>, AuthError> {
        // Exactly one renewal per token: a second caller of the same token (a race, or a thief
        // racing the agent) finds it revoked already and gets nothing.
        let revoked = diesel::update(tokens::table.find(token_id).filter(tokens::revoked.eq(false)))
            .set(tokens::revoked.eq(true))
            .execute(c)?;
        if revoked != 1 {
            return Err(AuthError::BadToken);
        }
        let t = issue_token(
            c,
            &user,
            &p.scopes,
            "renewgate-agent",
            "agent",
            std::time::Duration::from_secs(lifetime as u64),
            None,
        )?;
        bind_client_machine(c, &t.access_token, machine)?;
        crate::engine::audit::record(
            c,
            &crate::engine::audit::Entry {
                actor: user.name.clone(),
                action: crate::engine::audit::action::TOKEN_CHANGE.into(),
                target: user.name.clone(),
                outcome: "success".into(),
                detail: format!("agent token for {machine} renewed, expires {}", t.expires_at),
                source: "native".into(),
                ..Default::default()
            },
        )?;
        Ok(Some(t))
    })
}

pub fn bind_client_machine(conn: &mut DbConn, access_token: &str, machine: &str) -> Result<(), AuthError> {
    let hash = sha256_hex(access_token.as_bytes());
    diesel::update(tokens::table.filter(tokens::access_hash.eq(&hash)))
        .set(tokens::client_machine.eq(machine))
        .execute(conn)?;
    Ok(())
}

/// `security:manage` grants no more than the granter holds: every scope and restriction of
/// `scopes`, and every permission on every folder of `folders`, must be the granter's own.
pub fn check_grant(granter: &Principal, scopes: &Scopes, folders: &[FolderGrant]) -> Result<(), String> {
    if !granter.scopes.allows("security", Some("manage")) {
        return Err("managing users needs the security:manage scope".into());
    }
    if let Some(missing) = granter.scopes.first_missing(scopes) {
        return Err(format!("you cannot grant {missing}: you do not hold it"));
    }
    if folders.is_empty() && granter.access.is_restricted() {
        return Err("you cannot grant every folder: you are limited to some".into());
    }
    for g in folders {
        for p in &g.perms {
            if !granter.access.allows(&g.dn, *p) {
                return Err(format!("you cannot grant {p} on {}: you do not hold it", g.dn));
            }
        }
    }
    Ok(())
}

/// Whether `granter` may change `target` (disable, enable, set its password, revoke or create
/// its tokens): only a user whose rights the granter could have granted.
pub fn may_manage(granter: &Principal, target: &User) -> Result<(), String> {
    let scopes = Scopes::parse(&target.max_scope).map_err(|e| e.0)?;
    let folders = FolderAccess::of_user(target).0.unwrap_or_default();
    check_grant(granter, &scopes, &folders).map_err(|e| format!("{} holds more than you: {e}", target.name))
}
