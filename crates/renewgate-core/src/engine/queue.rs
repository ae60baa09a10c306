//! The durable job queue: jobs live in the `jobs` table; workers claim them with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite). An expired lease is
//! claimed again, so a job accepted before a crash completes after restart; completion checks
//! that the lease is still ours, so no job's result is committed twice.
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::SubsecRound;
use diesel::prelude::*;
use openssl::pkey::{PKey, Private, Public};
use openssl::x509::X509Name;

use super::Engine;
use super::inventory::{self, KEY_PURPOSE};
use super::renew::IssuePayload;
use crate::ca::SanSet;
use crate::ca::issuer::{IssueError, IssueInput, IssuerKind, JobProgress};
use crate::db::models::{CertVersion, Job, NewCertVersion};
use crate::db::schema::{cert_objects, certificate_info, certificates, jobs};
use crate::db::{DbConn, Prepared, WriterConn, new_record_guid, now, write_tx};
use crate::vocab::{JobState, ObjectState};

/// Wake-ups between request handlers and workers of this process. Other instances are reached
/// by polling the table.
#[derive(Default)]
pub struct Signals {
    enqueued: Mutex<u64>,
    enqueued_cv: Condvar,
    pub done: tokio::sync::Notify,
    /// An ACME validation job was enqueued here (wakes this instance's validation dispatcher).
    pub validation_enqueued: tokio::sync::Notify,
    /// Jobs this process's workers finished lately, so that a waiter woken by `done` reads the
    /// database only when its own job is among them (not every waiter on every job).
    finished: Mutex<FinishedIds>,
}

/// The last FINISHED_KEPT job ids finished here.
#[derive(Default)]
struct FinishedIds {
    set: std::collections::HashSet<i64>,
    order: std::collections::VecDeque<i64>,
}

const FINISHED_KEPT: usize = 65_536;

impl Signals {
    /// A worker of this process finished `job` (done or failed): wakes the waiters.
    pub fn job_finished(&self, job: i64) {
        {
            let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            if f.set.insert(job) {
                f.order.push_back(job);
                if f.order.len() > FINISHED_KEPT
                    && let Some(old) = f.order.pop_front()
                {
                    f.set.remove(&old);
                }
            }
        }
        self.done.notify_waiters();
    }

    fn finished_here(&self, job: i64) -> bool {
        self.finished.lock().unwrap_or_else(|e| e.into_inner()).set.contains(&job)
    }

    pub fn job_enqueued(&self) {
        // A poisoned counter is still a counter: a panicked waiter must not stop the others.
        *self.enqueued.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.enqueued_cv.notify_all();
    }

    fn wait_for_work(&self, seen: &mut u64, timeout: Duration) {
        let g = self.enqueued.lock().unwrap_or_else(|e| e.into_inner());
        if *g != *seen {
            *seen = *g;
            return;
        }
        let (g, _) = self.enqueued_cv.wait_timeout(g, timeout).unwrap_or_else(|e| e.into_inner());
        *seen = *g;
    }
}

/// Issuance jobs (the certificate objects' renewals and enrollments).
pub const KIND_ISSUE: &str = "issue";
/// ACME challenge validations. They belong to no inventory object: their `object_id` is 0 and
/// their payload names the challenge.
pub const KIND_ACME_VALIDATION: &str = "acme-validation";

/// Revocations at an upstream CA of certificates revoked here (retried until the CA confirms).
pub const KIND_UPSTREAM_REVOKE: &str = "upstream-revoke";

/// What an upstream revocation job revokes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct UpstreamRevoke {
    pub issuer: String,
    pub certificate_id: i64,
    pub reason: i32,
}

/// The jobs this process is working on, whose leases one heartbeat thread keeps alive (an
/// RSA-4096 key or an upstream order can outlast a short lease; a thread per job cost more than
/// the job on the fast path).
#[derive(Default)]
pub struct LeaseBook {
    held: Mutex<std::collections::HashMap<i64, String>>,
}

impl LeaseBook {
    fn hold(&self, job: i64, owner: &str) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(job, owner.to_string());
    }
    fn release(&self, job: i64) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&job);
    }
    fn snapshot(&self) -> Vec<(i64, String)> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(j, o)| (*j, o.clone())).collect()
    }
}

/// Releases a job's lease entry however its processing ends, a panic included.
struct Held<'a>(&'a LeaseBook, i64);
impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// How many jobs requests of this process run themselves (`queue.inline`).
#[derive(Debug, Default)]
pub struct InlineSlots {
    busy: std::sync::atomic::AtomicUsize,
}

/// One of those: given back when dropped.
#[derive(Debug)]
pub struct InlineSlot(Arc<InlineSlots>);
impl Drop for InlineSlot {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A job enqueued already claimed by the request that enqueued it: the request runs it now
/// (`Engine::run_leased`). Crash-safe like any claim: a kill -9 leaves a running job whose lease
/// expires, and a worker takes it then.
#[derive(Debug, Clone)]
pub struct InlineLease {
    pub owner: String,
    pub lease_secs: i64,
    /// The public key of the CSR the request parsed and verified (or, for a Keyfactor renewal
    /// that re-signs, of the current certificate): the job issues for it without decoding the
    /// CSR or key from its payload again.
    pub csr_key: Option<PKey<Public>>,
    /// The job row as inserted under this lease (`insert_job_leased`), so that running it needs
    /// no read back. The last insert wins: an optimistic attempt rolled back is followed by the
    /// one that commits, and `run_leased` uses the row only when its id is the job's.
    pub inserted: Arc<Mutex<Option<Job>>>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Pending,
    Done(Option<i64>),
    Failed(String),
}

#[derive(Debug, QueryableByName)]
struct ClaimedId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// A failure while processing: `permanent` ones are not retried.
#[derive(Debug)]
pub struct JobFailure {
    pub message: String,
    pub permanent: bool,
    /// The issuer asked to be called again no sooner than this (an upstream Retry-After).
    pub retry_after: Option<Duration>,
}

impl JobFailure {
    fn permanent(m: impl Into<String>) -> Self {
        JobFailure { message: m.into(), permanent: true, retry_after: None }
    }
    fn transient(m: impl Into<String>) -> Self {
        JobFailure { message: m.into(), permanent: false, retry_after: None }
    }
    fn from_issuer(e: IssueError) -> Self {
        match e.retry {
            None => JobFailure { message: e.message, permanent: true, retry_after: None },
            Some(after) => JobFailure { message: e.message, permanent: false, retry_after: after },
        }
    }
}

/// An issuer's progress on one job (`jobs.issuer_state`), written only while the lease is ours.
struct JobIssuerState<'a> {
    engine: &'a Engine,
    job_id: i64,
    owner: &'a str,
    resumed: Option<String>,
}

impl JobProgress for JobIssuerState<'_> {
    fn load(&self) -> Option<String> {
        self.resumed.clone()
    }
    fn save(&self, state: &str) -> Result<(), IssueError> {
        let lost = |e: String| IssueError::transient("database", e);
        let mut c = self.engine.pool.get().map_err(|e| lost(e.to_string()))?;
        let n = diesel::update(
            jobs::table
                .find(self.job_id)
                .filter(jobs::lease_owner.eq(self.owner))
                .filter(jobs::state.eq(JobState::Running)),
        )
        .set(jobs::issuer_state.eq(Some(state)))
        .execute(&mut **c)
        .map_err(|e| lost(e.to_string()))?;
        if n != 1 {
            return Err(lost("the job's lease was lost".into()));
        }
        Ok(())
    }
}

impl Engine {
    /// Starts `queue.workers` worker threads. Diesel is synchronous, so workers are threads.
    /// Fails only when the OS refuses a thread: the gateway must not start without its workers.
    pub fn start_workers(self: &Arc<Self>) -> std::io::Result<()> {
        let instance = self.instance.clone();
        let engine = self.clone();
        std::thread::Builder::new().name("renewgate-heartbeat".into()).spawn(move || engine.heartbeat_loop())?;
        crate::db::start_checkpointer(&self.pool)?;
        for n in 0..self.settings.queue.workers {
            let engine = self.clone();
            let owner = format!("{instance}-w{n}");
            std::thread::Builder::new()
                .name(format!("renewgate-worker-{n}"))
                .spawn(move || engine.worker_loop(&owner))?;
        }
        Ok(())
    }

