//! Console sessions: a random secret in the browser's cookie, its SHA-256 in `console_sessions`.
//!
//! A session ends after `IDLE` without a request, `ABSOLUTE` after sign-in, at sign-out, and as
//! soon as its user's password, scope or folders change or the user is disabled: each session
//! keeps a digest of those (`user_stamp`) and a lookup compares it with the user's current one,
//! so no code path that changes a user has to remember the sessions.
use chrono::{Duration as ChronoDuration, NaiveDateTime};
use diesel::prelude::*;

use super::{AuthError, Principal, password_principal};
use crate::db::models::User;
use crate::db::schema::{console_sessions, users};
use crate::db::{DbConn, now};
use crate::secrets::{random_b64, sha256_hex};

/// Idle limit: 15 minutes without a request.
pub const IDLE: ChronoDuration = ChronoDuration::minutes(15);
/// Absolute limit: 8 hours after sign-in.
pub const ABSOLUTE: ChronoDuration = ChronoDuration::hours(8);
/// `last_seen` is written at most this often (a page view is not worth a write each time).
const TOUCH_EVERY: ChronoDuration = ChronoDuration::seconds(30);

/// A signed-in console user.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub id: i64,
    pub principal: Principal,
    pub created_at: NaiveDateTime,
    /// The form token of this session (derived from the secret, never stored).
    pub csrf: String,
}

/// What identifies the user's rights at sign-in: a change of any ends the session.
pub fn user_stamp(u: &User) -> String {
    sha256_hex(format!("{}\n{}\n{}\n{}", u.password_hash, u.max_scope, u.folders, u.disabled).as_bytes())
}

/// The CSRF token of a session: a digest of its secret, so it needs no storage and is useless
/// without the cookie it belongs to.
pub fn csrf_of(secret: &str) -> String {
    sha256_hex(format!("renewgate-console-csrf\n{secret}").as_bytes())
}

/// Starts a session for `user` (after a password check); returns the cookie's secret. Any
/// session the browser held before is ended by the caller (`end`), so a sign-in always gets a
/// fresh identifier.
pub fn start(conn: &mut DbConn, user: &User) -> Result<String, AuthError> {
    let secret = random_b64(32).replace(['+', '/', '='], "x");
    let t = now();
    diesel::insert_into(console_sessions::table)
        .values((
            console_sessions::token_hash.eq(sha256_hex(secret.as_bytes())),
            console_sessions::user_id.eq(user.id),
            console_sessions::user_stamp.eq(user_stamp(user)),
            console_sessions::created_at.eq(t),
            console_sessions::last_seen.eq(t),
        ))
        .execute(conn)?;
    // Housekeeping while we are here: sessions past either limit are gone for good.
    let _ = diesel::delete(
        console_sessions::table
            .filter(console_sessions::last_seen.lt(t - IDLE).or(console_sessions::created_at.lt(t - ABSOLUTE))),
    )
    .execute(conn);
    Ok(secret)
}

/// The live session of a cookie secret (and marks it seen), or `None`: unknown, idle too long,
/// too old, or its user changed or was disabled (such a session is deleted).
pub fn find(conn: &mut DbConn, secret: &str) -> Result<Option<ConsoleSession>, AuthError> {
    let hash = sha256_hex(secret.as_bytes());
    let row: Option<(i64, String, NaiveDateTime, NaiveDateTime, User)> = console_sessions::table
        .inner_join(users::table.on(users::id.eq(console_sessions::user_id)))
        .filter(console_sessions::token_hash.eq(&hash))
        .select((
            console_sessions::id,
            console_sessions::user_stamp,
            console_sessions::created_at,
            console_sessions::last_seen,
            User::as_select(),
        ))
        .first(conn)
        .optional()?;
    let Some((id, stamp, created_at, last_seen, user)) = row else {
        return Ok(None);
    };
    let t = now();
    if user.disabled || stamp != user_stamp(&user) || t - last_seen > IDLE || t - created_at > ABSOLUTE {
        diesel::delete(console_sessions::table.find(id)).execute(conn)?;
        return Ok(None);
    }
    if t - last_seen > TOUCH_EVERY {
        diesel::update(console_sessions::table.find(id)).set(console_sessions::last_seen.eq(t)).execute(conn)?;
    }
    Ok(Some(ConsoleSession { id, principal: password_principal(&user)?, created_at, csrf: csrf_of(secret) }))
}

/// Ends a session (sign-out).
pub fn end(conn: &mut DbConn, secret: &str) -> Result<(), AuthError> {
    diesel::delete(console_sessions::table.filter(console_sessions::token_hash.eq(sha256_hex(secret.as_bytes()))))
        .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_user_has_another_stamp() {
        let u = User {
            id: 1,
            guid: "g".into(),
            name: "alice".into(),
            name_lower: "alice".into(),
            password_hash: "h1".into(),
            max_scope: "certificate".into(),
            folders: String::new(),
            created_at: now(),
            disabled: false,
        };
        let base = user_stamp(&u);
        assert_ne!(base, user_stamp(&User { password_hash: "h2".into(), ..u.clone() }));
        assert_ne!(base, user_stamp(&User { max_scope: "certificate:manage".into(), ..u.clone() }));
        assert_ne!(base, user_stamp(&User { folders: "[]".into(), ..u.clone() }));
        assert_ne!(base, user_stamp(&User { disabled: true, ..u.clone() }));
        assert_eq!(base, user_stamp(&u));
        assert_ne!(csrf_of("a"), csrf_of("b"));
    }
}
