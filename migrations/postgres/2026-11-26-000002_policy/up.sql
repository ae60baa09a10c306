-- User-provided CSRs kept beside their job, and revocations of issued certificates.
CREATE TABLE csrs (
    id BIGSERIAL PRIMARY KEY,
    object_id BIGINT NOT NULL,
    job_id BIGINT NOT NULL,
    der BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX csrs_object ON csrs(object_id);
CREATE TABLE revocations (
    certificate_id BIGINT PRIMARY KEY NOT NULL,
    reason INTEGER NOT NULL,
    comments TEXT NOT NULL,
    revoked_at TIMESTAMP NOT NULL
);