    fn worker_loop(&self, owner: &str) {
        let mut seen = 0u64;
        let poll = Duration::from_millis(self.settings.queue.poll_ms.max(10));
        loop {
            match self.run_one(owner) {
                Ok(true) => continue,
                Ok(false) => self.signals.wait_for_work(&mut seen, poll),
                Err(e) => {
                    tracing::warn!(error = %e, "queue worker: database error; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Claims and processes one job. Returns false when there was nothing to do.
    pub fn run_one(&self, owner: &str) -> Result<bool, diesel::result::Error> {
        let mut conn = match self.pool.get() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "queue worker: no database connection");
                std::thread::sleep(Duration::from_secs(1));
                return Ok(false);
            }
        };
        let lease = self.settings.queue.lease_secs as i64;
        let job = match self.claim(&mut conn, owner, KIND_ISSUE, lease)? {
            Some(job) => job,
            None => match self.claim(&mut conn, owner, KIND_UPSTREAM_REVOKE, lease)? {
                Some(job) => {
                    self.revoke_upstream(&mut conn, &job, owner)?;
                    return Ok(true);
                }
                None => return Ok(false),
            },
        };
        self.process(&mut conn, &job, owner, None)?;
        Ok(true)
    }

    /// Processes a claimed issuance job: issues, then records the outcome only while the lease
    /// is still `owner`'s. Wakes this process's waiters.
    fn process(
        &self,
        conn: &mut DbConn,
        job: &Job,
        owner: &str,
        csr_key: Option<&PKey<Public>>,
    ) -> Result<JobOutcome, diesel::result::Error> {
        let started = Instant::now();
        // The heartbeat keeps the lease alive while the crypto runs, so that another worker does
        // not take the job over and redo it.
        self.leases.hold(job.id, owner);
        let held = Held(&self.leases, job.id);
        let result = if job.attempts > self.settings.queue.max_attempts {
            // Claimed again after its worker died each time: give up instead of looping.
            self.abandon(conn, job, owner);
            Err(JobFailure::permanent(format!("gave up after {} attempts", job.attempts - 1)))
        } else {
            self.issue(conn, job, owner, csr_key)
        };
        let outcome = match result {
            Ok(issued) => {
                let leaf = issued.leaf.clone();
                match self.complete(conn, job, owner, issued)? {
                    Some(version) => {
                        let cert_id = version.id;
                        super::inventory::remember_issued(cert_id, &leaf);
                        self.recent_versions.remember(version);
                        let latency = (now() - job.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                        crate::metrics::METRICS.issuance.observe(crate::metrics::seconds(latency));
                        crate::metrics::METRICS.issuance_job("issued");
                        tracing::info!(
                            job = job.id,
                            object = job.object_id,
                            ms = started.elapsed().as_millis() as u64,
                            "certificate issued"
                        );
                        JobOutcome::Done(Some(cert_id))
                    }
                    None => {
                        tracing::warn!(
                            job = job.id,
                            "lease lost before completion; result discarded (another worker owns the job)"
                        );
                        JobOutcome::Pending
                    }
                }
            }
            Err(f) => {
                let given_up = self.fail(conn, job, owner, &f)?;
                if given_up { JobOutcome::Failed(f.message) } else { JobOutcome::Pending }
            }
        };
        drop(held);
        self.signals.job_finished(job.id);
        Ok(outcome)
    }

    /// Runs the job a request enqueued leased to itself (`InlineLease`), on the request's own
    /// thread and connection. `Pending` when it did not finish here (a transient failure
    /// retried later by the workers, or a lost lease).
    pub fn run_leased(
        &self,
        conn: &mut DbConn,
        job_id: i64,
        lease: &InlineLease,
    ) -> Result<JobOutcome, diesel::result::Error> {
        let inserted = lease.inserted.lock().unwrap_or_else(|e| e.into_inner()).take().filter(|j| j.id == job_id);
        let job: Job = match inserted {
            Some(job) => job,
            None => jobs::table.find(job_id).select(Job::as_select()).first(conn)?,
        };
        if job.state != JobState::Running || job.lease_owner.as_deref() != Some(lease.owner.as_str()) {
            return Ok(JobOutcome::Pending);
        }
        self.process(conn, &job, &lease.owner, lease.csr_key.as_ref())
    }

    /// A lease for a job the calling request will run itself, when this instance has workers
    /// and fewer than `queue.inline` such jobs running. The slot is held until dropped.
    pub fn inline_slot(&self) -> Option<InlineSlot> {
        use std::sync::atomic::Ordering;
        let max = self.settings.queue.inline;
        if max == 0 || self.settings.queue.workers == 0 {
            return None;
        }
        let mut n = self.inline.busy.load(Ordering::Acquire);
        loop {
            if n >= max {
                return None;
            }
            match self.inline.busy.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(InlineSlot(self.inline.clone())),
                Err(seen) => n = seen,
            }
        }
    }

    /// A new owner name for a job run inline.
    pub fn inline_lease(&self) -> InlineLease {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InlineLease {
            owner: format!("{}-i{n}", self.instance),
            lease_secs: self.settings.queue.lease_secs as i64,
            csr_key: None,
            inserted: Default::default(),
        }
    }

    /// One thread for the whole process: every third of the lease, extends the leases of the
    /// jobs this process is working on.
    fn heartbeat_loop(&self) {
        let lease = self.settings.queue.lease_secs.max(1) as i64;
        let every = Duration::from_millis((lease as u64 * 1000 / 3).max(200));
        loop {
            std::thread::sleep(every);
            let held = self.leases.snapshot();
            if held.is_empty() {
                continue;
            }
            let Ok(mut c) = self.pool.get() else { continue };
            let until = now() + chrono::Duration::seconds(lease);
            for (job, owner) in held {
                let _ = diesel::update(
                    jobs::table
                        .find(job)
                        .filter(jobs::lease_owner.eq(&owner))
                        .filter(jobs::state.eq(JobState::Running)),
                )
                .set(jobs::lease_until.eq(until))
                .execute(&mut **c);
            }
        }
    }

    /// Claims the oldest runnable job of `kind` (queued and due, or running with an expired
    /// lease) for `lease_secs`.
    fn claim(
        &self,
        conn: &mut DbConn,
        owner: &str,
        kind: &str,
        lease_secs: i64,
    ) -> Result<Option<Job>, diesel::result::Error> {
        let ts = now();
        let lease_until = ts + chrono::Duration::seconds(lease_secs);
        let id: Option<i64> = match conn {
            // Kept prepared on the server: every worker runs it on every poll.
            DbConn::Postgresql(c) => Prepared(
                diesel::sql_query(
                    "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
                     WHERE id = (SELECT id FROM jobs WHERE kind = $4 AND ((state = 'queued' AND run_after <= $3) \
                     OR (state = 'running' AND lease_until < $3)) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id",
                )
                .bind::<diesel::sql_types::Text, _>(owner)
                .bind::<diesel::sql_types::Timestamp, _>(lease_until)
                .bind::<diesel::sql_types::Timestamp, _>(ts)
                .bind::<diesel::sql_types::Text, _>(kind),
            )
            .get_result::<ClaimedId>(c)
            .optional()?
            .map(|r| r.id),
            DbConn::Sqlite(_) => self.writer.write_tx(conn, |c| -> Result<Option<i64>, diesel::result::Error> {
                // The literal state condition lets SQLite use the partial index `jobs_open` (open
                // jobs in id order); with only bound values it walked every job in id order,
                // a million done ones at inventory scale, while holding the writer turn.
                let candidate: Option<i64> = jobs::table
                    .filter(diesel::dsl::sql::<diesel::sql_types::Bool>("jobs.state IN ('queued', 'running')"))
                    .filter(jobs::kind.eq(kind))
                    .filter(
                        jobs::state
                            .eq(JobState::Queued)
                            .and(jobs::run_after.le(ts))
                            .or(jobs::state.eq(JobState::Running).and(jobs::lease_until.lt(ts))),
                    )
                    .order(jobs::id.asc())
                    .select(jobs::id)
                    .first(c)
                    .optional()?;
                let Some(id) = candidate else { return Ok(None) };
                Prepared(diesel::update(jobs::table.find(id)).set((
                    jobs::state.eq(JobState::Running),
                    jobs::lease_owner.eq(owner),
                    jobs::lease_until.eq(lease_until),
                    jobs::attempts.eq(jobs::attempts + 1),
                    jobs::updated_at.eq(ts),
                )).returning(jobs::id))
                .write(c)?;
                Ok(Some(id))
            })?,
        };
        match id {
            Some(id) => Ok(Some(jobs::table.find(id).select(Job::as_select()).first(conn)?)),
            None => Ok(None),
        }
    }

    /// The crypto: the issuer named by the job signs the new certificate (no transaction held
    /// meanwhile).
    fn issue(
        &self,
        conn: &mut DbConn,
        job: &Job,
        owner: &str,
        csr_key: Option<&PKey<Public>>,
    ) -> Result<IssuedCert, JobFailure> {
        let p: IssuePayload = serde_json::from_str(&job.payload)
            .map_err(|e| JobFailure::permanent(format!("unreadable job payload: {e}")))?;
        let issuer = self.issuer(conn, &p.ca).map_err(|e| match e {
            crate::ca::builtin::CaError::Db(e) => JobFailure::transient(e.to_string()),
            other => JobFailure::permanent(other.to_string()),
        })?;
        let crypto = |e: openssl::error::ErrorStack| JobFailure::permanent(format!("crypto: {e}"));
        let b64 = |s: &str| B64.decode(s).map_err(|e| JobFailure::permanent(format!("job payload: {e}")));
        let mut private_key = None;
        let mut csr = None;
        // The subject and SANs to issue were settled at acceptance (policy applied); the CSR
        // contributes its public key.
        let mut payload_subject = p
            .subject_der
            .as_deref()
            .map(|d| b64(d).and_then(|der| X509Name::from_der(&der).map_err(crypto)))
            .transpose()?;
        // Run by the request that parsed and verified the CSR (or read the key a Keyfactor
        // renewal re-signs): its key is at hand, and a built-in CA needs nothing else from the CSR.
        let known = match (csr_key, &p.sans) {
            (Some(key), Some(sans))
                if issuer.describe().kind == IssuerKind::Builtin
                    && (p.csr_der.is_some() || p.public_key_der.is_some())
                    && payload_subject.is_some() =>
            {
                Some((key, sans))
            }
            _ => None,
        };
        let (subject, sans, public_key): (X509Name, SanSet, PKey<Public>) = if let Some((key, sans)) = known
            && let Some(subject) = payload_subject.take()
        {
            (subject, sans.clone(), key.clone())
        } else if let Some(csr_der) = &p.csr_der {
            let req = super::csr::Csr::from_der(&b64(csr_der)?).map_err(crypto)?;
            let pk = req.public_key().map_err(crypto)?;
            let subject = match payload_subject {
                Some(s) => s,
                None => X509Name::from_der(&req.subject_name().to_der().map_err(crypto)?).map_err(crypto)?,
            };
            let sans = p.sans.clone().unwrap_or_else(|| SanSet::of_csr(&req));
            csr = Some(req);
            (subject, sans, pk)
        } else if let Some(pkd) = &p.public_key_der {
            // Re-sign an existing public key (no private key involved).
            let pk = PKey::public_key_from_der(&b64(pkd)?).map_err(crypto)?;
            let subject = payload_subject.ok_or_else(|| JobFailure::permanent("job has no subject"))?;
            (subject, p.sans.clone().unwrap_or_default(), pk)
        } else {
            let spec = p.generate_key.ok_or_else(|| JobFailure::permanent("job has neither a CSR nor a key type"))?;
            let key = self.job_key(conn, job, owner, spec, issuer.describe().kind)?;
            let pk = PKey::public_key_from_der(&key.public_key_to_der().map_err(crypto)?).map_err(crypto)?;
            private_key = Some(key);
            let subject = payload_subject.ok_or_else(|| JobFailure::permanent("job has no subject"))?;
            (subject, p.sans.clone().unwrap_or_default(), pk)
        };
        let input = IssueInput {
            subject: &subject,
            sans: &sans,
            public_key: &public_key,
            private_key: private_key.as_deref(),
            csr: csr.as_ref(),
            validity_secs: p.validity_secs,
            ekus: p.ekus.as_deref().unwrap_or(&[]),
            not_after_max: p.not_after_max,
        };
        let started = Instant::now();
        let progress = JobIssuerState { engine: self, job_id: job.id, owner, resumed: job.issuer_state.clone() };
        let issued = issuer.issue(&input, &progress);
        let name = issuer.describe().name;
        let issued = match issued {
            Ok(i) => {
                crate::metrics::METRICS.issuer_signed(&name, started.elapsed().as_secs_f64());
                i
            }
            Err(e) => {
                crate::metrics::METRICS.issuer_failure(&name, &e.kind);
                return Err(JobFailure::from_issuer(e));
            }
        };
        let leaf = issued.leaf;
        let mut chain_pem = String::new();
        for c in &issued.chain {
            chain_pem.push_str(&String::from_utf8_lossy(&c.to_pem().map_err(crypto)?));
        }
        let key_enc = match &private_key {
            Some(k) => Some(
                self.master
                    .seal(KEY_PURPOSE, &k.private_key_to_pkcs8().map_err(crypto)?)
                    .map_err(|e| JobFailure::permanent(e.to_string()))?,
            ),
            None => None,
        };
        let leaf_key = leaf.public_key().map_err(crypto)?;
        if !leaf_key.public_eq(&public_key) {
            return Err(JobFailure::permanent(format!("CA {name} returned a certificate for another key")));
        }
        let der = leaf.to_der().map_err(crypto)?;
        Ok(IssuedCert {
            row: CertVersion {
                // Given by the insert.
                id: 0,
                guid: new_record_guid(),
                object_id: job.object_id,
                issuer_ca_id: issued.ca_id,
                thumbprint: crate::ca::thumbprint(&der),
                der,
                chain_pem,
                serial: crate::ca::serial_hex(&leaf),
                common_name: crate::ca::common_name(leaf.subject_name()),
                issuer_dn: crate::ca::name_to_string(leaf.issuer_name()),
                not_before: crate::ca::asn1_to_naive(leaf.not_before()),
                not_after: crate::ca::asn1_to_naive(leaf.not_after()),
                // Computed at acceptance for a CSR's key (the leaf's key was just checked to be it).
                public_key_sha256: p
                    .public_key_sha256
                    .clone()
                    .unwrap_or_else(|| crate::ca::public_key_fingerprint(&public_key)),
                key_enc,
                job_id: Some(job.id),
                // At the precision both databases keep: the row read back equals this copy.
                created_at: now().trunc_subsecs(6),
            },
            names: super::inventory::names_of_cert(&leaf),
            ca_name: name,
            template: p.template.clone(),
            metadata: p.metadata.clone(),
            store_ids: p.store_ids.clone(),
            acme_order: p.acme_order,
            leaf,
        })
    }

    /// The key a service-generated request is issued for. An issuer that works in steps (an
    /// upstream order finalized with a CSR of this key) needs the same key when the job resumes
    /// after a crash, so the key is kept with the job, sealed, before the issuer sees it.
    fn job_key(
        &self,
        conn: &mut DbConn,
        job: &Job,
        owner: &str,
        spec: crate::ca::KeySpec,
        kind: IssuerKind,
    ) -> Result<PKey<Private>, JobFailure> {
        let crypto = |e: openssl::error::ErrorStack| JobFailure::permanent(format!("crypto: {e}"));
        if let Some(sealed) = &job.key_enc {
            let der = self.master.open(KEY_PURPOSE, sealed).map_err(|e| JobFailure::permanent(e.to_string()))?;
            return PKey::private_key_from_der(&der).map_err(crypto);
        }
        let key = spec.generate().map_err(crypto)?;
        if kind != IssuerKind::Builtin {
            let sealed = self
                .master
                .seal(KEY_PURPOSE, &key.private_key_to_pkcs8().map_err(crypto)?)
                .map_err(|e| JobFailure::permanent(e.to_string()))?;
            let n = diesel::update(
                jobs::table.find(job.id).filter(jobs::lease_owner.eq(owner)).filter(jobs::state.eq(JobState::Running)),
            )
            .set(jobs::key_enc.eq(Some(sealed)))
            .execute(conn)
            .map_err(|e| JobFailure::transient(e.to_string()))?;
            if n != 1 {
                return Err(JobFailure::transient("the job's lease was lost"));
            }
        }
        Ok(key)
    }

    /// Lets the issuer of a job given up on undo what its attempts left outside.
    fn abandon(&self, conn: &mut DbConn, job: &Job, owner: &str) {
        let Ok(p) = serde_json::from_str::<IssuePayload>(&job.payload) else { return };
        let Ok(issuer) = self.issuer(conn, &p.ca) else { return };
        let progress = JobIssuerState { engine: self, job_id: job.id, owner, resumed: job.issuer_state.clone() };
        if let Err(e) = issuer.abandon(&progress) {
            tracing::warn!(job = job.id, error = %e.message, "could not undo what the abandoned job left");
        }
    }

    /// Commits the new version, makes it current and closes the job — all only if we still hold
    /// the lease. Group commit: the completions of the jobs finishing at the same time share one
    /// transaction (each in a savepoint of its own). The first caller to find no commit under
    /// way leads: it commits every completion waiting, on its own connection (so no connection
    /// beyond the callers' own is needed); the others wait for its commit and return only once
    /// their completion is committed.
    fn complete(
        &self,
        conn: &mut DbConn,
        job: &Job,
        owner: &str,
        c: IssuedCert,
    ) -> Result<Option<CertVersion>, diesel::result::Error> {
        let lost = |m: &str| diesel::result::Error::QueryBuilderError(m.to_string().into());
        let row = c.row.clone();
        let group = &self.completions;
        let mut st = group.state.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.push(Completion { ticket, job: job.clone(), owner: owner.to_string(), issued: c });
        loop {
            if let Some(r) = st.done.remove(&ticket) {
                return r.map(|id| id.map(|id| CertVersion { id, ..row })).map_err(|m| lost(&m));
            }
            if !st.committing {
                st.committing = true;
                let batch = std::mem::take(&mut st.waiting);
                drop(st);
                let results = commit_group(&self.writer, conn, &batch);
                st = group.state.lock().unwrap_or_else(|e| e.into_inner());
                st.committing = false;
                for (item, r) in batch.iter().zip(results) {
                    st.done.insert(item.ticket, r);
                }
                group.cv.notify_all();
                continue;
            }
            st = group.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The completions waiting for a commit, and the outcomes not yet collected.
#[derive(Default)]
pub struct CompletionGroup {
    state: Mutex<GroupState>,
    cv: Condvar,
}

#[derive(Default)]
struct GroupState {
    next_ticket: u64,
    committing: bool,
    waiting: Vec<Completion>,
    done: std::collections::HashMap<u64, Result<Option<i64>, String>>,
}

/// One job's completion waiting for the group commit.
struct Completion {
    ticket: u64,
    job: Job,
    owner: String,
    issued: IssuedCert,
}

/// Commits a group of completions in one write transaction. The group is first tried whole,
/// without savepoints: in the normal case nothing needs undoing, and SQLite keeps no statement
/// sub-journal (a savepoint copies every page it changes). Should any completion fail (a lost
/// lease included, which is rare: it takes a worker stalled past its lease), that transaction
/// is rolled back and the group committed again with each completion in a savepoint of its
/// own: one that fails then rolls back its own savepoint only. A failed commit fails them all
/// (their jobs stay leased and run again after the lease).
fn commit_group(writer: &WriterConn, conn: &mut DbConn, group: &[Completion]) -> Vec<Result<Option<i64>, String>> {
    let whole = writer.write_tx(conn, |tx| -> Result<Vec<Result<Option<i64>, String>>, diesel::result::Error> {
        group.iter().map(|g| complete_in(tx, &g.job, &g.owner, &g.issued).map(Ok)).collect()
    });
    match whole {
        Ok(results) => results,
        Err(e) if group.len() > 1 => {
            tracing::debug!(error = %e, jobs = group.len(), "a completion failed; committing the group one by one");
            commit_group_isolated(writer, conn, group)
        }
        Err(e) if is_lease_lost(&e) => vec![Ok(None)],
        Err(e) => {
            tracing::warn!(error = %e, jobs = 1, "completing a job failed");
            vec![Err(e.to_string())]
        }
    }
}

/// `commit_group`'s second try: each completion in a savepoint of its own.
fn commit_group_isolated(
    writer: &WriterConn,
    conn: &mut DbConn,
    group: &[Completion],
) -> Vec<Result<Option<i64>, String>> {
    use diesel::connection::SimpleConnection;
    let mut results: Vec<Result<Option<i64>, String>> = Vec::with_capacity(group.len());
    let committed = writer.write_tx(conn, |tx| -> Result<(), diesel::result::Error> {
        results.clear();
        for g in group {
            tx.batch_execute("SAVEPOINT completion")?;
            match complete_in(tx, &g.job, &g.owner, &g.issued) {
                Ok(r) => {
                    tx.batch_execute("RELEASE completion")?;
                    results.push(Ok(r));
                }
                Err(e) => {
                    tx.batch_execute("ROLLBACK TO completion; RELEASE completion")?;
                    results.push(if is_lease_lost(&e) { Ok(None) } else { Err(e.to_string()) });
                }
            }
        }
        Ok(())
    });
    match committed {
        Ok(()) => results,
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "completing a group of jobs failed");
            group.iter().map(|_| Err(e.to_string())).collect()
        }
    }
}

/// A completion that found its job's lease taken over: another worker owns the job now.
#[derive(Debug, thiserror::Error)]
#[error("the job's lease was lost before its completion")]
struct LeaseLost;

fn lease_lost() -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(Box::new(LeaseLost))
}

fn is_lease_lost(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::QueryBuilderError(b) if b.is::<LeaseLost>())
}

/// The job already has its certificate (`certificates_job`, the unique index that keeps a job
/// from issuing twice): the worker that took the lease over has completed it.
fn is_jobs_certificate(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            info.constraint_name() == Some("certificates_job") || info.message().contains("certificates.job_id")
        }
        _ => false,
    }
}

