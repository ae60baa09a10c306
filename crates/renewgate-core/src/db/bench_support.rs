//! The SQL of `renewgate bench` (the load benchmark in the binary): a scratch PostgreSQL
//! database per run, a connection beside the gateway's, the inventory filler, the query plans
//! of the request-path lookups and the after-run consistency counts. Not used by the gateway.
use diesel::prelude::*;

use super::DbConn;

/// Creates the database `name` on the PostgreSQL server `admin_url` names.
pub fn create_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut c = diesel::pg::PgConnection::establish(admin_url)
        .map_err(|e| anyhow::anyhow!("PostgreSQL at {admin_url}: {e}"))?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut c)?;
    Ok(())
}

/// Drops the database `name` on the server `admin_url` names (connections to it are ended).
pub fn drop_postgres_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut c = diesel::pg::PgConnection::establish(admin_url)?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut c)?;
    Ok(())
}

/// Opens a connection to a deployment's database; on SQLite it waits longer for the writer
/// lock than the gateway does (the gateway is busy under load).
pub fn open(url: &str) -> anyhow::Result<DbConn> {
    let mut c = super::establish(url)?;
    if let DbConn::Sqlite(s) = &mut c {
        diesel::sql_query("PRAGMA busy_timeout = 30000").execute(s)?;
    }
    Ok(c)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Runs a query whose one row has one BIGINT column `n`.
pub fn count(c: &mut DbConn, sql: &str) -> anyhow::Result<i64> {
    Ok(match c {
        DbConn::Sqlite(s) => diesel::sql_query(sql).get_result::<Count>(s)?.n,
        DbConn::Postgresql(p) => diesel::sql_query(sql).get_result::<Count>(p)?.n,
    })
}

/// Runs a statement; returns the number of rows it changed.
pub fn exec(c: &mut DbConn, sql: &str) -> anyhow::Result<usize> {
    Ok(match c {
        DbConn::Sqlite(s) => diesel::sql_query(sql).execute(s)?,
        DbConn::Postgresql(p) => diesel::sql_query(sql).execute(p)?,
    })
}

#[derive(QueryableByName)]
struct SqlitePlanRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

#[derive(QueryableByName)]
struct PgPlanRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    plan: String,
}

/// The query plan of `sql` (SQLite `EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN`), one line per step.
pub fn explain(c: &mut DbConn, sql: &str) -> anyhow::Result<Vec<String>> {
    Ok(match c {
        DbConn::Sqlite(s) => diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load::<SqlitePlanRow>(s)?
            .into_iter()
            .map(|r| r.detail)
            .collect(),
        DbConn::Postgresql(p) => {
            // EXPLAIN's one column is named "QUERY PLAN"; a function gives it a usable name.
            diesel::sql_query(
                "CREATE OR REPLACE FUNCTION pg_temp.bench_explain(q text) RETURNS SETOF text LANGUAGE plpgsql AS \
                 $$ DECLARE r text; BEGIN FOR r IN EXECUTE 'EXPLAIN ' || q LOOP RETURN NEXT r; END LOOP; END $$",
            )
            .execute(p)?;
            diesel::sql_query("SELECT plan FROM pg_temp.bench_explain($1) AS plan")
                .bind::<diesel::sql_types::Text, _>(sql)
                .load::<PgPlanRow>(p)?
                .into_iter()
                .map(|r| r.plan)
                .collect()
        }
    })
}

/// The id of the first certificate object (the template the inventory filler clones).
pub fn first_object_id(c: &mut DbConn) -> anyhow::Result<i64> {
    count(c, "SELECT MIN(id) AS n FROM cert_objects")
}

#[derive(QueryableByName)]
struct SerialRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    serial: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    thumbprint: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// The current certificate's serial and thumbprint of object `id`, and the object's name.
pub fn current_serial_thumbprint(c: &mut DbConn, id: i64) -> anyhow::Result<(String, String, String)> {
    let sql = format!(
        "SELECT certificates.serial AS serial, certificates.thumbprint AS thumbprint, cert_objects.name AS name \
         FROM cert_objects JOIN certificates ON certificates.id = cert_objects.current_cert_id WHERE cert_objects.id = {id}"
    );
    let r = match c {
        DbConn::Sqlite(s) => diesel::sql_query(sql).get_result::<SerialRow>(s)?,
        DbConn::Postgresql(p) => diesel::sql_query(sql).get_result::<SerialRow>(p)?,
    };
    Ok((r.serial, r.thumbprint, r.name))
}

