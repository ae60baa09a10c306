//! Challenge validation as durable queue jobs. Answering a challenge enqueues a job
//! (`jobs.kind = acme-validation`) in the transaction that makes the challenge `processing`;
//! each instance runs a dispatcher that claims such jobs while it has a free slot
//! (`acme.validation.concurrency`), validates over the network holding no database connection,
//! and records the outcome together with closing the job. An instance that dies mid-validation
//! leaves a leased job: the queue hands it out again once the lease (the validation's deadline
//! plus a margin) expires, so every challenge ends `valid` or `invalid` — no resume code.
use std::sync::Arc;
use std::time::Duration;

use super::db::validation as rows;
use super::validate::{self, ChallengeKind, Failure, FailureKind, Target};
use crate::db::models::Job;
use crate::db::write_tx;
use crate::engine::Engine;

/// What one validation needs, read before the network part.
#[derive(Debug)]
struct Task {
    job: Job,
    challenge_id: i64,
    authz_id: i64,
    kind: ChallengeKind,
    identifier: String,
    token: String,
    thumbprint: String,
}

/// Starts this instance's validation dispatcher on the current tokio runtime (with its IO and
/// time drivers), after dropping expired consumed nonces and day-old dry-run orders.
pub fn start(engine: Arc<Engine>) {
    let owner = format!("{}-{}-va", std::process::id(), &crate::db::new_guid()[..8]);
    let e = engine.clone();
    tokio::task::spawn_blocking(move || {
        let purged = e.pool.get().map_err(|e| e.to_string()).and_then(|mut c| {
            super::db::accounts::purge_nonces(&mut c).map_err(|e| e.to_string())?;
            super::db::dry_run::purge(&mut c).map_err(|e| e.to_string())
        });
        if let Err(err) = purged {
            tracing::warn!("purging expired ACME nonces and dry-run orders: {err}");
        }
    });
    tokio::spawn(dispatch(engine, owner));
}

async fn dispatch(engine: Arc<Engine>, owner: String) {
    let slots = Arc::new(tokio::sync::Semaphore::new(engine.settings.acme.validation.concurrency.max(1)));
    let poll = Duration::from_millis(engine.settings.queue.poll_ms.max(10));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (e, o) = (engine.clone(), owner.clone());
        let claimed = tokio::task::spawn_blocking(move || claim(&e, &o)).await;
        match claimed {
            Ok(Ok(Some(task))) => {
                let (e, o) = (engine.clone(), owner.clone());
                tokio::spawn(async move {
                    run(e, o, task).await;
                    drop(slot);
                });
            }
            Ok(Ok(None)) => {
                drop(slot);
                // Woken by an answer on this instance; polling finds other instances' jobs and
                // expired leases.
                let _ = tokio::time::timeout(poll, engine.signals.validation_enqueued.notified()).await;
            }
            other => {
                drop(slot);
                tracing::warn!("validation dispatcher: {other:?}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Claims one validation job and reads what it needs. A job whose challenge is gone (its order
/// was purged) is closed at once.
fn claim(engine: &Engine, owner: &str) -> Result<Option<Task>, String> {
    let mut c = engine.pool.get().map_err(|e| e.to_string())?;
    loop {
        let Some(job) = engine.claim_validation(&mut c, owner).map_err(|e| e.to_string())? else { return Ok(None) };
        let challenge_id = serde_json::from_str::<serde_json::Value>(&job.payload)
            .ok()
            .and_then(|v| v.get("challenge_id").and_then(|i| i.as_i64()));
        let found = match challenge_id {
            Some(id) => rows::task(&mut c, id).map_err(|e| e.to_string())?,
            None => None,
        };
        let Some((ch, identifier, thumbprint)) = found else {
            tracing::warn!(job = job.id, "validation job without a challenge; closed");
            Engine::close_job(&mut c, job.id, owner).map_err(|e| e.to_string())?;
            continue;
        };
        let Some(kind) = ChallengeKind::parse(&ch.kind) else {
            record(engine, owner, &job, ch.id, ch.authz_id, Err(internal(format!("unknown type {}", ch.kind))))?;
            continue;
        };
        return Ok(Some(Task {
            job,
            challenge_id: ch.id,
            authz_id: ch.authz_id,
            kind,
            identifier,
            token: ch.token,
            thumbprint,
        }));
    }
}

fn internal(detail: String) -> Failure {
    Failure { kind: FailureKind::ServerInternal, detail }
}

async fn run(engine: Arc<Engine>, owner: String, t: Task) {
    let settings = &engine.settings.acme.validation;
    let outcome = if t.job.attempts > engine.settings.queue.max_attempts {
        // Claimed again after its instance died each time: give up instead of looping.
        Err(internal(format!("the validation was interrupted {} times", t.job.attempts - 1)))
    } else {
        let key_authorization = format!("{}.{}", t.token, t.thumbprint);
        let target =
            Target { kind: t.kind, identifier: &t.identifier, token: &t.token, key_authorization: &key_authorization };
        // `validate` keeps its own deadline; this one only guards against a bug in it.
        let guard = Duration::from_secs(settings.timeout_s.max(1) + 2);
        match tokio::time::timeout(guard, validate::validate(settings, &target)).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                kind: FailureKind::Connection,
                detail: format!("the validation did not finish within {} s", settings.timeout_s.max(1)),
            }),
        }
    };
    let ok = outcome.is_ok();
    let (kind, identifier) = (t.kind, t.identifier.clone());
    let e = engine.clone();
    let recorded =
        tokio::task::spawn_blocking(move || record(&e, &owner, &t.job, t.challenge_id, t.authz_id, outcome)).await;
    match recorded {
        Ok(Ok(())) => tracing::info!(%identifier, kind = kind.as_str(), ok, "challenge validation"),
        // The job stays leased: it is validated again when the lease expires.
        other => tracing::error!(%identifier, kind = kind.as_str(), "recording the validation failed: {other:?}"),
    }
}

/// Records the outcome and closes the job in one transaction — only while the lease is ours
/// (otherwise another instance took the job over and records its own outcome).
fn record(
    engine: &Engine,
    owner: &str,
    job: &Job,
    challenge_id: i64,
    authz_id: i64,
    outcome: Result<(), Failure>,
) -> Result<(), String> {
    let mut c = engine.pool.get().map_err(|e| e.to_string())?;
    write_tx(&mut c, None, |tx| -> Result<(), crate::db::DbError> {
        if Engine::close_job(tx, job.id, owner)? {
            rows::record(tx, challenge_id, authz_id, outcome.err().map(|f| f.encode()).as_deref())?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())
}