/// `Engine::complete`'s work, inside the caller's transaction.
///
/// The certificate is inserted first and the job closed with its id in one statement, which
/// matches only while we hold the lease. When it does not (the lease was lost), or the job
/// already has its certificate (the worker that took it over completed it), the completion
/// fails with [`LeaseLost`] so that its transaction or savepoint undoes the insert; the group
/// commit reads that failure as "not ours" (`Ok(None)`).
fn complete_in(tx: &mut DbConn, job: &Job, owner: &str, c: &IssuedCert) -> Result<Option<i64>, diesel::result::Error> {
    let metadata = serde_json::to_string(&c.metadata.clone().unwrap_or_default()).unwrap_or_default();
    let cert_id = match tx {
        DbConn::Postgresql(pg) => {
            let statement = CompletionOnPostgres { job, owner, c, metadata: &metadata };
            let (cert_id, closed): (i64, i64) =
                statement.get_result(pg).map_err(|e| if is_jobs_certificate(&e) { lease_lost() } else { e })?;
            if closed != 1 {
                return Err(lease_lost());
            }
            cert_id
        }
        DbConn::Sqlite(_) => complete_row_by_row(tx, job, owner, c, &metadata)?,
    };
    // Store pushes are scheduled in the same transaction that makes the certificate current,
    // each into the entry an earlier version of the object occupies in that store.
    for sid in &c.store_ids {
        let alias = crate::engine::stores::alias_of_object_in_store(tx, job.object_id, *sid)
            .map_err(|e| diesel::result::Error::QueryBuilderError(e.to_string().into()))?;
        crate::engine::stores::schedule(tx, &[*sid], cert_id, "add", alias.as_deref(), true)?;
    }
    if let Some(order) = c.acme_order {
        crate::acme::db::orders::set_order_issued(tx, order, job.id, cert_id)?;
    }
    Ok(Some(cert_id))
}

