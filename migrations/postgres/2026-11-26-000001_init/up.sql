-- Renewgate schema, PostgreSQL flavour. Keep in step with ../../sqlite (same tables, columns, indexes).
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    max_scope TEXT NOT NULL,
    folders TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    access_hash TEXT NOT NULL UNIQUE,
    refresh_hash TEXT UNIQUE,
    scope TEXT NOT NULL,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    issued_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    refresh_until TIMESTAMP,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE policy_folders (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    dn TEXT NOT NULL,
    dn_lower TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL DEFAULT '{}',
    locked TEXT NOT NULL DEFAULT '[]',
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE cas (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    cert_pem TEXT NOT NULL,
    key_enc BYTEA NOT NULL,
    parent_id BIGINT,
    is_root BOOLEAN NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE cert_objects (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    dn TEXT NOT NULL,
    dn_lower TEXT NOT NULL UNIQUE,
    policy_dn TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    management_type TEXT NOT NULL,
    csr_origin TEXT NOT NULL,
    key_spec TEXT NOT NULL,
    current_cert_id BIGINT,
    pending_job_id BIGINT,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX cert_objects_policy ON cert_objects(policy_dn);

CREATE TABLE certificates (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    object_id BIGINT NOT NULL REFERENCES cert_objects(id),
    issuer_ca_id BIGINT,
    der BYTEA NOT NULL,
    chain_pem TEXT NOT NULL,
    serial TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    common_name TEXT NOT NULL,
    issuer_dn TEXT NOT NULL,
    not_before TIMESTAMP NOT NULL,
    not_after TIMESTAMP NOT NULL,
    public_key_sha256 TEXT NOT NULL,
    key_enc BYTEA,
    job_id BIGINT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX certificates_object ON certificates(object_id);
CREATE INDEX certificates_thumbprint ON certificates(thumbprint);
CREATE INDEX certificates_serial ON certificates(serial);
CREATE INDEX certificates_pubkey ON certificates(public_key_sha256);
CREATE UNIQUE INDEX certificates_job ON certificates(job_id);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    object_id BIGINT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after TIMESTAMP NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    result_cert_id BIGINT,
    error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX jobs_claim ON jobs(state, run_after);
CREATE INDEX jobs_object ON jobs(object_id);
