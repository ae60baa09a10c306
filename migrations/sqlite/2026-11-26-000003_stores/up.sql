-- Templates, per-certificate enrollment facts (template, CA, metadata), certificate stores and
-- their push jobs with a history row per run, and agent tokens bound to a client machine.
CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    policy_dn TEXT NOT NULL,
    validity TEXT,
    ekus TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE certificate_info (
    certificate_id BIGINT PRIMARY KEY NOT NULL,
    template TEXT,
    ca_name TEXT,
    metadata TEXT NOT NULL
);

CREATE TABLE stores (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    guid TEXT NOT NULL UNIQUE,
    client_machine TEXT NOT NULL,
    client_machine_lower TEXT NOT NULL,
    store_path TEXT NOT NULL,
    store_type TEXT NOT NULL,
    alias TEXT,
    password_enc BLOB,
    include_keys BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX stores_machine ON stores(client_machine_lower);

CREATE TABLE store_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    guid TEXT NOT NULL UNIQUE,
    store_id BIGINT NOT NULL,
    certificate_id BIGINT,
    operation TEXT NOT NULL,
    alias TEXT,
    overwrite BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    run_after TIMESTAMP NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    message TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX store_jobs_claim ON store_jobs(state, run_after);
CREATE INDEX store_jobs_store ON store_jobs(store_id);

CREATE TABLE store_job_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    job_id BIGINT NOT NULL,
    status INTEGER NOT NULL,
    result INTEGER NOT NULL,
    message TEXT NOT NULL,
    operation_start TIMESTAMP NOT NULL,
    operation_end TIMESTAMP
);
CREATE INDEX store_job_runs_job ON store_job_runs(job_id);

ALTER TABLE tokens ADD COLUMN client_machine TEXT;