/// `complete_in`'s rows, one statement each (SQLite: in-process, a statement costs no round trip).
fn complete_row_by_row(
    tx: &mut DbConn,
    job: &Job,
    owner: &str,
    c: &IssuedCert,
    metadata: &str,
) -> Result<i64, diesel::result::Error> {
    let ts = c.row.created_at;
    let row = &c.row;
    // The statements of a completion run on the concrete connection (`on_backend`): a
    // completion holds the SQLite writer lock.
    let cert_id: i64 = crate::on_backend!(tx, |tx| Prepared(
        diesel::insert_into(certificates::table)
            .values(NewCertVersion {
                guid: &row.guid,
                object_id: job.object_id,
                issuer_ca_id: row.issuer_ca_id,
                der: &row.der,
                chain_pem: &row.chain_pem,
                serial: &row.serial,
                thumbprint: &row.thumbprint,
                common_name: &row.common_name,
                issuer_dn: &row.issuer_dn,
                not_before: row.not_before,
                not_after: row.not_after,
                public_key_sha256: &row.public_key_sha256,
                key_enc: row.key_enc.as_deref(),
                job_id: Some(job.id),
                created_at: ts,
            })
            .returning(certificates::id),
    )
    .get_result(tx))
    .map_err(|e| if is_jobs_certificate(&e) { lease_lost() } else { e })?;
    let n = crate::on_backend!(tx, |tx| Prepared(
        diesel::update(
            jobs::table.find(job.id).filter(jobs::lease_owner.eq(owner)).filter(jobs::state.eq(JobState::Running)),
        )
        // The key kept for a resumed upstream order now lives (sealed) with the certificate.
        .set((
            jobs::state.eq(JobState::Done),
            jobs::updated_at.eq(ts),
            jobs::error.eq(None::<String>),
            jobs::key_enc.eq(None::<Vec<u8>>),
            jobs::result_cert_id.eq(cert_id),
        ))
        .returning(jobs::id),
    )
    .write(tx))?;
    if n != 1 {
        return Err(lease_lost());
    }
    super::inventory::record_names_list(tx, cert_id, job.object_id, c.names.clone())?;
    crate::on_backend!(tx, |tx| Prepared(
        diesel::update(cert_objects::table.find(job.object_id).filter(cert_objects::pending_job_id.eq(job.id)))
            .set((
                cert_objects::current_cert_id.eq(cert_id),
                cert_objects::state.eq(ObjectState::Active),
                cert_objects::pending_job_id.eq(None::<i64>),
                cert_objects::last_error.eq(None::<String>),
                cert_objects::updated_at.eq(ts),
            ))
            .returning(cert_objects::id),
    )
    .write(tx))?;
    crate::on_backend!(tx, |tx| Prepared(
        diesel::insert_into(certificate_info::table)
            .values((
                certificate_info::certificate_id.eq(cert_id),
                certificate_info::template.eq(&c.template),
                certificate_info::ca_name.eq(&c.ca_name),
                certificate_info::metadata.eq(metadata),
            ))
            .returning(certificate_info::certificate_id)
    )
    .write(tx))?;
    Ok(cert_id)
}

