//! The one password check every channel uses (OAuth, the legacy `/vedsdk/authorize`, Keyfactor
//! Basic, the console): login throttling first, so a closed key costs no argon2; then a bound on
//! concurrent hashes, so guessing cannot take every core; then the check; failures counted, each
//! closure audited once.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::throttle::{HashGate, Throttle, ThrottleConfig};
use super::{AuthError, User};
use crate::db::DbConn;
use crate::engine::audit;
use crate::settings::AuthSettings;

/// Why a password login did not produce a user.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The (user, source) pair or the source is closed: answer 429 with `Retry-After`.
    #[error("too many failed logins; retry after {} s", retry_after_secs(*.0))]
    Throttled(Duration),
    /// Every hash slot is taken: answer 503.
    #[error("too many concurrent logins")]
    Busy,
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Whole seconds for `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

pub struct LoginGate {
    throttle: Throttle,
    hashes: HashGate,
}

impl LoginGate {
    pub fn new(s: &AuthSettings) -> LoginGate {
        let throttle = Throttle::new(ThrottleConfig {
            per_user_source: s.throttle.per_user_source,
            per_source: s.throttle.per_source,
            ..ThrottleConfig::default()
        });
        let hashes = match s.max_concurrent_hashes {
            0 => HashGate::default(),
            n => HashGate::new(n),
        };
        LoginGate { throttle, hashes }
    }

    /// Checks `name`/`password` coming from `source` (`channel` names the dialect in the audit
    /// trail). Only failed passwords count; unknown names count like known ones.
    pub fn check_password(
        &self,
        conn: &mut DbConn,
        name: &str,
        password: &str,
        source: IpAddr,
        channel: &str,
    ) -> Result<User, LoginError> {
        let now = Instant::now();
        self.throttle.check(name, source, now).map_err(|c| LoginError::Throttled(c.retry_after))?;
        let permit = self.hashes.try_acquire().ok_or(LoginError::Busy)?;
        let result = super::check_password(conn, name, password);
        drop(permit);
        match result {
            Ok(u) => {
                self.throttle.record_success(name, source, now);
                let entry = audit::Entry {
                    actor: u.name.clone(),
                    action: audit::action::SIGN_IN.into(),
                    target: u.name.clone(),
                    outcome: "success".into(),
                    detail: format!("password sign-in from {source}"),
                    source: channel.into(),
                    ..Default::default()
                };
                if let Err(e) = audit::record(conn, &entry) {
                    tracing::warn!(error = %e, "could not audit a sign-in");
                }
                Ok(u)
            }
            Err(AuthError::BadCredentials) => {
                for closure in self.throttle.record_failure(name, source, Instant::now()) {
                    // One row per key and window: record_failure reports each closure once.
                    let entry = audit::Entry {
                        actor: closure.user.clone().unwrap_or_else(|| "anonymous".into()),
                        action: audit::action::LOGIN_THROTTLED.into(),
                        target: closure.key.clone(),
                        outcome: "failure".into(),
                        detail: format!("closed for {} s (strike {})", closure.retry_after.as_secs(), closure.strike),
                        source: channel.into(),
                        ..Default::default()
                    };
                    if let Err(e) = audit::record(conn, &entry) {
                        tracing::warn!(error = %e, "could not audit a login-throttle closure");
                    }
                    tracing::warn!(key = %closure.key.escape_debug(), secs = closure.retry_after.as_secs(), "login throttle closed");
                }
                Err(LoginError::Auth(AuthError::BadCredentials))
            }
            Err(e) => Err(LoginError::Auth(e)),
        }
    }
}