/// How many certificate objects the database holds.
pub fn object_count(c: &mut DbConn) -> anyhow::Result<i64> {
    count(c, "SELECT COUNT(*) AS n FROM cert_objects")
}

/// Clones the object `tmpl` `extra` times into the policy folder `fill` (distinct DN, GUID,
/// serial, thumbprint, key hash, and a name in `certificate_names`), with a certificate and a
/// finished job each, in batches of 100,000 objects; `progress(done)` after each batch. The
/// folder must exist.
pub fn clone_inventory(
    c: &mut DbConn,
    tmpl: i64,
    fill: &str,
    extra: usize,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<()> {
    let pg = matches!(c, DbConn::Postgresql(_));
    let fill = fill.replace('\'', "''");
    let series = |n: usize| {
        if pg {
            format!("(SELECT generate_series(1, {n}) AS i) s")
        } else {
            format!("(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {n}) SELECT i FROM r) s")
        }
    };
    let cat = |a: &str, b: &str| format!("({a} || {b})");
    let text = |x: &str| format!("CAST({x} AS TEXT)");
    // Upper-case hex of `x`, `w` digits, as the gateway stores serials and thumbprints.
    let hex = |x: &str, w: usize| {
        if pg { format!("upper(lpad(to_hex({x}), {w}, '0'))") } else { format!("printf('%0{w}X', {x})") }
    };
    let batch = 100_000usize;
    let mut done = 0usize;
    while done < extra {
        let k = batch.min(extra - done);
        let off = done;
        let idx = format!("(s.i + {off})");
        exec(
            c,
            &format!(
                "INSERT INTO cert_objects (guid, dn, dn_lower, policy_dn, name, state, disabled, management_type, csr_origin, key_spec, created_at, updated_at) \
             SELECT {guid}, {dn}, lower({dn}), '{fill}', {name}, state, disabled, management_type, csr_origin, key_spec, created_at, updated_at \
             FROM {series} CROSS JOIN (SELECT * FROM cert_objects WHERE id = {tmpl}) t",
                guid = cat("'fill-'", &text(&idx)),
                dn = cat(&format!("'{fill}\\inv-'"), &text(&idx)),
                name = cat("'inv-'", &text(&idx)),
                series = series(k),
            ),
        )?;
        done += k;
        progress(done);
    }
    // One certificate and one finished job per clone.
    exec(
        c,
        &format!(
            "INSERT INTO jobs (guid, kind, object_id, payload, state, attempts, run_after, created_at, updated_at) \
         SELECT {guid}, j.kind, o.id, '{{}}', 'done', 1, j.run_after, j.created_at, j.updated_at \
         FROM cert_objects o CROSS JOIN (SELECT * FROM jobs WHERE object_id = {tmpl} ORDER BY id LIMIT 1) j \
         WHERE o.policy_dn = '{fill}'",
            guid = cat("'fill-job-'", &text("o.id")),
        ),
    )?;
    exec(
        c,
        &format!(
            "INSERT INTO certificates (guid, object_id, issuer_ca_id, der, chain_pem, serial, thumbprint, common_name, issuer_dn, not_before, not_after, public_key_sha256, key_enc, job_id, created_at) \
         SELECT {guid}, o.id, t.issuer_ca_id, t.der, t.chain_pem, {serial}, {tp}, t.common_name, t.issuer_dn, t.not_before, t.not_after, {pk}, NULL, NULL, t.created_at \
         FROM cert_objects o CROSS JOIN (SELECT * FROM certificates WHERE object_id = {tmpl} ORDER BY id LIMIT 1) t \
         WHERE o.policy_dn = '{fill}'",
            guid = cat("'fill-cert-'", &text("o.id")),
            // Distinct per clone and shaped like real values (a 40-hex thumbprint; a serial of 20
            // bytes), so the console's exact searches find one row.
            serial = cat("'5E'", &hex("o.id", 38)),
            tp = cat("'F'", &hex("o.id", 39)),
            pk = cat("'fill'", &hex("o.id", 40)),
        ),
    )?;
    // The names the console searches (the gateway indexes them at issuance; the clones bypass
    // it, and the start-up backfill has already run): one per clone, from its object name.
    exec(
        c,
        &format!(
            "INSERT INTO certificate_names (certificate_id, object_id, name) \
             SELECT certificates.id, o.id, {name} FROM cert_objects o \
             JOIN certificates ON certificates.object_id = o.id \
             WHERE o.policy_dn = '{fill}'",
            name = cat("lower(o.name)", "'.fill.bench.example'"),
        ),
    )?;
    // Statistics first: the planner must know the new rows are there (a join, not a scan per row).
    exec(c, "ANALYZE")?;
    exec(
        c,
        &format!(
            "UPDATE cert_objects SET current_cert_id = certificates.id FROM certificates \
             WHERE certificates.object_id = cert_objects.id AND cert_objects.policy_dn = '{fill}'"
        ),
    )?;
    exec(c, "ANALYZE")?;
    Ok(())
}

/// EXPLAIN of the lookups a renewal makes (by DN, thumbprint, serial, CMSID, key hash; the job
/// claim): `each(what, plan)` per lookup, in order. `dn` (any case) and `thumbprint` name an
/// existing object.
pub fn request_path_plans(
    c: &mut DbConn,
    dn: &str,
    thumbprint: &str,
    mut each: impl FnMut(&'static str, &[String]),
) -> anyhow::Result<()> {
    let dn = dn.to_lowercase().replace('\'', "''");
    let tp = thumbprint;
    let queries = [
        ("object by DN", format!("SELECT * FROM cert_objects WHERE dn_lower = '{dn}'")),
        ("object by GUID", "SELECT * FROM cert_objects WHERE guid = 'x'".to_string()),
        ("certificate by id (CMSID, current version)", "SELECT * FROM certificates WHERE id = 5".to_string()),
        ("certificate by thumbprint", format!("SELECT * FROM certificates WHERE thumbprint = '{tp}'")),
        ("certificate by serial", "SELECT * FROM certificates WHERE serial = '01AB'".to_string()),
        (
            "key reuse check",
            "SELECT COUNT(*) FROM certificates WHERE object_id = 5 AND public_key_sha256 = 'x'".to_string(),
        ),
        (
            "job claim",
            "SELECT id FROM jobs WHERE (state = 'queued' AND run_after <= '2030-01-01') OR (state = 'running' AND lease_until < '2030-01-01') ORDER BY id LIMIT 1"
                .to_string(),
        ),
        ("job by id", "SELECT * FROM jobs WHERE id = 5".to_string()),
    ];
    for (what, q) in queries {
        let plan = explain(c, &q)?;
        each(what, &plan);
    }
    Ok(())
}

/// After-run consistency counts of the issuance jobs (the filler's clones excluded).
#[derive(Debug, Clone, Copy)]
pub struct JobCheck {
    /// Jobs done.
    pub done: i64,
    /// Certificates issued by a job.
    pub certificates: i64,
    /// Jobs with more than one certificate.
    pub duplicates: i64,
    /// Jobs claimed more than once.
    pub retried: i64,
    /// Jobs still queued or running.
    pub open: i64,
}

pub fn job_check(c: &mut DbConn) -> anyhow::Result<JobCheck> {
    let done = count(c, "SELECT COUNT(*) AS n FROM jobs WHERE state = 'done' AND guid NOT LIKE 'fill-%'")?;
    let certificates = count(c, "SELECT COUNT(*) AS n FROM certificates WHERE job_id IS NOT NULL")?;
    let duplicates = count(
        c,
        "SELECT COUNT(*) AS n FROM (SELECT job_id FROM certificates WHERE job_id IS NOT NULL GROUP BY job_id HAVING COUNT(*) > 1) x",
    )?;
    let retried = count(c, "SELECT COUNT(*) AS n FROM jobs WHERE attempts > 1")?;
    let open = count(c, "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')")?;
    Ok(JobCheck { done, certificates, duplicates, retried, open })
}