/// `, $n` with `value` bound to it: the next item of a list in a statement built by hand.
fn comma_bind<'b, ST, U>(
    out: &mut diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    value: &'b U,
) -> QueryResult<()>
where
    diesel::pg::Pg: diesel::sql_types::HasSqlType<ST>,
    U: diesel::serialize::ToSql<ST, diesel::pg::Pg>,
{
    out.push_sql(", ");
    out.push_bind_param::<ST, U>(value)
}

/// On PostgreSQL, `complete_row_by_row`'s five writes as one statement: the certificate, the
/// job closed with it (only while `owner` holds the lease), its names, the object made current
/// and the issue details. Each would be a round trip of its own, and a completion group runs
/// them one after another. Answers the certificate's id and how many jobs it closed (1, or 0
/// when the lease was lost: the caller then rolls the whole statement back).
///
/// A statement of its own type with a fixed text (the names travel as one array), so diesel
/// keeps it prepared by its type.
struct CompletionOnPostgres<'a> {
    job: &'a Job,
    owner: &'a str,
    c: &'a IssuedCert,
    metadata: &'a str,
}

impl diesel::query_builder::QueryId for CompletionOnPostgres<'_> {
    type QueryId = CompletionOnPostgres<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for CompletionOnPostgres<'_> {
    type SqlType = (diesel::sql_types::BigInt, diesel::sql_types::BigInt);
}

impl RunQueryDsl<diesel::PgConnection> for CompletionOnPostgres<'_> {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for CompletionOnPostgres<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Binary, Nullable, Text, Timestamp};
        let (row, job) = (&self.c.row, self.job);
        out.push_sql(
            "WITH c AS (INSERT INTO certificates (guid, object_id, issuer_ca_id, der, chain_pem, serial, \
             thumbprint, common_name, issuer_dn, not_before, not_after, public_key_sha256, key_enc, job_id, \
             created_at) VALUES (",
        );
        out.push_bind_param::<Text, _>(&row.guid)?;
        comma_bind::<BigInt, _>(&mut out, &job.object_id)?;
        comma_bind::<Nullable<BigInt>, _>(&mut out, &row.issuer_ca_id)?;
        comma_bind::<Binary, _>(&mut out, &row.der)?;
        for text in [&row.chain_pem, &row.serial, &row.thumbprint, &row.common_name, &row.issuer_dn] {
            comma_bind::<Text, _>(&mut out, text)?;
        }
        comma_bind::<Timestamp, _>(&mut out, &row.not_before)?;
        comma_bind::<Timestamp, _>(&mut out, &row.not_after)?;
        comma_bind::<Text, _>(&mut out, &row.public_key_sha256)?;
        comma_bind::<Nullable<Binary>, _>(&mut out, &row.key_enc)?;
        comma_bind::<BigInt, _>(&mut out, &job.id)?;
        comma_bind::<Timestamp, _>(&mut out, &row.created_at)?;
        out.push_sql(
            ") RETURNING id), \
             j AS (UPDATE jobs SET state = 'done', error = NULL, key_enc = NULL, \
             result_cert_id = (SELECT id FROM c), updated_at = ",
        );
        out.push_bind_param::<Timestamp, _>(&row.created_at)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<BigInt, _>(&job.id)?;
        out.push_sql(" AND lease_owner = ");
        out.push_bind_param::<Text, _>(&self.owner)?;
        out.push_sql(
            " AND state = 'running' RETURNING id), \
             n AS (INSERT INTO certificate_names (certificate_id, object_id, name) SELECT c.id, ",
        );
        out.push_bind_param::<BigInt, _>(&job.object_id)?;
        out.push_sql(", name FROM c, UNNEST(");
        out.push_bind_param::<Array<Text>, _>(&self.c.names)?;
        out.push_sql(
            "::text[]) AS name), \
             o AS (UPDATE cert_objects SET current_cert_id = (SELECT id FROM c), state = 'active', \
             pending_job_id = NULL, last_error = NULL, updated_at = ",
        );
        out.push_bind_param::<Timestamp, _>(&row.created_at)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<BigInt, _>(&job.object_id)?;
        out.push_sql(" AND pending_job_id = ");
        out.push_bind_param::<BigInt, _>(&job.id)?;
        out.push_sql(
            " RETURNING id), \
             i AS (INSERT INTO certificate_info (certificate_id, template, ca_name, metadata) SELECT id, ",
        );
        out.push_bind_param::<Nullable<Text>, _>(&self.c.template)?;
        comma_bind::<Text, _>(&mut out, &self.c.ca_name)?;
        comma_bind::<Text, _>(&mut out, &self.metadata)?;
        out.push_sql(" FROM c) SELECT (SELECT id FROM c), (SELECT count(*) FROM j)");
        Ok(())
    }
}

impl Engine {
    /// Records a failure: true when the job was given up (the object is in error).
    fn fail(&self, conn: &mut DbConn, job: &Job, owner: &str, f: &JobFailure) -> Result<bool, diesel::result::Error> {
        let give_up = f.permanent || job.attempts >= self.settings.queue.max_attempts;
        crate::metrics::METRICS.issuance_job(if give_up { "failed" } else { "retry" });
        tracing::warn!(job = job.id, object = job.object_id, error = %f.message, give_up, "issuance failed");
        self.writer.write_tx(conn, |tx| -> Result<bool, diesel::result::Error> {
            let ts = now();
            let owned =
                jobs::table.find(job.id).filter(jobs::lease_owner.eq(owner)).filter(jobs::state.eq(JobState::Running));
            if give_up {
                let n = diesel::update(owned)
                    .set((
                        jobs::state.eq(JobState::Failed),
                        jobs::error.eq(&f.message),
                        jobs::updated_at.eq(ts),
                        jobs::key_enc.eq(None::<Vec<u8>>),
                    ))
                    .execute(tx)?;
                if n == 1 {
                    diesel::update(
                        cert_objects::table.find(job.object_id).filter(cert_objects::pending_job_id.eq(job.id)),
                    )
                    .set((
                        cert_objects::state.eq(ObjectState::Error),
                        cert_objects::last_error.eq(&f.message),
                        cert_objects::updated_at.eq(ts),
                    ))
                    .execute(tx)?;
                    audit_failed_renewal(tx, job, &f.message)?;
                }
                Ok(n == 1)
            } else {
                let backoff = f
                    .retry_after
                    .map(|d| d.as_secs().min(3600) as i64)
                    .unwrap_or_else(|| 2i64.pow(job.attempts.clamp(0, 8) as u32));
                diesel::update(owned)
                    .set((
                        jobs::state.eq(JobState::Queued),
                        jobs::error.eq(&f.message),
                        jobs::run_after.eq(ts + chrono::Duration::seconds(backoff)),
                        jobs::lease_owner.eq(None::<String>),
                        jobs::lease_until.eq(None::<chrono::NaiveDateTime>),
                        jobs::updated_at.eq(ts),
                    ))
                    .execute(tx)?;
                Ok(false)
            }
        })
    }

