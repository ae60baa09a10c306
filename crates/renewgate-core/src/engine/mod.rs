//! The renewal engine: inventory, policy, enroll/renew, the durable job queue. No HTTP here and
//! no vendor names beyond the domain's own (a certificate object has a DN because that is how
//! every dialect names it).
pub mod access;
pub mod audit;
pub mod console;
pub mod csr;
pub mod error;
pub mod inventory;
pub mod lookup;
pub mod policy;
pub mod queue;
pub mod renew;
pub mod scheduler;
pub mod search;
pub mod stats;
pub mod stores;
pub mod templates;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use crate::ca::BuiltinCa;
use crate::db::{Backend, Pool};
use crate::secrets::MasterKey;
use crate::settings::Settings;

pub use error::RenewError;

/// Everything the engine needs, shared by the HTTP dialects, the CLI and the workers.
pub struct Engine {
    pub pool: Pool,
    pub backend: Backend,
    pub ca: BuiltinCa,
    pub master: MasterKey,
    pub settings: Settings,
    pub default_validity: Duration,
    pub signals: Arc<queue::Signals>,
    /// Login throttling and the bound on concurrent password hashes (in memory, per instance).
    pub login: Arc<crate::auth::login::LoginGate>,
    /// ACME's stateless nonces (a key derived from the master key, shared by every instance).
    pub acme_nonces: crate::acme::nonce::NonceSource,
    /// Upstream ACME issuers, loaded on first use and reloaded when changed.
    pub upstreams: crate::ca::upstream::Upstreams,
    /// `ca.dns01.propagation_timeout`.
    pub dns01_propagation_timeout: Duration,
    /// Jobs run by the requests that enqueued them (`queue.inline`), and the leases this
    /// instance keeps alive.
    pub inline: Arc<queue::InlineSlots>,
    pub leases: Arc<queue::LeaseBook>,
    /// Names lease owners of this process (`<pid>-<random>`).
    pub instance: String,
    /// The HTTP layer's audit records, committed in groups.
    pub audit_writer: audit::GroupWriter,
    /// Completions waiting for the group commit (`Engine::complete`).
    pub completions: queue::CompletionGroup,
    /// The connection the renewals' write transactions run on (SQLite file databases; see
    /// `db::WriterConn`). None until the serving process opens it.
    pub writer: crate::db::WriterConn,
    /// The versions this engine committed lately (`lookup::RecentVersions`).
    pub recent_versions: lookup::RecentVersions,
}

impl Engine {
    /// The issuer a job names: a built-in CA (by its `cas` name) or an upstream ACME CA.
    pub fn issuer(
        &self,
        conn: &mut crate::db::DbConn,
        name: &str,
    ) -> Result<Arc<dyn crate::ca::issuer::Issuer>, crate::ca::builtin::CaError> {
        match self.ca.load_by_name(conn, name) {
            Ok(ca) => {
                let urls = crate::ca::IssuerUrls::new(&self.settings.crl_base_url(), &ca.name);
                Ok(Arc::new(crate::ca::issuer::BuiltinIssuer { ca, urls }))
            }
            Err(crate::ca::builtin::CaError::NotFound(_)) => {
                match self.upstreams.get(conn, name, &self.master, &self.pool, self.dns01_propagation_timeout)? {
                    Some(u) => Ok(u),
                    None => Err(crate::ca::builtin::CaError::NotFound(name.to_string())),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub fn new(pool: Pool, backend: Backend, master: MasterKey, settings: Settings) -> anyhow::Result<Engine> {
        let default_validity = crate::settings::parse_duration(&settings.issuance.validity)?;
        let dns01_propagation_timeout = crate::settings::parse_duration(&settings.ca.dns01.propagation_timeout)
            .map_err(|e| anyhow::anyhow!("ca.dns01.propagation_timeout: {e}"))?;
        Ok(Engine {
            pool,
            backend,
            ca: BuiltinCa::new(master.clone()),
            signals: Arc::new(queue::Signals::default()),
            login: Arc::new(crate::auth::login::LoginGate::new(&settings.auth)),
            // SQLite is served by one process (the data directory's lock): its nonces need no
            // table. Instances sharing PostgreSQL must refuse each other's used nonces.
            acme_nonces: crate::acme::nonce::NonceSource::new(
                &master,
                match backend {
                    Backend::Sqlite => crate::acme::nonce::NonceScope::Process,
                    Backend::Postgres => crate::acme::nonce::NonceScope::Shared,
                },
            )?,
            upstreams: Default::default(),
            master,
            settings,
            default_validity,
            dns01_propagation_timeout,
            inline: Default::default(),
            leases: Default::default(),
            instance: format!("{}-{}", std::process::id(), &crate::db::new_guid()[..8]),
            audit_writer: Default::default(),
            completions: Default::default(),
            writer: Default::default(),
            recent_versions: Default::default(),
        })
    }
}