    /// Revokes a certificate at the upstream CA that issued it; failures retry with backoff up
    /// to `queue.max_attempts` (the revocation here is already recorded and in force).
    fn revoke_upstream(&self, conn: &mut DbConn, job: &Job, owner: &str) -> Result<(), diesel::result::Error> {
        let outcome = (|| -> Result<(), JobFailure> {
            let r: UpstreamRevoke = serde_json::from_str(&job.payload)
                .map_err(|e| JobFailure::permanent(format!("unreadable job payload: {e}")))?;
            let row = crate::ca::upstream::db::find_any(conn, &r.issuer)
                .map_err(|e| JobFailure::transient(e.to_string()))?
                .ok_or_else(|| JobFailure::permanent(format!("issuer {} does not exist", r.issuer)))?;
            let issuer = crate::ca::upstream::UpstreamIssuer::from_row(
                &row,
                &self.master,
                &self.pool,
                self.dns01_propagation_timeout,
            )
            .map_err(JobFailure::permanent)?;
            let (_, der) = crate::ca::upstream::db::issued_by(conn, r.certificate_id)
                .map_err(|e| JobFailure::transient(e.to_string()))?
                .ok_or_else(|| JobFailure::permanent(format!("certificate {} vanished", r.certificate_id)))?;
            let leaf = openssl::x509::X509::from_der(&der).map_err(|e| JobFailure::permanent(e.to_string()))?;
            crate::ca::issuer::Issuer::revoke(&issuer, &leaf, r.reason).map_err(|e| {
                crate::metrics::METRICS.issuer_failure(&row.name, &e.kind);
                JobFailure::from_issuer(e)
            })
        })();
        match outcome {
            Ok(()) => {
                write_tx(conn, None, |tx| Self::close_job(tx, job.id, owner))?;
                tracing::info!(job = job.id, "certificate revoked at the upstream CA");
            }
            Err(f) => {
                self.fail(conn, job, owner, &f)?;
            }
        }
        self.signals.job_finished(job.id);
        Ok(())
    }

    /// Enqueues a revocation at an upstream CA (inside the revoking transaction).
    pub fn enqueue_upstream_revoke(
        c: &mut DbConn,
        object_id: i64,
        r: &UpstreamRevoke,
    ) -> Result<(), diesel::result::Error> {
        let payload = serde_json::to_string(r).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        insert_job(c, KIND_UPSTREAM_REVOKE, object_id, &payload).map(|_| ())
    }

    /// Enqueues an ACME validation job (inside the caller's transaction) and returns its id.
    pub fn enqueue_validation(c: &mut DbConn, payload: &str) -> Result<i64, diesel::result::Error> {
        insert_job(c, KIND_ACME_VALIDATION, 0, payload)
    }

    /// Claims an ACME validation job. Its lease outlasts the validation's hard deadline, so no
    /// heartbeat is needed; a job whose instance died is claimed again when the lease expires.
    pub fn claim_validation(&self, conn: &mut DbConn, owner: &str) -> Result<Option<Job>, diesel::result::Error> {
        let lease = self.settings.acme.validation.timeout_s.max(1) as i64 + 5;
        self.claim(conn, owner, KIND_ACME_VALIDATION, lease)
    }

    /// Closes a claimed job as done, inside the caller's transaction: false when the lease was
    /// lost (another instance owns the job now and will record its own outcome).
    pub fn close_job(tx: &mut DbConn, job_id: i64, owner: &str) -> Result<bool, diesel::result::Error> {
        let n = diesel::update(
            jobs::table.find(job_id).filter(jobs::lease_owner.eq(owner)).filter(jobs::state.eq(JobState::Running)),
        )
        .set((jobs::state.eq(JobState::Done), jobs::updated_at.eq(now())))
        .execute(tx)?;
        Ok(n == 1)
    }

    /// Where a job stands.
    pub fn job_outcome(&self, conn: &mut DbConn, job_id: i64) -> Result<JobOutcome, super::RenewError> {
        let job = inventory::job(conn, job_id)?
            .ok_or_else(|| super::RenewError::Internal(format!("job {job_id} vanished")))?;
        Ok(match job.state {
            JobState::Done => JobOutcome::Done(job.result_cert_id),
            JobState::Failed => JobOutcome::Failed(job.error.unwrap_or_default()),
            _ => JobOutcome::Pending,
        })
    }

    /// Waits up to `timeout` for a job to finish: woken by this process's workers, and polling
    /// the row so that a job finished by another instance is seen too.
    pub async fn wait_for_job(
        self: &Arc<Self>,
        job_id: i64,
        timeout: Duration,
    ) -> Result<JobOutcome, super::RenewError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Read the row first, then on a poll tick or when this process finished the job.
        let mut look = true;
        let mut next_poll = tokio::time::Instant::now();
        // Set once the row was read after this process finished the job (a lost lease: another
        // worker owns it now), so that only polling is left.
        let mut read_after_finish = false;
        loop {
            let notified = self.signals.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let finished = !read_after_finish && self.signals.finished_here(job_id);
            if !look && !finished {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(JobOutcome::Pending);
                }
                tokio::select! {
                    _ = &mut notified => {},
                    _ = tokio::time::sleep_until(next_poll.min(deadline)) => { look = true; },
                }
                continue;
            }
            look = false;
            read_after_finish = finished;
            next_poll = tokio::time::Instant::now() + Duration::from_millis(250);
            let engine = self.clone();
            let outcome = tokio::task::spawn_blocking(move || -> Result<JobOutcome, super::RenewError> {
                let mut conn = engine.pool.get()?;
                engine.job_outcome(&mut conn, job_id)
            })
            .await
            .map_err(|e| super::RenewError::Internal(e.to_string()))??;
            if outcome != JobOutcome::Pending {
                return Ok(outcome);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(JobOutcome::Pending);
            }
        }
    }
}

/// How a request that waited for its job ended (`Engine::accept_then_wait`).
#[derive(Debug)]
pub enum Settled<R> {
    /// Issued: what `finish` made of the new certificate.
    Issued(R),
    /// Given up, with the job's error.
    Failed(String),
    /// Still queued or running when the wait ended.
    Pending,
}

impl Engine {
    /// A request that waits up to `timeout` for the job it enqueues. `accept` runs on a
    /// blocking thread and returns what the caller answers with plus the accepted job; a job
    /// enqueued leased to the request (`Accepted::inline`) then runs on that same thread and
    /// connection, and `finish` renders its certificate there: one blocking hop. Any other job is
    /// waited for as `wait_for_job` does, and `finish` runs once it is issued. The wait is bounded
    /// whichever way the job runs: a job still running at the deadline completes on its own.
    pub async fn accept_then_wait<T, R, E, A, F>(
        self: &Arc<Self>,
        timeout: Duration,
        accept: A,
        finish: F,
    ) -> Result<(T, Settled<R>), E>
    where
        T: Clone + Send + 'static,
        R: Send + 'static,
        E: From<super::RenewError> + Send + 'static,
        A: FnOnce(&Engine, &mut DbConn) -> Result<(T, super::renew::Accepted), E> + Send + 'static,
        F: FnOnce(&Engine, &mut DbConn, &T, i64) -> Result<R, E> + Clone + Send + 'static,
    {
        let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel::<(T, i64)>();
        let engine = self.clone();
        let span = tracing::Span::current();
        let finish_here = finish.clone();
        let mut work = tokio::task::spawn_blocking(move || {
            span.in_scope(|| -> Result<Option<Settled<R>>, E> {
                let mut c = engine.pool.get().map_err(|e| E::from(super::RenewError::from(e)))?;
                let (answer, accepted) = accept(&engine, &mut c)?;
                let job_id = accepted.job_id;
                let inline = accepted.inline;
                let kept = answer.clone();
                if accepted_tx.send((answer, job_id)).is_err() {
                    // The caller is gone; a leased job still runs: it was accepted.
                    tracing::debug!(job = job_id, "the waiting request went away");
                }
                let Some(run) = inline else { return Ok(None) };
                match engine.run_leased(&mut c, job_id, &run.lease) {
                    Ok(JobOutcome::Done(Some(cert_id))) => {
                        Ok(Some(Settled::Issued(finish_here(&engine, &mut c, &kept, cert_id)?)))
                    }
                    Ok(JobOutcome::Failed(m)) => Ok(Some(Settled::Failed(m))),
                    Ok(_) => Ok(None),
                    Err(e) => {
                        // The job stays leased; a worker takes it when the lease expires.
                        tracing::warn!(job = job_id, error = %e, "running the job here failed; the workers will");
                        Ok(None)
                    }
                }
            })
        });
        let deadline = tokio::time::Instant::now() + timeout;
        let (answer, job_id) = match accepted_rx.await {
            Ok(v) => v,
            Err(_) => {
                // Not accepted: the refusal (or a panic) is in the thread's result.
                return match (&mut work).await {
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(_)) => {
                        Err(E::from(super::RenewError::Internal("the request ended without an answer".into())))
                    }
                    Err(e) => Err(E::from(super::RenewError::Internal(e.to_string()))),
                };
            }
        };
        match tokio::time::timeout_at(deadline, &mut work).await {
            Err(_) => return Ok((answer, Settled::Pending)),
            Ok(Ok(Ok(Some(settled)))) => return Ok((answer, settled)),
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Ok(Ok(None))) => {}
            Ok(Err(e)) => tracing::warn!(job = job_id, error = %e, "the thread running the job failed"),
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.wait_for_job(job_id, left).await.map_err(E::from)? {
            JobOutcome::Done(Some(cert_id)) => {
                let engine = self.clone();
                let kept = answer.clone();
                let r = tokio::task::spawn_blocking(move || -> Result<R, E> {
                    let mut c = engine.pool.get().map_err(|e| E::from(super::RenewError::from(e)))?;
                    finish(&engine, &mut c, &kept, cert_id)
                })
                .await
                .map_err(|e| E::from(super::RenewError::Internal(e.to_string())))??;
                Ok((answer, Settled::Issued(r)))
            }
            JobOutcome::Failed(m) => Ok((answer, Settled::Failed(m))),
            JobOutcome::Done(None) | JobOutcome::Pending => Ok((answer, Settled::Pending)),
        }
    }
}

/// Inserts a queued job of `kind`, due now (inside the caller's transaction); returns its id.
pub fn insert_job(c: &mut DbConn, kind: &str, object_id: i64, payload: &str) -> Result<i64, diesel::result::Error> {
    insert_job_leased(c, kind, object_id, payload, None)
}

/// `insert_job`, or with a lease: the job is inserted already claimed (running, first attempt)
/// by the request that will run it.
pub fn insert_job_leased(
    c: &mut DbConn,
    kind: &str,
    object_id: i64,
    payload: &str,
    lease: Option<&InlineLease>,
) -> Result<i64, diesel::result::Error> {
    let guid = new_record_guid();
    let new_job = new_job(&guid, kind, object_id, payload, lease, now());
    // Every renewal inserts its job under the SQLite writer lock: on the concrete connection.
    crate::on_backend!(c, |c| Prepared(diesel::insert_into(jobs::table).values(&new_job).returning(jobs::all_columns))
        .get_result::<Job>(c))
    .map(|job| {
        let id = job.id;
        if let Some(l) = lease {
            *l.inserted.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        }
        id
    })
}

/// On PostgreSQL, a renewal's enqueue as one statement, outside any transaction (a statement is
/// atomic on its own): the object is marked processing, while still as the renewal read it
/// (`seen`) and not already processing, and only then its job inserted (leased to the request
/// when `lease`) and the request's CSR stored beside it. In a transaction these are five round
/// trips (BEGIN, three statements, COMMIT). `Ok(None)` when the object changed or is being
/// renewed: nothing was written. Otherwise the job's id and the time written.
pub fn enqueue_renewal_at_once(
    pg: &mut diesel::PgConnection,
    object_id: i64,
    seen: chrono::NaiveDateTime,
    payload: &str,
    lease: Option<&InlineLease>,
    csr_der: Option<&[u8]>,
) -> Result<Option<(i64, chrono::NaiveDateTime)>, diesel::result::Error> {
    let ts = now().trunc_subsecs(6);
    let guid = new_record_guid();
    let job = new_job(&guid, KIND_ISSUE, object_id, payload, lease, ts);
    let Some(id) = RenewalEnqueueOnPostgres { job: &job, seen, csr_der }.load::<i64>(pg)?.first().copied() else {
        return Ok(None);
    };
    if let Some(l) = lease {
        // The row as inserted, for `run_leased` (as `insert_job_leased` keeps it).
        *l.inserted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job {
            id,
            guid: job.guid.to_string(),
            kind: job.kind.to_string(),
            object_id,
            payload: job.payload.to_string(),
            state: job.state,
            attempts: job.attempts,
            run_after: job.run_after,
            lease_owner: job.lease_owner.map(str::to_string),
            lease_until: job.lease_until,
            result_cert_id: None,
            error: None,
            created_at: job.created_at,
            updated_at: job.updated_at,
            issuer_state: None,
            key_enc: None,
        });
    }
    Ok(Some((id, ts)))
}

/// A new job of `kind` due at `ts`: queued, or running under `lease` (its first attempt).
fn new_job<'a>(
    guid: &'a str,
    kind: &'a str,
    object_id: i64,
    payload: &'a str,
    lease: Option<&'a InlineLease>,
    ts: chrono::NaiveDateTime,
) -> crate::db::models::NewJob<'a> {
    crate::db::models::NewJob {
        guid,
        kind,
        object_id,
        payload,
        state: if lease.is_some() { JobState::Running } else { JobState::Queued },
        attempts: if lease.is_some() { 1 } else { 0 },
        run_after: ts,
        created_at: ts,
        updated_at: ts,
        lease_owner: lease.map(|l| l.owner.as_str()),
        lease_until: lease.map(|l| ts + chrono::Duration::seconds(l.lease_secs)),
    }
}

/// The statement of [`enqueue_renewal_at_once`], of its own type with a fixed text, so that
/// diesel keeps it prepared by its type. The job's id is drawn from its sequence by the update
/// that claims the object, so nothing is inserted when the object is not claimed.
struct RenewalEnqueueOnPostgres<'a> {
    job: &'a crate::db::models::NewJob<'a>,
    seen: chrono::NaiveDateTime,
    csr_der: Option<&'a [u8]>,
}

impl diesel::query_builder::QueryId for RenewalEnqueueOnPostgres<'_> {
    type QueryId = RenewalEnqueueOnPostgres<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for RenewalEnqueueOnPostgres<'_> {
    type SqlType = diesel::sql_types::BigInt;
}

impl RunQueryDsl<diesel::PgConnection> for RenewalEnqueueOnPostgres<'_> {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for RenewalEnqueueOnPostgres<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text, Timestamp};
        let job = self.job;
        out.push_sql(
            "WITH o AS (UPDATE cert_objects SET state = 'processing', \
             pending_job_id = nextval(pg_get_serial_sequence('jobs', 'id')), last_error = NULL, updated_at = ",
        );
        out.push_bind_param::<Timestamp, _>(&job.updated_at)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<BigInt, _>(&job.object_id)?;
        out.push_sql(" AND state <> 'processing' AND updated_at = ");
        out.push_bind_param::<Timestamp, _>(&self.seen)?;
        out.push_sql(
            " RETURNING pending_job_id), \
             j AS (INSERT INTO jobs (id, guid, kind, object_id, payload, state, attempts, run_after, created_at, \
             updated_at, lease_owner, lease_until) SELECT pending_job_id, ",
        );
        out.push_bind_param::<Text, _>(&job.guid)?;
        comma_bind::<Text, _>(&mut out, &job.kind)?;
        comma_bind::<BigInt, _>(&mut out, &job.object_id)?;
        comma_bind::<Text, _>(&mut out, &job.payload)?;
        comma_bind::<Text, _>(&mut out, &job.state)?;
        comma_bind::<Integer, _>(&mut out, &job.attempts)?;
        comma_bind::<Timestamp, _>(&mut out, &job.run_after)?;
        comma_bind::<Timestamp, _>(&mut out, &job.created_at)?;
        comma_bind::<Timestamp, _>(&mut out, &job.updated_at)?;
        comma_bind::<Nullable<Text>, _>(&mut out, &job.lease_owner)?;
        comma_bind::<Nullable<Timestamp>, _>(&mut out, &job.lease_until)?;
        out.push_sql(
            " FROM o RETURNING id), \
             c AS (INSERT INTO csrs (object_id, job_id, der, created_at) SELECT ",
        );
        out.push_bind_param::<BigInt, _>(&job.object_id)?;
        out.push_sql(", id, ");
        out.push_bind_param::<Nullable<Binary>, _>(&self.csr_der)?;
        comma_bind::<Timestamp, _>(&mut out, &job.created_at)?;
        out.push_sql(" FROM j WHERE ");
        out.push_bind_param::<Nullable<Binary>, _>(&self.csr_der)?;
        out.push_sql("::bytea IS NOT NULL) SELECT id FROM j");
        Ok(())
    }
}

/// A renewal accepted earlier whose issuance failed for good: the audit trail says so (its
/// acceptance was recorded as a success by whoever asked for it).
fn audit_failed_renewal(tx: &mut DbConn, job: &Job, message: &str) -> Result<(), diesel::result::Error> {
    let reason = serde_json::from_str::<IssuePayload>(&job.payload).map(|p| p.reason).unwrap_or_default();
    if reason != "renew" {
        return Ok(());
    }
    let dn: String = cert_objects::table.find(job.object_id).select(cert_objects::dn).first(tx)?;
    super::audit::record(
        tx,
        &super::audit::Entry {
            actor: "worker".into(),
            action: super::audit::action::RENEW.into(),
            target: dn,
            certificate_id: None,
            outcome: "failure".into(),
            detail: format!("issuance of job {} failed: {message}", job.id),
            source: "queue".into(),
            request_id: None,
        },
    )
}

pub struct IssuedCert {
    leaf: openssl::x509::X509,
    /// The certificate's row as it is inserted (`id` is the database's).
    row: CertVersion,
    /// The names recorded for search (`inventory::names_of_cert`).
    names: Vec<String>,
    ca_name: String,
    template: Option<String>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
    store_ids: Vec<i64>,
    /// The ACME order the job finalizes, made `valid` with the certificate.
    acme_order: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{EcCurve, KeySpec, SanSet};
    use crate::engine::policy;
    use crate::engine::renew::{EnrollRequest, SubjectSpec};

    fn engine() -> Engine {
        let pool = crate::db::build_pool(":memory:", 1).expect("in-memory SQLite");
        let master = crate::secrets::MasterKey::generate().expect("master key");
        let engine = Engine::new(pool, crate::db::Backend::Sqlite, master, crate::settings::Settings::default())
            .expect("engine");
        let mut c = engine.pool.get().expect("connection");
        crate::db::run_migrations(&mut c).expect("migrations");
        engine.ca.initialise(&mut c, KeySpec::Ec(EcCurve::P256), "Queue Tests").expect("CA");
        policy::ensure_folder(&mut c, policy::ROOT_DN).expect("root folder");
        drop(c);
        engine
    }

    /// A claimed, issued job waiting for its completion.
    fn issued(e: &Engine, c: &mut DbConn, cn: &str, ticket: u64) -> Completion {
        let req = EnrollRequest {
            policy_dn: policy::ROOT_DN.into(),
            object_name: Some(cn.into()),
            csr: None,
            subject: SubjectSpec { common_name: Some(cn.into()), ..Default::default() },
            sans: SanSet { dns: vec![cn.into()], ..Default::default() },
            key_spec: Some(KeySpec::Ec(EcCurve::P256)),
            management_type: None,
            overrides: None,
            issue_as: None,
            new_object_only: false,
        };
        e.enroll(c, &req).expect("enroll");
        let job = e.claim(c, "queue-test", KIND_ISSUE, 60).expect("claim").expect("a job");
        let cert = e.issue(c, &job, "queue-test", None).expect("issued");
        Completion { ticket, job, owner: "queue-test".into(), issued: cert }
    }

    fn job_state(c: &mut DbConn, id: i64) -> (JobState, Option<i64>) {
        jobs::table.find(id).select((jobs::state, jobs::result_cert_id)).first(c).expect("job")
    }

    #[test]
    fn a_completed_version_is_kept_exactly_as_the_database_has_it() {
        let e = engine();
        let mut c = e.pool.get().expect("connection");
        let g = issued(&e, &mut c, "kept.example.com", 1);
        let (job, issued) = (g.job.clone(), g.issued);
        let version = e.complete(&mut c, &job, "queue-test", issued).expect("complete").expect("ours");
        e.recent_versions.remember(version.clone());
        let stored = super::super::lookup::version(&mut c, version.id).expect("stored");
        assert_eq!(format!("{stored:?}"), format!("{version:?}"));
        let kept = e.recent_versions.kept(version.id).expect("kept");
        assert_eq!(format!("{kept:?}"), format!("{stored:?}"));
        assert!(e.recent_versions.kept(version.id + 1).is_none());
    }

    #[test]
    fn a_failed_completion_leaves_the_rest_of_its_group_committed() {
        let e = engine();
        let mut c = e.pool.get().expect("connection");
        let a = issued(&e, &mut c, "a.example.com", 1);
        let mut b = issued(&e, &mut c, "b.example.com", 2);
        let d = issued(&e, &mut c, "d.example.com", 3);
        // b's certificate cannot be stored (no such object: the foreign key refuses it), after its
        // job row was already updated: the group's first try fails as a whole.
        let b_id = b.job.id;
        b.job.object_id = i64::MAX;
        let results = commit_group(&WriterConn::default(), &mut c, &[a, b, d]);
        assert_eq!(results.len(), 3);
        assert!(matches!(results[0], Ok(Some(_))), "{:?}", results[0]);
        assert!(results[1].is_err(), "{:?}", results[1]);
        assert!(matches!(results[2], Ok(Some(_))), "{:?}", results[2]);
        // b's job is untouched (still running under its lease, to be run again); the others are done.
        assert_eq!(job_state(&mut c, b_id), (JobState::Running, None));
        let done: i64 = jobs::table.filter(jobs::state.eq(JobState::Done)).count().get_result(&mut **c).expect("count");
        assert_eq!(done, 2);
        let certs: i64 = certificates::table.count().get_result(&mut **c).expect("count");
        assert_eq!(certs, 2);
    }

    #[test]
    fn a_group_without_failures_commits_every_completion() {
        let e = engine();
        let mut c = e.pool.get().expect("connection");
        let group: Vec<Completion> = (0..3).map(|i| issued(&e, &mut c, &format!("w{i}.example.com"), i)).collect();
        let ids: Vec<i64> = group.iter().map(|g| g.job.id).collect();
        let results = commit_group(&WriterConn::default(), &mut c, &group);
        for (id, r) in ids.iter().zip(&results) {
            let cert = r.clone().expect("completed").expect("a certificate");
            assert_eq!(job_state(&mut c, *id), (JobState::Done, Some(cert)));
        }
        // A completion whose lease is gone (already completed) writes nothing and fails nothing.
        let again = commit_group(&WriterConn::default(), &mut c, &group[..1]);
        assert_eq!(again, vec![Ok(None)]);
        let certs: i64 = certificates::table.count().get_result(&mut **c).expect("count");
        assert_eq!(certs, 3);
    }

    #[test]
    fn a_lost_lease_in_a_group_keeps_no_certificate_and_fails_nothing() {
        let e = engine();
        let mut c = e.pool.get().expect("connection");
        let first = issued(&e, &mut c, "l0.example.com", 0);
        assert!(matches!(
            commit_group(&WriterConn::default(), &mut c, std::slice::from_ref(&first))[..],
            [Ok(Some(_))]
        ));
        // `first` again (its job is done: the lease is gone) between two that still hold theirs.
        let a = issued(&e, &mut c, "l1.example.com", 1);
        let b = issued(&e, &mut c, "l2.example.com", 2);
        let (a_id, b_id) = (a.job.id, b.job.id);
        let results = commit_group(&WriterConn::default(), &mut c, &[a, first, b]);
        assert!(matches!(results[0], Ok(Some(_))), "{:?}", results[0]);
        assert_eq!(results[1], Ok(None));
        assert!(matches!(results[2], Ok(Some(_))), "{:?}", results[2]);
        assert_eq!(job_state(&mut c, a_id).0, JobState::Done);
        assert_eq!(job_state(&mut c, b_id).0, JobState::Done);
        // The lost completion's certificate was inserted before its job was found taken, and undone.
        let certs: i64 = certificates::table.count().get_result(&mut **c).expect("count");
        assert_eq!(certs, 3);
    }
}
